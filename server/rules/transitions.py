"""What every rule says when it changes its mind: an alert fired or resolved, about a subject of a branch,
with the facts for its message. Rules make these; the ingest stores them, the alert service acts on them."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class Change(StrEnum):
    FIRED = "fired"
    RESOLVED = "resolved"


@dataclass(frozen=True, slots=True)
class Transition:
    rule: str
    branch: str
    subject: str  # zone, button or device key
    change: Change
    at: float
    value: float | None
    peak: float | None = None
    detail: tuple[tuple[str, object], ...] = ()  # rule-specific facts for the message, e.g. windows needed

    def facts(self) -> dict[str, object]:
        return dict(self.detail)
