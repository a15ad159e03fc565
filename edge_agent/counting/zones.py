"""Zones: polygons in frame pixels, and the masks that keep staff areas out of the count."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import cv2
import numpy as np
from numpy.typing import NDArray

Polygon = list[tuple[int, int]]


@dataclass(frozen=True)
class Zone:
    key: str
    polygon: Polygon
    anchor: str = "feet"  # "feet" or "head"
    ignore: list[Polygon] = field(default_factory=list)  # areas inside it never counted (staff behind a counter)

    def __post_init__(self) -> None:
        if len(self.polygon) < 3:
            raise ValueError(f"zone {self.key!r} needs at least 3 points, got {len(self.polygon)}")
        if self.anchor not in ("feet", "head"):
            raise ValueError(f"zone {self.key!r}: anchor must be 'feet' or 'head', got {self.anchor!r}")

    def contains(self, x: float, y: float) -> bool:
        contour = np.asarray(self.polygon, dtype=np.int32)
        return bool(cv2.pointPolygonTest(contour, (float(x), float(y)), measureDist=False) >= 0)


def overlapping(zone: Zone, shape: tuple[int, int]) -> list[list[list[int]]]:
    """The zone's areas to ignore that take something out of it (the others change nothing it counts)."""
    inside = polygon_mask(shape, [zone.polygon]) > 0
    return [[list(p) for p in area] for area in zone.ignore if (inside & (polygon_mask(shape, [area]) > 0)).any()]


def fitted_for(
    zone: Zone,
    frame_shape: tuple[int, int],
    polygon: list[list[int]],
    ignore: list[list[list[int]]] | None,
    fitted_shape: list[int],
) -> bool:
    """Whether a calibration fitted for this polygon, these areas to ignore (None: fitted before they applied,
    so any) and this frame size still fits the zone as it is now."""
    return (
        [list(p) for p in zone.polygon] == polygon
        and (ignore is None or overlapping(zone, frame_shape) == ignore)
        and list(frame_shape) == fitted_shape
    )


def polygon_mask(shape: tuple[int, int], polygons: Sequence[Sequence[Sequence[int]]]) -> NDArray[np.uint8]:
    """A mask of the given (height, width) with 255 inside any of the polygons."""
    mask = np.zeros(shape, dtype=np.uint8)
    for polygon in polygons:
        cv2.fillPoly(mask, [np.asarray(polygon, dtype=np.int32)], 255)
    return mask
