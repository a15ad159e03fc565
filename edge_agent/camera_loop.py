"""The camera thread: a frame at the camera's rate, counted per zone, smoothed, and reported when a report is due;
the camera's own health reported when it changes. Its `beat` is what the watchdog looks at."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from edge_agent.camera_health import CameraHealth, Problem
from edge_agent.counting.calibration import CalibrationStore
from edge_agent.frames import FrameSource
from edge_agent.remote_calibration import view_changed
from edge_agent.reporting import OccupancyReporter
from edge_agent.zone_counting import ZoneCounting
from lobbywatch.clock import Clock
from lobbywatch.device_config import CameraConfig, ReportingConfig
from lobbywatch.protocol import Reading, SensorKind, ZoneCount

log = logging.getLogger(__name__)
Frame = NDArray[np.uint8]

# Frames in a row that may fail before the camera is reported faulty (a USB camera re-enumerating takes ~2 s).
CAMERA_FAILURES_BEFORE_FAULT = 5
# A camera loop that has not turned for this long is hung (a capture that never returns): stop the watchdog.
CAMERA_STALL_S = 20.0


def camera_reading(health: CameraHealth) -> Reading:
    """The camera as a facility reading: up or not, and why not."""
    detail = None if health.ok else f"{health.problem.value}: {health.detail}"
    return Reading(
        sensor="camera", kind=SensorKind.CAMERA, value=1.0 if health.ok else 0.0, ok=health.ok, detail=detail
    )


class CameraLoop:
    def __init__(
        self,
        camera: CameraConfig,
        reporting: ReportingConfig,
        data_dir: Path,
        frames: FrameSource,
        clock: Clock,
        *,
        report_queue: Callable[[list[ZoneCount]], None],
        camera_changed: Callable[[CameraHealth], None],
        counted: Callable[[dict[str, int | None]], None],
        reported_problem: str | None = None,
    ) -> None:
        """`report_queue`: a queue report is due; `camera_changed`: the camera's health changed (a problem, or
        well again) from `reported_problem`, the last reported; `counted`: each frame's smoothed counts, for
        status displays."""
        self._camera, self._reporting, self._data_dir = camera, reporting, data_dir
        self._frames = frames
        self._clock = clock
        self._report_queue, self._camera_changed, self._counted = report_queue, camera_changed, counted
        self.beat = clock.monotonic()  # the loop's last turn, for the watchdog
        self.last_frame: Frame | None = None  # for a snapshot a technician asks for
        self.health: CameraHealth | None = None  # the last change reported
        self.counting: ZoneCounting | None = None  # once the loop runs
        self._errors: dict[str, float | None] = {}
        self._problem = reported_problem
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self, running: threading.Event, name: str) -> None:
        self._thread = threading.Thread(target=self._run, args=(running,), name=name, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)
            self._thread = None

    def alive(self, now: float) -> bool:
        return now - self.beat <= max(CAMERA_STALL_S, 3.0 / self._camera.fps)

    def _run(self, running: threading.Event) -> None:
        reporter = OccupancyReporter(self._reporting.queue_keepalive_s, self._reporting.smoothing_frames)
        period = 1.0 / self._camera.fps
        health = CameraHealth()
        counting = self.counting = ZoneCounting(
            self._camera, CalibrationStore(self._data_dir), self._clock.monotonic(), health.set_reference
        )
        while not running.is_set() and not self._stop.is_set():
            began = self.beat = self._clock.monotonic()
            frame = self._frames.read()
            health.observe(frame, began, CAMERA_FAILURES_BEFORE_FAULT)
            if frame is not None:
                self.last_frame = frame
            counts: dict[str, int | None] = {z.key: None for z in self._camera.zones}
            if frame is not None and health.ok:
                results = counting.count(frame, began)
                counts = {r.zone: r.count for r in results}
                self._errors = {r.zone: r.error for r in results}
            if health.problem.value != self._problem:
                self._problem = health.problem.value
                if not health.ok:
                    log.warning("camera problem: %s (%s)", health.problem.value, health.detail)
                if health.problem is Problem.MOVED:  # calibrate again, from labels of the view it has now
                    view_changed(self._data_dir, self._clock.now().timestamp())
                self.health = health
                self._camera_changed(health)
            smoothed = {key: reporter.smooth(key, count) for key, count in counts.items()}
            self._counted(smoothed)
            if reporter.due(self._clock.monotonic(), smoothed):
                errors = {key: reporter.error(key, self._errors.get(key)) for key in smoothed}
                self._report_queue(
                    [ZoneCount(zone=key, occupancy=value, error=errors[key]) for key, value in smoothed.items()]
                )
            self._stop.wait(max(0.0, period - (self._clock.monotonic() - began)))
