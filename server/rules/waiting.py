"""Projected waiting time from the queue now, the windows open and the service-time standards.

A newcomer who finds n people waiting and every one of c windows busy waits for n + 1 services to end; with
services that end at random (exponential, mean s) at c windows, that takes (n + 1) * s / c on average (the
M/M/c queue seen from the state it is in, which is what Erlang C averages over). With nobody waiting we cannot
tell whether a window is free, and say 0.
"""

from __future__ import annotations

import math

from server.rules.kind import RuleKind, always
from server.rules.threshold import threshold_reconciler

# The branch standards' mix (mail 3 min 35%, savings 4 min 25%, remittance 6 min 15%, stamp pickup 3 min 10%,
# subscription 3 min 10% / 5 min 5%): 3.8 minutes a customer on average.
STANDARD_SERVICE_MIN = 3.8


def projected_wait_min(waiting: int, windows_open: int, service_min: float = STANDARD_SERVICE_MIN) -> float:
    if windows_open < 1:
        raise ValueError("at least one window must be open")
    if waiting <= 0:
        return 0.0
    return (waiting + 1) * service_min / windows_open


def windows_needed(waiting: int, target_min: float, service_min: float = STANDARD_SERVICE_MIN) -> int:
    """The fewest open windows that bring the projected wait to the target or under."""
    if waiting <= 0:
        return 1
    return max(1, math.ceil((waiting + 1) * service_min / target_min))


RULE = "wait_too_long"

KIND = RuleKind(
    RULE,
    severity="warning",
    role="duty_supervisor",
    inputs="the projected wait of a newcomer, from the count, the windows open and the service time",
    reconcile=threshold_reconciler(RULE, always),
    about_zone=True,
    lobby=always,
)
