"""Is the camera seeing the lobby? Dark, covered, frozen and moved cameras are faults, never "0 people".

Pure image arithmetic on the frames the counter gets; the agent reports the state as a facility reading of
kind `camera` and sends the count as unknown while the camera is not fine.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

import cv2
import numpy as np
from numpy.typing import NDArray

Frame = NDArray[np.uint8]

DARK_MEAN = 18  # grey level: a lit lobby is far above this, a lens cap or a dead light below
COVERED_STD = 6.0  # grey-level spread of a frame with nothing in view (a hand, tape, a cloth)
FROZEN_DIFF = 0.05  # mean grey-level change between frames: a live sensor never goes this still
FROZEN_AFTER_S = 60.0
# Share of the reference's edges still found. Measured: the same view keeps 0.91-0.96 of them with people in
# it (PETS, simulated lobby); a camera turned 40-60 px keeps 0.29-0.48, turned away none.
MOVED_OVERLAP = 0.55
MOVED_CHECKS = 6  # consecutive low checks before the camera is called moved
MOVED_EVERY_S = 10.0
EDGE_TOLERANCE = np.ones((5, 5), np.uint8)  # edges may shift a few pixels (vibration, compression)


class Problem(StrEnum):
    NONE = "none"
    DISCONNECTED = "disconnected"
    DARK = "dark"
    COVERED = "covered"
    FROZEN = "frozen"
    MOVED = "moved"


@dataclass
class CameraHealth:
    """Feed it every frame (or None when the camera gave none) with the time; read `problem`."""

    reference_edges: Frame | None = None
    problem: Problem = Problem.NONE
    _last: Frame | None = None
    _still_since: float | None = None
    _missing: int = 0
    _low_checks: int = 0
    _checked_at: float | None = None
    _detail: str = ""

    @property
    def ok(self) -> bool:
        return self.problem is Problem.NONE

    @property
    def detail(self) -> str:
        return self._detail

    def set_reference(self, background: Frame) -> None:
        """The view the camera should have (a calibration's background)."""
        self.reference_edges = _edges(background)

    def observe(self, frame: Frame | None, now: float, missing_before_fault: int = 5) -> Problem:
        if frame is None:
            self._missing += 1
            if self._missing >= missing_before_fault:
                self._set(Problem.DISCONNECTED, "no frames from the camera")
            return self.problem
        self._missing = 0
        grey = _grey(frame)
        small = np.asarray(cv2.resize(grey, (160, 120), interpolation=cv2.INTER_AREA), dtype=np.uint8)
        mean, std = float(small.mean()), float(small.std())
        if mean < DARK_MEAN:
            return self._set(Problem.DARK, f"picture too dark (mean grey {mean:.0f})")
        if std < COVERED_STD:
            return self._set(Problem.COVERED, f"nothing in view (contrast {std:.1f}): lens covered or out of focus")
        if self._frozen(small, now):
            return self._set(Problem.FROZEN, f"the picture has not changed for {FROZEN_AFTER_S:.0f} s")
        if self._moved(grey, now):
            return self._set(Problem.MOVED, "the view no longer matches the calibrated one: camera moved?")
        return self._set(Problem.NONE, "")

    def _frozen(self, small: Frame, now: float) -> bool:
        last, self._last = self._last, small
        if last is None or float(cv2.absdiff(small, last).mean()) > FROZEN_DIFF:
            self._still_since = None
            return False
        if self._still_since is None:
            self._still_since = now
        return now - self._still_since >= FROZEN_AFTER_S

    def _moved(self, grey: Frame, now: float) -> bool:
        if self.reference_edges is None:
            self.reference_edges = _edges(grey)  # without a calibration: the view at start
            return False
        if self._checked_at is not None and now - self._checked_at < MOVED_EVERY_S:
            return self.problem is Problem.MOVED
        self._checked_at = now
        current = cv2.dilate(_edges(grey), EDGE_TOLERANCE)
        reference = self.reference_edges > 0
        overlap = float((current[reference] > 0).mean()) if reference.any() else 1.0
        self._low_checks = self._low_checks + 1 if overlap < MOVED_OVERLAP else 0
        return self._low_checks >= MOVED_CHECKS

    def _set(self, problem: Problem, detail: str) -> Problem:
        self.problem, self._detail = problem, detail
        return problem


def _grey(frame: Frame) -> Frame:
    return np.asarray(cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY) if frame.ndim == 3 else frame, dtype=np.uint8)


def _edges(image: Frame) -> Frame:
    return np.asarray(cv2.Canny(cv2.GaussianBlur(_grey(image), (5, 5), 0), 30, 90), dtype=np.uint8)
