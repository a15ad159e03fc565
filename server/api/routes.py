"""Routes of /api/v1."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Annotated, Literal

from fastapi import APIRouter, HTTPException, Query
from sqlalchemy import select

from lobbywatch.i18n import t
from server.alerts.errors import AlertError
from server.api.deps import AlertViewsDep, Authorized, CallerDep, LocaleDep, RuntimeDep, roles
from server.api.schemas import (
    AcknowledgeIn,
    AlertEventPublic,
    AlertPublic,
    BranchDetail,
    BranchSummary,
    CallPublic,
    DevicePublic,
    HealthPublic,
    OccupancySample,
    PassOnIn,
    ResolveIn,
    SilencedPublic,
    SilenceIn,
    SilencePublic,
    WorkerPublic,
    ZoneLive,
)
from server.registry import models
from server.registry.directory import BranchEntry
from server.runtime import Runtime
from server.storage import points as schema

router = APIRouter(prefix="/api/v1")


@router.get("/health", response_model=HealthPublic, summary="Is the server ingesting?")
def health(runtime: RuntimeDep) -> HealthPublic:
    now = runtime.status()
    reasons = now.reasons(runtime.settings.ingest_stall_s)
    return HealthPublic(
        status="degraded" if reasons else "ok",
        reasons=reasons,
        broker_connected=now.broker_connected,
        ingest_backlog=now.ingest_backlog,
        ingest_backlog_peak=now.ingest_backlog_peak,
        alert_backlog=now.alert_backlog,
        received=now.received,
        stored_points=now.stored_points,
        duplicates=now.duplicates,
        late=now.late,
        missing=now.missing,
        resend_requests=now.resend_requests,
        refused=now.refused,
        internal_errors=now.internal_errors,
        store_refused=now.store_refused,
        dead_letters_not_kept=now.dead_letters_not_kept,
        lag_ms=now.lag_ms,
        storage=now.storage,
        notifications_delivered=now.notifications_delivered,
        notifications_failed=now.notifications_failed,
        nats_connected=now.nats_connected,
        workers_alive=now.workers_alive,
        workers=None if now.workers is None else {k: WorkerPublic.model_validate(v) for k, v in now.workers.items()},
    )


def branch_summary(runtime: Runtime, branch: BranchEntry, open_alerts: dict[str, int]) -> dict[str, object]:
    live = runtime.live.zones(branch.id)
    zones = []
    devices = runtime.directory.devices_of(branch.id)
    for device in devices:
        for zone in device.zones.values():
            now = live.get(zone.key)
            zones.append(
                ZoneLive(
                    zone=zone.key,
                    name=zone.name,
                    occupancy=now.occupancy if now else None,
                    error=now.error if now else None,
                    at=now.at if now else None,
                    threshold=int(zone.rules.queue.fire_at),
                )
            )
    seen = runtime.live.devices()
    online = sum(1 for d in devices if d.id in seen and seen[d.id].online)
    call = runtime.live.last_call(branch.id)
    return {
        "id": branch.id,
        "name": branch.name,
        "region": branch.region_id,
        "timezone": branch.timezone,
        "locale": branch.locale,
        "zones": sorted(zones, key=lambda z: z.zone),
        "devices_online": online,
        "devices_total": len(devices),
        "open_alerts": open_alerts.get(branch.id, 0),
        "last_call": CallPublic(button=call.button, kind=call.kind, device=call.device, at=call.at) if call else None,
    }


def open_alert_counts(runtime: Runtime) -> dict[str, int]:
    return runtime.alert_views.open_counts()


@router.get(
    "/branches",
    response_model=list[BranchSummary],
    dependencies=[Authorized],
    summary="Every branch with its live state",
)
def branches(runtime: RuntimeDep, caller: CallerDep) -> list[BranchSummary]:
    counts = open_alert_counts(runtime)
    return [
        BranchSummary.model_validate(branch_summary(runtime, b, counts))
        for b in sorted(runtime.directory.branches.values(), key=lambda b: b.id)
        if caller.sees(runtime, b.id)
    ]


@router.get(
    "/branches/{branch_id}",
    response_model=BranchDetail,
    dependencies=[Authorized],
    summary="One branch with the last hours of occupancy per zone",
)
def branch(
    branch_id: str,
    runtime: RuntimeDep,
    caller: CallerDep,
    hours: Annotated[float, Query(gt=0, le=168, description="hours of history")] = 4.0,
) -> BranchDetail:
    entry = runtime.directory.branches.get(branch_id)
    if entry is None:
        raise HTTPException(404, f"no branch {branch_id!r}")
    caller.check_branch(runtime, branch_id)
    since = runtime.clock.now() - timedelta(hours=hours)
    samples = [
        OccupancySample(
            at=datetime.fromtimestamp(p.time_ns / 1e9, UTC),
            zone=p.tag("zone") or "",
            occupancy=int(v) if (v := p.fields.get("occupancy")) is not None else None,
        )
        for p in runtime.store.query(schema.OCCUPANCY, branch_id, int(since.timestamp() * 1e9))
    ]
    return BranchDetail.model_validate(
        {**branch_summary(runtime, entry, open_alert_counts(runtime)), "hours": hours, "occupancy": samples}
    )


@router.get("/devices", response_model=list[DevicePublic], dependencies=[Authorized], summary="Every device")
def devices(runtime: RuntimeDep, caller: CallerDep) -> list[DevicePublic]:
    result = []
    for device in sorted(runtime.directory.devices.values(), key=lambda d: d.id):
        if not caller.sees(runtime, device.branch_id):
            continue
        rt = runtime.live.device(device.id)
        result.append(
            DevicePublic(
                id=device.id,
                branch=device.branch_id,
                profile=device.profile,
                online=bool(rt and rt.online),
                last_seen=datetime.fromtimestamp(rt.last_seen, UTC) if rt and rt.last_seen else None,
                agent_version=rt.agent_version if rt else None,
                config_version=rt.config_version if rt else None,
                clock_skew_ms=rt.clock_skew_ms if rt else None,
                received_seq=rt.received_seq if rt else 0,
                missing=rt.missing if rt else 0,
                duplicates=rt.duplicates if rt else 0,
                outbox_dropped=rt.outbox_dropped if rt else None,
                not_stored=rt.not_stored if rt else None,
                counting=dict(rt.counting) if rt else {},
                fitting=list(rt.fitting) if rt else [],
            )
        )
    return result


def _alerts(runtime: Runtime, alerts: list[models.Alert], locale: str, with_events: bool) -> list[AlertPublic]:
    silenced = runtime.alert_views.silenced(alerts, runtime.clock.now())
    return [_alert(runtime, a, locale, with_events, silenced.get(a.id)) for a in alerts]


def _alert(
    runtime: Runtime, alert: models.Alert, locale: str, with_events: bool, silence: models.Silence | None
) -> AlertPublic:
    branch = runtime.directory.branches.get(alert.branch_id)
    zone_name = runtime.directory.subject_name(alert.branch_id, alert.subject, locale)
    title = t(
        locale,
        f"alert.{alert.rule}.title",
        branch=branch.name if branch else alert.branch_id,
        zone=zone_name,
        subject=zone_name,
        value=alert.value,
        threshold=alert.threshold,
    )
    return AlertPublic(
        id=alert.id,
        rule=alert.rule,
        branch=alert.branch_id,
        subject=alert.subject,
        severity=alert.severity,
        state=alert.state,
        owner=alert.owner,
        title=title,
        value=alert.value,
        peak=alert.peak,
        threshold=alert.threshold,
        started_at=alert.started_at,
        updated_at=alert.updated_at,
        resolved_at=alert.resolved_at,
        silenced=SilencedPublic(silence=silence.id, by=silence.by, reason=silence.reason, until=silence.ends_at)
        if silence is not None
        else None,
        events=[AlertEventPublic(at=e.at, kind=e.kind, detail=e.detail) for e in alert.events] if with_events else None,
    )


@router.get("/alerts", response_model=list[AlertPublic], dependencies=[Authorized], summary="Alerts, newest first")
def alerts(
    runtime: RuntimeDep,
    views: AlertViewsDep,
    locale: LocaleDep,
    caller: CallerDep,
    state: Annotated[Literal["open", "firing", "acknowledged", "resolved", "all"], Query()] = "all",
    branch: Annotated[str | None, Query()] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> list[AlertPublic]:
    within = None if caller.person is None else [b for b in runtime.directory.branches if caller.sees(runtime, b)]
    return _alerts(runtime, views.find(state, branch, within, limit), locale, False)


@router.get(
    "/alerts/{alert_id}", response_model=AlertPublic, dependencies=[Authorized], summary="One alert with its timeline"
)
def alert(
    alert_id: int, runtime: RuntimeDep, views: AlertViewsDep, locale: LocaleDep, caller: CallerDep
) -> AlertPublic:
    row = views.get(alert_id)
    if row is None:
        raise HTTPException(404, f"no alert {alert_id}")
    caller.check_branch(runtime, row.branch_id)
    return _alerts(runtime, [row], locale, True)[0]


def _act(
    action: Callable[[], models.Alert], runtime: Runtime, locale: str, caller: CallerDep, alert_id: int
) -> AlertPublic:
    row = runtime.alert_views.get(alert_id)
    if row is None:
        raise HTTPException(404, f"no alert {alert_id}")
    caller.check_act(runtime, row.branch_id)
    try:
        alert_id = action().id
    except AlertError as exc:
        raise HTTPException(409, str(exc)) from None
    row = runtime.alert_views.get(alert_id)
    assert row is not None
    return _alerts(runtime, [row], locale, True)[0]


@router.post(
    "/alerts/{alert_id}/acknowledge",
    response_model=AlertPublic,
    dependencies=[Authorized],
    summary="Acknowledge: the first to do so owns the alert",
)
def acknowledge(
    alert_id: int, body: AcknowledgeIn, runtime: RuntimeDep, locale: LocaleDep, caller: CallerDep
) -> AlertPublic:
    by = caller.acting_as(body.by)
    return _act(lambda: runtime.alerts.acknowledge(alert_id, by, body.channel), runtime, locale, caller, alert_id)


@router.post(
    "/alerts/{alert_id}/resolve",
    response_model=AlertPublic,
    dependencies=[Authorized],
    summary="Resolve by hand, with a note of what was done",
)
def resolve(alert_id: int, body: ResolveIn, runtime: RuntimeDep, locale: LocaleDep, caller: CallerDep) -> AlertPublic:
    by = caller.acting_as(body.by)
    return _act(lambda: runtime.alerts.resolve(alert_id, by, body.note), runtime, locale, caller, alert_id)


@router.post(
    "/alerts/{alert_id}/pass",
    response_model=AlertPublic,
    dependencies=[Authorized],
    summary="Pass ownership on to someone else",
)
def pass_on(alert_id: int, body: PassOnIn, runtime: RuntimeDep, locale: LocaleDep, caller: CallerDep) -> AlertPublic:
    by = caller.acting_as(body.by)
    return _act(lambda: runtime.alerts.pass_on(alert_id, by, body.to), runtime, locale, caller, alert_id)


@router.post(
    "/silences",
    response_model=SilencePublic,
    dependencies=[Authorized],
    summary="Silence a branch (or one rule or subject of it) for maintenance",
)
def silence(body: SilenceIn, runtime: RuntimeDep, caller: CallerDep) -> SilencePublic:
    caller.check_act(runtime, body.branch)
    try:
        made = runtime.alerts.silences.add(
            body.branch, body.minutes, caller.acting_as(body.by), body.reason, body.rule, body.subject
        )
    except AlertError as exc:
        raise HTTPException(409, str(exc)) from None
    return SilencePublic.model_validate(made, from_attributes=True)


@router.get("/silences", response_model=list[SilencePublic], dependencies=[Authorized], summary="Silences in force")
def silences(runtime: RuntimeDep, caller: CallerDep) -> list[SilencePublic]:
    return [
        SilencePublic.model_validate(s, from_attributes=True)
        for s in runtime.alerts.silences.active()
        if caller.sees(runtime, s.branch_id)
    ]


@router.delete("/silences/{silence_id}", status_code=204, dependencies=[Authorized], summary="End a silence now")
def end_silence(silence_id: int, runtime: RuntimeDep, views: AlertViewsDep, caller: CallerDep) -> None:
    found = views.silence(silence_id)
    if found is not None:
        caller.check_act(runtime, found.branch_id)
    try:
        runtime.alerts.silences.end(silence_id, caller.acting_as("api"))
    except AlertError as exc:
        raise HTTPException(404, str(exc)) from None


@router.get("/audit", dependencies=[roles("administrator")], summary="Who changed what, newest first")
def audit_log(runtime: RuntimeDep, limit: Annotated[int, Query(ge=1, le=1000)] = 200) -> list[dict[str, object]]:
    with runtime.sessions() as session:
        rows = session.scalars(select(models.AuditEntry).order_by(models.AuditEntry.id.desc()).limit(limit))
        return [{"at": r.at, "who": r.who, "action": r.action, "target": r.target, "detail": r.detail} for r in rows]
