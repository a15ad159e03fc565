"""An alert's severity and who is asked first (the branch's routing, else the rule kind's in
`server.rules.catalog`), and the message of each change, in a locale and the branch's time zone (the message
catalogs' keys `alert.<rule>.<change>.title|body`)."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

from lobbywatch.i18n import catalog, t
from server.registry import models
from server.registry.directory import BranchEntry
from server.rules.calls import RULE as CALL_RULE
from server.rules.catalog import KINDS, ZONE_RULES
from server.rules.facility import RULE as FACILITY_RULE
from server.rules.transitions import Transition

__all__ = ["ZONE_RULES", "describe", "first_role", "severity"]


def severity(change: Transition, branch: BranchEntry) -> str:
    """The branch's choice for the rule, else what the rule's kind says of these facts, else the kind's own."""
    chosen = branch.routing.get(change.rule, (None, None))[0]
    if chosen:
        return chosen
    kind = KINDS[change.rule]
    return kind.severity_for(change.facts()) or kind.severity


def first_role(rule: str, facts: dict[str, object], branch: BranchEntry) -> str:
    """Who is asked first: a device's own fault always the technicians, else the branch's choice, else the rule's."""
    return str(facts.get("role") or branch.routing.get(rule, (None, None))[1] or KINDS[rule].role)


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
    if alert.rule == CALL_RULE and isinstance(kind, str):
        params["kind"] = t(locale, f"call.{kind}")
    if alert.rule == FACILITY_RULE and isinstance(kind, str):
        params["kind"] = t(locale, f"facility.kind.{kind}")
        params["problem"] = problem_text(locale, kind, facts.get("problem"))
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


def problem_text(locale: str, kind: str, detail: object) -> str:
    """What is wrong, in the reader's words: a camera's reading says which of its problems it has (its detail
    begins with the code: moved, covered, ...), and a moved camera needs its zones and calibration done again."""
    code = str(detail or "").split(":", 1)[0].strip()
    specific = f"facility.problem.{kind}.{code}"
    return t(locale, specific) if code and specific in catalog(locale) else t(locale, f"facility.problem.{kind}")


def plain(facts: dict[str, object]) -> dict[str, object]:
    return {k: v if isinstance(v, str | int | float | bool) or v is None else str(v) for k, v in facts.items()}


def number(value: object) -> float | None:
    return float(value) if isinstance(value, int | float) else None


def rounded(value: float | None) -> object:
    if value is None:
        return "-"
    return int(value) if float(value).is_integer() else round(value, 1)
