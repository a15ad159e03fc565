"""The ingest's state in the registry, so that a restarted server goes on where the last batch left it: each
device's sequence window and what it last said of itself, each branch's rule state, and the service times
learnt. Loaded once at start; devices saved with every batch, before it is acknowledged, and rules with the
batches that moved them (`BranchProcessor.save_due`)."""

from __future__ import annotations

import logging
from collections.abc import Collection, Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import bindparam, select, true, update
from sqlalchemy.orm import Session

from lobbywatch.clock import as_utc
from lobbywatch.protocol import Calibration
from server.alerts.service import OPEN_STATES
from server.processing.branch import BranchProcessor
from server.processing.branches import Branches
from server.registry import models
from server.registry.upsert import upsert
from server.rules.service_rate import ServiceLearner
from server.rules.state import OpenAlert

log = logging.getLogger(__name__)


def load(session: Session, now: float, only: Collection[str] | None = None) -> Branches:
    """Every branch's processor as saved (devices and rule state), its rules reconciled with the alerts still
    open; `only`: of these branches alone (a worker's partitions)."""

    def of(column: Any) -> Any:
        return true() if only is None else column.in_(list(only))

    saved: dict[str, dict[str, Any]] = {branch: {} for branch in only or ()}
    for device in session.scalars(select(models.Device).where(of(models.Device.branch_id))):
        devices = saved.setdefault(device.branch_id, {}).setdefault("devices", {})
        devices[device.id] = {
            "online": device.online,
            "agent_version": device.agent_version,
            "config_version": device.config_version,
            "sequence": device.sequence,
        }
    for state in session.scalars(select(models.RuleState).where(of(models.RuleState.branch_id))):
        saved.setdefault(state.branch_id, {})["rules"] = dict(state.state)
    branches = Branches()
    for branch, data in saved.items():
        branches.add(BranchProcessor.load(branch, data))
    for estimate in session.scalars(select(models.ServiceEstimate).where(of(models.ServiceEstimate.branch_id))):
        rules = branches.get(estimate.branch_id).rules
        if rules.service(estimate.zone) is None:  # older than a saved state
            rules.restore_service(
                estimate.zone,
                ServiceLearner(
                    busy_min=estimate.busy_min,
                    served=estimate.served,
                    arrived=estimate.arrived,
                    windows=estimate.windows,
                ),
            )
    opened: dict[str, list[OpenAlert]] = {}
    for a in session.scalars(
        select(models.Alert).where(models.Alert.state.in_(OPEN_STATES), of(models.Alert.branch_id))
    ):
        opened.setdefault(a.branch_id, []).append(
            OpenAlert(
                a.rule, a.branch_id, a.subject, a.peak or 0.0, as_utc(a.started_at).timestamp(), dict(a.facts or {})
            )
        )
    for branch in set(opened) | set(branches.processors):
        branches.get(branch).reconcile(opened.get(branch, []), now)
    return branches


def save_rules(session: Session, processors: Iterable[BranchProcessor], now: datetime) -> bool:
    """The rule state of the `processors` whose save is due (`BranchProcessor.save_due`); False when there was
    nothing to write."""
    at = now.timestamp()
    rows = [{"branch_id": p.branch, "state": p.rule_state(), "updated_at": now} for p in processors if p.save_due(at)]
    if not rows:
        return False
    upsert(session, models.RuleState, sorted(rows, key=lambda row: row["branch_id"]), ["branch_id"])
    return True


def save_devices(session: Session, processors: Iterable[BranchProcessor]) -> bool:
    """The state of the devices that changed; False when there was nothing to write. They stay marked as
    changed until `devices_saved`, after the commit."""
    rows = []
    for processor in processors:
        for device_id in processor.dirty:
            runtime = processor.devices[device_id]
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
    if not rows:
        return False
    table = models.Device.__table__
    statement = (
        update(models.Device)
        .where(table.c.id == bindparam("b_id"))
        .values({name: bindparam(name) for name in rows[0] if name != "b_id"})
    )
    # in one order (by id), as the rule states are: two workers saving the same devices at once (a partition
    # just handed over, its former owner finishing a batch) then wait for each other instead of deadlocking,
    # and the fence refuses the former owner's save (a bench run deadlocked here with the rows unordered)
    session.connection().execute(statement, sorted(rows, key=lambda row: str(row["b_id"])))
    return True


def devices_saved(processors: Iterable[BranchProcessor]) -> None:
    """After the commit: their devices are as saved (a failed transaction leaves them to save again)."""
    for processor in processors:
        processor.dirty = set()


def rules_saved(processors: Iterable[BranchProcessor], now: datetime) -> None:
    for processor in processors:
        processor.rules_saved(now.timestamp())


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


def keep_calibration(session: Session, device: str, calibration: Calibration) -> None:
    """A zone's calibration a technician made, kept with the zone so that it moves to a replacement camera."""
    zone = session.scalars(
        select(models.Zone).where(models.Zone.device_id == device, models.Zone.key == calibration.zone)
    ).first()
    if zone is None:
        log.warning(
            "device %s calibrated zone %s, which the registry does not have for it: not kept", device, calibration.zone
        )
        return
    # exclude_none: an older agent's fit has no areas to ignore (None), and is kept as it came
    zone.calibration = calibration.model_dump(mode="json", exclude_none=True)
    session.commit()
    log.info(
        "device %s calibrated zone %s (residual %.2f people): kept for a replacement",
        device,
        calibration.zone,
        calibration.model.residual_sd,
    )
