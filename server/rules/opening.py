"""Branch not open on time: at the scheduled opening (plus a grace), nothing in the lobby has moved since staff
should have been there (the standards: at their posts 10 minutes before opening, never opening late).

Activity is people counted, a call button pressed, or a door opened. Pure: fed activity times and ticks.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo

from server.rules.kind import OpenAlert, RuleKind
from server.rules.schedule import OpeningHours
from server.rules.transitions import Change, Transition

if TYPE_CHECKING:
    from server.rules.state import BranchState

RULE = "not_open_on_time"
GRACE_S = 300.0  # the lobby may take five minutes to show it is open
BEFORE_S = 900.0  # activity from a quarter of an hour before the opening counts


@dataclass(slots=True)
class OpeningWatch:
    branch: str
    last_activity: float | None = None
    checked_opening: float | None = None  # the opening already judged (epoch seconds)
    firing: bool = False

    def activity(self, at: float) -> Transition | None:
        self.last_activity = max(at, self.last_activity or at)
        if self.firing:
            self.firing = False
            return Transition(RULE, self.branch, "lobby", Change.RESOLVED, at, None)
        return None

    def tick(self, now: float, hours: OpeningHours) -> Transition | None:
        # the latest opening at or before now - grace
        moment = datetime.fromtimestamp(now - GRACE_S, UTC)
        opening = hours.opening_after(moment - timedelta(days=1))
        while True:
            following = hours.opening_after(datetime.fromtimestamp(opening.timestamp() + 1, UTC))
            if following.timestamp() > now - GRACE_S:
                break
            opening = following
        opened = opening.timestamp()
        if opened > now - GRACE_S or opened == self.checked_opening:
            return None
        first_look = self.checked_opening is None
        self.checked_opening = opened
        if first_look:
            return None  # started after this opening: nobody was watching, so no blame
        if self.last_activity is not None and self.last_activity >= opened - BEFORE_S:
            return None
        self.firing = True
        local = opening.astimezone(ZoneInfo(hours.timezone))
        return Transition(
            RULE, self.branch, "lobby", Change.FIRED, now, None, detail=(("opening", local.strftime("%H:%M")),)
        )


def reconcile(state: BranchState, alerts: list[OpenAlert]) -> None:
    state.opening.firing = bool(alerts)


KIND = RuleKind(
    RULE,
    severity="critical",
    role="branch_manager",
    inputs="activity in the lobby (people counted, a call, a door opened); the opening hours and the clock",
    reconcile=reconcile,
)
