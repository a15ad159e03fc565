"""The site config (YAML): regions, branches, their devices and zones, and each zone's queue rule.

It is imported into the registry at start (`LOBBYWATCH_SITE_FILE`), adding and updating, never deleting.
"""

from __future__ import annotations

from datetime import date, time
from pathlib import Path
from typing import Annotated, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import yaml
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from sqlalchemy.orm import Session

from lobbywatch.protocol import check_device_id
from lobbywatch.validation import Refused, problems, refuse
from server.registry import models
from server.rules.calls import DEADLINES_S
from server.rules.catalog import KINDS
from server.rules.waiting import STANDARD_SERVICE_MIN

Id = str


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class QueueRuleSpec(_Strict):
    threshold: int = Field(8, ge=1, description="people in the zone that make the queue too long")
    for_s: float = Field(300, ge=0, description="how long the queue must stay that long before the alert fires")
    clear_below: int = Field(5, ge=0, description="the alert clears when the queue is at or below this ...")
    clear_for_s: float = Field(120, ge=0, description="... for this long (hysteresis: no flapping)")

    @model_validator(mode="after")
    def _hysteresis(self) -> QueueRuleSpec:
        if self.clear_below >= self.threshold:
            raise refuse("clear_below_threshold", clear_below=self.clear_below, threshold=self.threshold)
        return self


Key = Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9_./-]{0,95}$")]
LocalNames = dict[Literal["zh-CN", "en"], Annotated[str, Field(min_length=1, max_length=100)]]


class ZoneSpec(_Strict):
    key: str = Field(pattern=r"^[a-z0-9][a-z0-9_-]{0,31}$")
    name: str
    queue_too_long: QueueRuleSpec | None = None


class DeviceSpec(_Strict):
    id: Id
    profile: Literal["lobby-camera", "call-buttons", "facility-sensors", "combined"] = "lobby-camera"
    zones: list[ZoneSpec] = Field(default_factory=list)

    @field_validator("id")
    @classmethod
    def _id(cls, value: str) -> str:
        return check_device_id(value)


class HoursSpec(_Strict):
    opens: time = Field(description="local time, HH:MM")
    closes: time
    days: list[int] = Field(default=[1, 2, 3, 4, 5, 6, 7], description="1 = Monday ... 7 = Sunday")


class CalendarDay(_Strict):
    date: date
    closed: bool = False
    opens: time | None = None
    closes: time | None = None

    @model_validator(mode="after")
    def _hours(self) -> CalendarDay:
        if not self.closed and (self.opens is None or self.closes is None):
            raise refuse("hours_open_or_closed", date=self.date)
        return self


Role = Literal["counter_staff", "duty_supervisor", "branch_manager", "city_office", "technician"]


class EscalationSpec(_Strict):
    chain: list[Role] = Field(
        default=["counter_staff", "duty_supervisor", "branch_manager", "city_office"],
        description="who is asked next while nobody acknowledges; a rule starts at its own first role",
    )
    step_after_min: float = Field(5.0, gt=0, description="unacknowledged this long at one step: the next is asked")
    remind_every_min: float = Field(2.0, gt=0, description="the role asked now is reminded this often")


class ContactSpec(_Strict):
    name: str = Field(min_length=1, max_length=100)
    role: Role
    urls: list[str] = Field(min_length=1, description="apprise URLs: mailto://, wecombot://, dingtalk://, json://, ...")
    min_severity: Literal["info", "warning", "critical"] = "warning"
    quiet_from: time | None = Field(None, description="no warnings from this local time (critical ones still come)")
    quiet_to: time | None = None
    max_per_hour: int = Field(30, ge=1, description="more notices than this in an hour are not sent to this person")


def _known_rules(routing: dict[str, RoutingSpec]) -> dict[str, RoutingSpec]:
    unknown = sorted(set(routing) - set(KINDS))
    if unknown:
        raise refuse("unknown_rule", names=unknown, rules=list(KINDS))
    return routing


class RoutingSpec(_Strict):
    severity: Literal["info", "warning", "critical"] | None = Field(None, description="instead of the rule's own")
    role: Role | None = Field(
        None, description="asked first, instead of the rule's own (devices' own faults still go to the technicians)"
    )


Routing = Annotated[dict[str, RoutingSpec], AfterValidator(_known_rules)]  # by rule, one of the catalog's


class RuleDefaults(_Strict):
    """What a region sets for its branches. A branch's own setting wins, then its region's, then the parent
    region's, and so on up; call deadlines are merged by kind, and a region's contacts (a city office) are added
    to each of its branches' own."""

    queue_too_long: QueueRuleSpec | None = None
    windows_open: int | None = Field(None, ge=1)
    service_minutes: float | None = Field(None, gt=0)
    wait_target_min: float | None = Field(None, gt=0)
    call_deadlines_s: dict[str, float] = Field(default_factory=dict)
    escalation: EscalationSpec | None = None
    contacts: list[ContactSpec] = Field(default_factory=list)
    routing: Routing = Field(default_factory=dict)


# What a branch takes from its regions when it does not set it itself.
INHERITED = ("queue_too_long", "windows_open", "service_minutes", "wait_target_min", "escalation")


class BranchSettings(_Strict):
    """A branch's settings as the registry keeps them (its regions' merged in at import) and the directory reads
    them back: the one place their defaults are written."""

    savings: bool = Field(False, description="a branch with savings business opens every day")
    hours: HoursSpec | None = Field(None, description="default: the minimum hours of the branch's grade")
    calendar: list[CalendarDay] = Field(default_factory=list, description="holidays and changed hours")
    windows_open: int = Field(2, ge=1, description="counter windows normally staffed")
    service_minutes: float = Field(
        STANDARD_SERVICE_MIN,
        gt=0,
        description="mean service time (the standards' mix: 3.8 min) until one is learnt from the queue",
    )
    wait_target_min: float | None = Field(15.0, gt=0, description="projected wait that fires wait_too_long")
    call_deadlines_s: dict[str, float] = Field(
        default_factory=lambda: dict(DEADLINES_S),
        description="seconds before an unanswered call fires",
    )
    routing: Routing = Field(
        default_factory=dict,
        description="per rule: another severity, or another role asked first",
    )
    escalation: EscalationSpec = Field(default_factory=EscalationSpec)
    contacts: list[ContactSpec] = Field(default_factory=list, description="who is told, by role")
    names: dict[Key, LocalNames] = Field(
        default_factory=dict,
        description="what people call the branch's buttons, sensors, devices and zones, by key, per language "
        "(e.g. ramp-bell: {zh-CN: 无障碍坡道呼叫铃, en: ramp bell}); the key where a language has none",
    )


class BranchSpec(BranchSettings):
    id: Id
    name: str
    region: Id
    timezone: str = "Asia/Shanghai"
    locale: Literal["zh-CN", "en"] = "zh-CN"
    grade: int = Field(3, ge=1, le=4)
    queue_too_long: QueueRuleSpec | None = Field(None, description="for the branch's zones that set none")
    devices: list[DeviceSpec] = Field(default_factory=list)

    @field_validator("timezone")
    @classmethod
    def _tz(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise refuse("unknown_time_zone", value=value) from None
        return value


class RegionSpec(_Strict):
    id: Id
    name: str
    parent: Id | None = None
    defaults: RuleDefaults = Field(default_factory=RuleDefaults)


class SiteSpec(_Strict):
    defaults: QueueRuleSpec = Field(default_factory=QueueRuleSpec)
    regions: list[RegionSpec] = Field(default_factory=list)
    branches: list[BranchSpec] = Field(default_factory=list)

    @model_validator(mode="after")
    def _references(self) -> SiteSpec:
        regions = {r.id: r for r in self.regions}
        for region in self.regions:
            seen = [region.id]
            parent = region.parent
            while parent is not None:
                if parent not in regions:
                    raise refuse("unknown_parent_region", region=seen[-1], parent=parent)
                if parent in seen:
                    raise refuse("regions_circle", path=" > ".join([*seen, parent]))
                seen.append(parent)
                parent = regions[parent].parent
        devices: set[str] = set()
        for branch in self.branches:
            if branch.region not in regions:
                raise refuse("unknown_region", branch=branch.id, region=branch.region)
            zones: dict[str, str] = {}
            for device in branch.devices:
                if device.id in devices:
                    raise refuse("device_twice", device=device.id)
                devices.add(device.id)
                for zone in device.zones:
                    # a zone is an area of the branch: its rules, alerts and live count are the branch's
                    if zone.key in zones:
                        raise refuse(
                            "zone_on_two_devices",
                            branch=branch.id,
                            zone=zone.key,
                            first=zones[zone.key],
                            second=device.id,
                        )
                    zones[zone.key] = device.id
        return self

    def lineage(self, region: Id) -> list[RegionSpec]:
        """The region and the regions it is in, nearest first."""
        regions = {r.id: r for r in self.regions}
        found: list[RegionSpec] = []
        current: Id | None = region
        while current is not None:
            found.append(regions[current])
            current = regions[current].parent
        return found

    def effective(self, branch: BranchSpec) -> BranchSpec:
        """The branch with what it leaves unset taken from its regions (nearest first) and the site defaults."""
        lineage = self.lineage(branch.region)
        update: dict[str, object] = {}
        for name in INHERITED:
            if name in branch.model_fields_set:
                continue
            for region in lineage:
                if name in region.defaults.model_fields_set and getattr(region.defaults, name) is not None:
                    update[name] = getattr(region.defaults, name)
                    break
        if "queue_too_long" not in update and branch.queue_too_long is None:
            update["queue_too_long"] = self.defaults
        deadlines = dict(DEADLINES_S)
        for region in reversed(lineage):
            deadlines.update(region.defaults.call_deadlines_s)
        if "call_deadlines_s" in branch.model_fields_set:
            deadlines.update(branch.call_deadlines_s)
        update["call_deadlines_s"] = deadlines
        routing: dict[str, RoutingSpec] = {}
        for source in [*(r.defaults.routing for r in reversed(lineage)), branch.routing]:
            for rule, spec in source.items():
                before = routing.get(rule, RoutingSpec())
                routing[rule] = RoutingSpec(severity=spec.severity or before.severity, role=spec.role or before.role)
        update["routing"] = routing
        update["contacts"] = [c for region in reversed(lineage) for c in region.defaults.contacts] + branch.contacts
        return branch.model_copy(update=update)


class SiteError(Refused):
    pass


def load_site(path: Path) -> SiteSpec:
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise SiteError("config.unreadable", origin=path, why=exc.strerror) from None
    except yaml.YAMLError as exc:
        raise SiteError("config.not_yaml", origin=path, why=exc) from None
    try:
        return SiteSpec.model_validate(data or {})
    except ValidationError as exc:
        raise SiteError("config.problems", problems(exc), origin=path, count=exc.error_count()) from None


def import_site(session: Session, site: SiteSpec) -> None:
    for region in site.regions:
        session.merge(models.Region(id=region.id, name=region.name, parent_id=region.parent))
    session.flush()
    for branch in map(site.effective, site.branches):
        settings = branch.model_dump(mode="json", include=set(BranchSettings.model_fields))
        session.merge(
            models.Branch(
                id=branch.id,
                name=branch.name,
                region_id=branch.region,
                timezone=branch.timezone,
                locale=branch.locale,
                grade=branch.grade,
                settings=settings,
            )
        )
        session.flush()
        for device in branch.devices:
            existing = session.get(models.Device, device.id)
            if existing is None:
                session.add(models.Device(id=device.id, branch_id=branch.id, profile=device.profile))
            else:
                existing.branch_id, existing.profile = branch.id, device.profile
            session.flush()
            for zone in device.zones:
                rule = zone.queue_too_long or branch.queue_too_long or site.defaults
                row = session.query(models.Zone).filter_by(device_id=device.id, key=zone.key).one_or_none()
                if row is None:
                    row = models.Zone(device_id=device.id, key=zone.key)
                    session.add(row)
                row.branch_id, row.name = branch.id, zone.name
                row.queue_threshold, row.queue_for_s = rule.threshold, rule.for_s
                row.queue_clear_below, row.queue_clear_for_s = rule.clear_below, rule.clear_for_s
    session.commit()
