"""The people counter: per zone, the head counter or the calibrated regression where the zone has a calibration
that fits (when it has both, the one with the clearly smaller error on labelled snapshots it was not fitted on), the
pedestrian detector everywhere else, or the foreground's area where the detector clearly misses people and the
empty lobby has been learnt. Camera-independent defaults; one call per frame."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace

import numpy as np

from edge_agent.counting.area import ForegroundArea, MissWatch, as_count
from edge_agent.counting.calibration import ZoneCalibration
from edge_agent.counting.detector import HogDetector, count_in_zone
from edge_agent.counting.features import BandFeatures, Frame
from edge_agent.counting.heads import HeadCalibration, HeadCounter
from edge_agent.counting.zones import Polygon, Zone, polygon_mask


@dataclass(frozen=True, slots=True)
class ZoneResult:
    zone: str
    count: int
    estimate: float  # before rounding (regression), or the detections
    error: float | None  # one standard error, when the method knows it
    method: str


def prefer_heads(heads: HeadCalibration, regression: ZoneCalibration | None) -> bool:
    """The head counter where there is no regression, or where its error is smaller by more than the noise of
    its own estimate (one standard error of a root mean square over n snapshots, about 1 / sqrt(2n) of it): on
    10 snapshots of a busy mall it looked better (3.4 against 3.8) and counted the busier frames after far worse
    (4.5 against 2.4); a close call goes to the regression, which extrapolates to busier frames."""
    if regression is None:
        return True
    return clearly_smaller(heads.residual_sd, regression.model.residual_sd, heads.frames)


def clearly_smaller(error: float, other: float, frames: int) -> bool:
    """`error` is smaller than `other` by more than the noise of an error estimated on `frames` snapshots."""
    return bool(error <= other * (1 - 1 / np.sqrt(2 * max(1, frames))))


class PeopleCounter:
    def __init__(
        self,
        zones: Sequence[Zone],
        frame_shape: tuple[int, int],
        calibrations: Mapping[str, ZoneCalibration] | None = None,
        background: Frame | None = None,
        ignore: Sequence[Polygon] = (),
        heads: Mapping[str, HeadCalibration] | None = None,
    ) -> None:
        if not zones:
            raise ValueError("a counter needs at least one zone")
        self._zones = list(zones)
        self._regressions: dict[str, tuple[BandFeatures, ZoneCalibration]] = {}
        for zone in self._zones:
            calibration = (calibrations or {}).get(zone.key)
            if calibration is not None and background is not None and calibration.matches(zone, frame_shape):
                fitted = zone if calibration.ignore is not None else replace(zone, ignore=[])  # as it was fitted
                self._regressions[zone.key] = (BandFeatures(fitted, frame_shape, background), calibration)
        self._heads: dict[str, tuple[HeadCounter, float]] = {}
        for zone in self._zones:
            learnt = (heads or {}).get(zone.key)
            regression = self._regressions.get(zone.key)
            if learnt is None or not learnt.matches(zone, frame_shape):
                continue
            if prefer_heads(learnt, regression[1] if regression else None):
                counter = HeadCounter(learnt.networks, learnt.threshold, zone, frame_shape)
                self._heads[zone.key] = (counter, learnt.residual_sd)
                self._regressions.pop(zone.key, None)
        detected = [z for z in self._zones if z.key not in self._regressions and z.key not in self._heads]
        self._detector = HogDetector(detected, frame_shape) if detected else None
        self._shape = frame_shape
        self._areas: dict[str, ForegroundArea] = {}  # the detector's zones, once the empty lobby is learnt
        self._watches = {z.key: MissWatch() for z in detected}
        self._by_area: set[str] = set()  # zones the last frame counted by their foreground
        self._keep = None
        if ignore:
            self._keep = polygon_mask(frame_shape, list(ignore)) == 0

    def learnt_empty_lobby(self, background: Frame) -> None:
        """The empty lobby as learnt lately (no labels): the zones counted by the detector may count by their
        foreground where the detector clearly misses people."""
        if background.shape[:2] != self._shape:  # learnt before the camera's frame size changed: wait for the next
            return
        self._areas = {key: ForegroundArea(self._zone(key), self._shape, background) for key in self._watches}

    @property
    def knows_empty_lobby(self) -> bool:
        return bool(self._areas)

    def _zone(self, key: str) -> Zone:
        return next(z for z in self._zones if z.key == key)

    def methods(self) -> dict[str, str]:
        """How each zone is counted now."""
        return {z.key: self._method(z.key) for z in self._zones}

    def _method(self, key: str) -> str:
        if key in self._heads:
            return "heads"
        if key in self._regressions:
            return "regression"
        return "area" if key in self._by_area else "detector"

    def count(self, frame: Frame) -> list[ZoneResult]:
        detections = self._detector.detect(frame) if self._detector is not None else []
        if self._keep is not None:
            h, w = self._keep.shape
            detections = [
                d for d in detections if self._keep[min(h - 1, max(0, int(d.feet_y))), min(w - 1, max(0, int(d.x)))]
            ]
        results = []
        for zone in self._zones:
            if zone.key in self._heads:
                counter, error = self._heads[zone.key]
                estimate = counter.estimate(frame)
                results.append(ZoneResult(zone.key, int(np.rint(estimate)), estimate, error, "heads"))
                continue
            regression = self._regressions.get(zone.key)
            if regression is None:
                results.append(self._detected(frame, zone, count_in_zone(detections, zone)))
                continue
            features, calibration = regression
            estimate = max(0.0, calibration.model.predict(features(frame)))
            results.append(
                ZoneResult(zone.key, int(np.rint(estimate)), estimate, calibration.model.residual_sd, "regression")
            )
        return results

    def _detected(self, frame: Frame, zone: Zone, n: int) -> ZoneResult:
        """A detector's zone: its detections, or its foreground where the detector clearly misses people."""
        area = self._areas.get(zone.key)
        line = self._detector.perspective if self._detector is not None else None
        people = area.people(frame, line) if area is not None and line is not None else None
        if self._watches[zone.key].misses(n, people) and people is not None:
            self._by_area.add(zone.key)
            count, error = as_count(people)
            return ZoneResult(zone.key, count, people, error, "area")
        self._by_area.discard(zone.key)
        return ZoneResult(zone.key, n, float(n), None, "detector")
