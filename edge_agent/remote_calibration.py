"""Calibration from the technician's page: snapshots the server asked for are kept here, on the device, and
the counts the technician labels on them become a calibration dataset (the format of docs/counting.md) that is
fitted once there are enough labels. No image leaves the device except the snapshot the technician looks at.
"""

from __future__ import annotations

import csv
import json
import shutil
import time
from pathlib import Path

import cv2
import numpy as np
from numpy.typing import NDArray

from edge_agent.counting.calibration import CalibrationStore, ZoneCalibration, calibrate
from edge_agent.counting.dataset import load_dataset
from edge_agent.counting.zones import Zone
from lobbywatch.validation import Refused

KEEP_SNAPSHOTS = 30
MIN_LABELS = 5  # a ridge fit on fewer frames than this is noise
VIEW_CHANGED = "view-changed"  # in the data folder: when the health check last found the camera moved

Frame = NDArray[np.uint8]


class LabelError(Refused):
    """A label that cannot be used; the message says why (it goes back to the technician's page)."""


def _snapshots(data_dir: Path) -> Path:
    return data_dir / "snapshots"


def save_snapshot(data_dir: Path, snapshot_id: str, frame: Frame) -> None:
    folder = _snapshots(data_dir)
    folder.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(folder / f"{snapshot_id}.png"), frame)
    for old in sorted(folder.glob("*.png"), key=lambda p: p.stat().st_mtime)[:-KEEP_SNAPSHOTS]:
        old.unlink()


def view_changed(data_dir: Path, at: float) -> None:
    """The health check found the camera moved (`at`, epoch seconds): the labels and snapshots from before show
    another view, so the next calibration is made from what comes after. A calibration belongs to one view."""
    data_dir.mkdir(parents=True, exist_ok=True)
    (data_dir / VIEW_CHANGED).write_text(repr(at), encoding="utf-8")


def view_since(data_dir: Path) -> float:
    """When the camera's current view began, as far as the device knows (0: it has not seen it move)."""
    try:
        return float((data_dir / VIEW_CHANGED).read_text(encoding="utf-8"))
    except (FileNotFoundError, ValueError):
        return 0.0


def heads_of(points: object, count: int, shape: tuple[int, ...]) -> list[tuple[int, int]] | None:
    """The heads a technician clicked (`[[x, y], ...]` in the snapshot's pixels), one per person counted; None
    when the label is a count alone."""
    if points is None:
        return None
    height, width = shape[:2]
    if (
        not isinstance(points, list)
        or len(points) != count
        or not all(
            isinstance(p, list)
            and len(p) == 2
            and all(isinstance(c, int) and not isinstance(c, bool) for c in p)
            and 0 <= p[0] < width
            and 0 <= p[1] < height
            for p in points
        )
    ):
        raise LabelError("label.error.bad_heads", count=count, width=width, height=height)
    return [(int(x), int(y)) for x, y in points]


def add_label(data_dir: Path, zone: Zone, snapshot_id: str, count: int, points: object = None) -> int:
    """Label a kept snapshot with the people in the zone, and where their heads are when they were clicked (kept
    in the dataset's points.csv); returns how many labels the zone has. Labels made on another polygon of the zone
    are dropped: they describe another area."""
    source = _snapshots(data_dir) / f"{snapshot_id}.png"
    frame = cv2.imread(str(source), cv2.IMREAD_COLOR)
    if frame is None:
        raise LabelError("label.error.snapshot_gone", snapshot=snapshot_id)
    if not 0 <= count <= 500:
        raise LabelError("label.error.impossible_count", count=count)
    heads = heads_of(points, count, frame.shape)
    since = view_since(data_dir)
    if source.stat().st_mtime < since:
        raise LabelError("label.error.before_move", snapshot=snapshot_id)
    folder = data_dir / "labels" / zone.key
    roi: dict[str, object] = {"polygon": [list(p) for p in zone.polygon], "anchor": zone.anchor}
    roi_path, counts_path, points_path = folder / "roi.json", folder / "counts.csv", folder / "points.csv"
    if roi_path.exists():
        kept = json.loads(roi_path.read_text(encoding="utf-8"))
        if kept.get("polygon") != roi["polygon"]:
            for path in [*(folder / "frames").glob("*.jpg"), counts_path, points_path]:
                path.unlink(missing_ok=True)
        elif float(kept.get("started", 0.0)) < since:
            _set_aside(folder)  # labels of the view before the camera moved
        else:
            roi["started"] = kept.get("started", 0.0)
    roi.setdefault("started", time.time())
    (folder / "frames").mkdir(parents=True, exist_ok=True)
    roi_path.write_text(json.dumps(roi), encoding="utf-8")
    cv2.imwrite(str(folder / "frames" / f"{snapshot_id}.jpg"), frame, [cv2.IMWRITE_JPEG_QUALITY, 95])
    rows: dict[str, int] = {}
    if counts_path.exists():
        with counts_path.open(newline="", encoding="utf-8") as handle:
            rows = {r["frame"]: int(r["count"]) for r in csv.DictReader(handle)}
    rows[snapshot_id] = count
    with counts_path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["frame", "count"])
        writer.writerows(sorted(rows.items()))
    _keep_heads(points_path, snapshot_id, heads)
    return len(rows)


def _set_aside(folder: Path) -> None:
    """A zone's labels of an earlier view, moved beside it (`<zone>.earlier-view`, replacing any older set) rather
    than deleted: a camera called moved by mistake (a big object placed in view) loses no technician's work."""
    earlier = folder.with_name(f"{folder.name}.earlier-view")
    shutil.rmtree(earlier, ignore_errors=True)
    folder.rename(earlier)


def _keep_heads(path: Path, snapshot_id: str, heads: list[tuple[int, int]] | None) -> None:
    """The snapshot's clicked heads in points.csv (`frame,x,y`, the benchmark datasets' format), in place of any
    it had; a label by count alone leaves that snapshot without points."""
    kept: list[tuple[str, str, str]] = []
    if path.exists():
        with path.open(newline="", encoding="utf-8") as handle:
            kept = [(r["frame"], r["x"], r["y"]) for r in csv.DictReader(handle) if r["frame"] != snapshot_id]
    kept += [(snapshot_id, str(x), str(y)) for x, y in heads or ()]
    if not kept:
        path.unlink(missing_ok=True)
        return
    kept.sort(key=lambda row: row[0])  # by frame; each frame's heads as they were clicked
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["frame", "x", "y"])
        writer.writerows(kept)  # by frame, each frame's heads as clicked


def fit(data_dir: Path, zone: Zone) -> ZoneCalibration | None:
    """Fit and store the zone's calibration when it has enough labels; returns it, or None while labels are
    short. The background comes from every snapshot kept since the camera last moved, labelled or not."""
    folder = data_dir / "labels" / zone.key
    if not (folder / "counts.csv").exists():
        return None
    labelled = load_dataset(folder)
    if len(labelled.frames) < MIN_LABELS:
        return None
    since = view_since(data_dir)
    shots = [p for p in sorted(_snapshots(data_dir).glob("*.png")) if p.stat().st_mtime >= since]
    backgrounds = [
        f
        for f in (cv2.imread(str(p), cv2.IMREAD_COLOR) for p in shots)
        if f is not None and f.shape == labelled.frames[0].shape
    ]
    calibration, background = calibrate(
        zone, labelled.frames, labelled.counts, [np.asarray(f, dtype=np.uint8) for f in backgrounds] or None
    )
    CalibrationStore(data_dir).save(calibration, background)
    return calibration
