"""Attempt records under a limit, kept in the registry so that every API process sees the same ones (sign-in
and enrollment limits; their policies are pure and elsewhere). Read under a row lock where the database has
one, so that two processes counting a failure at once both count (a record not yet made has no row to lock:
two first failures at the same moment may count as one)."""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass, field

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from server.registry import models
from server.registry.upsert import upsert

FORGET_S = 3600.0  # a record with no attempt for this long, and no wait running, is deleted


@dataclass(slots=True)
class Record:
    times: list[float] = field(default_factory=list)  # the attempts still counted (epoch seconds)
    until: float = 0.0  # limited until then
    wait: float = 0.0  # the last wait imposed


def load(session: Session, keys: Collection[str], lock: bool = False) -> dict[str, Record]:
    """`lock`: hold the rows until the transaction ends (to write them back)."""
    statement = select(models.RateLimit).where(models.RateLimit.key.in_(list(keys)))
    if lock:
        statement = statement.with_for_update()
    return {row.key: Record(list(row.times), row.until, row.wait) for row in session.scalars(statement)}


def save(session: Session, records: Mapping[str, Record], now: float) -> None:
    """Write these records and forget the stale ones (the caller commits)."""
    rows = [
        {"key": key, "times": r.times, "until": r.until, "wait": r.wait, "last": max(r.times, default=now)}
        for key, r in sorted(records.items())  # in one order: two processes wait for each other, never deadlock
    ]
    upsert(session, models.RateLimit, rows, ["key"])
    session.execute(
        delete(models.RateLimit).where(models.RateLimit.last < now - FORGET_S, models.RateLimit.until < now)
    )


def forget(session: Session, key: str) -> None:
    session.execute(delete(models.RateLimit).where(models.RateLimit.key == key))
