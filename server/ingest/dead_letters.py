"""Messages set aside instead of stored, with their raw payload and the reason: refused by validation, or by
the time-series store for something in their content. Collected on whichever thread refuses them and written
to the registry in one transaction per ingest batch; the table is bounded (the oldest go first)."""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session, sessionmaker

from lobbywatch.clock import Clock
from server.registry import models

log = logging.getLogger(__name__)

MAX_KEPT = 10_000  # rows in the table
MAX_PENDING = 2_000  # rows waiting for the next write; past this a refusal is counted, not kept
MAX_PAYLOAD = 16 * 1024 + 1024  # a payload past the contract's limit is kept cut, with its length in the detail


@dataclass(frozen=True, slots=True)
class Letter:
    at: datetime
    device: str | None
    topic: str
    cause: str
    detail: str
    payload: bytes


class DeadLetters:
    def __init__(self, sessions: sessionmaker[Session], clock: Clock) -> None:
        self._sessions = sessions
        self._clock = clock
        self._pending: list[Letter] = []
        self._lock = threading.Lock()
        self.not_kept = 0  # refusals past MAX_PENDING before a write: still counted by cause in Rejects

    def add(self, cause: str, device: str | None, topic: str, detail: str, payload: bytes) -> None:
        if len(payload) > MAX_PAYLOAD:
            detail = f"{detail} [payload of {len(payload)} bytes kept cut to {MAX_PAYLOAD}]"
            payload = payload[:MAX_PAYLOAD]
        letter = Letter(self._clock.now(), device, topic[:300], cause[:32], detail[:2000], payload)
        with self._lock:
            if len(self._pending) >= MAX_PENDING:
                self.not_kept += 1
                return
            self._pending.append(letter)

    def flush(self) -> int:
        """Write what is pending; returns how many. A registry that fails keeps them for the next try."""
        with self._lock:
            pending, self._pending = self._pending, []
        if not pending:
            return 0
        try:
            with self._sessions() as session:
                session.add_all(
                    models.DeadLetter(
                        at=x.at, device_id=x.device, topic=x.topic, cause=x.cause, detail=x.detail, payload=x.payload
                    )
                    for x in pending
                )
                session.flush()
                newest = session.scalar(select(func.max(models.DeadLetter.id))) or 0
                session.execute(delete(models.DeadLetter).where(models.DeadLetter.id <= newest - MAX_KEPT))
                session.commit()
        except Exception as exc:  # the registry is down: keep them (bounded) and try with the next batch
            log.error("could not write %d dead letters to the registry, will retry: %s", len(pending), exc)
            with self._lock:
                self._pending = (pending + self._pending)[:MAX_PENDING]
            return 0
        return len(pending)


def recent(
    session: Session, limit: int = 100, device: str | None = None, devices: set[str] | None = None
) -> list[models.DeadLetter]:
    """Newest first; `devices`: only these (a person's branches)."""
    query = select(models.DeadLetter).order_by(models.DeadLetter.id.desc()).limit(limit)
    if device is not None:
        query = query.where(models.DeadLetter.device_id == device)
    if devices is not None:
        query = query.where(models.DeadLetter.device_id.in_(sorted(devices)))
    return list(session.scalars(query))
