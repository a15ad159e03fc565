"""The empty lobby, learnt by a camera that has a calibration but no background of its own: a replacement that
took over its predecessor's calibration. Over a period it samples the lobby at even intervals and keeps the
quietest few frames (fewest people by the fallback detector); their per-pixel median is the background. A lobby
is seldom empty, but over an hour it has quiet moments, and the median of those is free of people wherever each
pixel was free in most of them. Only the kept frames are held (memory on a Pi); nothing leaves the device.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import cv2
import numpy as np

from edge_agent.counting.features import Frame, median_background

SAMPLES = 30
KEEP = 7  # frames the median is taken over: odd, and few enough to be the quiet ones


class QuietestFrames:
    def __init__(self, period_s: float, samples: int = SAMPLES, keep: int = KEEP) -> None:
        if samples < keep:
            raise ValueError(f"{samples} samples cannot keep the quietest {keep}")
        self._every = period_s / samples
        self._samples, self._keep = samples, keep
        self._next: float | None = None
        self.seen = 0
        self._kept: list[tuple[int, int, Frame]] = []  # (people, -sample number, grey frame)

    def offer(self, frame: Frame, people: int, now: float) -> Frame | None:
        """Take a frame with the people counted in it; the background once the period is over, else None."""
        if self._next is not None and now < self._next:
            return None
        self._next = now + self._every
        self.seen += 1
        image = np.asarray(cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY) if frame.ndim == 3 else frame, dtype=np.uint8)
        self._kept.append((people, -self.seen, image))
        self._kept.sort(key=lambda kept: (kept[0], kept[1]))  # quietest first, then the most recent
        del self._kept[self._keep :]
        if self.seen < self._samples:
            return None
        return median_background([image for _, _, image in self._kept])

    @property
    def progress(self) -> str:
        return f"{self.seen}/{self._samples}"


def quietest_median(frames: Sequence[Frame], people: Callable[[Frame], int]) -> Frame | None:
    """What `QuietestFrames` learns from recorded frames taken as one period's even samples (the benchmark's
    folders); None when there are fewer frames than samples, as a device that has not watched long enough."""
    if len(frames) < SAMPLES:
        return None
    learner, learnt = QuietestFrames(float(SAMPLES)), None
    for now, i in enumerate(np.linspace(0, len(frames) - 1, SAMPLES).round().astype(int)):
        learnt = learner.offer(frames[i], people(frames[i]), float(now))
    return learnt
