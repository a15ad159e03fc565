"""Tables. SQLite by default, PostgreSQL by URL; all times are stored in UTC."""

from __future__ import annotations

from datetime import datetime
from typing import ClassVar

from sqlalchemy import (
    JSON,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship


class Base(DeclarativeBase):
    type_annotation_map: ClassVar = {datetime: DateTime(timezone=True)}


class Region(Base):
    __tablename__ = "regions"
    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    parent_id: Mapped[str | None] = mapped_column(ForeignKey("regions.id"))


class Branch(Base):
    __tablename__ = "branches"
    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    region_id: Mapped[str] = mapped_column(ForeignKey("regions.id"))
    timezone: Mapped[str] = mapped_column(String(64), default="Asia/Shanghai")
    locale: Mapped[str] = mapped_column(String(8), default="zh-CN")
    grade: Mapped[int] = mapped_column(Integer, default=3)
    settings: Mapped[dict[str, object]] = mapped_column(JSON, default=dict, doc="hours, calendar, windows, targets")
    zones: Mapped[list[Zone]] = relationship(back_populates="branch", cascade="all, delete-orphan")
    devices: Mapped[list[Device]] = relationship(back_populates="branch")


class Device(Base):
    __tablename__ = "devices"
    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    branch_id: Mapped[str] = mapped_column(ForeignKey("branches.id"))
    profile: Mapped[str] = mapped_column(String(64), default="lobby-camera")
    branch: Mapped[Branch] = relationship(back_populates="devices")
    # connection and sequence state, flushed from memory every few seconds
    online: Mapped[bool] = mapped_column(default=False)
    last_seen: Mapped[datetime | None] = mapped_column(default=None)
    agent_version: Mapped[str | None] = mapped_column(String(32), default=None)
    clock_skew_ms: Mapped[float | None] = mapped_column(default=None)
    config_version: Mapped[int | None] = mapped_column(default=None)
    sequence: Mapped[dict[str, object] | None] = mapped_column(JSON, default=None)
    # provisioning
    serial: Mapped[str | None] = mapped_column(String(64), default=None, index=True, doc="hardware serial")
    enrolled_at: Mapped[datetime | None] = mapped_column(default=None)
    revoked_at: Mapped[datetime | None] = mapped_column(default=None, doc="cut off at the broker; kept for history")
    replaced_by: Mapped[str | None] = mapped_column(String(64), default=None, doc="the device that took its place")


class Zone(Base):
    __tablename__ = "zones"
    __table_args__ = (UniqueConstraint("device_id", "key"),)
    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=True)
    branch_id: Mapped[str] = mapped_column(ForeignKey("branches.id"))
    device_id: Mapped[str] = mapped_column(ForeignKey("devices.id"))
    key: Mapped[str] = mapped_column(String(32))
    name: Mapped[str] = mapped_column(String(200))
    # queue-too-long rule of this zone
    queue_threshold: Mapped[int] = mapped_column(default=8)
    queue_for_s: Mapped[float] = mapped_column(default=300.0)
    queue_clear_below: Mapped[int] = mapped_column(default=5)
    queue_clear_for_s: Mapped[float] = mapped_column(default=120.0)
    # the counting calibration its camera reported (numbers, no image; lobbywatch.protocol.Calibration): it
    # moves with the zone to a replacement camera
    calibration: Mapped[dict[str, object] | None] = mapped_column(JSON, default=None)
    branch: Mapped[Branch] = relationship(back_populates="zones")


class Alert(Base):
    __tablename__ = "alerts"
    __table_args__ = (Index("alerts_open", "branch_id", "state"),)
    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=True)
    key: Mapped[str] = mapped_column(String(200), index=True, doc="one cause: rule/branch/subject")
    rule: Mapped[str] = mapped_column(String(64))
    branch_id: Mapped[str] = mapped_column(ForeignKey("branches.id"))
    subject: Mapped[str] = mapped_column(String(64), doc="what the alert is about, e.g. the zone key")
    severity: Mapped[str] = mapped_column(String(16))
    state: Mapped[str] = mapped_column(String(16), doc="firing, acknowledged or resolved")
    owner: Mapped[str | None] = mapped_column(String(200), default=None, doc="who acknowledged it first")
    device_id: Mapped[str | None] = mapped_column(String(64), default=None, doc="the device it is about or from")
    role: Mapped[str] = mapped_column(String(32), default="duty_supervisor", doc="who is asked now")
    step: Mapped[int] = mapped_column(Integer, default=0, doc="escalation steps taken")
    notified_at: Mapped[datetime | None] = mapped_column(default=None, doc="last notice or reminder")
    facts: Mapped[dict[str, object]] = mapped_column(JSON, default=dict, doc="what the rule said, for messages")
    started_at: Mapped[datetime]
    updated_at: Mapped[datetime]
    resolved_at: Mapped[datetime | None] = mapped_column(default=None)
    value: Mapped[float | None] = mapped_column(default=None)
    peak: Mapped[float | None] = mapped_column(default=None)
    threshold: Mapped[float | None] = mapped_column(default=None)
    events: Mapped[list[AlertEvent]] = relationship(back_populates="alert", order_by="AlertEvent.id")


class AlertEvent(Base):
    __tablename__ = "alert_events"
    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=True)
    alert_id: Mapped[int] = mapped_column(ForeignKey("alerts.id"), index=True)
    at: Mapped[datetime]
    kind: Mapped[str] = mapped_column(String(32), doc="fired, notified, notify_failed, acknowledged, resolved")
    detail: Mapped[str] = mapped_column(Text, default="")
    alert: Mapped[Alert] = relationship(back_populates="events")


class Silence(Base):
    """Maintenance: alerts that match still fire and are kept, but nobody is notified, reminded or asked."""

    __tablename__ = "silences"
    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=True)
    branch_id: Mapped[str] = mapped_column(ForeignKey("branches.id"), index=True)
    rule: Mapped[str | None] = mapped_column(String(64), default=None, doc="None: every rule")
    subject: Mapped[str | None] = mapped_column(String(64), default=None, doc="None: every subject")
    starts_at: Mapped[datetime]
    ends_at: Mapped[datetime]
    by: Mapped[str] = mapped_column(String(200))
    reason: Mapped[str] = mapped_column(Text)


class ServiceEstimate(Base):
    """What has been learnt of a zone's service time (rules/service_rate.py), kept over restarts."""

    __tablename__ = "service_estimates"
    branch_id: Mapped[str] = mapped_column(ForeignKey("branches.id"), primary_key=True)
    zone: Mapped[str] = mapped_column(String(64), primary_key=True)
    busy_min: Mapped[float] = mapped_column(Float, doc="window-minutes with people waiting (faded)")
    served: Mapped[float] = mapped_column(Float, doc="people served in that time (faded)")
    arrived: Mapped[float] = mapped_column(Float, doc="people who joined the queue in that time (faded)")
    windows: Mapped[int] = mapped_column(Integer, doc="windows open at the last count")
    updated_at: Mapped[datetime]


class RuleState(Base):
    """A branch's rule state (server/processing/branch.py `rule_state`), saved with the ingest batch that moved it,
    before it is acknowledged: pending calls, thresholds on their way to firing, devices offline survive a
    restart (what every count moves, presence times and service learners, at most a minute behind)."""

    __tablename__ = "rule_states"
    branch_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    state: Mapped[dict[str, object]] = mapped_column(JSON)
    updated_at: Mapped[datetime]


class User(Base):
    """A person who signs in to the pages and the API. Managers and supervisors see their branches only."""

    __tablename__ = "users"
    login: Mapped[str] = mapped_column(String(64), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    role: Mapped[str] = mapped_column(
        String(32), doc="administrator, technician, branch_manager, duty_supervisor, read_only"
    )
    password_hash: Mapped[str] = mapped_column(String(200), doc="argon2id")
    locale: Mapped[str] = mapped_column(String(8), default="zh-CN")
    regions: Mapped[list[str]] = mapped_column(JSON, default=list, doc="regions seen, with those inside them")
    branches: Mapped[list[str]] = mapped_column(JSON, default=list, doc="branches seen besides the regions'")
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime]


class ReportDelivery(Base):
    """A scheduled report that went out (or had nobody to go to), so that it goes once."""

    __tablename__ = "report_deliveries"
    branch_id: Mapped[str] = mapped_column(ForeignKey("branches.id"), primary_key=True)
    period: Mapped[str] = mapped_column(String(8), primary_key=True, doc="day, week")
    first: Mapped[str] = mapped_column(String(10), primary_key=True, doc="the period's first local date")
    sent_at: Mapped[datetime]
    recipients: Mapped[str] = mapped_column(Text, default="")


class Enrollment(Base):
    """A claim for one new device: single use, expiring. Only the token's hash is kept."""

    __tablename__ = "enrollments"
    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    branch_id: Mapped[str] = mapped_column(ForeignKey("branches.id"))
    profile: Mapped[str] = mapped_column(String(64))
    device_id: Mapped[str] = mapped_column(String(64), doc="the identity the device will get")
    replaces: Mapped[str | None] = mapped_column(String(64), default=None, doc="a broken device it replaces")
    created_by: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[datetime]
    expires_at: Mapped[datetime]
    used_at: Mapped[datetime | None] = mapped_column(default=None)
    used_serial: Mapped[str | None] = mapped_column(String(64), default=None)


class DeviceConfig(Base):
    """The config sections the server pushes to a device (camera and zones, buttons, sensors, ...)."""

    __tablename__ = "device_configs"
    device_id: Mapped[str] = mapped_column(ForeignKey("devices.id"), primary_key=True)
    version: Mapped[int] = mapped_column(Integer)
    sections: Mapped[dict[str, object]] = mapped_column(JSON)
    updated_at: Mapped[datetime]
    updated_by: Mapped[str] = mapped_column(String(200))


class ApiToken(Base):
    """A person's token for the API (integrations act as a person with a role). Only the hash is kept."""

    __tablename__ = "api_tokens"
    token_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    login: Mapped[str] = mapped_column(ForeignKey("users.login"), index=True)
    name: Mapped[str] = mapped_column(String(200), doc="what it is for")
    created_at: Mapped[datetime]
    expires_at: Mapped[datetime | None] = mapped_column(default=None, doc="none: tokens made before expiry existed")
    revoked_at: Mapped[datetime | None] = mapped_column(default=None)


class WebSession(Base):
    """A sign-in to the pages. The cookie carries the id, signed; signing out or switching the person off ends
    it here at once, whatever the cookie says. Only the id's hash is kept."""

    __tablename__ = "web_sessions"
    id_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    login: Mapped[str] = mapped_column(ForeignKey("users.login"), index=True)
    created_at: Mapped[datetime]
    expires_at: Mapped[datetime]
    ended_at: Mapped[datetime | None] = mapped_column(default=None)


class DeadLetter(Base):
    """A message set aside instead of stored: refused by validation or by the time-series store. Kept with its
    raw payload and the reason, so that a technician can see what a device sent and nothing is silently lost;
    bounded (the oldest go first), while the counters in /health stay exact."""

    __tablename__ = "dead_letters"
    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=True)
    at: Mapped[datetime] = mapped_column(index=True)
    device_id: Mapped[str | None] = mapped_column(String(64), index=True, doc="none: not from a known device")
    topic: Mapped[str] = mapped_column(String(300))
    cause: Mapped[str] = mapped_column(String(32), doc="the refusal's counter name")
    detail: Mapped[str] = mapped_column(Text)
    payload: Mapped[bytes] = mapped_column(LargeBinary, doc="as received (cut at the size limit)")


class AuditEntry(Base):
    """Who changed what: devices, users, silences, alerts, configs."""

    __tablename__ = "audit_log"
    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=True)
    at: Mapped[datetime] = mapped_column(index=True)
    who: Mapped[str] = mapped_column(String(200))
    action: Mapped[str] = mapped_column(String(64))
    target: Mapped[str] = mapped_column(String(200))
    detail: Mapped[str] = mapped_column(Text, default="")


class PartitionOwner(Base):
    """Who owns each partition of the scale-out's stream (docs/scale.md), by the pin NATS gave it: a fencing
    epoch. A worker claims a partition when it is pinned and writes a partition's state only while the pin here
    is still its own, so that a stalled former owner cannot write over the new one's."""

    __tablename__ = "partition_owners"
    partition: Mapped[int] = mapped_column(primary_key=True, autoincrement=False)
    pin: Mapped[str] = mapped_column(String(64))
    worker: Mapped[str] = mapped_column(String(100))
    since: Mapped[datetime]


class RateLimit(Base):
    """Recent attempts under a limit (a sign-in's wrong passwords per account and per address, enrollment tries
    per address), shared by every API process: a guesser spread over processes meets one limit."""

    __tablename__ = "rate_limits"
    key: Mapped[str] = mapped_column(String(300), primary_key=True, doc="scope:kind:value, e.g. sign_in:account:wang")
    times: Mapped[list[float]] = mapped_column(JSON, doc="the attempts still counted (epoch seconds)")
    until: Mapped[float] = mapped_column(Float, doc="limited until then (epoch seconds; 0: not limited)")
    wait: Mapped[float] = mapped_column(Float, doc="the last wait imposed, doubled by each further failure")
    last: Mapped[float] = mapped_column(Float, index=True, doc="the newest attempt: old records are forgotten")
