"""Delivery to people through apprise (e-mail, WeCom and DingTalk robots, Telegram, SMS gateways, webhooks...),
routed by branch, role and severity, with a one-tap acknowledgement link per person. A retry sends only to
those who did not get it; a channel that keeps failing is reported to the administrators."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from datetime import datetime

import apprise

from server.alerts.notify import Notice
from server.alerts.routing import Contact, RateLimit, recipients

log = logging.getLogger(__name__)

DEAD_AFTER = 3  # failures in a row before a channel is reported dead


class DeliveryError(RuntimeError):
    pass


class AppriseChannel:
    name = "apprise"

    def __init__(
        self,
        contacts: Callable[[str], tuple[Contact, ...]],
        link: Callable[[Notice, Contact], str | None],
        labels: Callable[[str, str], str],
        admin_urls: Sequence[str] = (),
        clock: Callable[[], float] | None = None,
    ) -> None:
        self._contacts = contacts
        self._link = link
        self._labels = labels  # (locale key, branch) -> text in the branch's language
        self._admin_urls = list(admin_urls)
        self._limit = RateLimit()
        self._done: dict[tuple[int, str, str], set[str]] = {}
        self._failures: dict[str, int] = {}
        self._lock = threading.Lock()
        import time

        self._now = clock or time.time
        self.rate_limited = 0

    def deliver(self, notice: Notice) -> bool:
        local_now = datetime.fromisoformat(notice.at_local).time()
        people = recipients(self._contacts(notice.branch_id), notice.role, notice.severity, local_now)
        if not people:
            return False
        key = (notice.alert_id, notice.change, notice.at_utc)
        done = self._done.setdefault(key, set())
        failed = []
        for contact in people:
            if contact.name in done:
                continue
            if not self._limit.allow(contact, self._now()):
                self.rate_limited += 1
                done.add(contact.name)
                log.warning("not sending alert %d to %s: over %d notices this hour", notice.alert_id, contact.name,
                            contact.max_per_hour)
                continue
            if self._send(contact, notice):
                done.add(contact.name)
            else:
                failed.append(contact.name)
        if failed:
            raise DeliveryError(f"not delivered to {', '.join(failed)}")
        self._done.pop(key, None)
        return True

    def _send(self, contact: Contact, notice: Notice) -> bool:
        body = notice.body
        link = self._link(notice, contact)
        if link:
            body += "\n" + self._labels("notice.acknowledge", notice.branch_id) + ": " + link
        if notice.dashboard_url:
            body += "\n" + self._labels("notice.dashboard", notice.branch_id) + ": " + notice.dashboard_url
        sender = apprise.Apprise()
        for url in contact.urls:
            sender.add(url)
        ok = bool(sender.notify(title=notice.title, body=body))
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
            sender = apprise.Apprise()
            for admin in self._admin_urls:
                sender.add(admin)
            sender.notify(title="LobbyWatch: a notification channel is failing",
                          body=f"{DEAD_AFTER} deliveries in a row to {shown} failed; alerts may not reach people.")
            log.error("notification channel %s failed %d times in a row; administrators told", shown, failures)
