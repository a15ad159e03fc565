"""The head counter: a per-camera head detector learnt from the heads a technician clicked on a few snapshots.

Each 4 x 4 pixel cell of the frame is scored by small networks on its neighbourhood (`head_features.py`,
`network.py`); a head is a cell whose score is the highest around it and above a threshold, and a zone's count is
the heads in it, outside its areas to ignore, averaged over a committee of four networks. It needs no empty-lobby
background, so it counts where people never leave and at once after a camera is replaced.

Training: every clicked head is an example of a head, also mirrored; cells of the zone away from every head are
examples of what is not one, 30 for each head; then, after a first fit, the places that fit still takes for heads
are added ("hard negatives", the usual way to teach a detector its own mistakes). Each network is fitted on three
quarters of the snapshots, and the threshold is the one whose count errs least on the quarter each did not see;
the count's error bar is that error with each quarter's threshold chosen on the other three.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, fields
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from numpy.typing import NDArray

from edge_agent.counting.head_features import CELL, WIDTH, cell_features, cell_grid, cell_maps, head_cells, peaks
from edge_agent.counting.network import Network, train_network
from edge_agent.counting.zones import Zone, fitted_for, overlapping, polygon_mask
from lobbywatch.validation import Refused

METHOD = "heads-net-v2"
NEGATIVES_PER_HEAD = 30
MIN_HEADS = 20  # fewer clicked heads teach a detector nothing it can use
MIN_FRAMES = 4  # two halves of at least two snapshots each choose the threshold

Frame = NDArray[np.uint8]
Heads = list[tuple[float, float]]


class HeadsError(Refused):
    """Head points that cannot calibrate a zone, or a stored head model that cannot be used; the message says why."""


def zone_cells(zone: Zone, shape: tuple[int, int]) -> NDArray[np.bool_]:
    """rows x columns: the cells whose centre is in the zone and outside its areas to ignore (a clicked head's
    cell is the one it lies in)."""
    inside = polygon_mask(shape, [zone.polygon]) > 0
    ignore = overlapping(zone, shape)
    if ignore:
        inside &= polygon_mask(shape, ignore) == 0
    rows, columns = cell_grid(shape)
    return inside[CELL // 2 :: CELL, CELL // 2 :: CELL][:rows, :columns]


def _examples(
    frames: list[Frame], heads: list[Heads], inside: NDArray[np.bool_], rng: np.random.Generator
) -> tuple[NDArray[np.float32], NDArray[np.float32]]:
    """Every clicked head, and cells of the zone away from them: only in the zone, since heads are clicked there
    only, and a head outside it is no example of what is not one. Each snapshot is also taken mirrored left to
    right (a head is a head either way round): twice the examples from the same clicks."""
    xs, ys = [], []
    for frame, points in zip(frames, heads, strict=True):
        width = frame.shape[1]
        mirrored = (np.ascontiguousarray(frame[:, ::-1]), [(width - 1 - x, y) for x, y in points], inside[:, ::-1])
        for image, clicked, zone in ((frame, points, inside), mirrored):
            marks = head_cells(image.shape[:2], clicked)
            near = cv2.dilate(marks, np.ones((3, 3), np.uint8)).ravel()
            positive, free = np.flatnonzero(marks.ravel()), np.flatnonzero((near == 0) & zone.ravel())
            wanted = min(len(free), max(100, NEGATIVES_PER_HEAD * len(positive)))
            negative = rng.choice(free, wanted, replace=False)
            features = cell_features(cell_maps(image))
            xs.append(features[np.r_[positive, negative]])
            ys.append(np.r_[np.ones(len(positive)), np.zeros(len(negative))])
    return np.concatenate(xs), np.concatenate(ys).astype(np.float32)


def _mistakes(
    network: Network, frames: list[Frame], heads: list[Heads], inside: NDArray[np.bool_]
) -> NDArray[np.float32]:
    """Cells of the zone the network takes for a head that are nowhere near a clicked one."""
    found = [np.zeros((0, WIDTH), np.float32)]
    for frame, points in zip(frames, heads, strict=True):
        features, cells = _cells(frame)
        scores = network.score(features).reshape(cells)
        near = cv2.dilate(head_cells(frame.shape[:2], points), np.ones((5, 5), np.uint8))
        found.append(features[np.flatnonzero((peaks(scores, 0.0) & (near == 0) & inside).ravel())])
    return np.concatenate(found)


def train(frames: list[Frame], heads: list[Heads], zone: Zone, seed: int = 0) -> Network:
    inside = zone_cells(zone, (int(frames[0].shape[0]), int(frames[0].shape[1])))
    x, y = _examples(frames, heads, inside, np.random.default_rng(seed))
    hard = _mistakes(train_network(x, y, seed), frames[::2], heads[::2], inside)
    return train_network(np.r_[x, hard], np.r_[y, np.zeros(len(hard), np.float32)], seed)


@dataclass(frozen=True)
class HeadCalibration:
    zone: str
    polygon: list[list[int]]
    frame_shape: list[int]
    ignore: list[list[list[int]]]
    method: str
    threshold: float
    residual_sd: float  # root mean square error of the count on snapshots the networks were not fitted on
    frames: int
    heads: int
    created: str
    networks: list[Network]  # the committee: each fitted on three quarters of the snapshots

    def matches(self, zone: Zone, frame_shape: tuple[int, int]) -> bool:
        return fitted_for(zone, frame_shape, self.polygon, self.ignore, self.frame_shape)

    def as_dict(self) -> dict[str, Any]:
        plain = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "networks"}
        return {**plain, "networks": [n.numbers() for n in self.networks]}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> HeadCalibration:
        return cls(**{**data, "networks": [Network.from_numbers(n) for n in data["networks"]]})


class HeadCounter:
    """Counts one zone: the heads found inside the zone and outside its areas to ignore, by each network of the
    committee, averaged (networks fitted on different snapshots err differently; their mean errs less)."""

    def __init__(self, networks: list[Network], threshold: float, zone: Zone, shape: tuple[int, int]) -> None:
        self._networks, self._threshold = networks, threshold
        self._inside = zone_cells(zone, shape)

    def found(self, frame: Frame) -> list[NDArray[np.bool_]]:
        """Per network, rows x columns of cells: True where it found a head in the zone."""
        features, maps = _cells(frame)
        return [peaks(n.score(features).reshape(maps), self._threshold) & self._inside for n in self._networks]

    def estimate(self, frame: Frame) -> float:
        return float(np.mean([f.sum() for f in self.found(frame)]))

    def peak_scores(self, frame: Frame) -> list[NDArray[np.float32]]:
        """Per network, the score of every local high in the zone, head or not (to choose the threshold)."""
        features, maps = _cells(frame)
        scores = [n.score(features).reshape(maps) for n in self._networks]
        return [s[peaks(s, -np.inf) & self._inside] for s in scores]


def _cells(frame: Frame) -> tuple[NDArray[np.float32], tuple[int, int]]:
    maps = cell_maps(frame)
    return cell_features(maps), (int(maps.shape[0]), int(maps.shape[1]))


FOLDS = 4  # networks in the committee, each fitted on all snapshots but a quarter


def _committee(frames: list[Frame], heads: list[Heads], zone: Zone, seed: int) -> tuple[list[Network], float, float]:
    """The networks, the threshold and its root mean square count error. The snapshots are dealt into four
    folds; each network is fitted on three and counts the fourth at every candidate threshold, and the threshold
    whose count errs least is kept. The candidates are quantiles of the scores found, so the choice does not hang
    on the scale of the scores. The networks counted with are the ones the threshold was chosen for: a network
    fitted on every snapshot would be surer of itself than they were, and count fewer."""
    shape = (int(frames[0].shape[0]), int(frames[0].shape[1]))
    folds = [[*range(k, len(frames), FOLDS)] for k in range(min(FOLDS, len(frames)))]
    networks: list[Network] = []
    unseen: dict[int, NDArray[np.float32]] = {}
    for k, count_on in enumerate(folds):
        fit_on = [i for i in range(len(frames)) if i % len(folds) != k]
        network = train([frames[i] for i in fit_on], [heads[i] for i in fit_on], zone, seed + k)
        networks.append(network)
        counter = HeadCounter([network], 0.0, zone, shape)
        for i in count_on:
            (unseen[i],) = counter.peak_scores(frames[i])
    candidates = np.unique(np.quantile(np.concatenate(list(unseen.values())), np.linspace(0.0, 1.0, 201)))
    counts = np.array([[(unseen[i] > t).sum() for t in candidates] for i in range(len(frames))], dtype=np.float64)
    truths = np.array([sum(zone.contains(x, y) for x, y in h) for h in heads], dtype=np.float64)
    errors = counts - truths[:, None]
    best = int(np.argmin(np.abs(errors).mean(axis=0)))
    # The error bar, honestly: the best of 200 thresholds on a few snapshots looks better than it is. So each
    # fold's error is taken at the threshold chosen on the other folds alone (nested; no more networks needed).
    fold_of = np.arange(len(frames)) % len(folds)
    nested = np.concatenate(
        [errors[fold_of == k, int(np.argmin(np.abs(errors[fold_of != k]).mean(axis=0)))] for k in range(len(folds))]
    )
    return networks, float(candidates[best]), float(np.sqrt((nested**2).mean()))


def held_out_counts(calibration: HeadCalibration, zone: Zone, frames: list[Frame]) -> list[float]:
    """The snapshots it was fitted on (in the order `fit_heads` was given them), each counted by the network of
    the committee that did not see it (`_committee`'s folds): the errors there are honest ones."""
    shape = (int(frames[0].shape[0]), int(frames[0].shape[1]))
    folds = len(calibration.networks)
    counters = [HeadCounter([network], calibration.threshold, zone, shape) for network in calibration.networks]
    return [counters[i % folds].estimate(frame) for i, frame in enumerate(frames)]


def fit_heads(zone: Zone, frames: list[Frame], heads: list[Heads], seed: int = 0) -> HeadCalibration:
    """The zone's head counter from snapshots and the heads clicked in the zone on each (every one of them: a
    snapshot labelled by its count alone has no place here)."""
    if len(frames) != len(heads):
        raise HeadsError("heads.error.mismatch", frames=len(frames), points=len(heads))
    if len(frames) < MIN_FRAMES:
        raise HeadsError("heads.error.too_few_frames", frames=len(frames), needed=MIN_FRAMES)
    total = sum(len(h) for h in heads)
    if total < MIN_HEADS:
        raise HeadsError("heads.error.too_few_heads", heads=total, needed=MIN_HEADS)
    shape = (int(frames[0].shape[0]), int(frames[0].shape[1]))
    networks, threshold, error = _committee(frames, heads, zone, seed)
    return HeadCalibration(
        zone.key,
        [list(p) for p in zone.polygon],
        list(shape),
        overlapping(zone, shape),
        METHOD,
        threshold,
        error,
        len(frames),
        total,
        datetime.now(UTC).isoformat(timespec="seconds"),
        networks,
    )


def save_heads(calibration: HeadCalibration, path: Path) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(calibration.as_dict()), encoding="utf-8")
    tmp.replace(path)


def load_heads(path: Path) -> HeadCalibration:
    try:
        return HeadCalibration.from_dict(json.loads(path.read_text(encoding="utf-8")))
    except (ValueError, TypeError, KeyError) as exc:
        raise HeadsError("heads.error.unreadable", path=path, why=exc) from None
