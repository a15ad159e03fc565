"""Frames grouped by view, and a regression per view, on real frames (../shared/datasets): brt-train mixes two
cameras and many views; the Mall and PETS folders are one fixed camera each."""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from edge_agent.counting.dataset import Dataset, frame_range, load_dataset
from edge_agent.counting.view_fits import MIN_VIEW_LABELS, fit_views
from edge_agent.counting.views import Views, group_views

ROOT = Path(__file__).resolve().parents[1]
DATASETS = ROOT.parent / "shared" / "datasets"
# Runs of one view each, looked at by eye: a platform of camera 1 by day, one of camera 1 at night, and one of
# camera 2 at night that looks much like it (the same station design and lights: 17-24 keypoints agree by chance)
MORNING = ["1-20170506104552", "1-20170506104900", "1-20170506105403", "1-20170506105528", "1-20170506105719"]
AFTERNOON = ["1-20170506164122", "1-20170506164549", "1-20170506164729", "1-20170506165100", "1-20170506165221"]
CAMERA_TWO = ["2-20170419090201", "2-20170419090251", "2-20170419090303", "2-20170419090350", "2-20170419100336"]
NIGHT_ONE = ["1-20170506125826", "1-20170506125842", "1-20170506125928"]
NIGHT_TWO = ["2-20170419101706", "2-20170419101714", "2-20170419103226"]


@pytest.fixture(scope="module")
def brt() -> Dataset:
    return load_dataset(DATASETS / "brt-train")


def picked(brt: Dataset, names: list[str]) -> list[int]:
    return [brt.names.index(name) for name in names]


def test_runs_of_one_view_group_together_and_other_views_apart(brt: Dataset) -> None:
    runs = [picked(brt, names) for names in (MORNING[2:], NIGHT_ONE, NIGHT_TWO)]
    interleaved = [i for trio in zip(*runs, strict=True) for i in trio]  # never two of a view in a row
    grouping = Views()
    found = {i: grouping.assign(brt.frames[i]) for i in interleaved}
    views = [{found[i] for i in run} for run in runs]
    assert all(len(v) == 1 for v in views), views
    assert len(set.union(*views)) == len(grouping) == 3


@pytest.mark.parametrize("folder", ["mall-train", "pets09-s2l1"])
def test_a_fixed_camera_is_one_view_through_crowds_and_light(folder: str) -> None:
    frames = load_dataset(DATASETS / folder, frames=slice(0, None, 20)).frames
    assert set(group_views(frames)) == {0}


def test_each_view_with_enough_labels_gets_a_regression_used_only_where_clearly_better(brt: Dataset) -> None:
    chosen = picked(brt, MORNING + AFTERNOON + CAMERA_TWO[:4])
    frames, counts = [brt.frames[i] for i in chosen], [brt.counts[i] for i in chosen]
    views = [0] * 5 + [1] * 5 + [2] * 4  # the third has too few labels for a regression of its own
    assert MIN_VIEW_LABELS == 5
    worse = fit_views(brt.zone, frames, counts, views, [50.0] * len(frames))
    assert [(f.view, f.labelled) for f in worse] == [(0, 5), (1, 5)]
    assert all(f.better and 0 < f.error < 50 for f in worse)
    assert all(f.calibration.frames == 5 and f.background.shape == frames[0].shape[:2] for f in worse)  # grey
    exact = fit_views(brt.zone, frames, counts, views, [0.0] * len(frames))
    assert [f.better for f in exact] == [False, False]  # the shared calibration already counted them right
    same = fit_views(brt.zone, frames, [7] * len(frames), views, [50.0] * len(frames))
    assert same == []  # every count the same: nothing to learn a view from


def test_frame_ranges_take_a_step() -> None:
    assert frame_range("401:800") == slice(400, 800, None)
    assert frame_range("2:720:2") == slice(1, 720, 2)
    for bad in ("1:720:0", "5", "a:b", "1:2:3:4"):
        with pytest.raises(argparse.ArgumentTypeError, match="FIRST:LAST"):
            frame_range(bad)


def folder_of(tmp_path: Path, brt: Dataset, chosen: list[int], count: int | None = None) -> Path:
    """A dataset folder of these brt-train frames (no points.csv), with their counts or `count` for each."""
    (tmp_path / "frames").mkdir()
    rows = ["frame,count"]
    for i in chosen:
        shutil.copy(DATASETS / "brt-train" / "frames" / f"{brt.names[i]}.jpg", tmp_path / "frames")
        rows.append(f"{brt.names[i]},{brt.counts[i] if count is None else count}")
    (tmp_path / "counts.csv").write_text("\n".join(rows) + "\n", encoding="utf-8")
    shutil.copy(DATASETS / "brt-train" / "roi.json", tmp_path)
    return tmp_path


def benchmark(folder: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "edge_agent.benchmark", str(folder), "--calibrate", str(folder), *extra]
    return subprocess.run(command, capture_output=True, text=True, check=False, cwd=ROOT)


def test_the_benchmark_fits_per_view_and_says_what_it_found(tmp_path: Path, brt: Dataset) -> None:
    """A folder of two cameras' runs of frames (no points.csv: the regression alone), calibrated on itself."""
    first = [brt.names.index(name) for name in (CAMERA_TWO[0], AFTERNOON[0])]
    folder = folder_of(tmp_path, brt, [i for start in first for i in range(start, start + 8)])

    def run(*extra: str) -> dict[str, Any]:
        done = benchmark(folder, *extra)
        assert done.returncode == 0, done.stderr
        figures: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
        return figures

    figures = run()
    views = figures["views"]
    assert figures["frames"] == 16
    assert figures["method"] == "regression"
    assert views["labelled"] == views["counted"] >= 2  # the two cameras at least
    assert views["counted_frames_of_labelled_views"] == 16
    assert 1 <= views["fitted"] <= 16 // 5 + 1
    # on 8 frames a view's own regression is not clearly better than the one of all 16: none is used, and the
    # counts are the shared calibration's, as with one counter for the folder
    assert (views["used"], views["frames_counted_by_view_fits"]) == (0, 0)
    one = run("--one-view")
    assert one["views"] is None
    assert one["mae"] == figures["mae"]


def test_the_benchmark_names_a_calibration_it_cannot_make(tmp_path: Path, brt: Dataset) -> None:
    folder = folder_of(tmp_path, brt, picked(brt, CAMERA_TWO), count=7)
    done = benchmark(folder)
    assert done.returncode == 2
    assert "all labelled snapshots have the same count" in done.stderr
    assert "Traceback" not in done.stderr
