"""One branch's rules: observations come in with their time and whether the branch is open; time-driven rules
(call deadlines, device silence) advance on `tick`. Everything returns `Transition`s for the alert service to
act on. The state is plain data (`server.rules.state`), so a branch moves between workers as JSON.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from server.rules import facility
from server.rules.calls import Answered
from server.rules.catalog import KINDS
from server.rules.opening import RULE as OPENING_RULE
from server.rules.queue import RULE as QUEUE_TOO_LONG
from server.rules.schedule import OpeningHours
from server.rules.service_rate import ServiceLearner
from server.rules.state import BranchState
from server.rules.threshold import ThresholdRule, ThresholdState, step
from server.rules.transitions import Change, Transition
from server.rules.waiting import RULE as WAIT_TOO_LONG
from server.rules.waiting import projected_wait_min, windows_needed


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


class BranchRules:
    def __init__(self, state: BranchState, hearing: bool = True) -> None:
        """`hearing`: whether the server hears the broker as the branch is taken (devices are not judged while
        it does not)."""
        self.state = state
        self.branch = state.branch
        state.devices.paused = state.devices.paused or not hearing

    def _threshold(
        self,
        rule: str,
        subject: str,
        limits: ThresholdRule,
        value: float | None,
        at: float,
        detail: tuple[tuple[str, object], ...] = (),
    ) -> Transition | None:
        key = f"{rule}/{subject}"
        if KINDS[rule].lobby(dict(detail)):
            self.state.lobby.add(key)
        state = self.state.thresholds.setdefault(key, ThresholdState())
        moved = step(limits, state, value, at)
        if moved is None:
            return None
        return Transition(rule, self.branch, subject, moved.change, at, moved.value, moved.peak, detail)

    def occupancy(
        self, zone: str, rules: ZoneRules, value: int | None, at: float, open_now: bool, device: str = ""
    ) -> list[Transition]:
        """`device`: the camera counting the zone; its alerts rest on its data (held while it is offline)."""
        counted = value if open_now else None  # the rules are about opening hours
        queue_facts = (
            ("threshold", rules.queue.fire_at),
            ("minutes", round(rules.queue.for_s / 60, 1)),
            ("device", device),
        )
        out = [self._threshold(QUEUE_TOO_LONG, zone, rules.queue, counted, at, queue_facts)]
        learner = self.state.service.setdefault(zone, ServiceLearner())
        learner.observe(counted, at, rules.windows_open)
        if rules.wait is not None:
            seen = self.projection(zone, rules, counted or 0)
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
            out.append(self._threshold(WAIT_TOO_LONG, zone, rules.wait, wait, at, detail))
        return [t for t in out if t is not None]

    def projection(self, zone: str, rules: ZoneRules, waiting: int) -> Projection:
        """The projected wait for a newcomer now, with the service time learnt so far (or the standard)."""
        learner = self.state.service.get(zone)
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
        button: str,
        kind: str,
        answered: bool,
        at: float,
        open_now: bool,
        device: str = "",
        deadlines_s: dict[str, float] | None = None,
    ) -> tuple[list[Transition], Answered | None]:
        calls = self.state.calls
        if deadlines_s:
            calls.deadlines_s.update(deadlines_s)  # the branch's own, from its config
        if not answered:
            if open_now:
                calls.press(button, kind, at, device)
            return [], None
        done, resolved = calls.answer(button, at)
        return ([resolved] if resolved else []), done

    def call_acknowledged(self, button: str, at: float) -> Answered | None:
        """A call's alert acknowledged by a person: the call's response time, once."""
        return self.state.calls.acknowledge(button, at)

    def call_closed(self, button: str) -> None:
        """A call's alert resolved by a person: the call is over, whatever the button says later."""
        self.state.calls.open.pop(button, None)

    def facility(
        self,
        device: str,
        sensor: str,
        kind: str,
        value: float | None,
        ok: bool,
        detail: str | None,
        at: float,
        open_now: bool,
    ) -> list[Transition]:
        if self.device_offline(device):
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
        moved = self._threshold(facility.RULE, f"{device}/{sensor}", verdict.rule, verdict.bad, at, facts)
        return [moved] if moved else []

    def clock_skew(self, device: str, skew_ms: float | None, at: float) -> list[Transition]:
        verdict = facility.clock_skew(skew_ms)
        facts = (
            ("kind", "clock_skew"),
            ("sensor", "clock"),
            ("reading", skew_ms),
            ("device", device),
            ("problem", f"device clock {skew_ms:+.0f} ms from the server's" if skew_ms is not None else ""),
            ("role", verdict.role),
        )
        moved = self._threshold(facility.RULE, f"{device}/clock-skew", verdict.rule, verdict.bad, at, facts)
        return [moved] if moved else []

    def device_seen(self, device: str, at: float) -> list[Transition]:
        back = self.state.devices.seen(device, at)
        return [back] if back else []

    def device_gone(self, device: str, at: float) -> list[Transition]:
        gone = self.state.devices.gone(device, at, "last will")
        return [gone] if gone else []

    def device_offline(self, device: str) -> bool:
        return self.state.devices.is_offline(device)

    def activity(self, at: float) -> list[Transition]:
        """People counted, a call, a door opened: the lobby is open."""
        back = self.state.opening.activity(at)
        return [back] if back else []

    def hours(self, hours: OpeningHours, now: float) -> list[Transition]:
        """Look at the opening hours now: a branch not open on time fires; at closing, every alert about the
        lobby in opening hours (queue, wait, comfort) resolves, since nobody can act on it until the branch
        opens again, and its input is unknown all night. Alerts meant for the night (a door open, a device
        fault, a call still waiting) go on."""
        state = self.state
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
        if hearing and self.state.devices.paused:
            self.state.devices.resume(now)
        elif not hearing:
            self.state.devices.pause()

    def tick(self, now: float) -> list[Transition]:
        return [*self.state.calls.tick(now), *self.state.devices.tick(now)]

    def service(self, zone: str) -> ServiceLearner | None:
        return self.state.service.get(zone)

    def restore_service(self, zone: str, evidence: ServiceLearner) -> None:
        self.state.service[zone] = evidence
