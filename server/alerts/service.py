"""Alert lifecycle: one alert per cause (rule, branch, subject), fired and resolved by the rules, acknowledged,
resolved by hand or passed on by people, with a timeline; notified in the branch's language and time zone."""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from lobbywatch.clock import Clock, as_utc
from server.alerts.catalog import ZONE_RULES, describe, first_role, number, plain, severity
from server.alerts.errors import AlertError
from server.alerts.silences import Silences, silencing
from server.dashboards import BRANCH_UID, uid
from server.delivery.notify import Delivered, Notice
from server.registry import audit, models
from server.registry.directory import BranchEntry
from server.rules.presence import RULE as OFFLINE_RULE
from server.rules.transitions import Change, Transition

OPEN_STATES = ("firing", "acknowledged")


@dataclass(frozen=True, slots=True)
class Held:
    """What holds alerts' reminders and escalation back, as the rules' owner saw it at one tick (a snapshot:
    the alerts thread never reads the rules' state). An offline device's alerts wait: its own offline alert
    tells the technicians. A zone whose count is unknown now (the camera cannot see) cannot show whether its
    queue went down: its alerts wait too, while the camera's fault goes to the technicians."""

    offline: frozenset[tuple[str, str]] = frozenset()  # (branch, device)
    unknown: frozenset[tuple[str, str]] = frozenset()  # (branch, zone)

    def holds(self, alert: models.Alert) -> bool:
        if alert.rule != OFFLINE_RULE and alert.device_id and (alert.branch_id, alert.device_id) in self.offline:
            return True
        return alert.rule in ZONE_RULES and (alert.branch_id, alert.subject) in self.unknown


def alert_key(rule: str, branch: str, subject: str) -> str:
    return f"{rule}/{branch}/{subject}"


Event = dict[str, object]


def subject_of(alert: models.Alert) -> str:
    """The alert's subject as people call it (a zone's, a button's name), else its key."""
    return str((alert.facts or {}).get("subject_name") or alert.subject)


class AlertService:
    def __init__(
        self,
        sessions: sessionmaker[Session],
        notify: Callable[[Notice], None] | None,
        public_url: str,
        clock: Clock,
        grafana_url: str | None = None,
        on_event: Callable[[Event], None] | None = None,
    ) -> None:
        self._sessions = sessions
        self._notify = notify
        self._clock = clock
        self._public_url = public_url.rstrip("/")
        self._grafana_url = grafana_url.rstrip("/") if grafana_url else None
        self._on_event = on_event
        self._lock = threading.Lock()  # one writer of alerts at a time (the alerts thread, the API's people)
        self.silences = Silences(sessions, clock, self._lock, on_event)

    def open_alerts(self) -> list[models.Alert]:
        with self._sessions() as session:
            return list(session.scalars(select(models.Alert).where(models.Alert.state.in_(OPEN_STATES))))

    # -- from the rules ------------------------------------------------------------------------------
    def apply(self, change: Transition, branch: BranchEntry, subject_name: str) -> None:
        at = datetime.fromtimestamp(change.at, UTC)
        key = alert_key(change.rule, branch.id, change.subject)
        role = first_role(change.rule, change.facts(), branch)
        level = severity(change, branch)
        facts = change.facts()
        with self._lock, self._sessions() as session:
            alert = session.scalars(
                select(models.Alert).where(models.Alert.key == key, models.Alert.state.in_(OPEN_STATES))
            ).first()
            if change.change is Change.FIRED:
                if alert is None:
                    device = facts.get("device") or (change.subject if change.rule == OFFLINE_RULE else None)
                    alert = models.Alert(
                        key=key,
                        rule=change.rule,
                        branch_id=branch.id,
                        subject=change.subject,
                        severity=level,
                        state="firing",
                        started_at=at,
                        updated_at=at,
                        value=change.value,
                        peak=change.peak,
                        threshold=number(facts.get("threshold")),
                        device_id=device or None,
                        role=role,
                        step=0,
                        notified_at=at,
                        facts=plain(facts),
                    )
                    session.add(alert)
                    session.flush()
                else:  # open already (a restart lost the rules' word of it): never a second alert, nor a notice
                    alert.updated_at, alert.value = at, change.value
                    alert.peak = max(alert.peak or 0, change.peak or 0)
                    session.commit()
                    return
            else:
                if alert is None:
                    return
                facts = {**(alert.facts or {}), **facts}
                alert.state, alert.resolved_at, alert.updated_at = "resolved", at, at
                alert.value = change.value
                alert.peak = max(alert.peak or 0, change.peak or 0) if change.peak is not None else alert.peak
            alert.facts = {**plain(facts), "subject_name": subject_name}
            detail = ", ".join(f"{k}={v}" for k, v in facts.items())
            session.add(models.AlertEvent(alert_id=alert.id, at=at, kind=change.change.value, detail=detail))
            silence = silencing(session, alert, at, note=change.change is Change.FIRED)
            silenced = silence is not None
            session.commit()
            notice = self._notice(alert, branch, subject_name, change.change.value, at, facts)
            self._event(
                change.change.value,
                alert,
                at,
                facts=plain(facts),
                role=alert.role,
                **({"silenced": True, "silence": silence.id} if silence is not None else {}),
            )
        if self._notify is not None and not silenced:
            self._notify(notice)

    # -- reminders and escalation -------------------------------------------------------------------
    def tick(self, branches: Mapping[str, BranchEntry], held: Held = Held()) -> None:
        """Remind the role asked now, and ask the next one in the chain, until somebody acknowledges; what is
        `held` waits (inhibition)."""
        now = self._clock.now()
        notices = []
        with self._lock, self._sessions() as session:
            for alert in session.scalars(select(models.Alert).where(models.Alert.state == "firing")):
                branch = branches.get(alert.branch_id)
                if branch is None:
                    continue
                if held.holds(alert):
                    continue
                if silencing(session, alert, now) is not None:
                    continue
                chain = branch.escalation.chain
                start_role = first_role(alert.rule, dict(alert.facts or {}), branch)
                first = chain.index(start_role) if start_role in chain else None
                started = as_utc(alert.started_at)
                due = int((now - started).total_seconds() // branch.escalation.step_after_s)
                change = None
                if first is not None and due > alert.step and first + alert.step + 1 < len(chain):
                    alert.step = min(due, len(chain) - 1 - first)
                    alert.role = chain[first + alert.step]
                    change = "escalated"
                elif (
                    now - as_utc(alert.notified_at or alert.started_at)
                ).total_seconds() >= branch.escalation.remind_every_s:
                    change = "reminded"
                if change is None:
                    continue
                alert.notified_at = now
                session.add(models.AlertEvent(alert_id=alert.id, at=now, kind=change, detail=f"to {alert.role}"))
                notices.append(self._notice(alert, branch, subject_of(alert), change, now, dict(alert.facts or {})))
                self._event(change, alert, now, role=alert.role, step=alert.step)
            session.commit()
        if self._notify is not None:
            for notice in notices:
                self._notify(notice)

    # -- from people ---------------------------------------------------------------------------------
    def acknowledge(self, alert_id: int, by: str, channel: str) -> models.Alert:
        """The first to acknowledge owns the alert (first-responder responsibility)."""
        with self._lock, self._sessions() as session:
            alert = self._open(session, alert_id)
            at = self._clock.now()
            if alert.owner is None:
                alert.owner, alert.state = by, "acknowledged"
            alert.updated_at = at
            session.add(models.AlertEvent(alert_id=alert.id, at=at, kind="acknowledged", detail=f"{by} via {channel}"))
            audit.record(session, at, by, "alert.acknowledge", f"alert {alert.id}", f"via {channel}")
            session.commit()
            self._event("acknowledged", alert, at, by=by, channel=channel, device=alert.device_id)
            return alert

    def resolve(self, alert_id: int, by: str, note: str) -> models.Alert:
        if not note.strip():
            raise AlertError("say in a note what was done: it stays in the alert's timeline")
        with self._lock, self._sessions() as session:
            alert = self._open(session, alert_id)
            at = self._clock.now()
            alert.state, alert.resolved_at, alert.updated_at = "resolved", at, at
            session.add(models.AlertEvent(alert_id=alert.id, at=at, kind="resolved", detail=f"{by}: {note}"))
            audit.record(session, at, by, "alert.resolve", f"alert {alert.id}", note)
            session.commit()
            self._event("resolved", alert, at, by=by, note=note, device=alert.device_id)
            return alert

    def pass_on(self, alert_id: int, by: str, to: str) -> models.Alert:
        with self._lock, self._sessions() as session:
            alert = self._open(session, alert_id)
            if alert.owner != by:
                raise AlertError(f"only the owner ({alert.owner or 'nobody yet'}) can pass this alert on")
            at = self._clock.now()
            alert.owner, alert.updated_at = to, at
            session.add(models.AlertEvent(alert_id=alert.id, at=at, kind="passed_on", detail=f"{by} to {to}"))
            audit.record(session, at, by, "alert.pass_on", f"alert {alert.id}", f"to {to}")
            session.commit()
            self._event("passed_on", alert, at, by=by, to=to)
            return alert

    def _open(self, session: Session, alert_id: int) -> models.Alert:
        alert = session.get(models.Alert, alert_id)
        if alert is None:
            raise AlertError(f"no alert {alert_id}")
        if alert.state == "resolved":
            raise AlertError(f"alert {alert_id} is resolved already")
        return alert

    # -- output --------------------------------------------------------------------------------------
    def _event(self, kind: str, alert: models.Alert, at: datetime, **extra: object) -> None:
        if self._on_event is not None:
            self._on_event(
                {
                    "event": kind,
                    "alert": alert.id,
                    "rule": alert.rule,
                    "branch": alert.branch_id,
                    "subject": alert.subject,
                    "severity": alert.severity,
                    "at": at.isoformat(),
                    "value": alert.value,
                    "facts": plain(dict(alert.facts or {})),
                    **extra,
                }
            )

    def _notice(
        self,
        alert: models.Alert,
        branch: BranchEntry,
        subject_name: str,
        change: str,
        at: datetime,
        facts: dict[str, object],
    ) -> Notice:
        local = at.astimezone(ZoneInfo(branch.timezone))
        title, body = describe(alert, branch, branch.locale, change, at, {**facts, "subject_name": subject_name})
        board = uid(BRANCH_UID, branch.locale)  # the dashboard in the branch's language
        dashboard = f"{self._grafana_url}/d/{board}?var-branch={branch.id}" if self._grafana_url else None
        return Notice(
            alert_id=alert.id,
            change=change,
            rule=alert.rule,
            severity=alert.severity,
            branch_id=branch.id,
            branch_name=branch.name,
            subject=alert.subject,
            title=title,
            body=body,
            role=alert.role,
            at_utc=at.isoformat(),
            at_local=local.isoformat(),
            url=f"{self._public_url}/api/v1/alerts/{alert.id}",
            dashboard_url=dashboard,
        )

    def record_deliveries(self, outcomes: Sequence[Delivered]) -> None:
        """What became of notices on their channels, in one transaction."""
        # not under the alerts' lock: rows no other writer touches (the lock made deliveries wait, under load)
        with self._sessions() as session:
            session.add_all(
                models.AlertEvent(alert_id=o.notice.alert_id, at=o.at, kind=_kind(o), detail=_detail(o))
                for o in outcomes
            )
            session.commit()
        if self._on_event is not None:
            for outcome in outcomes:
                self._on_event(_delivery_event(outcome))


def _kind(outcome: Delivered) -> str:
    return "notified" if outcome.delivered else "notify_failed"


def _detail(outcome: Delivered) -> str:
    return f"{outcome.channel}: {outcome.detail}" if outcome.detail else outcome.channel


def _delivery_event(outcome: Delivered) -> Event:
    notice = outcome.notice
    return {
        "event": _kind(outcome),
        "alert": notice.alert_id,
        "rule": notice.rule,
        "branch": notice.branch_id,
        "subject": notice.subject,
        "at": outcome.at.isoformat(),
        "channel": outcome.channel,
        "role": notice.role,
        "change": notice.change,
        "detail": outcome.detail,
    }
