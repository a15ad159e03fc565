"""Labelled frames in the dataset format (see docs/counting.md): frames/*.jpg, counts.csv, roi.json, and optionally
points.csv (`frame,x,y`: the clicked heads of each frame)."""

from __future__ import annotations

import argparse
import csv
import json
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from numpy.typing import NDArray

from edge_agent.counting.zones import Zone
from lobbywatch.validation import Refused


class DatasetError(Refused):
    """A folder that is not in the dataset format; the message says what is wrong."""


@dataclass(frozen=True)
class Dataset:
    name: str
    zone: Zone
    names: list[str]
    counts: list[int]
    frames: list[NDArray[np.uint8]]
    points: list[list[tuple[float, float]]] | None = None  # per frame, where the folder has points.csv


def load_dataset(folder: Path, limit: int | None = None, frames: slice | None = None) -> Dataset:
    roi_path, counts_path, frames_dir = folder / "roi.json", folder / "counts.csv", folder / "frames"
    for path in (roi_path, counts_path, frames_dir):
        if not path.exists():
            raise DatasetError("dataset.error.not_a_dataset", folder=folder, name=path.name)
    try:
        roi = json.loads(roi_path.read_text(encoding="utf-8"))
        polygon = [(int(x), int(y)) for x, y in roi["polygon"]]
        zone = Zone("roi", polygon, roi.get("anchor", "feet"))
    except (ValueError, KeyError, TypeError) as exc:
        raise DatasetError("dataset.error.bad_roi", path=roi_path, why=exc) from None
    with counts_path.open(newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    if not rows or set(rows[0]) != {"frame", "count"}:
        raise DatasetError("dataset.error.bad_header", path=counts_path)
    rows.sort(key=lambda r: r["frame"])
    if frames is not None:
        rows = rows[frames]
    if limit is not None:
        rows = rows[:limit]
    images, names, counts = [], [], []
    for row in rows:
        path = frames_dir / f"{row['frame']}.jpg"
        frame = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if frame is None:
            raise DatasetError("dataset.error.bad_image", path=path)
        try:
            count = int(row["count"])
        except (TypeError, ValueError):
            raise DatasetError("dataset.error.no_count", path=counts_path, frame=row["frame"]) from None
        images.append(np.asarray(frame, dtype=np.uint8))
        names.append(row["frame"])
        counts.append(count)
    if not images:
        raise DatasetError("dataset.error.no_frames", folder=folder)
    points = _points(folder / "points.csv", names) if (folder / "points.csv").exists() else None
    return Dataset(folder.name, zone, names, counts, images, points)


def _points(path: Path, names: list[str]) -> list[list[tuple[float, float]]]:
    """Each frame's points, in the order of `names` (a frame with no row has none)."""
    by_frame: dict[str, list[tuple[float, float]]] = {name: [] for name in names}
    with path.open(newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        if reader.fieldnames is None or set(reader.fieldnames) != {"frame", "x", "y"}:
            raise DatasetError("dataset.error.bad_points_header", path=path)
        for line, row in enumerate(reader, 2):
            if row["frame"] not in by_frame:
                continue  # a frame left out by --frames or --limit
            try:
                by_frame[row["frame"]].append((float(row["x"]), float(row["y"])))
            except (TypeError, ValueError):
                raise DatasetError("dataset.error.bad_point", path=path, line=line) from None
    return [by_frame[name] for name in names]


def write_snapshots(folder: Path, zone: Zone, frames: list[NDArray[np.uint8]]) -> Path:
    """A dataset folder to be labelled: the frames, roi.json of the zone, and counts.csv with empty counts."""
    (folder / "frames").mkdir(parents=True, exist_ok=True)
    height, width = frames[0].shape[:2]
    roi = {"width": width, "height": height, "polygon": [list(p) for p in zone.polygon], "anchor": zone.anchor}
    (folder / "roi.json").write_text(json.dumps(roi), encoding="utf-8")
    with (folder / "counts.csv").open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["frame", "count"])
        for i, frame in enumerate(frames, 1):
            name = f"{i:06d}"
            if not cv2.imwrite(str(folder / "frames" / f"{name}.jpg"), frame):
                raise DatasetError("dataset.error.cannot_write", path=f"{folder / 'frames' / name}.jpg")
            writer.writerow([name, ""])
    return folder / "counts.csv"


def frame_range(text: str) -> slice:
    """'401:800' -> the 401st to the 800th frame (1-based, both included), in name order; '1:720:2' -> every
    second of them (odd frames to calibrate on, '2:720:2' the even ones to count: the same views in both)."""
    parts = text.split(":")
    try:
        if len(parts) not in (2, 3):
            raise ValueError(text)
        first, last = parts[0], parts[1]
        step = int(parts[2]) if len(parts) == 3 else None
        if step is not None and step < 1:
            raise ValueError(text)
        return slice(int(first) - 1 if first else None, int(last) if last else None, step)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected FIRST:LAST[:STEP] frame numbers, got {text!r}") from None
