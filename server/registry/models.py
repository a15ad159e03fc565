"""Tables. SQLite by default, PostgreSQL by URL; all times are stored in UTC."""

from __future__ import annotations

from datetime import datetime
from typing import ClassVar

from sqlalchemy import JSON, DateTime, ForeignKey, Index, Integer, String, Text, UniqueConstraint
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
