"""Grouping per branch and person, so that a bad morning is one message, not twenty. Pure, clock passed in.

The first notice for a person about a branch goes at once. Whatever follows within the group interval is held
and goes as one message when the interval is up, and so on while notices keep coming. Critical notices (the
ramp bell) are never held: they go at once, and start a new interval.
"""

from __future__ import annotations

from collections.abc import Hashable
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from server.alerts.notify import Notice

GROUP_INTERVAL_S = 60.0

K = TypeVar("K", bound=Hashable)


@dataclass
class Grouper(Generic[K]):
    interval_s: float = GROUP_INTERVAL_S
    _last: dict[K, float] = field(default_factory=dict)
    _held: dict[K, list[Notice]] = field(default_factory=dict)

    def offer(self, key: K, notice: Notice, now: float) -> bool:
        """True: send this notice now, alone. False: it is held for the group's next message."""
        last = self._last.get(key)
        if notice.severity == "critical" or (key not in self._held and (last is None or now - last >= self.interval_s)):
            self._last[key] = now
            return True
        self._held.setdefault(key, []).append(notice)
        return False

    def due(self, now: float, force: bool = False) -> list[tuple[K, list[Notice]]]:
        """The groups whose interval is up (all, when forced), each to go as one message, taken out."""
        ready = [key for key in self._held if force or now - self._last.get(key, 0.0) >= self.interval_s]
        groups = []
        for key in ready:
            self._last[key] = now
            groups.append((key, self._held.pop(key)))
        return groups

    def put_back(self, key: K, notices: list[Notice], now: float) -> None:
        """A group that could not be sent: it goes again, with anything new, after another interval."""
        self._last[key] = now
        self._held[key] = notices + self._held.get(key, [])

    def held(self) -> int:
        return sum(len(notices) for notices in self._held.values())
