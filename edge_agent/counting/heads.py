"""The head counter: a per-camera head detector learnt from the heads a technician clicked on a few snapshots.

Each 4 x 4 pixel cell of the frame is scored by a small network on its neighbourhood (`head_features.py`,
`network.py`); a head is a cell whose score is the highest around it and above a threshold, and a zone's count is
the heads in it, outside its areas to ignore. It needs no empty-lobby background, so it counts where people never
leave and at once after a camera is replaced or moved.

Training: every clicked head is an example of a head; cells away from every head are examples of what is not one,
30 for each head; then, after a first fit, the places that fit still takes for heads are added ("hard
negatives", the usual way to teach a detector its own mistakes). The threshold is the one whose count errs least on
snapshots the network was not fitted on (two halves, each counted by a network fitted on the other), and that
error is the count's error bar.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from numpy.typing import NDArray

from edge_agent.counting.head_features import CELL, WIDTH, cell_features, cell_grid, cell_maps, head_cells, peaks
from edge_agent.counting.network import Network, train_network
from edge_agent.counting.zones import Zone, overlapping, polygon_mask
from lobbywatch.validation import Refused

METHOD = "heads-net-v1"
NEGATIVES_PER_HEAD = 30
MIN_HEADS = 20  # fewer clicked heads teach a detector nothing it can use
MIN_FRAMES = 4  # two halves of at least two snapshots each choose the threshold

Frame = NDArray[np.uint8]
Heads = list[tuple[float, float]]


class HeadsError(Refused):
    """Head points that cannot calibrate a zone, or a stored head model that cannot be used; the message says why."""


def _scores(network: Network, frame: Frame) -> NDArray[np.float32]:
    maps = cell_maps(frame)
    return network.score(cell_features(maps)).reshape(maps.shape[:2])


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
    only, and a head outside it is no example of what is not one."""
    xs, ys = [], []
    for frame, points in zip(frames, heads, strict=True):
        marks = head_cells(frame.shape[:2], points)
        near = cv2.dilate(marks, np.ones((3, 3), np.uint8)).ravel()
        positive, free = np.flatnonzero(marks.ravel()), np.flatnonzero((near == 0) & inside.ravel())
        negative = rng.choice(free, min(len(free), max(100, NEGATIVES_PER_HEAD * len(positive))), replace=False)
        features = cell_features(cell_maps(frame))
        xs.append(features[np.r_[positive, negative]])
        ys.append(np.r_[np.ones(len(positive)), np.zeros(len(negative))])
    return np.concatenate(xs), np.concatenate(ys).astype(np.float32)


def _mistakes(
    network: Network, frames: list[Frame], heads: list[Heads], inside: NDArray[np.bool_]
) -> NDArray[np.float32]:
    """Cells of the zone the network takes for a head that are nowhere near a clicked one."""
    found = [np.zeros((0, WIDTH), np.float32)]
    for frame, points in zip(frames, heads, strict=True):
        maps = cell_maps(frame)
        features = cell_features(maps)
        scores = network.score(features).reshape(maps.shape[:2])
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
    residual_sd: float  # root mean square error of the count on snapshots the network was not fitted on
    frames: int
    heads: int
    created: str
    network: Network

    def matches(self, zone: Zone, frame_shape: tuple[int, int]) -> bool:
        return (
            [list(p) for p in zone.polygon] == self.polygon
            and overlapping(zone, frame_shape) == self.ignore
            and list(frame_shape) == self.frame_shape
        )

    def as_dict(self) -> dict[str, Any]:
        fields = {k: v for k, v in asdict(self).items() if k != "network"}
        return {**fields, "network": self.network.numbers()}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> HeadCalibration:
        return cls(**{**data, "network": Network.from_numbers(data["network"])})


class HeadCounter:
    """Counts one zone: the heads found inside the zone and outside its areas to ignore."""

    def __init__(self, network: Network, threshold: float, zone: Zone, shape: tuple[int, int]) -> None:
        self._network, self._threshold = network, threshold
        self._inside = zone_cells(zone, shape)

    def heads(self, frame: Frame) -> NDArray[np.bool_]:
        """rows x columns of cells, True where a head was found in the zone."""
        return peaks(_scores(self._network, frame), self._threshold) & self._inside

    def count(self, frame: Frame) -> int:
        return int(self.heads(frame).sum())

    def peak_scores(self, frame: Frame) -> NDArray[np.float32]:
        """The score of every local high in the zone, head or not (to choose the threshold)."""
        scores = _scores(self._network, frame)
        return scores[peaks(scores, -np.inf) & self._inside]


def _choose_threshold(frames: list[Frame], heads: list[Heads], zone: Zone, seed: int) -> tuple[float, float]:
    """(threshold, its root mean square count error): each half counted by a network fitted on the other half.

    The candidates are quantiles of the scores of what was found, so the choice does not hang on the scale of the
    network's scores."""
    shape = (int(frames[0].shape[0]), int(frames[0].shape[1]))
    halves = ([*range(0, len(frames), 2)], [*range(1, len(frames), 2)])
    found: list[NDArray[np.float32]] = []
    truths: list[int] = []
    for fit_on, count_on in (halves, halves[::-1]):
        network = train([frames[i] for i in fit_on], [heads[i] for i in fit_on], zone, seed)
        counter = HeadCounter(network, 0.0, zone, shape)
        for i in count_on:
            found.append(counter.peak_scores(frames[i]))
            truths.append(sum(zone.contains(x, y) for x, y in heads[i]))
    candidates = np.unique(np.quantile(np.concatenate(found), np.linspace(0.0, 1.0, 201)))
    counts = np.array([[(f > t).sum() for t in candidates] for f in found], dtype=np.float64)
    errors = counts - np.asarray(truths, dtype=np.float64)[:, None]
    best = int(np.argmin(np.abs(errors).mean(axis=0)))
    return float(candidates[best]), float(np.sqrt((errors[:, best] ** 2).mean()))


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
    threshold, error = _choose_threshold(frames, heads, zone, seed)
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
        train(frames, heads, zone, seed),
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
