"""Which counter the camera loop counts with, kept current: this camera's own calibrations (picked up when a
technician calibrates again), else those carried from the camera it replaced once it has learnt the empty lobby,
else the detector (or the foreground's area, where the detector clearly misses people in a lobby whose empty
scene it has learnt this past period).
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from edge_agent.config import CameraConfig, counting_zone
from edge_agent.counting.background import QuietestFrames
from edge_agent.counting.calibration import CalibrationError, CalibrationStore, ZoneCalibration
from edge_agent.counting.counter import PeopleCounter, ZoneResult
from edge_agent.counting.features import Frame
from edge_agent.counting.heads import HeadsError

log = logging.getLogger(__name__)

# How often to look for a new calibration written by `lobbywatch-agent calibrate` or a technician's labels.
CALIBRATION_CHECK_S = 30.0


class ZoneCounting:
    def __init__(
        self, camera: CameraConfig, store: CalibrationStore, now: float, on_background: Callable[[Frame], None]
    ) -> None:
        self._camera, self._store, self._on_background = camera, store, on_background
        self._counter: PeopleCounter | None = None
        # the empty lobby, learnt again every period: the detector's zones count by their foreground where it
        # clearly misses people, and a calibration carried from a replaced camera waits for the first
        self._learner = QuietestFrames(camera.learn_background_s)
        self._empty: Frame | None = None
        self._awaiting: list[str] = []  # zones whose carried calibration waits for the empty lobby
        self._said: dict[str, str] = {}  # each zone's counting method in the last frame
        self._version, self._checked_at = store.version(), now
        self._background = store.background()
        if self._background is not None:
            on_background(self._background)

    def count(self, frame: Frame, now: float) -> list[ZoneResult]:
        if now - self._checked_at >= CALIBRATION_CHECK_S:
            self._checked_at = now
            if self._store.version() != self._version:  # calibrated again on this camera
                self._version, self._counter = self._store.version(), None
                self._background = self._store.background()
                if self._background is not None:
                    self._on_background(self._background)
        if self._counter is None:
            self._counter, carried = self._make_counter((int(frame.shape[0]), int(frame.shape[1])))
            self._awaiting = carried if self._background is None else []
            if self._awaiting:
                log.info(
                    "zones %s have the calibration of the camera this one replaced; learning the empty lobby for "
                    "%.0f min first",
                    ", ".join(self._awaiting),
                    self._camera.learn_background_s / 60,
                )
            if self._empty is not None:
                self._counter.learnt_empty_lobby(self._empty)
        results = self._counter.count(frame)
        self._say_changes(results)
        learnt = self._learner.offer(frame, sum(r.count for r in results), now)
        if learnt is not None:
            self._learn_again(learnt)
        return results

    def _say_changes(self, results: list[ZoneResult]) -> None:
        """A zone that goes over to the foreground's area, or back to the detector, is logged: the count's nature
        changed (for a technician reading the log; the health report carries it to the fleet page)."""
        for result in results:
            if self._said.get(result.zone, result.method) != result.method:
                log.info("zone %s is now counted by %s", result.zone, result.method)
            self._said[result.zone] = result.method

    def _learn_again(self, learnt: Frame) -> None:
        """The empty lobby of the last period: for the zones the detector counts, and for a calibration carried
        from a replaced camera, which waited for it."""
        self._learner, self._empty = QuietestFrames(self._camera.learn_background_s), learnt
        if not self._awaiting:
            assert self._counter is not None
            self._counter.learnt_empty_lobby(learnt)
            return
        self._store.save_background(learnt)
        log.info("learnt the empty lobby: counting by the calibration carried from the replaced camera")
        self._background, self._counter = learnt, None
        self._version = self._store.version()
        self._on_background(learnt)

    def _make_counter(self, shape: tuple[int, int]) -> tuple[PeopleCounter, list[str]]:
        """The counter, and the zones that count by a calibration carried from a replaced camera."""
        calibrations, carried, zones, heads = {}, [], [], {}
        for config in self._camera.zones:
            zone = counting_zone(config, self._camera.ignore)
            zones.append(zone)
            try:
                found = self._store.load(zone.key)
            except CalibrationError as exc:
                log.error("%s", exc)
                found = None
            try:
                learnt = self._store.load_heads(zone.key)
            except HeadsError as exc:
                log.error("%s", exc)
                learnt = None
            if learnt is not None:
                heads[zone.key] = learnt  # the counter uses it only where it matches the zone as it is now
            if found is None and config.calibration is not None:  # this camera's own calibration comes first
                found = ZoneCalibration.from_dict(config.calibration.model_dump())
                carried.append(zone.key)
            if found is not None and not found.matches(zone, shape):
                log.warning(
                    "the calibration of zone %s was made for another polygon, areas to ignore or frame size: not used; "
                    "calibrate again",
                    zone.key,
                )
            elif found is not None:
                calibrations[zone.key] = found
        ignore = [list(p) for p in self._camera.ignore]
        counter = PeopleCounter(zones, shape, calibrations, self._background, ignore, heads)
        log.info("counting %s", ", ".join(f"{k} by {m}" for k, m in counter.methods().items()))
        return counter, [key for key in carried if key in calibrations]

    def methods(self) -> dict[str, str]:
        return self._counter.methods() if self._counter else {}
