"""A value at or over a level for a while fires; at or below a lower level for a while clears (hysteresis).

Queue too long (people) and wait too long (minutes) are both this. Evaluated on each observation, with the
device's timestamps, so the same messages give the same alerts live and in replay. An unknown value (camera
blind, branch closed) neither fires nor clears.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from server.rules.kind import Facts, OpenAlert
from server.rules.transitions import Change

if TYPE_CHECKING:
    from server.rules.state import BranchState


@dataclass(frozen=True, slots=True)
class ThresholdRule:
    fire_at: float
    for_s: float
    clear_at: float
    clear_for_s: float

    def __post_init__(self) -> None:
        if self.clear_at >= self.fire_at:
            raise ValueError("the clearing level must be below the firing level")


@dataclass(slots=True)
class ThresholdState:
    """Plain data, so a branch's state can be saved and loaded when the branch moves to another worker."""

    firing: bool = False
    over_since: float | None = None
    under_since: float | None = None
    peak: float = 0.0


@dataclass(frozen=True, slots=True)
class Step:
    change: Change
    value: float
    peak: float


def step(rule: ThresholdRule, state: ThresholdState, value: float | None, at: float) -> Step | None:
    if value is None:
        return None
    return _while_firing(rule, state, value, at) if state.firing else _while_quiet(rule, state, value, at)


def _while_quiet(rule: ThresholdRule, state: ThresholdState, value: float, at: float) -> Step | None:
    if value < rule.fire_at:
        state.over_since = None
        return None
    if state.over_since is None:
        state.over_since = at
    if at - state.over_since < rule.for_s:
        return None
    state.firing, state.under_since, state.peak = True, None, value
    return Step(Change.FIRED, value, value)


def _while_firing(rule: ThresholdRule, state: ThresholdState, value: float, at: float) -> Step | None:
    state.peak = max(state.peak, value)
    if value > rule.clear_at:
        state.under_since = None
        return None
    if state.under_since is None:
        state.under_since = at
    if at - state.under_since < rule.clear_for_s:
        return None
    peak = state.peak
    state.firing, state.over_since, state.under_since, state.peak = False, None, None, 0.0
    return Step(Change.RESOLVED, value, peak)


def threshold_reconciler(rule: str, lobby: Callable[[Facts], bool]) -> Callable[[BranchState, list[OpenAlert]], None]:
    """How a threshold kind's state agrees with its open alerts after a restart: a subject firing with no open
    alert starts again (it fires again when due: an alert is never lost); an open alert with no state gets one,
    at its peak, so that it can clear (and never fires twice)."""
    prefix = f"{rule}/"

    def reconcile(state: BranchState, alerts: list[OpenAlert]) -> None:
        open_subjects = {a.subject for a in alerts}
        for key, threshold in state.thresholds.items():
            if key.startswith(prefix) and threshold.firing and key[len(prefix) :] not in open_subjects:
                state.thresholds[key] = ThresholdState()
        for alert in alerts:
            key = prefix + alert.subject
            if not state.thresholds.get(key, ThresholdState()).firing:
                state.thresholds[key] = ThresholdState(firing=True, peak=alert.peak)
            if lobby(alert.facts):
                state.lobby.add(key)

    return reconcile
