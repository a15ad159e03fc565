"""People as foreground area, for crowded zones that have no calibration: where people hide each other the
pedestrian detector finds a fraction of them (the Mall: about half), but the pixels that differ from the empty
lobby still grow with the crowd. Divided, row by row, by the area one standing person covers at that row (from the
perspective the detector learnt, window height = a + b × row), they give a count with no labels at all.

The empty lobby is the median of the quietest frames of the last hour (`background.QuietestFrames`), learnt
again every hour so that it follows the daylight. The estimate is used only where the detector clearly misses
(over recent frames, it finds less than two thirds of what the foreground says): in a sparse scene the detector is
the better counter, and it stays in charge.
"""

from __future__ import annotations

import cv2
import numpy as np
from numpy.typing import NDArray

from edge_agent.counting.features import DIFF_THRESHOLD, Frame, grey
from edge_agent.counting.zones import Zone, polygon_mask

# The share of its window's height squared that a standing person covers: the body is 0.86 of the window's
# height (detector.FEET_AT - HEAD_AT) and a quarter of it wide, and fills about 0.6 of that rectangle (head,
# shoulders, legs). Worked out from the pedestrian model's geometry, not fitted: Mall MAE 3.5, PETS09 0.9
# (docs/counting.md); a fill 0.03 off moves a crowd of 30 by 5 to 9 people, hence the error reported with it.
FILL = 0.13
FILL_ERROR = 0.25  # relative: the fill's uncertainty across cameras, reported as the count's error
# Foreground over more of the zone than this is not a crowd but a background that no longer holds (the lights
# went on, the camera was knocked): the Mall's busiest frames (50 people) cover 29 % of its zone.
MAX_FOREGROUND = 0.5
LIGHT_LEVELS = 16  # the empty lobby's brightness, in levels of 16 grey values, for fitting the change of light
LIGHT_SAMPLES = 20_000  # pixels of the zone looked at for it
LIGHT_MIN_PIXELS = 50  # of them in a level, for the level to count
MIN_GAIN = 0.5
SHORTEST = 8.0  # pixels: a line that predicts smaller people (far rows of a steep view) is held at this
# The detector clearly misses when, over recent frames, foreground people outnumber its detections by half as
# many again plus two (PETS09, sparse: ratio about 1.1; Mall: 2.4).
MISS_RATIO = 1.5
MISS_MARGIN = 2.0
RECENT_FRAMES = 100  # the running means' time constant, in frames (a minute and a half at one a second)


class ForegroundArea:
    """A zone's foreground, in standing people, against a learnt empty lobby."""

    def __init__(self, zone: Zone, shape: tuple[int, int], background: Frame) -> None:
        if background.shape != shape:
            raise ValueError(f"background is {background.shape}, frames are {shape}")
        mask = polygon_mask(shape, [zone.polygon]) > 0
        if zone.ignore:
            mask &= polygon_mask(shape, zone.ignore) == 0
        rows = np.where(mask.any(axis=1))[0]
        self._top, self._bottom = (int(rows.min()), int(rows.max()) + 1) if len(rows) else (0, 0)
        self._mask = mask[self._top : self._bottom]
        self._area = max(1, int(self._mask.sum()))
        empty = grey(background) if background.ndim == 3 else background  # learnt ones are grey already
        self._background = empty[self._top : self._bottom].astype(np.int16)
        self._rows = np.arange(self._top, self._bottom, dtype=np.float64)
        self._kernel = np.ones((3, 3), np.uint8)
        self._light = Light(self._background[self._mask])

    def people(self, frame: Frame, line: tuple[float, float]) -> float | None:
        """Standing people the zone's foreground amounts to; None when the background no longer holds."""
        if self._bottom == self._top:
            return 0.0
        image = grey(frame[self._top : self._bottom]).astype(np.int16)
        lit = self._light.change(image[self._mask])
        if lit is None:
            return None
        gain, offset = lit
        empty = gain * self._background + offset  # the empty lobby in this frame's light
        differs = (np.abs(image - empty) > DIFF_THRESHOLD * gain) & self._mask  # contrast scales with the gain
        opened = cv2.morphologyEx(differs.astype(np.uint8), cv2.MORPH_OPEN, self._kernel)  # specks of noise
        per_row = opened.sum(axis=1, dtype=np.float64)
        if per_row.sum() > MAX_FOREGROUND * self._area:
            return None
        a, b = line
        heights = np.maximum(a + b * self._rows, SHORTEST)
        return float((per_row / (FILL * heights**2)).sum())


class Light:
    """How the light changed since the empty lobby was learnt: frame ≈ gain × empty + offset, fitted on the pixels
    of each brightness of the empty lobby, by their median, which the people in front of them do not move as long
    as they cover less than half of them. The camera's exposure and the daylight move every pixel; without this,
    a frame 10 grey levels brighter read as 5 more people in the Mall, 15 % more gain as 48."""

    def __init__(self, empty: NDArray[np.int16]) -> None:
        self._picks = np.arange(0, len(empty), max(1, len(empty) // LIGHT_SAMPLES))
        self._sampled = empty[self._picks]
        levels = self._sampled // (256 // LIGHT_LEVELS)
        groups = (np.flatnonzero(levels == level) for level in range(LIGHT_LEVELS))
        self._groups = [group for group in groups if len(group) >= LIGHT_MIN_PIXELS]
        self._levels = np.array([np.median(self._sampled[group]) for group in self._groups])
        self._weights = np.sqrt([len(group) for group in self._groups])

    def change(self, image: NDArray[np.int16]) -> tuple[float, float] | None:
        """(gain, offset) from the empty lobby to this frame's pixels; None when it is no change of light."""
        values = image[self._picks]
        if len(self._groups) < 2:  # one brightness only: an offset is all that can be told
            return 1.0, float(np.median(values - self._sampled))
        medians = np.array([np.median(values[group]) for group in self._groups])
        gain, offset = (float(v) for v in np.polyfit(self._levels, medians, 1, w=self._weights))
        if not MIN_GAIN <= gain <= 1 / MIN_GAIN:  # no exposure does that: the scene itself changed
            return None
        return gain, offset


class MissWatch:
    """Whether the detector clearly misses people in a zone: running means of its counts and of the foreground's."""

    def __init__(self, frames: int = RECENT_FRAMES) -> None:
        self._weight = 1.0 / frames
        self._detected: float | None = None
        self._foreground = 0.0

    def misses(self, detected: int, foreground: float | None) -> bool:
        if foreground is None:  # no estimate now: start again once there is one
            self._detected = None
            return False
        if self._detected is None:
            self._detected, self._foreground = float(detected), foreground
        else:
            self._detected += self._weight * (detected - self._detected)
            self._foreground += self._weight * (foreground - self._foreground)
        return self._foreground > MISS_RATIO * self._detected + MISS_MARGIN


def as_count(people: float) -> tuple[int, float]:
    """The count and its error (one standard error) from the foreground's people."""
    return int(np.rint(people)), FILL_ERROR * people
