"""Per-device sequence tracking: tells new messages from duplicates, and counts gaps (messages never seen).

A message below the highest seen is new only if it fills a known gap (it arrived late, or was resent on
request). Gaps are kept as ranges, bounded: past `MAX_GAP_RANGES` the oldest are given up and counted as lost.
A new `stream` (the device's outbox was re-created) starts the count again.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass, field
from enum import StrEnum

MAX_GAP_RANGES = 256


class Verdict(StrEnum):
    NEW = "new"
    LATE = "late"  # new, filling a gap
    DUPLICATE = "duplicate"


@dataclass(slots=True)
class SequenceTracker:
    stream: str | None = None
    highest: int = 0
    gaps: list[list[int]] = field(default_factory=list)  # sorted, disjoint [first, last] ranges not yet seen
    duplicates: int = 0
    given_up: int = 0
    restarts: int = 0

    def accept(self, stream: str, seq: int) -> Verdict:
        if stream != self.stream:
            if self.stream is not None:
                self.restarts += 1
            self.stream, self.highest, self.gaps = stream, 0, []
        if seq > self.highest:
            if seq > self.highest + 1:
                self.gaps.append([self.highest + 1, seq - 1])
                if len(self.gaps) > MAX_GAP_RANGES:
                    first, last = self.gaps.pop(0)
                    self.given_up += last - first + 1
            self.highest = seq
            return Verdict.NEW
        return self._fill(seq)

    def _fill(self, seq: int) -> Verdict:
        i = bisect.bisect_right(self.gaps, [seq, float("inf")]) - 1
        if i < 0 or not (self.gaps[i][0] <= seq <= self.gaps[i][1]):
            self.duplicates += 1
            return Verdict.DUPLICATE
        first, last = self.gaps[i]
        pieces = [r for r in ([first, seq - 1], [seq + 1, last]) if r[0] <= r[1]]
        self.gaps[i : i + 1] = pieces
        return Verdict.LATE

    def give_up(self, first: int, last: int) -> int:
        """The device no longer has [first, last]: stop waiting for it; return how many were still missing."""
        kept: list[list[int]] = []
        dropped = 0
        for lo, hi in self.gaps:
            if hi < first or lo > last:
                kept.append([lo, hi])
                continue
            dropped += min(hi, last) - max(lo, first) + 1
            kept.extend(r for r in ([lo, first - 1], [last + 1, hi]) if r[0] <= r[1])
        self.gaps = kept
        self.given_up += dropped
        return dropped

    @property
    def missing(self) -> int:
        return sum(last - first + 1 for first, last in self.gaps)

    def to_dict(self) -> dict[str, object]:
        return {
            "stream": self.stream,
            "highest": self.highest,
            "gaps": self.gaps,
            "duplicates": self.duplicates,
            "given_up": self.given_up,
            "restarts": self.restarts,
        }

    @classmethod
    def from_dict(cls, data: dict[str, object]) -> SequenceTracker:
        return cls(**data)  # type: ignore[arg-type]
