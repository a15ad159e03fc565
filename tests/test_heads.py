"""Labels by clicked heads: the page's JSON checked by the server, the points checked again and kept by the device
in the dataset format (points.csv) beside the counts, replaced when a snapshot is labelled again."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from edge_agent.counting.zones import Zone
from edge_agent.remote_calibration import LabelError, add_label, save_snapshot
from server.zone_shapes import ShapesRefused, parse, parse_heads

ZONE = Zone("queue", [(0, 0), (159, 0), (159, 119), (0, 119)], "feet")


def test_the_server_takes_points_in_image_pixels_only() -> None:
    assert parse_heads("") == []
    assert parse_heads("[[10.4, 20.6], [0, 0]]") == [[10, 21], [0, 0]]
    for junk in ("{", '{"x": 1}', "[[1, 2, 3]]", '[["a", 2]]', "[[true, 2]]", "[[-1, 2]]", str([[1, 1]] * 501)):
        with pytest.raises(ShapesRefused):
            parse_heads(junk)


def test_a_zone_outline_takes_the_same_points_as_the_heads() -> None:
    def drawing(polygon: object) -> str:
        return json.dumps({"zones": [{"key": "queue", "polygon": polygon}]})

    assert parse(drawing([[0, 0], [100, 0.4], [100, 100]]))[0] == [("queue", [[0, 0], [100, 0], [100, 100]])]
    for bad in ([[True, 0], [100, 0], [100, 100]], [[0, 0], [100, 0]], [[0, 0], [100, 0], [9000, 1]]):
        with pytest.raises(ShapesRefused):
            parse(drawing(bad))


def test_the_device_keeps_the_heads_with_the_count(tmp_path: Path) -> None:
    frame = np.full((120, 160, 3), 90, np.uint8)
    for shot in ("s1", "s2"):
        save_snapshot(tmp_path, shot, frame)
    assert add_label(tmp_path, ZONE, "s1", 2, [[10, 20], [30, 40]]) == 1
    assert add_label(tmp_path, ZONE, "s2", 1) == 2  # a count alone: no points for s2
    points = tmp_path / "labels" / "queue" / "points.csv"
    assert points.read_text().splitlines() == ["frame,x,y", "s1,10,20", "s1,30,40"]
    assert add_label(tmp_path, ZONE, "s1", 1, [[50, 60]]) == 2  # labelled again: its points replaced
    assert points.read_text().splitlines() == ["frame,x,y", "s1,50,60"]
    for count, heads in ((2, [[1, 1]]), (1, [[160, 1]]), (1, [[1, 1.5]]), (1, "[[1, 1]]")):
        with pytest.raises(LabelError) as refused:
            add_label(tmp_path, ZONE, "s2", count, heads)
        assert "160x120" in refused.value.text("en")
    assert cv2.imread(str(tmp_path / "labels" / "queue" / "frames" / "s1.jpg")) is not None
