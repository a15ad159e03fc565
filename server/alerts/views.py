"""The alerts as people look at them (the API and the pages): reads of the registry, nothing written. The
people's actions on an alert are `AlertService`'s; who may see or do what is the caller's to check."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from datetime import UTC, datetime
from typing import Literal

from sqlalchemy import func, select
from sqlalchemy.orm import Session, selectinload, sessionmaker

from lobbywatch.clock import as_utc
from server.alerts.service import OPEN_STATES
from server.alerts.silences import covers
from server.registry import models

State = Literal["open", "firing", "acknowledged", "resolved", "all"]


class AlertViews:
    def __init__(self, sessions: sessionmaker[Session]) -> None:
        self._sessions = sessions

    def open_counts(self) -> dict[str, int]:
        """Open alerts by branch."""
        with self._sessions() as session:
            rows = session.execute(
                select(models.Alert.branch_id, func.count())
                .where(models.Alert.state.in_(OPEN_STATES))
                .group_by(models.Alert.branch_id)
            ).all()
        return {branch: int(count) for branch, count in rows}

    def open_by_state(self) -> dict[tuple[str, str], int]:
        """Open alerts by (state, severity)."""
        with self._sessions() as session:
            rows = session.execute(
                select(models.Alert.state, models.Alert.severity, func.count())
                .where(models.Alert.state.in_(OPEN_STATES))
                .group_by(models.Alert.state, models.Alert.severity)
            ).all()
        return {(state, severity): int(count) for state, severity, count in rows}

    def find(
        self,
        state: State = "all",
        branch: str | None = None,
        within: Collection[str] | None = None,
        limit: int = 100,
        rule: str | None = None,
        started: tuple[datetime, datetime] | None = None,
    ) -> list[models.Alert]:
        """Newest first; `within`: only these branches (None: all); `started`: [from, to) in UTC."""
        query = select(models.Alert).order_by(models.Alert.id.desc()).limit(limit)
        if rule:
            query = query.where(models.Alert.rule == rule)
        if started is not None:
            first, end = (moment.astimezone(UTC).replace(tzinfo=None) for moment in started)  # stored as UTC
            query = query.where(models.Alert.started_at >= first, models.Alert.started_at < end)
        if state == "open":
            query = query.where(models.Alert.state.in_(OPEN_STATES))
        elif state != "all":
            query = query.where(models.Alert.state == state)
        if branch:
            query = query.where(models.Alert.branch_id == branch)
        if within is not None:
            query = query.where(models.Alert.branch_id.in_(list(within)))
        with self._sessions() as session:
            return list(session.scalars(query))

    def get(self, alert_id: int) -> models.Alert | None:
        """One alert, with its timeline."""
        with self._sessions() as session:
            return session.scalars(
                select(models.Alert).where(models.Alert.id == alert_id).options(selectinload(models.Alert.events))
            ).first()

    def timeline(self, alert_id: int) -> list[models.AlertEvent]:
        with self._sessions() as session:
            return list(
                session.scalars(
                    select(models.AlertEvent)
                    .where(models.AlertEvent.alert_id == alert_id)
                    .order_by(models.AlertEvent.at, models.AlertEvent.id)
                )
            )

    def silence(self, silence_id: int) -> models.Silence | None:
        with self._sessions() as session:
            return session.get(models.Silence, silence_id)

    def silenced(self, alerts: Sequence[models.Alert], at: datetime) -> dict[int, models.Silence]:
        """The silence holding each open alert's notices at `at` (alerts no silence holds are left out)."""
        open_ = [a for a in alerts if a.state in OPEN_STATES]
        if not open_:
            return {}
        with self._sessions() as session:
            silences = list(
                session.scalars(
                    select(models.Silence).where(models.Silence.branch_id.in_({a.branch_id for a in open_}))
                )
            )
        found = {}
        for alert in open_:
            holding = [s for s in silences if s.branch_id == alert.branch_id and covers(s, alert, at)]
            if holding:
                found[alert.id] = max(holding, key=lambda s: as_utc(s.ends_at))
        return found
