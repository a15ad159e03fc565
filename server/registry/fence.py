"""Fencing the scale-out's workers (docs/scale.md): a partition's state is written only by the worker holding
the pin NATS gave it last. A worker claims a partition when pinned; every transaction that saves state of the
partition's branches checks, under a row lock, that the pin is still the one it claimed."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from server.registry import models
from server.registry.upsert import upsert


class Fenced(RuntimeError):
    """Another worker holds these partitions now: what was about to be saved for them must be dropped."""

    def __init__(self, partitions: frozenset[int]) -> None:
        super().__init__(f"partitions {sorted(partitions)} are owned by another worker now")
        self.partitions = partitions


def claim(session: Session, partition: int, pin: str, worker: str, now: datetime) -> None:
    """Take a partition over (NATS pinned us): from this commit on, a former owner's writes are refused."""
    upsert(
        session,
        models.PartitionOwner,
        [{"partition": partition, "pin": pin, "worker": worker, "since": now}],
        ["partition"],
    )
    session.commit()


def check(session: Session, pins: Mapping[int, str]) -> None:
    """Raise `Fenced` unless each partition's claimed pin is still `pins[partition]`; the rows stay locked (on
    PostgreSQL) until the transaction ends, so that no claim slips in between the check and the commit."""
    if not pins:
        return
    rows = session.execute(
        select(models.PartitionOwner.partition, models.PartitionOwner.pin)
        .where(models.PartitionOwner.partition.in_(list(pins)))
        .with_for_update()
    )
    claimed: dict[int, str] = {partition: pin for partition, pin in rows}
    lost = frozenset(p for p, pin in pins.items() if claimed.get(p) != pin)
    if lost:
        raise Fenced(lost)
