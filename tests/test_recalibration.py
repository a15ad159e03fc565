"""A calibration belongs to one view: when the camera's health check finds it moved, the labels and snapshots of
the view before are not used again (set aside, not deleted), a snapshot of the old view cannot be labelled, and
the next calibration is fitted from the view the camera has now, its background included."""

from __future__ import annotations

import os
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest

from edge_agent.camera_health import MOVED_CHECKS, MOVED_EVERY_S
from edge_agent.camera_loop import CameraLoop
from edge_agent.counting.calibration import CalibrationStore
from edge_agent.counting.zones import Zone
from edge_agent.remote_calibration import LabelError, add_label, fit, save_snapshot, view_changed, view_since
from lobby_sim.render import LobbyRenderer
from lobbywatch.clock import FakeClock
from lobbywatch.device_config import CameraConfig, ReportingConfig

ZONE = Zone("queue", [(0, 0), (639, 0), (639, 359), (0, 359)], "feet")


def lobby(people: int, seed: int) -> np.ndarray:
    return LobbyRenderer(seed).render(people, 1, 3)


def snapshot_at(data_dir: Path, shot: str, frame: np.ndarray, at: float) -> None:
    save_snapshot(data_dir, shot, frame)
    os.utime(data_dir / "snapshots" / f"{shot}.png", (at, at))


def test_labels_of_the_view_before_a_move_are_set_aside_and_its_snapshots_refused(tmp_path: Path) -> None:
    before = time.time() - 600
    for i in range(3):
        snapshot_at(tmp_path, f"old-{i}", lobby(i, seed=i), before)
        assert add_label(tmp_path, ZONE, f"old-{i}", i) == i + 1
    snapshot_at(tmp_path, "old-unlabelled", lobby(2, seed=9), before)
    assert view_since(tmp_path) == 0.0  # never seen to move
    moved = time.time() + 1  # after those labels were made
    view_changed(tmp_path, moved)
    with pytest.raises(LabelError) as refused:
        add_label(tmp_path, ZONE, "old-unlabelled", 2)
    assert refused.value.key == "label.error.before_move"
    assert "摄像头移动之前" in refused.value.text("zh-CN")
    snapshot_at(tmp_path, "new-0", lobby(4, seed=20), moved + 1)
    assert add_label(tmp_path, ZONE, "new-0", 4) == 1  # a fresh set: the old view's three are not in it
    earlier = tmp_path / "labels" / "queue.earlier-view"
    assert (earlier / "counts.csv").read_text().splitlines()[1:] == ["old-0,0", "old-1,1", "old-2,2"]
    assert add_label(tmp_path, ZONE, "new-0", 5) == 1  # the same set from here on: labelled again, not anew


def test_the_next_calibration_learns_the_background_of_the_view_it_has_now(tmp_path: Path) -> None:
    old_view = np.ascontiguousarray(np.rot90(lobby(0, seed=0), 2))
    before = time.time() - 600
    for i in range(6):
        snapshot_at(tmp_path, f"old-{i}", old_view, before)
    view_changed(tmp_path, time.time() - 60)
    for i in range(6):
        snapshot_at(tmp_path, f"new-{i}", lobby(i, seed=30 + i), time.time())
        add_label(tmp_path, ZONE, f"new-{i}", i)
    assert fit(tmp_path, ZONE) is not None
    background = CalibrationStore(tmp_path).background()
    assert background is not None
    empty = LobbyRenderer(0).render(0, 0, 0).mean(axis=2)
    turned = old_view.mean(axis=2)
    assert np.abs(background - empty).mean() < np.abs(background - turned).mean() / 3


class Playback:
    """The lobby as the camera sees it, then turned away; each frame moves the fake clock on by a health check's
    interval, so the loop checks the view at every frame."""

    def __init__(self, clock: FakeClock, same: int, turned: int) -> None:
        self.clock = clock
        self.frames = [lobby(3, seed=i) for i in range(same)]
        self.frames += [np.ascontiguousarray(np.rot90(lobby(3, seed=50 + i), 2)) for i in range(turned)]
        self.done = threading.Event()

    def read(self) -> np.ndarray | None:
        if not self.frames:
            self.done.set()
            return None
        self.clock.advance(MOVED_EVERY_S)
        return self.frames.pop(0)

    def close(self) -> None:
        return None


def test_the_camera_loop_marks_the_view_changed_when_it_finds_the_camera_moved(tmp_path: Path) -> None:
    start = datetime(2026, 12, 6, 9, 0, tzinfo=UTC)
    clock = FakeClock(start)
    camera = CameraConfig.model_validate({"source": "0", "zones": [{"key": "queue", "polygon": ZONE.polygon}]})
    seen: list[str] = []  # the problems as they were told (the loop hands on its one health object)
    frames = Playback(clock, same=3, turned=MOVED_CHECKS + 2)
    loop = CameraLoop(
        camera,
        ReportingConfig(),
        tmp_path,
        frames,
        clock,
        report_queue=lambda _counts: None,
        camera_changed=lambda health: seen.append(health.problem.value),
        counted=lambda _counts: None,
    )
    running = threading.Event()
    loop.start(running, "test-camera")
    assert frames.done.wait(30), "the loop read every frame"
    loop.stop()
    assert "moved" in seen
    # marked on the device's clock when the camera was found moved: after the turn, by the last frame
    turned_at = start.timestamp() + 3 * MOVED_EVERY_S
    assert turned_at < view_since(tmp_path) <= clock.now().timestamp()
