"""What the alert service knows of each rule: its severity and who is asked first (unless the branch's routing
says otherwise), which rules are about a zone, and the message of each change, in a locale and the branch's time
zone (the catalog's keys `alert.<rule>.<change>.title|body`)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from zoneinfo import ZoneInfo

from lobbywatch.i18n import t
from server.registry import models
from server.registry.directory import BranchEntry
from server.rules.transitions import Transition


@dataclass(frozen=True)
class RuleSpec:
    severity: str
    role: str  # who is asked first: counter_staff, duty_supervisor, branch_manager, city_office, technician


RULES = {
    "queue_too_long": RuleSpec("warning", "duty_supervisor"),
    "wait_too_long": RuleSpec("warning", "duty_supervisor"),
    "call_unanswered": RuleSpec("critical", "counter_staff"),
    "device_offline": RuleSpec("warning", "technician"),
    "facility": RuleSpec("warning", "duty_supervisor"),  # the devices' own faults go to the technicians
    "not_open_on_time": RuleSpec("critical", "branch_manager"),
}
ZONE_RULES = frozenset({"queue_too_long", "wait_too_long"})


def severity(change: Transition, branch: BranchEntry) -> str:
    chosen = branch.routing.get(change.rule, (None, None))[0]
    if chosen:
        return chosen
    if change.rule == "call_unanswered" and change.facts().get("kind") != "accessibility":
        return "warning"  # the ramp bell is a person who cannot come in; the others can wait a little
    return RULES[change.rule].severity


def first_role(rule: str, facts: dict[str, object], branch: BranchEntry) -> str:
    """Who is asked first: a device's own fault always the technicians, else the branch's choice, else the rule's."""
    return str(facts.get("role") or branch.routing.get(rule, (None, None))[1] or RULES[rule].role)


def describe(
    alert: models.Alert, branch: BranchEntry, locale: str, change: str, at: datetime, facts: dict[str, object]
) -> tuple[str, str]:
    """Title and body of an alert at one of its changes, in `locale`, times in the branch's time zone."""
    local = at.astimezone(ZoneInfo(branch.timezone))
    subject_name = str(facts.get("subject_name") or alert.subject)
    kind = facts.get("kind")
    params = {
        **facts,
        "branch": branch.name,
        "subject": subject_name,
        "zone": subject_name,
        "value": rounded(alert.value),
        "peak": rounded(alert.peak),
        "threshold": rounded(alert.threshold),
        "time": local.strftime("%H:%M"),
    }
    if alert.rule == "call_unanswered" and isinstance(kind, str):
        params["kind"] = t(locale, f"call.{kind}")
    if alert.rule == "facility" and isinstance(kind, str):
        params["kind"] = t(locale, f"facility.kind.{kind}")
        params["problem"] = t(locale, f"facility.problem.{kind}")
        params["reading"] = rounded(number(facts.get("reading")))
    if change in ("reminded", "escalated"):
        # the message of when it fired, flagged: nobody has acknowledged it yet
        fired = f"alert.{alert.rule}.fired"
        title = t(
            locale, f"alert.{change}", title=t(locale, f"{fired}.title", **params), role=t(locale, f"role.{alert.role}")
        )
        return title, t(locale, f"{fired}.body", **params)
    if change == "resolved" and facts.get("reason") == "closed":  # ended by the branch closing, not by the lobby
        return (
            t(locale, "alert.closed.title", title=t(locale, f"alert.{alert.rule}.title", **params)),
            t(locale, "alert.closed.body", **params),
        )
    prefix = f"alert.{alert.rule}.{change}"
    return t(locale, f"{prefix}.title", **params), t(locale, f"{prefix}.body", **params)


def plain(facts: dict[str, object]) -> dict[str, object]:
    return {k: v if isinstance(v, str | int | float | bool) or v is None else str(v) for k, v in facts.items()}


def number(value: object) -> float | None:
    return float(value) if isinstance(value, int | float) else None


def rounded(value: float | None) -> object:
    if value is None:
        return "-"
    return int(value) if float(value).is_integer() else round(value, 1)
