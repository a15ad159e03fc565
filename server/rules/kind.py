"""What every part of the server needs to know of one kind of rule, declared by the rule's own module as its
`KIND`: how bad it is and who is asked first by default, what it is about, its messages, and how its state is
made to agree with the alerts still open after a restart. `server.rules.catalog` lists them; the rules' state,
the alert service, the site's routing and the message catalogs' checks iterate that list.

A new kind of rule is its module (its state, its transitions, its `KIND`), its messages in each language
(`alert.<name>.title`, `alert.<name>.<change>.title|body`), and the call that feeds it its input.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from server.rules.state import BranchState

Facts = dict[str, object]


@dataclass(frozen=True, slots=True)
class OpenAlert:
    """An alert open in the registry, as the rules need it after a restart."""

    rule: str
    branch: str
    subject: str
    peak: float
    started: float  # epoch seconds
    facts: Facts


def always(_facts: Facts) -> bool:
    return True


def never(_facts: Facts) -> bool:
    return False


@dataclass(frozen=True, slots=True)
class RuleKind:
    name: str
    severity: str  # critical, warning or info, unless the branch's routing says otherwise
    role: str  # who is asked first, unless the branch's routing (or the transition's facts) says otherwise
    inputs: str  # what feeds it, in a few words (for people reading the catalog)
    # (state, this kind's open alerts): forget what fired without an alert, take up what an alert says fired
    reconcile: Callable[[BranchState, list[OpenAlert]], None]
    about_zone: bool = False  # the subject is a zone: held back while the zone's count is unknown
    # about the lobby in opening hours (by the transition's facts): resolved when the branch closes
    lobby: Callable[[Facts], bool] = never
    severity_for: Callable[[Facts], str | None] = field(default=lambda _facts: None)  # by the facts, if need be
    changes: tuple[str, ...] = ("fired", "resolved")

    def message_keys(self) -> list[str]:
        keys = [f"alert.{self.name}.title"]
        for change in self.changes:
            keys += [f"alert.{self.name}.{change}.title", f"alert.{self.name}.{change}.body"]
        return keys
