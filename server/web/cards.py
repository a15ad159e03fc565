"""What a person reads of an alert: the cards of the lobby, history and alert pages, built from the registry,
the live state and the catalogs, in their language and their branches' time zone; and the timeline's words."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from lobbywatch.clock import as_utc
from lobbywatch.i18n import catalog, t
from server.alerts.catalog import ZONE_RULES, describe, rounded
from server.registry import models
from server.registry.directory import BranchEntry
from server.registry.users import Person
from server.rules.queue import RULE as QUEUE_RULE
from server.runtime import Runtime


def visible_branches(runtime: Runtime, person: Person) -> dict[str, BranchEntry]:
    return {b.id: b for b in runtime.directory.branches.values() if person.sees(b.id, runtime.directory.lineage(b.id))}


def cards(
    runtime: Runtime, alerts: list[models.Alert], branches: dict[str, BranchEntry], locale: str
) -> list[dict[str, Any]]:
    silenced = runtime.alert_views.silenced(alerts, runtime.clock.now())
    return [card(runtime, a, branches[a.branch_id], locale, silenced.get(a.id)) for a in alerts]


def card(
    runtime: Runtime, alert: models.Alert, branch: BranchEntry, locale: str, silence: models.Silence | None
) -> dict[str, Any]:
    started, facts = as_utc(alert.started_at), dict(alert.facts or {})
    # the subject as this person calls it, in their language (the notice said it in the branch's)
    facts["subject_name"] = runtime.directory.subject_name(alert.branch_id, alert.subject, locale)
    if alert.state == "resolved":
        ended = as_utc(alert.resolved_at or started)
        title, body = describe(alert, branch, locale, "resolved", ended, facts)
        lasted = (ended - started).total_seconds()
    else:  # what it said when it fired, and below it how long it has been open and the lobby now
        title, body = describe(alert, branch, locale, "fired", started, facts)
        lasted = (runtime.clock.now() - started).total_seconds()
    return {
        "alert": alert,
        "branch": branch,
        "title": title,
        "body": body,
        "since": local_time(started, branch, runtime),
        "rule": t(locale, f"rule.{alert.rule}"),
        "role": t(locale, f"role.{alert.role}") if alert.role else "",
        # a silenced alert tells nobody: the card must not claim that someone is being asked
        "silenced": t(
            locale,
            "page.silenced",
            by=silence.by,
            reason=silence.reason,
            until=local_time(as_utc(silence.ends_at), branch, runtime),
        )
        if silence is not None
        else "",
        "lasted": t(
            locale, "page.lasted" if alert.state == "resolved" else "page.open_for", duration=duration(lasted, locale)
        ),
        "lobby_now": lobby_now(runtime, alert, locale),
    }


def duration(seconds: float, locale: str) -> str:
    minutes = max(0, int(seconds // 60))
    if minutes < 60:
        return t(locale, "page.duration.minutes", minutes=minutes)
    return t(locale, "page.duration.hours", hours=minutes // 60, minutes=minutes % 60)


def lobby_now(runtime: Runtime, alert: models.Alert, locale: str) -> str:
    """A zone alert's people now (the live count) and at its peak; the card's fired text stays as it was."""
    if alert.rule not in ZONE_RULES:
        return ""
    zone = runtime.live.zones(alert.branch_id).get(alert.subject)
    now = zone.occupancy if zone is not None and alert.state != "resolved" else None
    # the rules keep the exact peak until the alert resolves; until then the highest seen by the alert or now
    seen = [v for v in (alert.peak, alert.value, now) if v is not None]
    peak = max(seen, default=None) if alert.rule == QUEUE_RULE else None
    if now is None:
        return t(locale, "page.peak", peak=rounded(peak)) if peak is not None else ""
    if peak is None:
        return t(locale, "page.people_now", value=now)
    return t(locale, "page.people_now_peak", value=now, peak=rounded(peak))


def shared_zone(branches: dict[str, BranchEntry]) -> ZoneInfo:
    """The branches' time zone when they share one (the usual case: a country has one), else UTC."""
    zones = {b.timezone for b in branches.values()}
    return ZoneInfo(zones.pop()) if len(zones) == 1 else ZoneInfo("UTC")


FACTS = re.compile(r"\w+=[^,]*(, \w+=[^,]*)*")


def event_detail(kind: str, detail: str, locale: str) -> str:
    """A timeline entry's detail in the person's words: the forms the alert service writes, translated; facts of
    the rules (`waited_s=26, presses=1`) left out, since the card above says them in a sentence."""
    words = catalog(locale)
    if FACTS.fullmatch(detail):
        return ""
    if kind in ("reminded", "escalated") and detail.startswith("to "):
        role = detail[3:]
        return t(locale, "page.asked", role=words.get(f"role.{role}", role))
    if kind == "acknowledged" and " via " in detail:
        by, _, channel = detail.rpartition(" via ")
        return t(locale, "page.detail.via", by=by, channel=words.get(f"channel.{channel}", channel))
    if kind == "passed_on" and " to " in detail:
        by, _, to = detail.partition(" to ")
        return t(locale, "page.detail.passed_on", by=by, to=to)
    if kind in ("notified", "notify_failed"):
        channel, _, rest = detail.partition(": ")
        named = words.get(f"channel.{channel}", channel)
        return f"{named}: {delivery_detail(rest, locale)}" if rest else named
    return detail


NOT_DELIVERED = re.compile(r"(?:\w+: )?not delivered to (?P<people>.+?)(?: after (?P<attempts>\d+) attempts)?")
GROUPED = re.compile(r"(?P<person>.+), grouped with (?P<more>\d+) more")


def delivery_detail(rest: str, locale: str) -> str:
    """What a channel said of a delivery (apprise's forms), in the reader's words; anything else as it came."""
    if found := NOT_DELIVERED.fullmatch(rest):
        if found["attempts"]:
            return t(locale, "page.detail.not_delivered_after", people=found["people"], attempts=found["attempts"])
        return t(locale, "page.detail.not_delivered", people=found["people"])
    if found := GROUPED.fullmatch(rest):
        return t(locale, "page.detail.grouped", person=found["person"], more=found["more"])
    return rest


def local_time(moment: datetime, branch: BranchEntry, runtime: Runtime) -> str:
    local = moment.astimezone(ZoneInfo(branch.timezone))
    today = runtime.clock.now().astimezone(ZoneInfo(branch.timezone)).date()
    return local.strftime("%H:%M") if local.date() == today else local.strftime("%Y-%m-%d %H:%M")
