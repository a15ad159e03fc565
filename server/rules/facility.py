"""Facility out of range: a sensor reading that stays not ok, or a door open after hours, fires; the lobby's
comfort and equipment only matter in opening hours, the devices' own faults always (for the technicians).

The device judges its readings against its limits (`ok`); the door is judged here, against the opening hours.
A reading from a device that is offline never comes, and its alerts wait: inhibition is the caller's.
"""

from __future__ import annotations

from dataclasses import dataclass

from server.rules.kind import Facts, RuleKind
from server.rules.threshold import ThresholdRule, threshold_reconciler

RULE = "facility"
DOOR = "door"
# Kinds that concern the lobby (opening hours only, the duty supervisor) and those that concern the device.
LOBBY_KINDS = frozenset({"temperature", "humidity", "light", "equipment"})
DEVICE_KINDS = frozenset({"camera", "board_temperature", "clock", "outbox"})
# How long a problem must last: long enough that a door held open or a sensor's glitch does not page anyone.
LASTS_S = {"equipment": 120.0, "door": 120.0, "camera": 60.0, "outbox": 0.0}  # data lost: at once
DEFAULT_LASTS_S = 300.0
CLEARS_S = 60.0
# Device clock minus server clock beyond which the device's timestamps are not to be trusted; for this long,
# so that one late message (the offset is estimated from the freshest ones) never pages anyone.
CLOCK_SKEW_LIMIT_MS = 5000.0
CLOCK_SKEW_LASTS_S = 120.0


@dataclass(frozen=True, slots=True)
class Verdict:
    bad: float | None  # 1.0 bad, 0.0 fine, None: does not count now
    rule: ThresholdRule
    role: str | None  # who is asked first when not the rule's own (the branch may choose that): technicians


def judge(kind: str, value: float | None, ok: bool, open_now: bool) -> Verdict:
    lasts = LASTS_S.get(kind, DEFAULT_LASTS_S)
    rule = ThresholdRule(fire_at=1.0, for_s=lasts, clear_at=0.0, clear_for_s=CLEARS_S)
    if kind == DOOR:
        # open (1) after hours is the problem; in opening hours an open door is the lobby working
        return Verdict(1.0 if (value == 1.0 and not open_now) else 0.0, rule, None)
    if kind in DEVICE_KINDS:
        return Verdict(0.0 if ok else 1.0, rule, "technician")
    if not open_now:
        return Verdict(None, rule, None)
    return Verdict(0.0 if ok else 1.0, rule, None)


def clock_skew(skew_ms: float | None) -> Verdict:
    rule = ThresholdRule(fire_at=1.0, for_s=CLOCK_SKEW_LASTS_S, clear_at=0.0, clear_for_s=CLEARS_S)
    bad = None if skew_ms is None else (1.0 if abs(skew_ms) > CLOCK_SKEW_LIMIT_MS else 0.0)
    return Verdict(bad, rule, "technician")


def about_lobby(facts: Facts) -> bool:
    """The lobby's comfort and equipment end with the day; the devices' own faults and a door do not."""
    return facts.get("kind") in LOBBY_KINDS


KIND = RuleKind(
    RULE,
    severity="warning",
    role="duty_supervisor",  # the devices' own faults go to the technicians (the transition says so)
    inputs="sensor readings and equipment status, the devices' clocks and outboxes",
    reconcile=threshold_reconciler(RULE, about_lobby),
    lobby=about_lobby,
)
