"""Queue too long: occupancy at or over a threshold for a while fires; at or below a lower level for a while clears.

Evaluated on each occupancy report (agents report at least every 10 s), with the device's timestamps, so the
same messages give the same alerts live and in replay. An unknown count (camera blind) neither fires nor clears.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


@dataclass(frozen=True, slots=True)
class QueueRule:
    threshold: int
    for_s: float
    clear_below: int
    clear_for_s: float

    def __post_init__(self) -> None:
        if self.clear_below >= self.threshold:
            raise ValueError("clear_below must be below threshold")


class Change(StrEnum):
    FIRED = "fired"
    RESOLVED = "resolved"


@dataclass(frozen=True, slots=True)
class Transition:
    change: Change
    at: float
    value: int
    peak: int


@dataclass(slots=True)
class QueueState:
    """Plain data, so a branch's state can be saved and loaded when the branch moves to another worker."""

    firing: bool = False
    over_since: float | None = None
    under_since: float | None = None
    peak: int = 0


def step(rule: QueueRule, state: QueueState, value: int | None, at: float) -> Transition | None:
    if value is None:
        return None
    return _while_firing(rule, state, value, at) if state.firing else _while_quiet(rule, state, value, at)


def _while_quiet(rule: QueueRule, state: QueueState, value: int, at: float) -> Transition | None:
    if value < rule.threshold:
        state.over_since = None
        return None
    if state.over_since is None:
        state.over_since = at
    if at - state.over_since < rule.for_s:
        return None
    state.firing, state.under_since, state.peak = True, None, value
    return Transition(Change.FIRED, at, value, value)


def _while_firing(rule: QueueRule, state: QueueState, value: int, at: float) -> Transition | None:
    state.peak = max(state.peak, value)
    if value > rule.clear_below:
        state.under_since = None
        return None
    if state.under_since is None:
        state.under_since = at
    if at - state.under_since >= rule.clear_for_s:
        peak = state.peak
        state.firing, state.over_since, state.under_since, state.peak = False, None, None, 0
        return Transition(Change.RESOLVED, at, value, peak)
    return None
