"""Call buttons: a call is open from the first press until it is answered; unanswered past its deadline it
fires (and escalates, through the alert's lifecycle). Every call's response time is measured."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from server.rules.kind import Facts, OpenAlert, RuleKind
from server.rules.transitions import Change, Transition

if TYPE_CHECKING:
    from server.rules.state import BranchState

RULE = "call_unanswered"
# Seconds before an unanswered call fires, by kind. The bell at the ramp is a wheelchair user waiting outside.
DEADLINES_S = {"accessibility": 60.0, "help": 120.0, "priority": 120.0}


@dataclass(slots=True)
class OpenCall:
    kind: str
    pressed_at: float
    device: str = ""
    presses: int = 1
    fired: bool = False
    acknowledged_at: float | None = None  # its alert acknowledged: help is coming, the response time is taken


@dataclass(frozen=True, slots=True)
class Answered:
    button: str
    kind: str
    response_s: float


@dataclass(slots=True)
class CallTracker:
    branch: str
    deadlines_s: dict[str, float] = field(default_factory=lambda: dict(DEADLINES_S))
    open: dict[str, OpenCall] = field(default_factory=dict)

    def press(self, button: str, kind: str, at: float, device: str = "") -> None:
        call = self.open.get(button)
        if call is None:
            self.open[button] = OpenCall(kind, at, device)
        else:
            call.presses += 1  # pressed again while waiting: same call, and the wait goes on

    def acknowledge(self, button: str, at: float) -> Answered | None:
        """Its alert was acknowledged: somebody answers the call, so its response time ends now (once). The
        call stays open until it is answered at the button (or its alert resolved), so that the button's
        'help is coming' light stays on."""
        call = self.open.get(button)
        if call is None or call.acknowledged_at is not None:
            return None
        call.acknowledged_at = max(at, call.pressed_at)
        return Answered(button, call.kind, call.acknowledged_at - call.pressed_at)

    def answer(self, button: str, at: float) -> tuple[Answered | None, Transition | None]:
        """The call is answered at the button: its response time (None when its acknowledgement took it
        already), and the resolution of its alert if it had fired."""
        call = self.open.pop(button, None)
        if call is None:
            return None, None
        answered_at = call.acknowledged_at if call.acknowledged_at is not None else at
        answered = Answered(button, call.kind, answered_at - call.pressed_at)
        resolved = None
        if call.fired:
            resolved = Transition(
                RULE,
                self.branch,
                button,
                Change.RESOLVED,
                at,
                answered.response_s,
                detail=(("kind", call.kind), ("response_s", round(answered.response_s)), ("device", call.device)),
            )
        return (answered if call.acknowledged_at is None else None), resolved

    def tick(self, now: float) -> list[Transition]:
        fired = []
        for button, call in self.open.items():
            deadline = self.deadlines_s.get(call.kind, DEADLINES_S["help"])
            if not call.fired and call.acknowledged_at is None and now - call.pressed_at >= deadline:
                call.fired = True
                fired.append(
                    Transition(
                        RULE,
                        self.branch,
                        button,
                        Change.FIRED,
                        now,
                        now - call.pressed_at,
                        detail=(
                            ("kind", call.kind),
                            ("presses", call.presses),
                            ("waited_s", round(now - call.pressed_at)),
                            ("device", call.device),
                        ),
                    )
                )
        return fired


def reconcile(state: BranchState, alerts: list[OpenAlert]) -> None:
    """A call whose alert is not open any more fires again when due; an open alert's call is taken up."""
    fired = {a.subject for a in alerts}
    for button, call in state.calls.open.items():
        if call.fired and button not in fired:
            call.fired = False
    for alert in alerts:
        if alert.subject in state.calls.open:
            continue
        waited = alert.facts.get("waited_s")
        state.calls.open[alert.subject] = OpenCall(
            kind=str(alert.facts.get("kind") or "help"),
            pressed_at=alert.started - (float(waited) if isinstance(waited, int | float) else 0.0),
            device=str(alert.facts.get("device") or ""),
            fired=True,
        )


def severity(facts: Facts) -> str:
    # the ramp bell is a person who cannot come in; the others can wait a little
    return "critical" if facts.get("kind") == "accessibility" else "warning"


KIND = RuleKind(
    RULE,
    severity="critical",
    role="counter_staff",
    inputs="call-button presses and answers; the clock, for the deadline",
    reconcile=reconcile,
    severity_for=severity,
)
