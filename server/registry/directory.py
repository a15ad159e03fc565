"""What the ingest needs from the registry, held in memory: which device is in which branch, with which zones."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from datetime import date, time

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from server.registry import models
from server.registry.site import BranchSettings
from server.rules.branch import ZoneRules
from server.rules.schedule import OpeningHours
from server.rules.threshold import ThresholdRule

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
    # what people call its buttons, sensors, devices and zones: key -> language -> name
    names: dict[str, dict[str, str]] = field(default_factory=dict)
    region_name: str = ""

    @property
    def region_label(self) -> str:
        return f"{self.region_name or self.region_id} ({self.region_id})"

    @property
    def label(self) -> str:
        """Its name with its id, as the dashboards show and pick it (`Grafana's variable regex parses it back):
        names repeat across a country, ids do not."""
        return f"{self.name} ({self.id})"

    def named(self, key: str, otherwise: str | None = None) -> str:
        """What people call one of its things in the branch's language: else `otherwise`, else the key."""
        found = self.names.get(key, {})
        return found.get(self.locale) or otherwise or next(iter(found.values()), key)


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
            regions = list(session.scalars(select(models.Region)))
            region_names = {r.id: r.name for r in regions}
            settings = {b.id: read_settings(b) for b in rows}
            branches = {
                b.id: BranchEntry(
                    b.id,
                    b.name,
                    b.region_id,
                    b.timezone,
                    b.locale,
                    opening_hours(b, settings[b.id]),
                    dict(settings[b.id].call_deadlines_s),
                    escalation(settings[b.id]),
                    contacts(settings[b.id]),
                    routing(settings[b.id]),
                    {
                        key: {str(lang): name for lang, name in names.items()}
                        for key, names in settings[b.id].names.items()
                    },
                    region_names.get(b.region_id, ""),
                )
                for b in rows
            }
            parents = {r.id: r.parent_id for r in regions}
            zones: dict[str, dict[str, ZoneEntry]] = {}
            for z in session.scalars(select(models.Zone)):
                zones.setdefault(z.device_id, {})[z.key] = ZoneEntry(
                    z.branch_id, z.key, z.name, zone_rules(z, settings.get(z.branch_id) or BranchSettings())
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

    def contacts_of(self, branch: str) -> tuple[Contact, ...]:
        entry = self.branches.get(branch)
        return entry.contacts if entry else ()

    def devices_of(self, branch: str) -> list[DeviceEntry]:
        return self._by_branch.get(branch, [])

    def zone(self, branch: str, key: str) -> ZoneEntry | None:
        """A zone of the branch by its key (keys are unique within a branch)."""
        for device in self.devices_of(branch):
            if key in device.zones:
                return device.zones[key]
        return None

    def subject_name(self, branch: str, subject: str, locale: str | None = None) -> str:
        """What people call an alert's subject in `locale` (default: the branch's): the name the site gives it
        in that language, else the zone's name, else its key. A sensor's subject is `device/sensor`: both parts
        are named ("大厅摄像头 / 时钟偏差")."""
        entry = self.branches.get(branch)
        names = entry.names if entry else {}
        language = locale or (entry.locale if entry else "zh-CN")

        def one(key: str) -> str:
            found = names.get(key, {})
            if language in found:
                return found[language]
            zone = self.zone(branch, key)
            return zone.name if zone else next(iter(found.values()), key)

        if subject in names or "/" not in subject:
            return one(subject)
        return " / ".join(one(part) for part in subject.split("/"))


@dataclass(frozen=True, slots=True)
class Escalation:
    chain: tuple[str, ...]
    step_after_s: float
    remind_every_s: float


def read_settings(branch: models.Branch) -> BranchSettings:
    """The branch's settings as imported (`BranchSettings`, with its defaults for what was not set)."""
    return BranchSettings.model_validate(branch.settings or {})


def escalation(settings: BranchSettings) -> Escalation:
    spec = settings.escalation
    return Escalation(tuple(spec.chain), 60 * spec.step_after_min, 60 * spec.remind_every_min)


def routing(settings: BranchSettings) -> dict[str, tuple[str | None, str | None]]:
    return {rule: (spec.severity, spec.role) for rule, spec in settings.routing.items()}


def contacts(settings: BranchSettings) -> tuple[Contact, ...]:
    return tuple(
        Contact(
            c.name,
            c.role,
            tuple(c.urls),
            c.min_severity,
            (c.quiet_from, c.quiet_to) if c.quiet_from and c.quiet_to else None,
            c.max_per_hour,
        )
        for c in settings.contacts
    )


def opening_hours(branch: models.Branch, settings: BranchSettings) -> OpeningHours:
    exceptions: dict[date, tuple[time, time] | None] = {}
    for day in settings.calendar:
        exceptions[day.date] = None if day.closed or not (day.opens and day.closes) else (day.opens, day.closes)
    hours = settings.hours
    if hours:
        return OpeningHours(
            branch.timezone, hours.opens, hours.closes, frozenset(d - 1 for d in hours.days), exceptions
        )
    return OpeningHours.for_grade(branch.grade, branch.timezone, settings.savings, exceptions)


def zone_rules(zone: models.Zone, settings: BranchSettings) -> ZoneRules:
    target = settings.wait_target_min
    wait = None
    if target:
        wait = ThresholdRule(target, zone.queue_for_s, WAIT_CLEAR_SHARE * target, zone.queue_clear_for_s)
    return ZoneRules(
        queue=ThresholdRule(zone.queue_threshold, zone.queue_for_s, zone.queue_clear_below, zone.queue_clear_for_s),
        wait=wait,
        windows_open=settings.windows_open,
        service_min=settings.service_minutes,
    )
