"""The ingest's state in the registry, so that a restarted server goes on where the last batch left it: each
device's sequence window and what it last said of itself, each branch's rule state, and the service times
learnt. Loaded once at start; devices and rules saved with every batch, before it is acknowledged."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime

from sqlalchemy import bindparam, select, update
from sqlalchemy.orm import Session

from lobbywatch.clock import as_utc
from server.alerts.service import OPEN_STATES
from server.ingest.device_state import DeviceRuntime
from server.ingest.sequence import SequenceTracker
from server.registry import models
from server.registry.upsert import upsert
from server.rules.engine import OpenAlert, RuleEngine
from server.rules.service_rate import ServiceLearner


def load(session: Session, devices: dict[str, DeviceRuntime], rules: RuleEngine, now: float) -> None:
    """Devices and rule state as saved, then the rules reconciled with the alerts still open."""
    for device in session.query(models.Device).all():
        runtime = DeviceRuntime(
            online=device.online, agent_version=device.agent_version, config_version=device.config_version
        )
        if device.sequence:
            runtime.sequence = SequenceTracker.from_dict(dict(device.sequence))
        devices[device.id] = runtime
    for saved in session.query(models.RuleState).all():
        rules.load_branch(saved.branch_id, dict(saved.state))
    for estimate in session.query(models.ServiceEstimate).all():
        if rules.service(estimate.branch_id, estimate.zone) is None:  # older than a saved state
            rules.restore_service(
                estimate.branch_id,
                estimate.zone,
                ServiceLearner(
                    busy_min=estimate.busy_min,
                    served=estimate.served,
                    arrived=estimate.arrived,
                    windows=estimate.windows,
                ),
            )
    alerts = session.scalars(select(models.Alert).where(models.Alert.state.in_(OPEN_STATES)))
    opened = [
        OpenAlert(a.rule, a.branch_id, a.subject, a.peak or 0.0, as_utc(a.started_at).timestamp(), dict(a.facts or {}))
        for a in alerts
    ]
    rules.reconcile(opened, now)


def save_rules(session: Session, rules: RuleEngine, branches: set[str], now: datetime) -> bool:
    """The rule state of `branches` (those that moved); False when there was nothing to write."""
    if not branches:
        return False
    rows = [{"branch_id": b, "state": rules.export_branch(b), "updated_at": now} for b in sorted(branches)]
    upsert(session, models.RuleState, rows, ["branch_id"])
    return True


def save_devices(session: Session, devices: dict[str, DeviceRuntime], dirty: set[str]) -> bool:
    """The state of the `dirty` devices; False when there was nothing to write."""
    if not dirty:
        return False
    rows = []
    for device_id in dirty:
        runtime = devices[device_id]
        rows.append(
            {
                "b_id": device_id,
                "online": runtime.online,
                "last_seen": datetime.fromtimestamp(runtime.last_seen, UTC) if runtime.last_seen else None,
                "clock_skew_ms": runtime.clock_skew_ms,
                "agent_version": runtime.agent_version,
                "config_version": runtime.config_version,
                "sequence": runtime.sequence.to_dict(),
            }
        )
    table = models.Device.__table__
    statement = (
        update(models.Device)
        .where(table.c.id == bindparam("b_id"))
        .values({name: bindparam(name) for name in rows[0] if name != "b_id"})
    )
    session.connection().execute(statement, rows)
    return True


def save_learnt(
    session: Session, evidence: Mapping[tuple[str, str], ServiceLearner], branches: set[str], now: datetime
) -> None:
    """What the rules learnt of service times (by branch and zone), for the branches that still exist."""
    for (branch, zone), learnt in evidence.items():
        if branch in branches:
            session.merge(
                models.ServiceEstimate(
                    branch_id=branch,
                    zone=zone,
                    busy_min=learnt.busy_min,
                    served=learnt.served,
                    arrived=learnt.arrived,
                    windows=learnt.windows,
                    updated_at=now,
                )
            )
    session.commit()
