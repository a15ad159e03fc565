"""Crowd features of a zone, for counting dense scenes by regression: in horizontal bands (perspective makes
a person far away smaller, so each band gets its own weight), the share of the band that differs from the
empty-scene background, the edges inside that foreground, the outline of the foreground, and all edges.
"""

from __future__ import annotations

import cv2
import numpy as np
from numpy.typing import NDArray

from edge_agent.counting.zones import Zone, overlapping, polygon_mask

Frame = NDArray[np.uint8]

BANDS = 12
DIFF_THRESHOLD = 25  # grey levels: above sensor noise and compression artefacts
CANNY = (60, 150)
FEATURES_PER_BAND = 4


def grey(frame: Frame) -> Frame:
    image = cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY) if frame.ndim == 3 else frame
    return np.asarray(cv2.GaussianBlur(image, (3, 3), 0), dtype=np.uint8)


class BandFeatures:
    def __init__(self, zone: Zone, shape: tuple[int, int], background: Frame, bands: int = BANDS) -> None:
        if background.shape != shape:
            raise ValueError(f"background is {background.shape}, frames are {shape}: calibrate this camera again")
        self._mask = polygon_mask(shape, [zone.polygon]) > 0
        # what moves in an area to ignore must change nothing: it is painted with the empty scene before the
        # edges are found, since an edge at its border would otherwise see into it
        ignore = overlapping(zone, shape)
        self._ignored = polygon_mask(shape, ignore) > 0 if ignore else None
        if self._ignored is not None:
            self._mask &= ~self._ignored
        if not self._mask.any():
            raise ValueError(f"zone {zone.key!r} lies wholly in areas to ignore")
        rows = np.where(self._mask.any(axis=1))[0]
        self._edges = np.linspace(rows.min(), rows.max() + 1, bands + 1).astype(int)
        self._bands = [(int(a), int(b)) for a, b in zip(self._edges[:-1], self._edges[1:], strict=True)]
        self._areas = [max(1, int(self._mask[a:b].sum())) for a, b in self._bands]
        self._background = background.astype(np.int16)
        self._kernel = np.ones((3, 3), np.uint8)

    def __call__(self, frame: Frame) -> NDArray[np.float64]:
        image = grey(frame)
        if self._ignored is not None:
            image = np.where(self._ignored, self._background, image).astype(np.uint8)
        foreground = (np.abs(image.astype(np.int16) - self._background) > DIFF_THRESHOLD) & self._mask
        fg8 = cv2.morphologyEx(foreground.astype(np.uint8) * 255, cv2.MORPH_OPEN, self._kernel)
        foreground = fg8 > 0
        edges = (cv2.Canny(image, *CANNY) > 0) & self._mask
        outline = cv2.Canny(fg8, 50, 100) > 0
        values = []
        for (top, bottom), area in zip(self._bands, self._areas, strict=True):
            fg, edge = foreground[top:bottom], edges[top:bottom]
            values += [fg.sum() / area, (edge & fg).sum() / area, outline[top:bottom].sum() / area, edge.sum() / area]
        return np.array(values, dtype=np.float64)


def median_background(frames: list[Frame]) -> Frame:
    """The empty scene as the per-pixel median: right where each pixel is free of people over half the time."""
    step = max(1, len(frames) // 100)
    return np.asarray(np.median(np.stack([grey(f) for f in frames[::step]]), axis=0), dtype=np.uint8)
