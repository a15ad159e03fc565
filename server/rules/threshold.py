"""A value at or over a level for a while fires; at or below a lower level for a while clears (hysteresis).

Queue too long (people) and wait too long (minutes) are both this. Evaluated on each observation, with the
device's timestamps, so the same messages give the same alerts live and in replay. An unknown value (camera
blind, branch closed) neither fires nor clears.
"""

from __future__ import annotations

from dataclasses import dataclass

from server.rules.transitions import Change


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
