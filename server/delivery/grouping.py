"""Grouping per branch and person, so that a bad morning is one message, not twenty. Pure, clock passed in.

A notice for a person about a branch waits a short group wait (Alertmanager's `group_wait`) for others of the
same branch, and they go as one message. Whatever follows within the group interval after that is held and
goes, when the interval is up, as an update that carries only what is new. Critical notices (the ramp bell)
never wait: they go at once, alone, and leave the group's clocks as they were.
"""

from __future__ import annotations

from collections.abc import Hashable
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from server.delivery.notify import Notice

GROUP_WAIT_S = 15.0
GROUP_INTERVAL_S = 60.0

K = TypeVar("K", bound=Hashable)


@dataclass
class Grouper(Generic[K]):
    interval_s: float = GROUP_INTERVAL_S
    wait_s: float = GROUP_WAIT_S
    _last: dict[K, float] = field(default_factory=dict)  # when the key's last group went
    _held: dict[K, list[Notice]] = field(default_factory=dict)
    _due: dict[K, float] = field(default_factory=dict)  # when the held group goes

    def offer(self, key: K, notice: Notice, now: float) -> bool:
        """True: send this notice now, alone. False: it is held for the group's next message."""
        if notice.severity == "critical":
            return True
        if key not in self._held:
            last = self._last.get(key)
            due = now + self.wait_s if last is None else max(now + self.wait_s, last + self.interval_s)
            if due <= now:  # no wait, no interval running: nothing to group it with
                self._last[key] = now
                return True
            self._due[key] = due
        self._held.setdefault(key, []).append(notice)
        return False

    def due(self, now: float, force: bool = False) -> list[tuple[K, list[Notice]]]:
        """The groups whose time has come (all, when forced), each to go as one message, taken out."""
        ready = [key for key in self._held if force or now >= self._due.get(key, 0.0)]
        groups = []
        for key in ready:
            self._last[key] = now
            self._due.pop(key, None)
            groups.append((key, self._held.pop(key)))
        return groups

    def put_back(self, key: K, notices: list[Notice], now: float) -> None:
        """A group that could not be sent: it goes again, with anything new, after another interval."""
        self._last[key] = now
        self._due[key] = now + self.interval_s
        self._held[key] = notices + self._held.get(key, [])

    def held(self) -> int:
        return sum(len(notices) for notices in self._held.values())
