"""Reports sent on a schedule to the branch managers, through the alert channels (apprise: e-mail, WeCom...).

Each morning at `send_at` (local to the branch) yesterday's report goes out, and on Mondays last week's too.
What was sent is recorded in the registry, so a restart neither repeats nor skips one; a report that could not
be sent is tried again at the next check.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable
from datetime import datetime, time, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from lobbywatch.clock import Clock
from lobbywatch.i18n import t
from server.registry import models
from server.registry.directory import BranchEntry, Contact
from server.reports.build import Period, make_report
from server.reports.service_level import BranchReport
from server.storage.base import TimeSeriesStore

log = logging.getLogger(__name__)
CHECK_S = 60.0
RECIPIENT_ROLES = ("branch_manager",)


def due(
    branches: Iterable[BranchEntry], now: datetime, send_at: time, sent: set[tuple[str, str, str]]
) -> list[tuple[BranchEntry, Period]]:
    """The reports whose time has come and that were not sent yet. Pure."""
    out = []
    for branch in branches:
        local = now.astimezone(ZoneInfo(branch.timezone))
        if local.time() < send_at:
            continue
        wanted = [Period.of("day", local.date() - timedelta(days=1))]
        if local.weekday() == 0:
            wanted.append(Period.of("week", local.date() - timedelta(days=7)))
        out += [(branch, p) for p in wanted if (branch.id, p.kind, p.first.isoformat()) not in sent]
    return out


def text(report: BranchReport, locale: str, link: str) -> tuple[str, str]:
    def tr(key: str, **params: object) -> str:
        return t(locale, key, **params)

    def shown(value: object) -> str:
        return "–" if value is None else str(value)

    lines = [
        f"{tr('page.report.wait')}: {shown(report.wait_avg_min)} / {shown(report.wait_p90_min)} min",
        f"{tr('page.report.over_target')}: {shown(report.over_target_pct)} %",
        f"{tr('page.report.longest_queue')}: {shown(report.longest_queue)}",
        f"{tr('page.report.calls')}: "
        + tr(
            "page.report.calls_value",
            calls=report.calls,
            answered=report.calls_answered,
            unanswered=report.calls_unanswered,
        ),
        f"{tr('page.report.response')}: {shown(report.response_p50_s)} / {shown(report.response_p90_s)} s",
        f"{tr('page.report.facility')}: {shown(report.facility_uptime_pct)} %",
        f"{tr('page.report.devices')}: {shown(report.device_uptime_pct)} %",
        f"{tr('page.report.alerts')}: "
        + ("; ".join(f"{tr('rule.' + rule)} {count}" for rule, count in report.alerts.items()) or "–"),
        link,
    ]
    title = tr("report.mail.title", branch=report.name, period=tr(f"page.report.{report.period}"), start=report.start)
    return title, "\n".join(lines)


class ReportMailer:
    def __init__(
        self,
        *,
        store: TimeSeriesStore,
        sessions: sessionmaker[Session],
        branches: Callable[[], Iterable[BranchEntry]],
        contacts: Callable[[str], tuple[Contact, ...]],
        send: Callable[[Contact, str, str], bool],
        clock: Clock,
        public_url: str,
        send_at: time = time(7, 30),
    ) -> None:
        self._store, self._sessions, self._branches = store, sessions, branches
        self._contacts, self._send, self._clock = contacts, send, clock
        self._public_url, self._send_at = public_url.rstrip("/"), send_at
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="reports", daemon=True)
        self.sent = 0

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(30)

    def _run(self) -> None:
        while not self._stop.wait(CHECK_S):
            try:
                self.check()
            except Exception:  # a database or storage hiccup: the next check tries again
                log.exception("sending scheduled reports failed; trying again in %s s", CHECK_S)

    def check(self) -> int:
        """Send what is due; returns how many reports went out."""
        now = self._clock.now()
        with self._sessions() as session:
            sent = {(d.branch_id, d.period, d.first) for d in session.scalars(select(models.ReportDelivery))}
        done = 0
        for branch, period in due(self._branches(), now, self._send_at, sent):
            people = [c for c in self._contacts(branch.id) if c.role in RECIPIENT_ROLES]
            report = make_report(self._store, self._sessions, branch, period).figures
            link = (
                f"{self._public_url}/lobby/reports?branch={branch.id}&period={period.kind}"
                f"&date={period.first.isoformat()}"
            )
            title, body = text(report, branch.locale, link)
            delivered = [c.name for c in people if self._send(c, title, body)]
            if people and not delivered:
                log.warning(
                    "the %s report of %s for %s reached nobody; trying again later",
                    period.kind,
                    branch.id,
                    period.first,
                )
                continue
            with self._sessions() as session:
                session.add(
                    models.ReportDelivery(
                        branch_id=branch.id,
                        period=period.kind,
                        first=period.first.isoformat(),
                        sent_at=now,
                        recipients=", ".join(delivered),
                    )
                )
                session.commit()
            done += 1
        self.sent += done
        return done
