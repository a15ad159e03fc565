"""Which devices to ask for missing messages: gaps that stayed open are requested from the device's outbox.

A gap may close by itself (a redelivery already in flight), so it is asked for only after it has been open
for `after_s`, and asked again every `retry_s` while it stays open. Pure: give it the trackers and the time.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass

from server.processing.sequence import SequenceTracker

MAX_RANGES = 64  # per request; the rest is asked for in the next one


@dataclass(slots=True)
class _State:
    open_since: float
    asked_at: float | None = None


@dataclass(frozen=True, slots=True)
class ResendRequest:
    device: str
    stream: str
    ranges: list[list[int]]


class GapRepair:
    def __init__(self, after_s: float = 10.0, retry_s: float = 60.0) -> None:
        self._after_s = after_s
        self._retry_s = retry_s
        self._open: dict[str, _State] = {}
        self.requests = 0

    def plan(self, now: float, trackers: Mapping[str, SequenceTracker]) -> Iterator[ResendRequest]:
        for device, tracker in trackers.items():
            if not tracker.gaps or tracker.stream is None:
                self._open.pop(device, None)
                continue
            state = self._open.get(device)
            if state is None:
                self._open[device] = _State(open_since=now)
                continue
            if now - state.open_since < self._after_s:
                continue
            if state.asked_at is not None and now - state.asked_at < self._retry_s:
                continue
            state.asked_at = now
            self.requests += 1
            yield ResendRequest(device, tracker.stream, [list(r) for r in tracker.gaps[:MAX_RANGES]])
