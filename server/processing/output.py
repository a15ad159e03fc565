"""What processing makes of messages and ticks, for the I/O around it to carry out: points to store, live
values to show, rule transitions for the alerts, and the few things that need a person or the registry."""

from __future__ import annotations

from dataclasses import dataclass, field

from lobbywatch.protocol import Calibration
from server.live import LiveUpdate
from server.rules.transitions import Transition
from server.storage.points import Point


@dataclass(frozen=True, slots=True)
class Refusal:
    """Part of a message refused (e.g. a zone the registry does not have): counted and kept as a dead letter."""

    cause: str
    device: str
    detail: str


@dataclass(slots=True)
class Output:
    points: list[Point] = field(default_factory=list)
    transitions: list[Transition] = field(default_factory=list)
    live: list[LiveUpdate] = field(default_factory=list)
    stamps: list[float] = field(default_factory=list)  # device times of new messages, for the delay figures
    calls: list[dict[str, object]] = field(default_factory=list)  # calls answered, with their response times
    calibrations: list[tuple[str, Calibration]] = field(default_factory=list)  # (device, a technician's work)
    refusals: list[Refusal] = field(default_factory=list)
    duplicates: int = 0
    late: int = 0
    replies: int = 0
