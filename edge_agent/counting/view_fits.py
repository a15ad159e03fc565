"""Calibrations of one view each, for a set of labelled frames that mixes views (a benchmark folder such as
`brt-*`; a device has one view, and its health check starts calibration again when the view changes).

A view with enough labelled frames gets a regression of its own: its own empty-scene background (the median of
its frames) and its own weights. It counts that view's frames only where its leave-one-out error is smaller than
the error of the calibration fitted on every view, on the same frames it did not see, by more than the noise of
the estimate (as `counter.prefer_heads`). A head counter per view is not fitted: on brt-train (camera 1, odd
frames calibrating, even frames counted) the head counter fitted on every view counted the frames of each of the 5
views with 6 or more labelled frames better than one fitted on that view's frames alone (docs/counting.md).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from edge_agent.counting.calibration import CalibrationError, ZoneCalibration, calibrate
from edge_agent.counting.counter import clearly_smaller
from edge_agent.counting.features import Frame
from edge_agent.counting.zones import Zone

MIN_VIEW_LABELS = 5  # as a device's calibration: five labelled snapshots


@dataclass(frozen=True, slots=True)
class ViewFit:
    view: int
    labelled: int
    error: float  # the view's own regression, leave-one-out
    shared_error: float  # the calibration of every view, on this view's labelled frames
    calibration: ZoneCalibration
    background: Frame

    @property
    def better(self) -> bool:
        """Smaller than the shared calibration's error beyond the noise of n frames (1 / sqrt(2n) of it)."""
        return clearly_smaller(self.error, self.shared_error, self.labelled)


def fit_views(
    zone: Zone,
    frames: Sequence[Frame],
    counts: Sequence[int],
    views: Sequence[int],
    shared_errors: Sequence[float],
) -> list[ViewFit]:
    """A regression for each view with at least MIN_VIEW_LABELS labelled frames. `shared_errors`: per frame, the
    count error of the calibration fitted on every view, where it did not see the frame (a regression's
    leave-one-out error over all frames stands in where only that is known)."""
    members: dict[int, list[int]] = defaultdict(list)
    for i, view in enumerate(views):
        members[view].append(i)
    fits = []
    for view, picks in sorted(members.items()):
        if len(picks) < MIN_VIEW_LABELS:
            continue
        try:
            calibration, background = calibrate(zone, [frames[i] for i in picks], [counts[i] for i in picks])
        except CalibrationError:  # e.g. every count the same: nothing to learn from this view alone
            continue
        shared = float(np.sqrt(np.mean(np.square([shared_errors[i] for i in picks]))))
        fits.append(ViewFit(view, len(picks), calibration.model.residual_sd, shared, calibration, background))
    return fits
