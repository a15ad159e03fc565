"""Who gets a notice: contacts of the branch whose role is asked, at or above their severity, outside their
quiet hours (critical notices go through quiet hours), within their hourly limit. Pure."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from datetime import time

from server.registry.directory import Contact

SEVERITY = {"info": 0, "warning": 1, "critical": 2}


def in_quiet_hours(quiet: tuple[time, time] | None, now: time) -> bool:
    if quiet is None:
        return False
    start, end = quiet
    return start <= now < end if start <= end else (now >= start or now < end)


def recipients(contacts: tuple[Contact, ...], role: str, severity: str, local_now: time) -> list[Contact]:
    level = SEVERITY.get(severity, 1)
    return [
        c
        for c in contacts
        if c.role == role
        and level >= SEVERITY.get(c.min_severity, 1)
        and (severity == "critical" or not in_quiet_hours(c.quiet, local_now))
    ]


@dataclass
class RateLimit:
    """At most `max_per_hour` notices to one person in any hour."""

    sent: dict[str, deque[float]] = field(default_factory=dict)

    def allow(self, contact: Contact, now: float) -> bool:
        window = self.sent.setdefault(contact.name, deque())
        while window and now - window[0] >= 3600:
            window.popleft()
        if len(window) >= contact.max_per_hour:
            return False
        window.append(now)
        return True
