"""Per-camera calibration: fitted from a few labelled frames, stored on the device, checked before use.

What is stored (in the device's data folder, never sent anywhere): the empty-scene background (an image of
the lobby, so it stays on the device like every image), and per zone the regression from crowd features to a
count, with the zone's polygon and areas to ignore it was fitted for. A calibration whose polygon, areas to ignore
or frame size no longer match the config is not used (the camera or the zone was changed: calibrate again).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from edge_agent.counting.features import BandFeatures, Frame, median_background
from edge_agent.counting.heads import HeadCalibration, Heads, HeadsError, fit_heads, load_heads, save_heads
from edge_agent.counting.regression import RidgeModel, fit_ridge
from edge_agent.counting.zones import Zone, fitted_for, overlapping
from lobbywatch.validation import Refused

METHOD = "bands-ridge-v1"


class CalibrationError(Refused):
    """A calibration that cannot be made or used; the message says why and what to do."""


@dataclass(frozen=True)
class ZoneCalibration:
    zone: str
    polygon: list[list[int]]
    frame_shape: list[int]
    method: str
    model: RidgeModel
    frames: int
    created: str
    # the zone's areas to ignore it was fitted without; None: fitted before areas to ignore applied to it, so it
    # counts the whole zone as it always did
    ignore: list[list[list[int]]] | None = None

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ZoneCalibration:
        """From what `asdict` made (the stored file, or the numbers carried from a replaced camera)."""
        return cls(**{**data, "model": RidgeModel(**data["model"])})

    def matches(self, zone: Zone, frame_shape: tuple[int, int]) -> bool:
        return fitted_for(zone, frame_shape, self.polygon, self.ignore, self.frame_shape)


def fit_zone(zone: Zone, frames: list[Frame], counts: list[int], background: Frame) -> ZoneCalibration:
    if len(frames) != len(counts):
        raise CalibrationError("calibration.error.mismatch", frames=len(frames), counts=len(counts))
    if len(frames) < 5:
        raise CalibrationError("calibration.error.too_few", frames=len(frames))
    if len(set(counts)) < 2:
        raise CalibrationError("calibration.error.same_count")
    shape = (int(frames[0].shape[0]), int(frames[0].shape[1]))
    features = BandFeatures(zone, shape, background)
    x = np.array([features(f) for f in frames])
    model = fit_ridge(x, np.array(counts, dtype=np.float64))
    return ZoneCalibration(
        zone.key,
        [list(p) for p in zone.polygon],
        list(shape),
        METHOD,
        model,
        len(frames),
        datetime.now(UTC).isoformat(timespec="seconds"),
        overlapping(zone, shape),
    )


def calibrate(
    zone: Zone, frames: list[Frame], counts: list[int], background_frames: list[Frame] | None = None
) -> tuple[ZoneCalibration, Frame]:
    background = median_background(background_frames or frames)
    return fit_zone(zone, frames, counts, background), background


def calibrate_heads(
    store: CalibrationStore, zone: Zone, frames: list[Frame], counts: list[int], points: list[Heads] | None
) -> HeadCalibration | HeadsError:
    """Fit and store the zone's head counter from the snapshots whose heads were all clicked (as many points as
    the count; a snapshot labelled by its count alone teaches no heads). When there are too few, any head counter
    fitted before is removed, since it belongs to labels that are gone, and the reason is returned."""
    picks = [i for i, c in enumerate(counts) if points is not None and len(points[i]) == c]
    try:
        fitted = fit_heads(zone, [frames[i] for i in picks], [points[i] for i in picks] if points else [])
    except HeadsError as exc:
        store.remove_heads(zone.key)
        return exc
    store.save_heads(fitted)
    return fitted


class CalibrationStore:
    """`<data_dir>/calibration/`: background.png, one <zone>.json per calibrated zone, and <zone>.heads.json per
    zone whose head counter was fitted from clicked heads."""

    def __init__(self, data_dir: Path) -> None:
        self.folder = data_dir / "calibration"

    def save(self, calibration: ZoneCalibration, background: Frame) -> Path:
        self.save_background(background)
        path = self.folder / f"{calibration.zone}.json"
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(asdict(calibration), indent=1), encoding="utf-8")
        tmp.replace(path)
        return path

    def save_background(self, background: Frame) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        path, tmp = self.folder / "background.png", self.folder / "background.tmp.png"
        if not cv2.imwrite(str(tmp), background):
            raise CalibrationError("calibration.error.cannot_write", path=tmp)
        tmp.replace(path)  # a new entry in the folder: its time changes, and the camera loop picks it up

    def save_heads(self, calibration: HeadCalibration) -> Path:
        self.folder.mkdir(parents=True, exist_ok=True)
        path = self.folder / f"{calibration.zone}.heads.json"
        save_heads(calibration, path)
        return path

    def remove_heads(self, zone: str) -> None:
        (self.folder / f"{zone}.heads.json").unlink(missing_ok=True)

    def load_heads(self, zone: str) -> HeadCalibration | None:
        path = self.folder / f"{zone}.heads.json"
        return load_heads(path) if path.exists() else None

    def version(self) -> float:
        """Changes whenever a calibration is saved: the folder's modification time (0 when there is none)."""
        try:
            return self.folder.stat().st_mtime
        except FileNotFoundError:
            return 0.0

    def background(self) -> Frame | None:
        path = self.folder / "background.png"
        if not path.exists():  # not calibrated: None, without OpenCV's warning on the console
            return None
        image = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
        return None if image is None else np.asarray(image, dtype=np.uint8)

    def load(self, zone: str) -> ZoneCalibration | None:
        path = self.folder / f"{zone}.json"
        if not path.exists():
            return None
        try:
            return ZoneCalibration.from_dict(json.loads(path.read_text(encoding="utf-8")))
        except (ValueError, TypeError, KeyError) as exc:
            raise CalibrationError("calibration.error.unreadable", path=path, why=exc, zone=zone) from None
