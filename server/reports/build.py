"""Reports from what is stored: the branch's points (SQLite or InfluxDB, through the store's `query`) and its
alerts' acknowledgements (the registry). A day or a week, in the branch's own time zone."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from typing import Literal
from zoneinfo import ZoneInfo

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from lobbywatch.clock import as_utc
from server.registry import models
from server.registry.directory import BranchEntry, Directory
from server.reports.service_level import BranchReport, branch_report, rank, utc
from server.storage import points as schema
from server.storage.base import TimeSeriesStore
from server.storage.points import Point

PeriodKind = Literal["day", "week"]
MEASUREMENTS = (schema.WAIT, schema.OCCUPANCY, schema.CALL, schema.ALERT, schema.FACILITY, schema.DEVICE_HEALTH)


class ReportError(ValueError):
    """A report that cannot be made as asked (unknown branch, a period in the future); the message says why."""


@dataclass(frozen=True, slots=True)
class Period:
    kind: PeriodKind
    first: date  # local date; a week starts on Monday

    @staticmethod
    def of(kind: PeriodKind, day: date) -> Period:
        """The period holding `day`; ValueError for a day no data can be from (before 2020, or past 2099)."""
        if not FIRST_DAY <= day <= LAST_DAY:
            raise ValueError(f"{day} is outside {FIRST_DAY} to {LAST_DAY}: there is no data of that day")
        return Period(kind, day - timedelta(days=day.weekday()) if kind == "week" else day)

    @property
    def days(self) -> int:
        return 7 if self.kind == "week" else 1

    def bounds(self, timezone: str) -> tuple[datetime, datetime]:
        start = datetime.combine(self.first, time(0), ZoneInfo(timezone))
        return start, datetime.combine(self.first + timedelta(days=self.days), time(0), ZoneInfo(timezone))


FIRST_DAY = date(2020, 1, 1)  # as the wire contract: no message is older
LAST_DAY = date(2099, 12, 31)


def _ns(moment: datetime) -> int:
    return int(moment.timestamp()) * 10**9


@dataclass(frozen=True, slots=True)
class Chart:
    """Per hour (a day) or per day (a week): mean projected wait and longest queue, for the report page."""

    labels: list[str]
    wait_avg_min: list[float | None]
    longest_queue: list[int | None]


@dataclass(frozen=True, slots=True)
class Report:
    figures: BranchReport
    chart: Chart


def make_report(
    store: TimeSeriesStore,
    sessions: sessionmaker[Session],
    branch: BranchEntry,
    period: Period,
    now: datetime | None = None,
) -> Report:
    """`now`: a period still going on (today, this week) counts only up to it; hours to come are neither open nor
    closed time yet."""
    start, end = period.bounds(branch.timezone)
    so_far = end if now is None else max(start, min(end, now))
    points = {m: store.query(m, branch.id, _ns(start), _ns(end)) for m in MEASUREMENTS}

    def is_open(time_ns: int) -> bool:
        return branch.hours.is_open(utc(time_ns))

    elapsed = int((so_far - start).total_seconds() // 60)
    minutes = [start + timedelta(minutes=i) for i in range(elapsed)]
    open_minutes = sum(1 for moment in minutes if branch.hours.is_open(moment))
    figures = branch_report(
        branch=branch.id,
        name=branch.name,
        region=branch.region_id,
        period=period.kind,
        start=period.first.isoformat(),
        open_minutes=open_minutes,
        points=points,
        is_open=is_open,
        ack_seconds=_ack_seconds(sessions, branch.id, start, end),
        open_slots=open_minutes,
    )
    return Report(figures, _chart(points, branch, period, start))


def _ack_seconds(
    sessions: sessionmaker[Session], branch: str, start: datetime, end: datetime
) -> dict[str, list[float]]:
    found: dict[str, list[float]] = {}
    with sessions() as session:
        alerts = session.scalars(
            select(models.Alert).where(
                models.Alert.branch_id == branch, models.Alert.started_at >= start, models.Alert.started_at < end
            )
        )
        for alert in alerts:
            acks = [e.at for e in alert.events if e.kind == "acknowledged"]
            if acks:
                waited = (as_utc(min(acks)) - as_utc(alert.started_at)).total_seconds()
                found.setdefault(alert.rule, []).append(waited)
    return found


def _chart(points: dict[str, list[Point]], branch: BranchEntry, period: Period, start: datetime) -> Chart:
    zone = ZoneInfo(branch.timezone)
    by_hour = period.kind == "day"

    def bucket(time_ns: int) -> str:
        local = utc(time_ns).astimezone(zone)
        return f"{local.hour:02d}:00" if by_hour else local.date().isoformat()

    waits: dict[str, list[float]] = {}
    for p in points.get(schema.WAIT, []):
        if "wait_min" in p.fields:
            waits.setdefault(bucket(p.time_ns), []).append(float(p.fields["wait_min"]))
    queues: dict[str, int] = {}
    for p in points.get(schema.OCCUPANCY, []):
        if "occupancy" in p.fields and branch.hours.is_open(utc(p.time_ns)):
            key = bucket(p.time_ns)
            queues[key] = max(queues.get(key, 0), int(p.fields["occupancy"]))
    # every hour the branch is open (every day of a week), with or without data: one hour of data is one bar among
    # the day's, not a chart stretched over it
    if by_hour:
        hours = [start + timedelta(hours=h) for h in range(24)]
        slots = {
            f"{h.astimezone(zone).hour:02d}:00"
            for h in hours
            if any(branch.hours.is_open(h + timedelta(minutes=m)) for m in range(0, 60, 15))
        }
    else:
        slots = {(period.first + timedelta(days=d)).isoformat() for d in range(period.days)}
    labels = sorted(slots | set(waits) | set(queues))
    return Chart(
        labels,
        [round(sum(w) / len(w), 1) if (w := waits.get(k)) else None for k in labels],
        [queues.get(k) for k in labels],
    )


def branches_in(directory: Directory, region: str) -> list[BranchEntry]:
    return [b for b in directory.branches.values() if region in directory.lineage(b.id)]


def region_reports(
    store: TimeSeriesStore,
    sessions: sessionmaker[Session],
    branches: Iterable[BranchEntry],
    period: Period,
    now: datetime | None = None,
) -> list[BranchReport]:
    """Every branch of the region, best service first."""
    return rank([make_report(store, sessions, b, period, now).figures for b in branches])
