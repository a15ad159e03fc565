"""Service-level figures of one branch over a period, from its stored points. Pure: points in, figures out.

Everything counts only the branch's opening hours. The same function runs on points read from SQLite and
from InfluxDB, so both give the same report on the same data.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime

from server.rules.calls import RULE as CALL_RULE
from server.storage import points as schema
from server.storage.points import Point

LOBBY_KINDS = frozenset({"temperature", "humidity", "light", "equipment"})
SLOT_NS = 60 * 10**9  # device uptime: a device is up in a minute of opening time in which it reported


@dataclass(frozen=True, slots=True)
class BranchReport:
    branch: str
    name: str
    region: str
    period: str  # day | week
    start: str  # local date of the first day
    open_minutes: int
    wait_avg_min: float | None
    wait_p90_min: float | None
    over_target_pct: float | None  # share of opening time with the projected wait over target
    longest_queue: int | None
    calls: int
    calls_answered: int
    calls_unanswered: int  # not answered within their deadline
    response_p50_s: float | None
    response_p90_s: float | None
    facility_uptime_pct: float | None
    device_uptime_pct: float | None
    alerts: dict[str, int] = field(default_factory=dict)  # fired, by rule
    ack_median_s: dict[str, float] = field(default_factory=dict)  # time to acknowledge, by rule

    def row(self) -> dict[str, object]:
        """One flat row (CSV): alerts as `alerts_<rule>` and `ack_median_s_<rule>` columns."""
        flat = {k: v for k, v in asdict(self).items() if k not in ("alerts", "ack_median_s")}
        flat.update({f"alerts_{k}": v for k, v in sorted(self.alerts.items())})
        flat.update({f"ack_median_s_{k}": v for k, v in sorted(self.ack_median_s.items())})
        return flat


def percentile(values: Sequence[float], p: float) -> float | None:
    """Linear interpolation between closest ranks (numpy's default)."""
    if not values:
        return None
    ordered = sorted(values)
    rank = (len(ordered) - 1) * p / 100
    low, high = math.floor(rank), math.ceil(rank)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def _mean(values: Sequence[float] | Sequence[int]) -> float | None:
    return sum(values) / len(values) if values else None


def _r(value: float | None, digits: int = 2) -> float | None:
    return None if value is None else round(value, digits)


def branch_report(
    *,
    branch: str,
    name: str,
    region: str,
    period: str,
    start: str,
    open_minutes: int,
    points: dict[str, list[Point]],
    is_open: Callable[[int], bool],
    ack_seconds: dict[str, list[float]],
    open_slots: int,
) -> BranchReport:
    """`points`: by measurement, the branch's points of the period; `is_open(time_ns)`: in opening hours;
    `ack_seconds`: by rule, how long each alert of the period waited to be acknowledged; `open_slots`: minutes
    of opening time in the period (device uptime is counted per minute)."""

    def opened(measurement: str) -> list[Point]:
        return [p for p in points.get(measurement, []) if is_open(p.time_ns)]

    waits = [float(p.fields["wait_min"]) for p in opened(schema.WAIT) if "wait_min" in p.fields]
    under = [int(p.fields["under_target"]) for p in opened(schema.WAIT) if "under_target" in p.fields]
    queue = [int(p.fields["occupancy"]) for p in opened(schema.OCCUPANCY) if "occupancy" in p.fields]
    calls = points.get(schema.CALL, [])
    responses = [
        float(p.fields["response_s"])
        for p in calls
        if p.fields.get("action") == "answered" and "response_s" in p.fields
    ]
    fired = Counter(str(p.tag("rule")) for p in points.get(schema.ALERT, []) if p.fields.get("change") == "fired")
    lobby = [int(p.fields["up"]) for p in opened(schema.FACILITY) if p.tag("kind") in LOBBY_KINDS and "up" in p.fields]
    under_share, lobby_share = _mean(under), _mean(lobby)
    return BranchReport(
        branch=branch,
        name=name,
        region=region,
        period=period,
        start=start,
        open_minutes=open_minutes,
        wait_avg_min=_r(_mean(waits)),
        wait_p90_min=_r(percentile(waits, 90)),
        over_target_pct=None if under_share is None else _r(100 * (1 - under_share)),
        longest_queue=max(queue) if queue else None,
        calls=sum(1 for p in calls if p.fields.get("action") == "press"),
        calls_answered=len(responses),
        calls_unanswered=fired.get(CALL_RULE, 0),
        response_p50_s=_r(percentile(responses, 50), 1),
        response_p90_s=_r(percentile(responses, 90), 1),
        facility_uptime_pct=None if lobby_share is None else _r(100 * lobby_share),
        device_uptime_pct=_r(_device_uptime(opened(schema.DEVICE_HEALTH), open_slots)),
        alerts=dict(sorted(fired.items())),
        ack_median_s={
            rule: round(percentile(times, 50) or 0.0, 1) for rule, times in sorted(ack_seconds.items()) if times
        },
    )


def _device_uptime(health: Iterable[Point], open_slots: int) -> float | None:
    """Per device, the share of opening minutes in which it reported; averaged over the devices."""
    if open_slots <= 0:
        return None
    slots: dict[str, set[int]] = {}
    for p in health:
        slots.setdefault(str(p.tag("device")), set()).add(p.time_ns // SLOT_NS)
    if not slots:
        return None
    return 100 * sum(min(len(s), open_slots) for s in slots.values()) / (open_slots * len(slots))


def rank(reports: Sequence[BranchReport]) -> list[BranchReport]:
    """Best service first: least time over target, then shortest p90 wait; branches without data last."""

    def key(r: BranchReport) -> tuple[bool, float, float]:
        return (r.over_target_pct is None, r.over_target_pct or 0.0, r.wait_p90_min or 0.0)

    return sorted(reports, key=key)


def utc(ns: int) -> datetime:
    return datetime.fromtimestamp(ns / 1e9, UTC)
