"""Counting by foreground blobs against a background that people standing still do not fade into.

The background is a running average updated only where the frame matches it, so a queue that stands for an
hour stays foreground. Each blob is split into people by its area over the zone's calibrated person area and
counted in the zone that holds its anchor point (feet or head). This is the baseline method: it is cheap
(hundreds of frames a second at 640x480) and right for sparse scenes; dense, overlapping crowds need the
calibrated regression that the counting work adds on top.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np
from numpy.typing import NDArray

from edge_agent.counting.zones import Polygon, Zone, polygon_mask

Frame = NDArray[np.uint8]

# Grey-level difference that makes a pixel foreground: above sensor noise and JPEG artefacts (~5-10 levels),
# below the contrast of clothing against a floor.
DIFF_THRESHOLD = 28
# How fast the background follows slow light changes where nobody stands (per frame, at 1-2 fps: minutes).
LEARN_RATE = 0.02
# Blobs smaller than this share of a person are noise (a bag, a shadow edge).
MIN_PERSON_SHARE = 0.35


@dataclass(frozen=True, slots=True)
class ZoneResult:
    zone: str
    count: int
    blobs: int


class ForegroundCounter:
    def __init__(self, zones: Sequence[Zone], ignore: Sequence[Polygon] = ()) -> None:
        if not zones:
            raise ValueError("a counter needs at least one zone")
        self._zones = list(zones)
        self._ignore = list(ignore)
        self._background: NDArray[np.float32] | None = None
        self._keep: NDArray[np.uint8] | None = None
        self._kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (5, 5))

    def reset_background(self) -> None:
        self._background = None

    def count(self, frame: Frame) -> list[ZoneResult]:
        gray = cv2.GaussianBlur(cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY) if frame.ndim == 3 else frame, (5, 5), 0)
        gray = np.asarray(gray, dtype=np.uint8)
        if self._background is None or self._background.shape != gray.shape:
            self._background = gray.astype(np.float32)
            self._keep = np.asarray(cv2.bitwise_not(polygon_mask(gray.shape[:2], self._ignore)), dtype=np.uint8)
        diff = cv2.absdiff(gray, cv2.convertScaleAbs(self._background))
        _, fg = cv2.threshold(diff, DIFF_THRESHOLD, 255, cv2.THRESH_BINARY)
        fg = cv2.morphologyEx(fg, cv2.MORPH_OPEN, self._kernel)
        fg = cv2.morphologyEx(fg, cv2.MORPH_CLOSE, self._kernel, iterations=2)
        assert self._keep is not None
        fg = cv2.bitwise_and(fg, self._keep)
        # learn only where nobody is: people who stand still stay foreground
        cv2.accumulateWeighted(gray, self._background, LEARN_RATE, mask=cv2.bitwise_not(fg))
        n, _labels, stats, _centroids = cv2.connectedComponentsWithStats(fg, connectivity=8)
        counts = {z.key: 0 for z in self._zones}
        blobs = {z.key: 0 for z in self._zones}
        for i in range(1, n):
            x, y, w, h, area = (int(v) for v in stats[i])
            anchor_x = x + w / 2
            for zone in self._zones:
                anchor_y = y + h - 1 if zone.anchor == "feet" else y
                if area < MIN_PERSON_SHARE * zone.person_area_px or not zone.contains(anchor_x, anchor_y):
                    continue
                counts[zone.key] += max(1, round(area / zone.person_area_px))
                blobs[zone.key] += 1
        return [ZoneResult(z.key, counts[z.key], blobs[z.key]) for z in self._zones]
