"""Opening hours: from the branch's grade (minimum daily hours by the standards) and its calendar.

Grade 1 at least 12 h a day, grade 2 at least 10 h, grades 3-4 at least 8 h; grades 1-3 (and branches with
savings business) open every day, grade 4 Monday to Saturday by default. A calendar entry (announced a day
ahead, per the standards) closes a day or changes its hours. Times are the branch's local time.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

DEFAULT_HOURS = {
    1: (time(8, 0), time(20, 0)),
    2: (time(8, 30), time(18, 30)),
    3: (time(9, 0), time(17, 0)),
    4: (time(9, 0), time(17, 0)),
}
DEFAULT_DAYS = {1: frozenset(range(7)), 2: frozenset(range(7)), 3: frozenset(range(7)), 4: frozenset(range(6))}


@dataclass(frozen=True)
class OpeningHours:
    timezone: str
    opens: time
    closes: time
    days: frozenset[int]  # Monday = 0
    exceptions: dict[date, tuple[time, time] | None] = field(default_factory=dict)  # None: closed that day

    @classmethod
    def for_grade(
        cls,
        grade: int,
        timezone: str,
        savings: bool = False,
        exceptions: dict[date, tuple[time, time] | None] | None = None,
    ) -> OpeningHours:
        opens, closes = DEFAULT_HOURS[grade]
        days = frozenset(range(7)) if savings else DEFAULT_DAYS[grade]
        return cls(timezone, opens, closes, days, dict(exceptions or {}))

    def hours_on(self, day: date) -> tuple[time, time] | None:
        if day in self.exceptions:
            return self.exceptions[day]
        return (self.opens, self.closes) if day.weekday() in self.days else None

    def is_open(self, at: datetime) -> bool:
        local = at.astimezone(ZoneInfo(self.timezone))
        hours = self.hours_on(local.date())
        return hours is not None and hours[0] <= local.time() < hours[1]

    def opening_after(self, at: datetime) -> datetime:
        """The next opening time at or after `at` (in UTC), looking up to a year ahead."""
        zone = ZoneInfo(self.timezone)
        local = at.astimezone(zone)
        for offset in range(366):
            day = local.date() + timedelta(days=offset)
            hours = self.hours_on(day)
            if hours is not None:
                opening = datetime.combine(day, hours[0], zone)
                if opening >= local:
                    return opening
        raise ValueError("the branch never opens in the coming year")
