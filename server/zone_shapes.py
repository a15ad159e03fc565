"""What a technician draws on a snapshot, into the camera section a device runs: the zones to count (each keeps
what it had besides its outline, such as a calibration carried from a replaced camera) and the areas never
counted, such as the staff's side of the counter. Pure: the page and the API hand it JSON and push the result."""

from __future__ import annotations

import json
import re
from typing import Any

MAX_POINTS = 64
MAX_HEADS = 500  # people clicked on one snapshot
MAX_ZONES = 16
MAX_IGNORE = 16
KEY = re.compile(r"[a-z0-9][a-z0-9_-]{0,31}")


class ShapesRefused(ValueError):
    """The drawing cannot be pushed as it is; the message names what is wrong."""


def _is_point(value: object) -> bool:
    """`[x, y]` in image pixels (JSON's true and false are no coordinates, though Python counts them as ints)."""
    return (
        isinstance(value, list)
        and len(value) == 2
        and all(isinstance(c, int | float) and not isinstance(c, bool) and 0 <= c <= 8192 for c in value)
    )


def _polygon(value: object, what: str) -> list[list[int]]:
    if not isinstance(value, list) or not 3 <= len(value) <= MAX_POINTS:
        raise ShapesRefused(f"{what} needs 3 to {MAX_POINTS} points")
    for point in value:
        if not _is_point(point):
            raise ShapesRefused(f"{what}: a point must be [x, y] in image pixels, got {point!r}")
    return [[round(x), round(y)] for x, y in value]


def parse(text: str) -> tuple[list[tuple[str, list[list[int]]]], list[list[list[int]]]]:
    """The editor's JSON {"zones": [{"key", "polygon"}], "ignore": [polygon]}: (zones, areas to ignore)."""
    try:
        drawn = json.loads(text)
    except ValueError:
        raise ShapesRefused("the drawing is not JSON") from None
    if not isinstance(drawn, dict):
        raise ShapesRefused("the drawing must be an object with zones and ignore")
    zones_in, ignore_in = drawn.get("zones"), drawn.get("ignore", [])
    if not isinstance(zones_in, list) or not 1 <= len(zones_in) <= MAX_ZONES:
        raise ShapesRefused(f"draw 1 to {MAX_ZONES} zones")
    if not isinstance(ignore_in, list) or len(ignore_in) > MAX_IGNORE:
        raise ShapesRefused(f"at most {MAX_IGNORE} areas to ignore")
    zones = []
    for zone in zones_in:
        key = zone.get("key") if isinstance(zone, dict) else None
        if not isinstance(key, str) or not KEY.fullmatch(key):
            raise ShapesRefused(f"a zone key must be a-z, 0-9, '-' or '_' (up to 32), got {key!r}")
        zones.append((key, _polygon(zone.get("polygon"), f"zone {key}")))
    keys = [k for k, _ in zones]
    if len(set(keys)) != len(keys):
        raise ShapesRefused(f"zone keys must be unique, got {keys}")
    areas = [_polygon(area, f"area to ignore {n}") for n, area in enumerate(ignore_in, start=1)]
    return zones, areas


Polygon = list[list[int]]


def apply(camera: dict[str, Any], zones: list[tuple[str, Polygon]], ignore: list[Polygon]) -> dict[str, Any]:
    """The camera section with these outlines; a zone kept by its key keeps its other settings."""
    before = {z["key"]: z for z in camera.get("zones", []) if isinstance(z, dict) and "key" in z}
    return {
        **camera,
        "zones": [{**before.get(key, {}), "key": key, "polygon": polygon} for key, polygon in zones],
        "ignore": ignore,
    }


def parse_heads(text: str) -> list[list[int]]:
    """The heads a technician clicked on a snapshot, `[[x, y], ...]` in image pixels: one per person."""
    try:
        heads = json.loads(text or "[]")
    except ValueError:
        raise ShapesRefused("the heads are not JSON") from None
    if not isinstance(heads, list) or len(heads) > MAX_HEADS:
        raise ShapesRefused(f"the heads must be a list of at most {MAX_HEADS} points")
    for point in heads:
        if not _is_point(point):
            raise ShapesRefused(f"a head must be [x, y] in image pixels, got {point!r}")
    return [[round(x), round(y)] for x, y in heads]
