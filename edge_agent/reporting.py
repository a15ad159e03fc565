"""When to report occupancy: on a change of the smoothed count, and at least every keepalive interval."""

from __future__ import annotations

from collections import deque
from statistics import median_low, pstdev


class OccupancyReporter:
    def __init__(self, keepalive_s: float, smoothing_frames: int) -> None:
        self._keepalive_s = keepalive_s
        self._window: dict[str, deque[int | None]] = {}
        self._smoothing = smoothing_frames
        self._last_sent: dict[str, int | None] = {}
        self._last_sent_at: float | None = None

    def smooth(self, zone: str, count: int | None) -> int | None:
        window = self._window.setdefault(zone, deque(maxlen=self._smoothing))
        window.append(count)
        known = [c for c in window if c is not None]
        # an unknown count (camera blind) is reported as unknown once it is the majority of the window
        if len(known) * 2 <= len(window):
            return None
        return median_low(known)

    def error(self, zone: str, method_error: float | None) -> float | None:
        """One standard error of the reported count: the method's own where it knows it (a calibration's
        leave-one-out error), else the spread of the counts being smoothed."""
        known = [c for c in self._window.get(zone, ()) if c is not None]
        spread = float(pstdev(known)) if len(known) >= 2 else None
        candidates = [e for e in (method_error, spread) if e is not None]
        return round(max(candidates), 2) if candidates else None

    def due(self, now: float, smoothed: dict[str, int | None]) -> bool:
        """Whether to send now; records the values as sent when it says yes."""
        changed = smoothed != self._last_sent
        stale = self._last_sent_at is None or now - self._last_sent_at >= self._keepalive_s
        if changed or stale:
            self._last_sent = dict(smoothed)
            self._last_sent_at = now
            return True
        return False
