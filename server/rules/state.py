"""One branch's rule state, as plain data in one place: what a worker exports when a branch moves away (or
saves before it acknowledges a batch) and loads when it takes the branch, and how the loaded state is made
to agree with the alerts that are open."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from server.rules.calls import CallTracker, OpenCall
from server.rules.catalog import KINDS
from server.rules.kind import OpenAlert
from server.rules.opening import OpeningWatch
from server.rules.presence import DeviceWatch
from server.rules.service_rate import ServiceLearner
from server.rules.threshold import ThresholdState

__all__ = ["BranchState", "OpenAlert"]


@dataclass(slots=True)
class BranchState:
    branch: str
    thresholds: dict[str, ThresholdState] = field(default_factory=dict)
    service: dict[str, ServiceLearner] = field(default_factory=dict)  # per zone
    # thresholds about the lobby in opening hours (queue, wait, comfort): they end when the branch closes
    lobby: set[str] = field(default_factory=set)
    open_now: bool | None = None  # as last looked at by the opening hours
    calls: CallTracker = field(init=False)
    devices: DeviceWatch = field(init=False)
    opening: OpeningWatch = field(init=False)

    def __post_init__(self) -> None:
        self.calls = CallTracker(self.branch)
        self.devices = DeviceWatch(self.branch)
        self.opening = OpeningWatch(self.branch)

    # Plain JSON-able data (never pickle: it may cross a shared log).
    def to_data(self, settled: dict[str, Any] | None = None) -> dict[str, object]:
        """`settled`: this state's `settled()`, when the caller has just made it (left unchanged)."""
        settled = settled or self.settled()
        return {
            **settled,
            "devices": {**settled["devices"], "last_seen": dict(self.devices.last_seen)},
            "service": {zone: asdict(learner) for zone, learner in self.service.items()},
            "opening": asdict(self.opening),
        }

    def settled(self) -> dict[str, Any]:
        """The state without what every count moves (the presence watch's times, the service learners, the
        lobby's last activity to the minute): what a save must not wait for. The presence times mean nothing
        after a load (`reconcile` gives every device its grace from then), the learners' evidence is hours of
        it, and the first activity of each minute is saved at once (the opening rule asks whether there was any
        in the quarter of an hour before the opening), so the rest is saved now and then instead."""
        activity = self.opening.last_activity
        return {
            "thresholds": {key: asdict(t) for key, t in self.thresholds.items()},
            "calls": {
                "deadlines_s": self.calls.deadlines_s,
                "open": {button: asdict(call) for button, call in self.calls.open.items()},
            },
            "devices": {
                "silence_s": self.devices.silence_s,
                "seen": sorted(self.devices.last_seen),
                "offline": sorted(self.devices.offline),
                "wills": self.devices.wills,
            },
            "opening": {
                "activity_minute": None if activity is None else int(activity // 60),
                "checked_opening": self.opening.checked_opening,
                "firing": self.opening.firing,
            },
            "lobby": sorted(self.lobby),
            "open_now": self.open_now,
        }

    @classmethod
    def from_data(cls, branch: str, data: dict[str, Any]) -> BranchState:
        state = cls(branch)
        state.thresholds = {key: ThresholdState(**t) for key, t in data["thresholds"].items()}
        state.calls.deadlines_s = dict(data["calls"]["deadlines_s"])
        state.calls.open = {button: OpenCall(**call) for button, call in data["calls"]["open"].items()}
        state.devices.silence_s = float(data["devices"]["silence_s"])
        state.devices.last_seen = dict(data["devices"]["last_seen"])
        state.devices.offline = set(data["devices"]["offline"])
        state.devices.wills = dict(data["devices"].get("wills", {}))
        state.opening = OpeningWatch(**data["opening"])
        state.lobby = set(data.get("lobby", ()))
        state.open_now = data.get("open_now")
        state.service = {zone: _learner(saved) for zone, saved in data.get("service", {}).items()}
        return state

    def reconcile(self, open_alerts: list[OpenAlert], now: float) -> None:
        """After a restart: make the loaded state agree with this branch's open alerts, kind by kind. The alerts
        are the truth of what fired (their writes may have been lost after the state was saved, or the other way
        round). Devices get a silence's grace from now: nobody was listening while the server was down."""
        for name, kind in KINDS.items():
            kind.reconcile(self, [a for a in open_alerts if a.rule == name])
        self.devices.resume(now)


def _learner(saved: dict[str, Any]) -> ServiceLearner:
    # JSON gives lists where the state holds tuples
    fall, rise = saved.get("fall"), saved.get("rise")
    return ServiceLearner(
        busy_min=saved["busy_min"],
        served=saved["served"],
        arrived=saved["arrived"],
        windows=saved["windows"],
        level=saved.get("level"),
        at=saved.get("at"),
        fall=tuple(fall) if fall else None,
        rise=tuple(rise) if rise else None,
    )
