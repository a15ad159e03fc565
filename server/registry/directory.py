"""What the ingest needs from the registry, held in memory: which device is in which branch, with which zones."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from datetime import date, time
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from server.registry import models
from server.rules.engine import ZoneRules
from server.rules.schedule import OpeningHours
from server.rules.threshold import ThresholdRule
from server.rules.waiting import STANDARD_SERVICE_MIN

# The wait rule clears when the projected wait falls to this share of the target.
WAIT_CLEAR_SHARE = 0.8


@dataclass(frozen=True, slots=True)
class Contact:
    """Somebody notices go to: their role, where to reach them (Apprise URLs), and their limits."""

    name: str
    role: str
    urls: tuple[str, ...]
    min_severity: str = "warning"
    quiet: tuple[time, time] | None = None  # local time; may run over midnight
    max_per_hour: int = 30


@dataclass(frozen=True, slots=True)
class BranchEntry:
    id: str
    name: str
    region_id: str
    timezone: str
    locale: str
    hours: OpeningHours
    call_deadlines_s: dict[str, float]
    escalation: Escalation
    contacts: tuple[Contact, ...] = ()
    # rule -> (severity, role asked first) where the branch or its regions change the rule's own
    routing: dict[str, tuple[str | None, str | None]] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class ZoneEntry:
    branch_id: str
    key: str
    name: str
    rules: ZoneRules


@dataclass(frozen=True, slots=True)
class DeviceEntry:
    id: str
    branch_id: str
    zones: dict[str, ZoneEntry]
    profile: str = "lobby-camera"


class Directory:
    def __init__(self, sessions: sessionmaker[Session]) -> None:
        self._sessions = sessions
        self._lock = threading.Lock()
        self.devices: dict[str, DeviceEntry] = {}
        self._by_branch: dict[str, list[DeviceEntry]] = {}
        self.branches: dict[str, BranchEntry] = {}
        self.region_parents: dict[str, str | None] = {}
        self.reload()

    def reload(self) -> None:
        with self._sessions() as session:
            rows = list(session.scalars(select(models.Branch)))
            branches = {
                b.id: BranchEntry(
                    b.id,
                    b.name,
                    b.region_id,
                    b.timezone,
                    b.locale,
                    opening_hours(b),
                    dict(b.settings.get("call_deadlines_s") or {}),  # type: ignore[call-overload]
                    escalation(b.settings or {}),
                    contacts(b.settings or {}),
                    routing(b.settings or {}),
                )
                for b in rows
            }
            settings = {b.id: b.settings or {} for b in rows}
            parents = {r.id: r.parent_id for r in session.scalars(select(models.Region))}
            zones: dict[str, dict[str, ZoneEntry]] = {}
            for z in session.scalars(select(models.Zone)):
                zones.setdefault(z.device_id, {})[z.key] = ZoneEntry(
                    z.branch_id, z.key, z.name, zone_rules(z, settings.get(z.branch_id, {}))
                )
            devices = {  # a revoked device is no longer one of ours: what it still sends is refused
                d.id: DeviceEntry(d.id, d.branch_id, zones.get(d.id, {}), d.profile)
                for d in session.scalars(select(models.Device).where(models.Device.revoked_at.is_(None)))
            }
        by_branch: dict[str, list[DeviceEntry]] = {}
        for device in sorted(devices.values(), key=lambda d: d.id):
            by_branch.setdefault(device.branch_id, []).append(device)
        with self._lock:
            self.branches, self.devices, self._by_branch = branches, devices, by_branch
            self.region_parents = parents

    def lineage(self, branch: str) -> list[str]:
        """The branch's region and the regions it is in, nearest first."""
        entry = self.branches.get(branch)
        found: list[str] = []
        region = entry.region_id if entry else None
        while region is not None and region not in found:
            found.append(region)
            region = self.region_parents.get(region)
        return found

    def devices_of(self, branch: str) -> list[DeviceEntry]:
        return self._by_branch.get(branch, [])

    def zone(self, branch: str, key: str) -> ZoneEntry | None:
        """A zone of the branch by its key (keys are unique within a branch)."""
        for device in self.devices_of(branch):
            if key in device.zones:
                return device.zones[key]
        return None

    def subject_name(self, branch: str, subject: str) -> str:
        """What people call an alert's subject: the zone's name, else its key (a button, a device)."""
        zone = self.zone(branch, subject)
        return zone.name if zone else subject


@dataclass(frozen=True, slots=True)
class Escalation:
    chain: tuple[str, ...] = ("counter_staff", "duty_supervisor", "branch_manager", "city_office")
    step_after_s: float = 300.0
    remind_every_s: float = 120.0


def escalation(settings: dict[str, Any]) -> Escalation:
    spec = settings.get("escalation") or {}
    default = Escalation()
    return Escalation(
        tuple(spec.get("chain", default.chain)),
        60 * float(spec.get("step_after_min", 5.0)),
        60 * float(spec.get("remind_every_min", 2.0)),
    )


def routing(settings: dict[str, Any]) -> dict[str, tuple[str | None, str | None]]:
    return {rule: (spec.get("severity"), spec.get("role")) for rule, spec in (settings.get("routing") or {}).items()}


def contacts(settings: dict[str, Any]) -> tuple[Contact, ...]:
    found = []
    for c in settings.get("contacts") or []:
        quiet = None
        if c.get("quiet_from") and c.get("quiet_to"):
            quiet = (time.fromisoformat(c["quiet_from"]), time.fromisoformat(c["quiet_to"]))
        found.append(
            Contact(
                c["name"],
                c["role"],
                tuple(c["urls"]),
                c.get("min_severity", "warning"),
                quiet,
                int(c.get("max_per_hour", 30)),
            )
        )
    return tuple(found)


def opening_hours(branch: models.Branch) -> OpeningHours:
    settings: dict[str, Any] = dict(branch.settings or {})
    exceptions: dict[date, tuple[time, time] | None] = {}
    for day in settings.get("calendar") or []:
        exceptions[date.fromisoformat(day["date"])] = (
            None if day["closed"] else (time.fromisoformat(day["opens"]), time.fromisoformat(day["closes"]))
        )
    hours = settings.get("hours")
    if hours:
        return OpeningHours(
            branch.timezone,
            time.fromisoformat(hours["opens"]),
            time.fromisoformat(hours["closes"]),
            frozenset(d - 1 for d in hours["days"]),
            exceptions,
        )
    return OpeningHours.for_grade(branch.grade, branch.timezone, bool(settings.get("savings")), exceptions)


def zone_rules(zone: models.Zone, settings: dict[str, Any]) -> ZoneRules:
    target = settings.get("wait_target_min", 15.0)
    wait = None
    if target:
        wait = ThresholdRule(float(target), zone.queue_for_s, WAIT_CLEAR_SHARE * float(target), zone.queue_clear_for_s)
    return ZoneRules(
        queue=ThresholdRule(zone.queue_threshold, zone.queue_for_s, zone.queue_clear_below, zone.queue_clear_for_s),
        wait=wait,
        windows_open=int(settings.get("windows_open", 2)),
        service_min=float(settings.get("service_minutes", STANDARD_SERVICE_MIN)),
    )
