"""Delivery to people through apprise (e-mail, WeCom and DingTalk robots, Telegram, SMS gateways, webhooks...),
routed by branch, role and severity, with a one-tap acknowledgement link per person, grouped per branch and
person (grouping.py). A retry sends only to those who did not get it; a channel that keeps failing is reported
to the administrators."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from datetime import datetime

import apprise

from server.delivery.grouping import GROUP_INTERVAL_S, GROUP_WAIT_S, Grouper
from server.delivery.notify import Notice, Outcome
from server.delivery.routing import RateLimit, recipients
from server.registry.directory import Contact

log = logging.getLogger(__name__)

DEAD_AFTER = 3  # failures in a row before a channel is reported dead
GROUP_ATTEMPTS = 3  # a held group that cannot be sent is tried again after each interval, then reported failed


class DeliveryError(RuntimeError):
    pass


class AppriseChannel:
    name = "apprise"

    def __init__(
        self,
        contacts: Callable[[str], tuple[Contact, ...]],
        link: Callable[[Notice, Contact], str | None],
        labels: Callable[..., str],
        admin_urls: Sequence[str] = (),
        clock: Callable[[], float] | None = None,
        group_interval_s: float = GROUP_INTERVAL_S,
        group_wait_s: float = GROUP_WAIT_S,
        sender: Callable[[Contact, str, str, Sequence[int]], bool] | None = None,
    ) -> None:
        """`sender`: how one message reaches one person (contact, title, body, the alerts it carries); apprise
        by default, a recorder in a replay."""
        self._contacts = contacts
        self._link = link
        self._labels = labels  # (locale key, branch, **params) -> text in the branch's language
        self._admin_urls = list(admin_urls)
        self._limit = RateLimit()
        self._done: dict[tuple[int, str, str], set[str]] = {}
        self._failures: dict[str, int] = {}
        self._lock = threading.Lock()
        import time

        self._now = clock or time.time
        self.rate_limited = 0
        self._grouper: Grouper[tuple[str, Contact]] = Grouper(group_interval_s, group_wait_s)
        self._sender = sender or self._apprise
        self._group_attempts: dict[tuple[str, Contact], int] = {}

    def deliver(self, notice: Notice) -> bool:
        local_now = datetime.fromisoformat(notice.at_local).time()
        people = recipients(self._contacts(notice.branch_id), notice.role, notice.severity, local_now)
        if not people:
            return False
        key = (notice.alert_id, notice.change, notice.at_utc)
        first_try = key not in self._done  # a retry goes to those it failed for, never into a group
        done = self._done.setdefault(key, set())
        failed = []
        sent = 0
        for contact in people:
            if contact.name in done:
                continue
            if first_try and not self._grouper.offer((notice.branch_id, contact), notice, self._now()):
                done.add(contact.name)  # held: it goes with the group's next message (flush)
                continue
            if not self._limit.allow(contact, self._now()):
                self.rate_limited += 1
                done.add(contact.name)
                log.warning(
                    "not sending alert %d to %s: over %d notices this hour",
                    notice.alert_id,
                    contact.name,
                    contact.max_per_hour,
                )
                continue
            if self._send(contact, notice):
                done.add(contact.name)
                sent += 1
            else:
                failed.append(contact.name)
        if failed:
            raise DeliveryError(f"not delivered to {', '.join(failed)}")
        self._done.pop(key, None)
        return sent > 0  # held or limited only: nothing handed over yet, nothing to record

    def flush(self, report: Outcome, force: bool = False) -> None:
        """Send the held groups whose interval is up, one message each; called about once a second."""
        for key, notices in self._grouper.due(self._now(), force):
            branch, contact = key
            if not self._limit.allow(contact, self._now()):
                self.rate_limited += 1
                continue
            if len(notices) == 1:  # nothing came to group it with: it goes as itself
                (notice,) = notices
                sent = self._send(contact, notice)
                report(notice, self.name, sent, contact.name if sent else f"not delivered to {contact.name}")
                continue
            title = self._labels("notice.group.title", branch, branch=notices[0].branch_name, count=len(notices))
            lines = []
            for notice in notices:
                lines.append(f"• {notice.title} ({notice.at_local[11:16]})")
                link = self._link(notice, contact)
                if link:
                    lines.append(f"  {self._labels('notice.acknowledge', branch)}: {link}")
            if notices[-1].dashboard_url:
                lines.append(f"{self._labels('notice.dashboard', branch)}: {notices[-1].dashboard_url}")
            if self.send(contact, title, "\n".join(lines), [n.alert_id for n in notices]):
                self._group_attempts.pop(key, None)
                for notice in notices:
                    report(notice, self.name, True, f"{contact.name}, grouped with {len(notices) - 1} more")
                continue
            attempts = self._group_attempts.get(key, 0) + 1
            if attempts < GROUP_ATTEMPTS and not force:
                self._group_attempts[key] = attempts
                self._grouper.put_back(key, notices, self._now())
                continue
            self._group_attempts.pop(key, None)
            for notice in notices:
                report(notice, self.name, False, f"not delivered to {contact.name} after {attempts} attempts")

    def _send(self, contact: Contact, notice: Notice) -> bool:
        body = notice.body
        link = self._link(notice, contact)
        if link:
            body += "\n" + self._labels("notice.acknowledge", notice.branch_id) + ": " + link
        if notice.dashboard_url:
            body += "\n" + self._labels("notice.dashboard", notice.branch_id) + ": " + notice.dashboard_url
        return self.send(contact, notice.title, body, [notice.alert_id])

    def send(self, contact: Contact, title: str, body: str, alerts: Sequence[int] = ()) -> bool:
        """One message to one person (the scheduled reports use it too)."""
        return self._sender(contact, title, body, alerts)

    def _apprise(self, contact: Contact, title: str, body: str, _alerts: Sequence[int]) -> bool:
        sender = apprise.Apprise()
        for url in contact.urls:
            sender.add(url)
        ok = bool(sender.notify(title=title, body=body))
        for url in contact.urls:
            self._count(url, ok)
        return ok

    def _count(self, url: str, ok: bool) -> None:
        with self._lock:
            failures = 0 if ok else self._failures.get(url, 0) + 1
            self._failures[url] = failures
        if failures == DEAD_AFTER and self._admin_urls:
            # never the secret part of a URL in a message: scheme and host only
            scheme, _, rest = url.partition("://")
            shown = f"{scheme}://{rest.rsplit('@', maxsplit=1)[-1].split('/', maxsplit=1)[0]}"
            self.tell_admins(
                "LobbyWatch: a notification channel is failing",
                f"{DEAD_AFTER} deliveries in a row to {shown} failed; alerts may not reach people.",
            )
            log.error("notification channel %s failed %d times in a row; administrators told", shown, failures)

    def tell_admins(self, title: str, body: str) -> bool:
        """A message to the administrators (LOBBYWATCH_ADMIN_NOTIFY_URLS); False when there are none or it
        could not be sent."""
        if not self._admin_urls:
            return False
        sender = apprise.Apprise()
        for admin in self._admin_urls:
            sender.add(admin)
        return bool(sender.notify(title=title, body=body))
