"""Counting benchmark: `python -m edge_agent.benchmark DATASET_DIR [--calibrate DATASET_DIR]`.

Counts the people inside the dataset's roi.json polygon in every frame with the agent's own counter (one
thread, frames decoded beforehand, timed without decoding), and prints progress, then a JSON object on the
last line: frames, mae, rmse, fps, and more. `--calibrate` first fits the calibration on that folder, as a
technician's calibration would, and counts with it: the regression on the counts, and where the folder has
points.csv the head counter on the clicked heads too; the counter takes the one with the smaller error on
labelled frames it was not fitted on.

A folder may mix cameras and views; a device watches one. So the frames are grouped by view
(`edge_agent/counting/views.py` compares their fixed scenes) and each view is counted by a counter of its own, as
its own device would count it (the detector learns that view's perspective alone). When the calibration frames
show more than one view, each view with enough labelled frames also gets a regression of its own, which counts
that view's frames where it is clearly better than the calibration of every view
(`edge_agent/counting/view_fits.py`). The JSON's `views` says what was found and used. `--one-view` takes the
folder as one view, with one counter.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np

from edge_agent.counting.background import quietest_median
from edge_agent.counting.calibration import CalibrationError, ZoneCalibration, calibrate
from edge_agent.counting.counter import PeopleCounter, prefer_heads
from edge_agent.counting.dataset import Dataset, DatasetError, frame_range, load_dataset
from edge_agent.counting.features import Frame
from edge_agent.counting.heads import HeadCalibration, HeadsError, fit_heads, held_out_counts
from edge_agent.counting.view_fits import fit_views
from edge_agent.counting.views import Views


def arguments() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m edge_agent.benchmark", description=__doc__.split("\n\n")[0])
    parser.add_argument("dataset", type=Path, help="folder with frames/, counts.csv and roi.json")
    parser.add_argument("--calibrate", type=Path, help="fit the calibration on this folder first")
    parser.add_argument("--limit", type=int, help="only the first N frames")
    parser.add_argument(
        "--frames", type=frame_range, help="count only frames FIRST:LAST[:STEP] (1-based, in name order)"
    )
    parser.add_argument(
        "--calibrate-frames",
        type=frame_range,
        help="calibrate on frames FIRST:LAST[:STEP] of the --calibrate folder only (a held-out test)",
    )
    parser.add_argument(
        "--labels",
        type=int,
        help="use the labels of only N evenly spaced calibration frames (a technician's snapshots); "
        "the background is still learnt from all of them",
    )
    parser.add_argument(
        "--one-view", action="store_true", help="take the frames as one view: one counter, no fits per view"
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    args = arguments().parse_args(argv)
    cv2.setNumThreads(1)  # the agent's budget is one core
    try:
        data = load_dataset(args.dataset, args.limit, args.frames)
        calibrations, background, fit_seconds = {}, None, 0.0
        heads: dict[str, HeadCalibration] = {}
        if args.calibrate is not None:
            labelled = load_dataset(args.calibrate, frames=args.calibrate_frames)
            print(f"calibrating on {len(labelled.frames)} labelled frames of {labelled.name}", file=sys.stderr)
            started = time.perf_counter()
            picks = range(len(labelled.frames))
            if args.labels:
                picks = np.linspace(0, len(labelled.frames) - 1, args.labels).round().astype(int).tolist()
            calibration, background = calibrate(
                data.zone, [labelled.frames[i] for i in picks], [labelled.counts[i] for i in picks], labelled.frames
            )
            calibrations = {data.zone.key: calibration}
            print(f"  regression: error {calibration.model.residual_sd:.2f} (leave-one-out)", file=sys.stderr)
            if labelled.points is not None:
                fitted = fit_heads(data.zone, [labelled.frames[i] for i in picks], [labelled.points[i] for i in picks])
                heads = {data.zone.key: fitted}
                print(f"  head counter: error {fitted.residual_sd:.2f} (held-out quarters)", file=sys.stderr)
            fit_seconds = time.perf_counter() - started
    except (DatasetError, CalibrationError, HeadsError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    shape = (int(data.frames[0].shape[0]), int(data.frames[0].shape[1]))

    def shared() -> PeopleCounter:
        return PeopleCounter([data.zone], shape, calibrations, background, heads=heads)

    counter = shared()
    views: dict[str, object] | None = None
    by_frame = [counter] * len(data.frames)
    if args.one_view:
        learn_empty_lobby(counter, data.frames, shared)
    else:
        key = data.zone.key
        labelled_pairs: tuple[list[Frame], list[int]] = ([], [])
        if args.calibrate is not None:
            labelled_pairs = [labelled.frames[i] for i in picks], [labelled.counts[i] for i in picks]
        views, by_frame = per_view(data, *labelled_pairs, calibrations.get(key), heads.get(key), shared)
    print(f"counting {len(data.frames)} frames of {data.name} ({counter.methods()[data.zone.key]})", file=sys.stderr)
    predictions: list[float] = []
    counted_by: dict[str, int] = {}
    started = time.perf_counter()
    for i, frame in enumerate(data.frames, 1):
        zone = by_frame[i - 1].count(frame)[0]
        predictions.append(zone.count)
        counted_by[zone.method] = counted_by.get(zone.method, 0) + 1
        if i % 100 == 0:
            print(f"  {i}/{len(data.frames)} frames, {i / (time.perf_counter() - started):.1f} fps", file=sys.stderr)
    seconds = time.perf_counter() - started
    error = np.array(predictions) - np.array(data.counts, dtype=float)
    result = {
        "dataset": data.name,
        "frames": len(data.frames),
        "method": counter.methods()[data.zone.key],
        "frames_by_method": counted_by,
        "calibrated_on": args.calibrate.name if args.calibrate else None,
        "calibration_frames": len(labelled.frames) if args.calibrate else 0,
        "labelled_frames": (args.labels or len(labelled.frames)) if args.calibrate else 0,
        "mae": round(float(np.abs(error).mean()), 3),
        "rmse": round(float(np.sqrt((error**2).mean())), 3),
        "bias": round(float(error.mean()), 3),
        "fps": round(len(data.frames) / seconds, 1),
        "frame_size": f"{shape[1]}x{shape[0]}",
        "calibration_seconds": round(fit_seconds, 2),
        "calibration_error": {
            "regression": round(calibrations[data.zone.key].model.residual_sd, 3) if calibrations else None,
            "heads": round(heads[data.zone.key].residual_sd, 3) if heads else None,
        },
        "views": views,
    }
    print(json.dumps(result))
    return 0


def per_view(
    data: Dataset,
    frames: list[Frame],
    counts: list[int],
    regression: ZoneCalibration | None,
    heads: HeadCalibration | None,
    shared: Callable[[], PeopleCounter],
) -> tuple[dict[str, object], list[PeopleCounter]]:
    """The views of the labelled frames and of the frames counted, and the counter of each frame counted: its
    view's own, as a device watching that view alone would count (the detector learns that view's perspective
    only), with the view's own regression where that is clearly better than the shared calibration."""
    started = time.perf_counter()
    grouping, everything = Views(), [*frames, *data.frames]
    found = []
    for i, frame in enumerate(everything, 1):
        found.append(grouping.assign(frame))
        if i % 200 == 0:
            print(f"  grouping by view: {i}/{len(everything)} frames, {len(grouping)} views", file=sys.stderr)
    labelled_views, counted_views = found[: len(frames)], found[len(frames) :]
    seen = set(labelled_views)
    report: dict[str, object] = {
        "labelled": len(seen),
        "counted": len(set(counted_views)),
        "counted_frames_of_labelled_views": sum(v in seen for v in counted_views),
    }
    counters: dict[int, PeopleCounter] = {}
    if regression is not None and len(seen) > 1:
        if heads is not None and prefer_heads(heads, regression):  # the shared calibration counts by heads
            unseen = held_out_counts(heads, data.zone, frames)
            errors = [abs(u - c) for u, c in zip(unseen, counts, strict=True)]
        else:
            errors = [regression.model.residual_sd] * len(frames)  # per frame it is not known
        fits = fit_views(data.zone, frames, counts, labelled_views, errors)
        shape = (int(data.frames[0].shape[0]), int(data.frames[0].shape[1]))
        for fit in fits:
            if fit.better:
                calibration = {data.zone.key: fit.calibration}
                counters[fit.view] = PeopleCounter([data.zone], shape, calibration, fit.background)
        report |= {"fitted": len(fits), "used": len(counters)}
    report["frames_counted_by_view_fits"] = sum(v in counters for v in counted_views)
    for view in set(counted_views) - set(counters):
        counters[view] = shared()
        shown = [frame for frame, seen in zip(data.frames, counted_views, strict=True) if seen == view]
        learn_empty_lobby(counters[view], shown, shared)
    report["views_with_empty_lobby_learnt"] = sum(counter.knows_empty_lobby for counter in counters.values())
    report["seconds"] = round(time.perf_counter() - started, 1)
    print(f"  views: {report}", file=sys.stderr)
    return report, [counters[v] for v in counted_views]


def learn_empty_lobby(counter: PeopleCounter, frames: list[Frame], shared: Callable[[], PeopleCounter]) -> None:
    """As a device learns the empty lobby from an hour of its frames (no labels), from the frames of one view:
    a counter of its own counts the samples, so the one that counts the view starts as a device would."""
    if "detector" not in counter.methods().values():
        return
    probe = shared()
    background = quietest_median(frames, lambda frame: sum(r.count for r in probe.count(frame)))
    if background is not None:
        counter.learnt_empty_lobby(background)


if __name__ == "__main__":
    raise SystemExit(main())
