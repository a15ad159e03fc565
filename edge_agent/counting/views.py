"""Frames grouped by the view they show, for folders that mix cameras and views (`brt-*`: two cameras, many
views each, snapshots seconds to days apart). A calibration belongs to one view: its background, its
perspective, the places where people stand. So the benchmark fits per view where a view has enough labelled
frames.

Two frames show the same view when the fixed scene between the people (platform edges, pillars, signs) lines
up: ORB keypoints matched through Lowe's ratio test, then a homography by RANSAC, and enough matches agree with
it. People move and light changes, but the scene's corners stay where they were (or move together, when the
camera turns or zooms); two different scenes rarely line up at many points. Whole-frame similarity did not work
(docs/counting.md: the crowd and the light change more between two frames of one view than the scene does
between two views); here it only orders the views to try.

Each view is represented by its first frame and the last few given to it, so that a view whose light changes over
a day stays one view; a frame is compared with the view of the frame before it first (snapshots come in runs of
one view), then with the others that look most alike.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

import cv2
import numpy as np
from numpy.typing import NDArray

Frame = NDArray[np.uint8]

KEYPOINTS = 1000
RATIO = 0.75  # Lowe's ratio test: a match must be clearly better than the second best
RANSAC_PX = 4.0
# Matches that agree with one homography for two frames to show the same view, of 1,000 keypoints. Two stations
# of one design at night (brt-train, one of each camera) share up to 36 by chance; frames of the crowded Mall 20
# frames apart at least 70 (docs/counting.md has what grouping found on each folder).
SAME_VIEW = 50
# A frame is compared with this many of a view's latest frames: two frames of one view minutes apart may share
# too few keypoints when a crowd hides the floor, while each shares enough with a frame between them.
EXEMPLARS = 3
CANDIDATES = 6  # views tried for a frame that is not of the view before it, the likeliest by their thumbnails


@dataclass(frozen=True, slots=True)
class Keypoints:
    points: NDArray[np.float32]
    descriptors: NDArray[np.uint8] | None


def keypoints(frame: Frame, orb: cv2.ORB) -> Keypoints:
    gray = cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY) if frame.ndim == 3 else frame
    found, descriptors = orb.detectAndCompute(gray, None)
    points = np.array([k.pt for k in found], dtype=np.float32).reshape(-1, 2)
    return Keypoints(points, None if descriptors is None else np.asarray(descriptors, dtype=np.uint8))


def agreeing(a: Keypoints, b: Keypoints, matcher: cv2.BFMatcher) -> int:
    """How many keypoint matches of the two frames one homography explains."""
    if a.descriptors is None or b.descriptors is None or len(a.points) < 8 or len(b.points) < 8:
        return 0
    pairs = matcher.knnMatch(a.descriptors, b.descriptors, k=2)
    good = [p[0] for p in pairs if len(p) == 2 and p[0].distance < RATIO * p[1].distance]
    if len(good) < 8:
        return 0
    source = a.points[[m.queryIdx for m in good]]
    target = b.points[[m.trainIdx for m in good]]
    _, inliers = cv2.findHomography(source, target, cv2.RANSAC, RANSAC_PX)
    return int(inliers.sum()) if inliers is not None else 0


@dataclass
class Views:
    """Assigns frames to views, numbered from 0 in the order they are first seen."""

    first: list[Keypoints] = field(default_factory=list)  # each view's first frame
    recent: list[deque[Keypoints]] = field(default_factory=list)  # and its last few
    thumbnails: list[NDArray[np.float32]] = field(default_factory=list)  # of each view's last frame
    _last: int | None = None
    _orb: cv2.ORB = field(default_factory=lambda: cv2.ORB.create(KEYPOINTS))
    _matcher: cv2.BFMatcher = field(default_factory=lambda: cv2.BFMatcher(cv2.NORM_HAMMING))

    def assign(self, frame: Frame) -> int:
        found, small = keypoints(frame, self._orb), thumbnail(frame)
        view = self._last if self._last is not None and self._matches(found, self._last) >= SAME_VIEW else None
        if view is None:
            others = [v for v in range(len(self.recent)) if v != self._last]
            # matching keypoints costs milliseconds a view: only the views that look most alike are tried
            others.sort(key=lambda v: -float(np.dot(small, self.thumbnails[v])))
            scores = {v: self._matches(found, v) for v in others[:CANDIDATES]}
            view = max(scores, key=scores.__getitem__, default=None)
            if view is None or scores[view] < SAME_VIEW:
                self.first.append(found)
                self.recent.append(deque(maxlen=EXEMPLARS))
                self.thumbnails.append(small)
                view = len(self.recent) - 1
        self.recent[view].append(found)
        self.thumbnails[view] = small
        self._last = view
        return view

    def __len__(self) -> int:
        """How many views were found so far."""
        return len(self.recent)

    def _matches(self, found: Keypoints, view: int) -> int:
        """The most matches the frame has with the view's first frame or one of its recent ones."""
        best = 0
        for exemplar in [*reversed(self.recent[view]), self.first[view]]:
            best = max(best, agreeing(found, exemplar, self._matcher))
            if best >= SAME_VIEW:
                break
        return best


def thumbnail(frame: Frame) -> NDArray[np.float32]:
    """The frame's coarse layout, normalised: its dot product with another's is their correlation."""
    gray = cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY) if frame.ndim == 3 else frame
    small = cv2.resize(gray, (16, 16), interpolation=cv2.INTER_AREA).astype(np.float32).ravel()
    small -= small.mean()
    return small / max(float(np.linalg.norm(small)), 1e-6)


def group_views(frames: list[Frame]) -> list[int]:
    """The view of each frame."""
    views = Views()
    return [views.assign(frame) for frame in frames]
