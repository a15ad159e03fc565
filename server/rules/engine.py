"""Rule state per branch. One worker owns a branch; `export_branch`/`load_branch` move it between workers.

Observations come in with their time and whether the branch is open; time-driven rules (call deadlines, device
silence) advance on `tick`. Everything returns `Transition`s for the alert service to act on.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

from server.rules import facility
from server.rules.calls import RULE as CALL_RULE
from server.rules.calls import Answered, CallTracker, OpenCall
from server.rules.opening import RULE as OPENING_RULE
from server.rules.opening import OpeningWatch
from server.rules.presence import DeviceWatch
from server.rules.schedule import OpeningHours
from server.rules.service_rate import ServiceLearner
from server.rules.threshold import ThresholdRule, ThresholdState, step
from server.rules.transitions import Change, Transition
from server.rules.waiting import projected_wait_min, windows_needed

QUEUE_TOO_LONG = "queue_too_long"
WAIT_TOO_LONG = "wait_too_long"


@dataclass(frozen=True, slots=True)
class ZoneRules:
    queue: ThresholdRule  # people
    wait: ThresholdRule | None  # projected minutes; None: off
    windows_open: int
    service_min: float


@dataclass(frozen=True, slots=True)
class Projection:
    wait_min: float
    windows_needed: int
    service_min: float
    service_learnt: bool
    target_min: float | None


@dataclass(frozen=True, slots=True)
class OpenAlert:
    """An alert open in the registry, as the rules need it after a restart."""

    rule: str
    branch: str
    subject: str
    peak: float
    started: float  # epoch seconds
    facts: dict[str, object]


@dataclass(slots=True)
class BranchState:
    branch: str
    thresholds: dict[str, ThresholdState] = field(default_factory=dict)
    service: dict[str, ServiceLearner] = field(default_factory=dict)  # per zone
    # thresholds about the lobby in opening hours (queue, wait, comfort): they end when the branch closes
    lobby: set[str] = field(default_factory=set)
    open_now: bool | None = None  # as last looked at by `hours`
    calls: CallTracker = field(init=False)
    devices: DeviceWatch = field(init=False)
    opening: OpeningWatch = field(init=False)

    def __post_init__(self) -> None:
        self.calls = CallTracker(self.branch)
        self.devices = DeviceWatch(self.branch)
        self.opening = OpeningWatch(self.branch)


class RuleEngine:
    def __init__(self) -> None:
        self._branches: dict[str, BranchState] = {}
        self._hearing = True

    def _branch(self, branch: str) -> BranchState:
        state = self._branches.get(branch)
        if state is None:
            state = self._branches[branch] = BranchState(branch)
            state.devices.paused = not self._hearing
        return state

    def _threshold(
        self,
        rule: str,
        branch: str,
        subject: str,
        limits: ThresholdRule,
        value: float | None,
        at: float,
        detail: tuple[tuple[str, object], ...] = (),
    ) -> Transition | None:
        here = self._branch(branch)
        key = f"{rule}/{subject}"
        if rule in (QUEUE_TOO_LONG, WAIT_TOO_LONG) or dict(detail).get("kind") in facility.LOBBY_KINDS:
            here.lobby.add(key)
        state = here.thresholds.setdefault(key, ThresholdState())
        moved = step(limits, state, value, at)
        if moved is None:
            return None
        return Transition(rule, branch, subject, moved.change, at, moved.value, moved.peak, detail)

    def occupancy(
        self, branch: str, zone: str, rules: ZoneRules, value: int | None, at: float, open_now: bool, device: str = ""
    ) -> list[Transition]:
        """`device`: the camera counting the zone; its alerts rest on its data (held while it is offline)."""
        counted = value if open_now else None  # the rules are about opening hours
        queue_facts = (
            ("threshold", rules.queue.fire_at),
            ("minutes", round(rules.queue.for_s / 60, 1)),
            ("device", device),
        )
        out = [self._threshold(QUEUE_TOO_LONG, branch, zone, rules.queue, counted, at, queue_facts)]
        learner = self._branch(branch).service.setdefault(zone, ServiceLearner())
        learner.observe(counted, at, rules.windows_open)
        if rules.wait is not None:
            seen = self.projection(branch, zone, rules, counted or 0)
            wait = None if counted is None else seen.wait_min
            detail = (
                ("threshold", rules.wait.fire_at),
                ("windows_open", rules.windows_open),
                ("windows_needed", seen.windows_needed),
                ("more_windows", max(0, seen.windows_needed - rules.windows_open)),
                ("waiting", counted),
                ("wait_min", None if wait is None else round(wait, 1)),
                ("service_min", round(seen.service_min, 2)),
                ("service_learnt", seen.service_learnt),
                ("device", device),
            )
            out.append(self._threshold(WAIT_TOO_LONG, branch, zone, rules.wait, wait, at, detail))
        return [t for t in out if t is not None]

    def projection(self, branch: str, zone: str, rules: ZoneRules, waiting: int) -> Projection:
        """The projected wait for a newcomer now, with the service time learnt so far (or the standard)."""
        learner = self._branch(branch).service.get(zone)
        service = learner.service_min(rules.service_min) if learner else rules.service_min
        target = rules.wait.fire_at if rules.wait is not None else None
        return Projection(
            wait_min=projected_wait_min(waiting, rules.windows_open, service),
            windows_needed=windows_needed(waiting, target, service) if target else rules.windows_open,
            service_min=service,
            service_learnt=bool(learner and learner.learnt()),
            target_min=target,
        )

    def call(
        self,
        branch: str,
        button: str,
        kind: str,
        answered: bool,
        at: float,
        open_now: bool,
        device: str = "",
        deadlines_s: dict[str, float] | None = None,
    ) -> tuple[list[Transition], Answered | None]:
        calls = self._branch(branch).calls
        if deadlines_s:
            calls.deadlines_s.update(deadlines_s)  # the branch's own, from its config
        if not answered:
            if open_now:
                calls.press(button, kind, at, device)
            return [], None
        done, resolved = calls.answer(button, at)
        return ([resolved] if resolved else []), done

    def call_acknowledged(self, branch: str, button: str, at: float) -> Answered | None:
        """A call's alert acknowledged by a person: the call's response time, once."""
        return self._branch(branch).calls.acknowledge(button, at)

    def call_closed(self, branch: str, button: str) -> None:
        """A call's alert resolved by a person: the call is over, whatever the button says later."""
        self._branch(branch).calls.open.pop(button, None)

    def facility(
        self,
        branch: str,
        device: str,
        sensor: str,
        kind: str,
        value: float | None,
        ok: bool,
        detail: str | None,
        at: float,
        open_now: bool,
    ) -> list[Transition]:
        if self.device_offline(branch, device):
            return []  # inhibited: the device's silence is the technicians' alert, not the lobby's
        verdict = facility.judge(kind, value, ok, open_now)
        facts = (
            ("kind", kind),
            ("sensor", sensor),
            ("reading", value),
            ("problem", detail or ""),
            ("device", device),
            *((("role", verdict.role),) if verdict.role else ()),
        )
        moved = self._threshold(facility.RULE, branch, f"{device}/{sensor}", verdict.rule, verdict.bad, at, facts)
        return [moved] if moved else []

    def clock_skew(self, branch: str, device: str, skew_ms: float | None, at: float) -> list[Transition]:
        verdict = facility.clock_skew(skew_ms)
        facts = (
            ("kind", "clock_skew"),
            ("sensor", "clock"),
            ("reading", skew_ms),
            ("device", device),
            ("problem", f"device clock {skew_ms:+.0f} ms from the server's" if skew_ms is not None else ""),
            ("role", verdict.role),
        )
        moved = self._threshold(facility.RULE, branch, f"{device}/clock-skew", verdict.rule, verdict.bad, at, facts)
        return [moved] if moved else []

    def device_seen(self, branch: str, device: str, at: float) -> list[Transition]:
        back = self._branch(branch).devices.seen(device, at)
        return [back] if back else []

    def device_gone(self, branch: str, device: str, at: float) -> list[Transition]:
        gone = self._branch(branch).devices.gone(device, at, "last will")
        return [gone] if gone else []

    def device_offline(self, branch: str, device: str) -> bool:
        return self._branch(branch).devices.is_offline(device)

    def offline_devices(self) -> frozenset[tuple[str, str]]:
        """Every (branch, device) offline now."""
        return frozenset((b, d) for b, state in self._branches.items() for d in state.devices.offline)

    def activity(self, branch: str, at: float) -> list[Transition]:
        """People counted, a call, a door opened: the lobby is open."""
        back = self._branch(branch).opening.activity(at)
        return [back] if back else []

    def hours(self, branch: str, hours: OpeningHours, now: float) -> list[Transition]:
        """Look at the opening hours now: a branch not open on time fires; at closing, every alert about the
        lobby in opening hours (queue, wait, comfort) resolves, since nobody can act on it until the branch
        opens again, and its input is unknown all night. Alerts meant for the night (a door open, a device
        fault, a call still waiting) go on."""
        state = self._branch(branch)
        late = state.opening.tick(now, hours)
        out = [late] if late else []
        open_now = hours.is_open(datetime.fromtimestamp(now, UTC))
        if state.open_now and not open_now:
            out.extend(self._close(state, now))
        state.open_now = open_now
        return out

    def _close(self, state: BranchState, now: float) -> list[Transition]:
        out = []
        for key in sorted(state.lobby):
            threshold = state.thresholds.get(key)
            if threshold is None or not threshold.firing:
                continue
            rule, subject = key.split("/", 1)
            out.append(
                Transition(
                    rule, state.branch, subject, Change.RESOLVED, now, None, threshold.peak, (("reason", "closed"),)
                )
            )
            state.thresholds[key] = ThresholdState()
        if state.opening.firing:  # never opened all day: the day is over, the branch manager has the alert's record
            state.opening.firing = False
            out.append(
                Transition(
                    OPENING_RULE, state.branch, "lobby", Change.RESOLVED, now, None, detail=(("reason", "closed"),)
                )
            )
        return out

    def presence(self, hearing: bool, now: float) -> None:
        """Whether the server hears the broker now: while it does not, no device is judged offline; when it
        hears again, every device gets its grace from now."""
        self._hearing = hearing
        for state in self._branches.values():
            if hearing and state.devices.paused:
                state.devices.resume(now)
            elif not hearing:
                state.devices.pause()

    def tick(self, now: float) -> list[Transition]:
        out: list[Transition] = []
        for state in self._branches.values():
            out.extend(state.calls.tick(now))
            out.extend(state.devices.tick(now))
        return out

    def service(self, branch: str, zone: str) -> ServiceLearner | None:
        state = self._branches.get(branch)
        return state.service.get(zone) if state else None

    def service_evidence(self) -> dict[tuple[str, str], ServiceLearner]:
        """What has been learnt of every zone's service time, to keep over a restart."""
        return {(b, z): learner for b, state in self._branches.items() for z, learner in state.service.items()}

    def restore_service(self, branch: str, zone: str, evidence: ServiceLearner) -> None:
        self._branch(branch).service[zone] = evidence

    def branches(self) -> list[str]:
        return list(self._branches)

    def reconcile(self, open_alerts: list[OpenAlert], now: float) -> None:
        """After a restart: make the loaded state agree with the alerts that are open. The alerts are the truth
        of what fired (their writes may have been lost after the state was saved, or the other way round): a
        state firing with no open alert fires again when due (an alert is never lost); an open alert with no
        state gets one, so that it can clear (and is never fired twice). Devices get a silence's grace from
        now: nobody was listening while the server was down."""
        open_keys = {(a.rule, a.branch, a.subject) for a in open_alerts}
        for state in self._branches.values():
            for key, threshold in state.thresholds.items():
                rule, subject = key.split("/", 1)
                if threshold.firing and (rule, state.branch, subject) not in open_keys:
                    state.thresholds[key] = ThresholdState()
            for button, call in state.calls.open.items():
                if call.fired and (CALL_RULE, state.branch, button) not in open_keys:
                    call.fired = False
            state.devices.offline &= {d for (r, b, d) in open_keys if r == "device_offline" and b == state.branch}
            state.opening.firing = (OPENING_RULE, state.branch, "lobby") in open_keys
            state.devices.resume(now)
        for alert in open_alerts:
            self._mark_firing(alert)

    def _mark_firing(self, alert: OpenAlert) -> None:
        state = self._branch(alert.branch)
        key = f"{alert.rule}/{alert.subject}"
        if alert.rule in (QUEUE_TOO_LONG, WAIT_TOO_LONG, facility.RULE):
            if not state.thresholds.get(key, ThresholdState()).firing:
                state.thresholds[key] = ThresholdState(firing=True, peak=alert.peak)
            if alert.rule != facility.RULE or alert.facts.get("kind") in facility.LOBBY_KINDS:
                state.lobby.add(key)
        elif alert.rule == "device_offline":
            state.devices.offline.add(alert.subject)
        elif alert.rule == CALL_RULE and alert.subject not in state.calls.open:
            waited = alert.facts.get("waited_s")
            state.calls.open[alert.subject] = OpenCall(
                kind=str(alert.facts.get("kind") or "help"),
                pressed_at=alert.started - (float(waited) if isinstance(waited, int | float) else 0.0),
                device=str(alert.facts.get("device") or ""),
                fired=True,
            )
        elif alert.rule == OPENING_RULE:
            state.opening.firing = True

    # Moving a branch: its whole state as plain JSON-able data (never pickle: it may cross a shared log).
    def export_branch(self, branch: str) -> dict[str, object]:
        state = self._branches.get(branch, BranchState(branch))
        return {
            "thresholds": {key: asdict(t) for key, t in state.thresholds.items()},
            "calls": {
                "deadlines_s": state.calls.deadlines_s,
                "open": {button: asdict(call) for button, call in state.calls.open.items()},
            },
            "devices": {
                "silence_s": state.devices.silence_s,
                "last_seen": state.devices.last_seen,
                "offline": sorted(state.devices.offline),
                "wills": state.devices.wills,
            },
            "opening": asdict(state.opening),
            "lobby": sorted(state.lobby),
            "open_now": state.open_now,
            "service": {zone: asdict(learner) for zone, learner in state.service.items()},
        }

    def load_branch(self, branch: str, data: dict[str, Any]) -> None:
        state = BranchState(branch)
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
        self._branches[branch] = state


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


__all__ = ["QUEUE_TOO_LONG", "WAIT_TOO_LONG", "Change", "RuleEngine", "ZoneRules"]
