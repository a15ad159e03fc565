"""People found by OpenCV's HOG pedestrian detector, at the sizes people have in this camera's view.

A full image pyramid costs ten times one level, and a fixed set of levels fits one camera only. In a fixed
camera a person's height in the image is close to a linear function of where their feet are (perspective).
So the detector learns that line from its own confident detections, drops detections whose size does not fit
it (a post or a bin found at the wrong scale), and runs only the levels the line calls for. Until it has
learnt, and now and then afterwards (a camera may be moved), it runs every level. Only the zones' bounding
box, plus room for the bodies above it, is searched.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np
from numpy.typing import NDArray

from edge_agent.counting.zones import Zone

Frame = NDArray[np.uint8]

# Resize factors tried at first: people from ~60 px to ~250 px tall, fitted to the detector's 128 px window.
ALL_LEVELS = (2.0, 1.68, 1.41, 1.19, 1.0, 0.84, 0.71, 0.59, 0.5)
# SVM margin a window must pass.
HIT_THRESHOLD = 0.0  # OpenCV's default: with the perspective check, no tuning needed
CONFIDENT = 0.5  # detections this sure teach the detector the perspective
WARMUP_DETECTIONS = 30  # confident detections needed before the perspective is trusted
MEMORY = 400  # confident detections remembered for the fit
RESCAN_EVERY = 200  # frames between passes over every level
SIZE_TOLERANCE = 0.3  # a detection may differ this much (relative) from the height the perspective predicts
BAND_MARGIN = 0.25  # of a window's height, added above and below each level's band (people at its edges)
# Each level searches only the rows where the predicted size is within this of its own: the levels are 19%
# apart, so the neighbours cover the rest (HOG itself tolerates about ±10% of scale).
BAND_TOLERANCE = 0.12
NMS_OVERLAP = 0.3  # of two detections whose bodies overlap more than this (intersection over union), one stays
WINDOW = (64, 128)
FEET_AT = 0.94  # of the window's height: the pedestrian model leaves a margin under the feet
HEAD_AT = 0.08
# The window is twice as wide as the person it was trained on (INRIA's 64-pixel windows round ~32-pixel bodies).
# Overlap is judged on the bodies: two people side by side have windows that overlap by a third, and windows
# judged whole suppressed one of them (PETS09: 0.766 -> 0.633 MAE, bias -0.35 -> -0.03).
BODY_WIDTH = 0.5


@dataclass(frozen=True, slots=True)
class Detection:
    x: float  # anchor point, frame pixels
    feet_y: float
    head_y: float
    height: float
    score: float


class HogDetector:
    def __init__(self, zones: Sequence[Zone], frame_shape: tuple[int, int]) -> None:
        self._hog = cv2.HOGDescriptor()
        self._hog.setSVMDetector(np.asarray(cv2.HOGDescriptor.getDefaultPeopleDetector(), dtype=np.float32))
        height, width = frame_shape
        xs = [p[0] for z in zones for p in z.polygon]
        ys = [p[1] for z in zones for p in z.polygon]
        reach = int(0.3 * height)  # room above the zone for the bodies of people whose feet are in it
        self._x0, self._x1 = max(0, min(xs)), min(width, max(xs) + 1)
        self._y0, self._y1 = max(0, min(ys) - reach), min(height, max(ys) + 1)
        self._zone_y = (max(0, min(ys)), min(height, max(ys) + 1))
        self._samples: list[tuple[float, float]] = []  # (feet y, window height) of confident detections
        self._line: tuple[float, float] | None = None  # window height = a + b * feet y
        self._frames = 0
        self.levels: tuple[float, ...] = ALL_LEVELS

    def detect(self, frame: Frame) -> list[Detection]:
        self._frames += 1
        rescan = self._line is None or self._frames % RESCAN_EVERY == 0
        levels = ALL_LEVELS if rescan else self.levels
        # grey: a third of the gradient work of colour, for about the same detections
        gray = cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY) if frame.ndim == 3 else frame
        boxes: list[list[float]] = []
        scores: list[float] = []
        for level in levels:
            top, bottom = self._band(level)
            crop = gray[top:bottom, self._x0 : self._x1]
            rows, cols = crop.shape[:2]
            if rows * level < WINDOW[1] or cols * level < WINDOW[0]:
                continue
            image = cv2.resize(crop, None, fx=level, fy=level, interpolation=cv2.INTER_LINEAR)
            points, weights = self._hog.detect(image, hitThreshold=HIT_THRESHOLD, winStride=(8, 8), padding=(0, 0))
            for (px, py), weight in zip(points, np.ravel(weights), strict=False):
                box = [px / level + self._x0, py / level + top, WINDOW[0] / level, WINDOW[1] / level]
                if self._fits(box):
                    boxes.append(box)
                    scores.append(float(weight) - HIT_THRESHOLD)  # NMSBoxes wants scores >= 0
        if not boxes:
            return []
        detections = []
        for i in distinct(boxes, scores):
            x, y, w, h = (float(v) for v in boxes[i])
            score = scores[i] + HIT_THRESHOLD
            detections.append(Detection(x + w / 2, y + FEET_AT * h, y + HEAD_AT * h, h, score))
            if score >= CONFIDENT:
                self._samples.append((y + FEET_AT * h, h))
        if len(self._samples) > MEMORY:
            del self._samples[: len(self._samples) - MEMORY]
        if rescan or self._frames % 20 == 0:
            self._learn()
        return detections

    def _band(self, level: float) -> tuple[int, int]:
        """Rows where people of this level's size can stand, by the perspective line (all rows until learnt)."""
        if self._line is None or self._line[1] == 0:
            return self._y0, self._y1
        a, b = self._line
        window = WINDOW[1] / level
        # feet rows where the predicted height is within tolerance of this window's height
        ends = [(window / (1 + BAND_TOLERANCE) - a) / b, (window / (1 - BAND_TOLERANCE) - a) / b]
        feet_lo, feet_hi = max(min(ends), self._zone_y[0]), min(max(ends), self._zone_y[1])
        if feet_lo >= feet_hi:
            return self._y0, self._y0  # nobody of this size stands in the zone
        top = int(max(self._y0, feet_lo - (FEET_AT + BAND_MARGIN) * window))
        bottom = int(min(self._y1, feet_hi + (1 - FEET_AT + BAND_MARGIN) * window + 1))
        return top, bottom

    def _fits(self, box: list[float]) -> bool:
        if self._line is None:
            return True
        a, b = self._line
        expected = a + b * (box[1] + FEET_AT * box[3])
        return expected > 0 and abs(box[3] - expected) <= SIZE_TOLERANCE * expected

    def _learn(self) -> None:
        if len(self._samples) < WARMUP_DETECTIONS:
            return
        feet, heights = np.array(self._samples).T
        keep = np.ones(len(feet), dtype=bool)
        for _ in range(3):  # least squares, dropping the samples that disagree most, twice
            if np.ptp(feet[keep]) < 0.05 * (self._y1 - self._y0):  # all at one depth: size is a constant
                a, b = float(np.median(heights[keep])), 0.0
            else:
                b, a = (float(v) for v in np.polyfit(feet[keep], heights[keep], 1))
            residual = np.abs(heights - (a + b * feet)) / np.maximum(a + b * feet, 1.0)
            keep = residual <= SIZE_TOLERANCE
            if keep.sum() < WARMUP_DETECTIONS // 2:
                return
        self._line = (a, b)
        lo, hi = self._zone_y
        tallest, shortest = max(a + b * lo, a + b * hi), max(min(a + b * lo, a + b * hi), 1.0)
        # a level r shows a window of 128 / r frame pixels: cover the heights the line predicts in the zone
        low, high = shortest * (1 - SIZE_TOLERANCE), tallest * (1 + SIZE_TOLERANCE)
        wanted = [r for r in ALL_LEVELS if low <= WINDOW[1] / r <= high]
        self.levels = tuple(wanted) or ALL_LEVELS

    @property
    def perspective(self) -> tuple[float, float] | None:
        """The learnt line (window height = a + b * feet y), or None while learning."""
        return self._line


def distinct(boxes: Sequence[list[float]], scores: Sequence[float]) -> list[int]:
    """The detections to keep, by index: of those whose bodies overlap, the surest."""
    return [int(i) for i in np.ravel(cv2.dnn.NMSBoxes([body(b) for b in boxes], list(scores), 0.0, NMS_OVERLAP))]


def body(box: list[float]) -> list[float]:
    """The person in a detection window (x, y, width, height): its middle half, from head to feet."""
    x, y, w, h = box
    return [x + w * (1 - BODY_WIDTH) / 2, y + h * HEAD_AT, w * BODY_WIDTH, h * (FEET_AT - HEAD_AT)]


def count_in_zone(detections: Sequence[Detection], zone: Zone) -> int:
    return sum(1 for d in detections if zone.contains(d.x, d.feet_y if zone.anchor == "feet" else d.head_y))
