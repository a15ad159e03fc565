"""Alert lifecycle: one alert per cause, fired and resolved by the rules, with a timeline, and notified."""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from lobbywatch.clock import Clock
from lobbywatch.i18n import t
from server.alerts.notify import Notice
from server.ingest.directory import BranchEntry, ZoneEntry
from server.registry import models
from server.rules.queue_length import Change, Transition

QUEUE_TOO_LONG = "queue_too_long"


def alert_key(rule: str, branch: str, subject: str) -> str:
    return f"{rule}/{branch}/{subject}"


class AlertService:
    def __init__(
        self, sessions: sessionmaker[Session], notify: Callable[[Notice], None] | None, public_url: str,
        clock: Clock, grafana_url: str | None = None,
    ) -> None:
        self._sessions = sessions
        self._clock = clock
        self._notify = notify
        self._public_url = public_url.rstrip("/")
        self._grafana_url = grafana_url.rstrip("/") if grafana_url else None
        self._lock = threading.Lock()

    def open_alerts(self) -> list[models.Alert]:
        with self._sessions() as session:
            return list(session.scalars(select(models.Alert).where(models.Alert.state == "firing")))

    def on_queue(self, branch: BranchEntry, zone: ZoneEntry, change: Transition) -> None:
        at = datetime.fromtimestamp(change.at, UTC)
        key = alert_key(QUEUE_TOO_LONG, branch.id, zone.key)
        with self._lock, self._sessions() as session:
            alert = session.scalars(
                select(models.Alert).where(models.Alert.key == key, models.Alert.state == "firing")
            ).first()
            if change.change is Change.FIRED:
                if alert is None:
                    alert = models.Alert(
                        key=key, rule=QUEUE_TOO_LONG, branch_id=branch.id, subject=zone.key, severity="warning",
                        state="firing", started_at=at, updated_at=at, value=change.value, peak=change.peak,
                        threshold=zone.rule.threshold,
                    )
                    session.add(alert)
                    session.flush()
                else:  # already open (e.g. restored after a restart): update, do not duplicate
                    alert.updated_at, alert.value = at, change.value
                    alert.peak = max(alert.peak or 0, change.peak)
                session.add(models.AlertEvent(alert_id=alert.id, at=at, kind="fired",
                                              detail=f"occupancy {change.value} >= {zone.rule.threshold}"))
            else:
                if alert is None:
                    return
                alert.state, alert.resolved_at, alert.updated_at = "resolved", at, at
                alert.value, alert.peak = change.value, max(alert.peak or 0, change.peak)
                session.add(models.AlertEvent(alert_id=alert.id, at=at, kind="resolved",
                                              detail=f"occupancy {change.value} <= {zone.rule.clear_below}"))
            session.commit()
            notice = self._notice(alert, branch, zone, change, at)
        if self._notify is not None:
            self._notify(notice)

    def _notice(
        self, alert: models.Alert, branch: BranchEntry, zone: ZoneEntry, change: Transition, at: datetime
    ) -> Notice:
        local = at.astimezone(ZoneInfo(branch.timezone))
        params = {
            "branch": branch.name, "zone": zone.name, "value": change.value, "peak": change.peak,
            "threshold": zone.rule.threshold, "minutes": round(zone.rule.for_s / 60, 1),
            "time": local.strftime("%H:%M"),
        }
        prefix = f"alert.{QUEUE_TOO_LONG}.{change.change.value}"
        dashboard = f"{self._grafana_url}/d/lobbywatch-branch?var-branch={branch.id}" if self._grafana_url else None
        return Notice(
            alert_id=alert.id, change=change.change.value, rule=QUEUE_TOO_LONG, severity=alert.severity,
            branch_id=branch.id, branch_name=branch.name, subject=zone.key,
            title=t(branch.locale, f"{prefix}.title", **params), body=t(branch.locale, f"{prefix}.body", **params),
            at_utc=at.isoformat(), at_local=local.isoformat(),
            url=f"{self._public_url}/api/v1/alerts/{alert.id}", dashboard_url=dashboard,
        )

    def record_delivery(self, notice: Notice, channel: str, delivered: bool, detail: str) -> None:
        kind = "notified" if delivered else "notify_failed"
        with self._lock, self._sessions() as session:
            session.add(models.AlertEvent(alert_id=notice.alert_id, at=self._clock.now(), kind=kind,
                                          detail=f"{channel}: {detail}" if detail else channel))
            session.commit()
