"""Silences: a person holds a branch's notices back for a while (a rule, a subject, or all of them), saying why;
each is audited and shown with the alerts it holds."""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from lobbywatch.clock import Clock, as_utc
from server.alerts.errors import AlertError
from server.registry import audit, models


class Silences:
    def __init__(
        self,
        sessions: sessionmaker[Session],
        clock: Clock,
        lock: threading.Lock,
        on_event: Callable[[dict[str, object]], None] | None = None,
    ) -> None:
        self._sessions = sessions
        self._clock = clock
        self._lock = lock
        self._on_event = on_event

    def add(
        self, branch: str, minutes: float, by: str, reason: str, rule: str | None = None, subject: str | None = None
    ) -> models.Silence:
        if minutes <= 0 or minutes > 7 * 24 * 60:
            raise AlertError("a silence lasts from a minute to a week")
        if not reason.strip():
            raise AlertError("say why (e.g. 'replacing the camera'): it is shown with every silenced alert")
        now = self._clock.now()
        with self._lock, self._sessions() as session:
            if session.get(models.Branch, branch) is None:
                raise AlertError(f"no branch {branch!r}")
            silence = models.Silence(
                branch_id=branch,
                rule=rule,
                subject=subject,
                starts_at=now,
                ends_at=now + timedelta(minutes=minutes),
                by=by,
                reason=reason,
            )
            session.add(silence)
            audit.record(
                session,
                now,
                by,
                "silence.create",
                f"branch {branch}",
                f"{minutes:g} min, {rule or 'every rule'}: {reason}",
            )
            session.commit()
        if self._on_event is not None:
            self._on_event(
                {
                    "event": "silence",
                    "branch": branch,
                    "rule": rule,
                    "subject": subject,
                    "by": by,
                    "until": silence.ends_at.isoformat(),
                    "at": now.isoformat(),
                }
            )
        return silence

    def end(self, silence_id: int, by: str = "") -> None:
        with self._lock, self._sessions() as session:
            silence = session.get(models.Silence, silence_id)
            if silence is None:
                raise AlertError(f"no silence {silence_id}")
            silence.ends_at = self._clock.now()
            audit.record(
                session,
                silence.ends_at,
                by or "?",
                "silence.end",
                f"branch {silence.branch_id}",
                f"silence {silence_id}",
            )
            session.commit()

    def active(self) -> list[models.Silence]:
        now = self._clock.now()
        with self._sessions() as session:
            return [s for s in session.scalars(select(models.Silence)) if as_utc(s.ends_at) > now]


def covers(silence: models.Silence, alert: models.Alert, at: datetime) -> bool:
    """Whether this silence holds this alert's notices at `at`. A silence's subject is the alert's (a zone, a
    button) or the device its data comes from. A critical alert (an accessibility call, a branch not open on
    time) is held only by a silence that names its rule or its subject: a branch-wide "all alerts" silence for
    maintenance must not keep a wheelchair user waiting at the ramp."""
    if not as_utc(silence.starts_at) <= at < as_utc(silence.ends_at):
        return False
    if silence.rule not in (None, alert.rule) or silence.subject not in (None, alert.subject, alert.device_id):
        return False
    return alert.severity != "critical" or silence.rule is not None or silence.subject is not None


def silence_detail(silence: models.Silence) -> str:
    """The timeline's words for a silence: who set it and why, in their own words (no language of ours)."""
    return f"{silence.by}: {silence.reason}"


def silencing(session: Session, alert: models.Alert, at: datetime, note: bool = False) -> models.Silence | None:
    """The silence that holds this alert's notices now, if any (the one that ends last); with `note`, the alert's
    timeline says who is not being told, and why."""
    found = [
        s
        for s in session.scalars(select(models.Silence).where(models.Silence.branch_id == alert.branch_id))
        if covers(s, alert, at)
    ]
    silence = max(found, key=lambda s: as_utc(s.ends_at), default=None)
    if silence is not None and note:
        session.add(models.AlertEvent(alert_id=alert.id, at=at, kind="silenced", detail=silence_detail(silence)))
    return silence
