"""What the API returns. Times are UTC (RFC 3339); each branch says its time zone for display."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from pydantic import AfterValidator, BaseModel, Field

from lobbywatch.clock import as_utc

# SQLite gives times back without a zone; every time the API returns says it is UTC ("...Z").
Utc = Annotated[datetime, AfterValidator(as_utc)]


class WorkerPublic(BaseModel):
    """One worker of the scale-out, as it last wrote its figures into the worker list."""

    ingest_backlog: int
    in_flight: int
    alert_backlog: int
    received: int
    stored_points: int
    duplicates: int
    late: int
    resend_requests: int
    internal_errors: int
    store_refused: int
    dead_letters_not_kept: int
    notifications_delivered: int
    notifications_failed: int
    stalled_s: float = Field(description="how long its ingest has not advanced with messages waiting (0: it moves)")
    last_store_error: str | None
    last_registry_error: str | None


class HealthPublic(BaseModel):
    status: str = Field(description="ok, or degraded (the reasons say why)")
    reasons: list[str] = Field(default_factory=list, description="why it is degraded, worst first")
    broker_connected: bool
    ingest_backlog: int = Field(description="received messages waiting to be processed")
    ingest_backlog_peak: int = Field(description="the most that ever waited (bounded; the broker holds the rest)")
    alert_backlog: int = Field(0, description="rule transitions and alert checks not yet written")
    received: int
    stored_points: int
    duplicates: int = Field(description="messages dropped because their sequence number was already seen")
    late: int = Field(description="messages that filled a sequence gap")
    missing: int = Field(description="sequence numbers never received, over all devices")
    resend_requests: int = Field(0, description="requests sent to devices for the messages missing")
    refused: dict[str, int] = Field(description="refused messages by cause")
    internal_errors: int
    store_refused: int = Field(0, description="messages the time-series store refused for their content, set aside")
    dead_letters_not_kept: int = Field(0, description="refusals past the dead-letter bound (counted, not kept)")
    lag_ms: dict[str, float | None] = Field(
        description="device time to stored, p50/p99 over a uniform sample of all messages (includes clock skew)"
    )
    storage: dict[str, object]
    notifications_delivered: int
    notifications_failed: int
    nats_connected: bool | None = Field(None, description="an API process of the scale-out: its NATS connection")
    workers_alive: int | None = Field(None, description="an API process of the scale-out: the workers alive now")
    workers: dict[str, WorkerPublic] | None = Field(
        None, description="an API process of the scale-out: each live worker's own figures, by its name"
    )


class ZoneLive(BaseModel):
    zone: str
    name: str
    occupancy: int | None = Field(description="people now; null when unknown (camera blind) or never reported")
    error: float | None
    at: Utc | None = Field(description="device time of the last report")
    threshold: int = Field(description="occupancy at which the queue-too-long rule starts counting")


class CallPublic(BaseModel):
    button: str
    kind: str
    device: str
    at: Utc


class BranchSummary(BaseModel):
    id: str
    name: str
    region: str
    timezone: str
    locale: str
    zones: list[ZoneLive]
    devices_online: int
    devices_total: int
    open_alerts: int
    last_call: CallPublic | None


class OccupancySample(BaseModel):
    at: Utc
    zone: str
    occupancy: int | None


class BranchDetail(BranchSummary):
    hours: float = Field(description="how many hours of history `occupancy` covers")
    occupancy: list[OccupancySample]


class DevicePublic(BaseModel):
    id: str
    branch: str
    profile: str
    online: bool
    last_seen: Utc | None
    agent_version: str | None
    config_version: int | None = Field(description="the pushed config version the device says it runs")
    clock_skew_ms: float | None = Field(description="device clock minus server clock at the last health report")
    received_seq: int = Field(description="highest sequence number received")
    missing: int = Field(description="sequence numbers not received (gaps)")
    duplicates: int
    outbox_dropped: int | None = Field(None, description="messages the device dropped at its outbox's bounds, ever")
    not_stored: int | None = Field(None, description="messages it could not store (a failing card) since it started")
    counting: dict[str, str] = Field(
        default_factory=dict, description="zone -> how the device counts it: 'detector', 'regression' or 'heads'"
    )
    fitting: list[str] = Field(default_factory=list, description="zones whose head counter the device is fitting")


class AlertEventPublic(BaseModel):
    at: Utc
    kind: str
    detail: str


class SilencedPublic(BaseModel):
    silence: int = Field(description="the silence's id")
    by: str
    reason: str
    until: Utc


class AlertPublic(BaseModel):
    id: int
    rule: str
    branch: str
    subject: str
    severity: str
    state: str = Field(description="firing, acknowledged or resolved")
    owner: str | None = Field(None, description="who acknowledged it first, or was passed it")
    title: str = Field(description="in the requested language")
    value: float | None
    peak: float | None
    threshold: float | None
    started_at: Utc
    updated_at: Utc
    resolved_at: Utc | None
    silenced: SilencedPublic | None = Field(
        None, description="the silence holding this open alert's notices now: nobody is being told"
    )
    events: list[AlertEventPublic] | None = Field(None, description="the timeline, on /alerts/{id} only")


class AcknowledgeIn(BaseModel):
    by: str = Field(min_length=1, max_length=200, description="who acknowledges")
    channel: str = Field("api", max_length=50, description="from where: api, web, link, wecom, ...")


class ResolveIn(BaseModel):
    by: str = Field(min_length=1, max_length=200)
    note: str = Field(min_length=1, max_length=2000, description="what was done")


class PassOnIn(BaseModel):
    by: str = Field(min_length=1, max_length=200, description="the current owner")
    to: str = Field(min_length=1, max_length=200)


class SilenceIn(BaseModel):
    branch: str
    minutes: float = Field(gt=0, le=7 * 24 * 60)
    by: str = Field(min_length=1, max_length=200)
    reason: str = Field(min_length=1, max_length=500, description="why, e.g. 'technician replacing the camera'")
    rule: str | None = Field(None, description="only this rule; default every rule")
    subject: str | None = Field(None, description="only this zone, button or device; default all")


class SilencePublic(BaseModel):
    id: int
    branch_id: str
    rule: str | None
    subject: str | None
    starts_at: Utc
    ends_at: Utc
    by: str
    reason: str
