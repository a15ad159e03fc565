"""A branch lobby as a queue: customers arrive, wait, and are served at windows by the service-time standards.

Service times (minutes) are the branch standards: mail 3, savings under 10,000 yuan 4, remittance 6, stamp
pre-order pickup 3, newspaper subscription 3 (computer) or 5 (manual); each actual service varies around its
standard. Arrivals are Poisson with a rate that rises to a peak and falls again.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field

# (share of customers, standard minutes)
SERVICE_MIX: tuple[tuple[float, float], ...] = (
    (0.35, 3.0),  # mail item
    (0.25, 4.0),  # savings deposit / withdrawal under 10,000 yuan
    (0.15, 6.0),  # remittance
    (0.10, 3.0),  # stamp pre-order pickup
    (0.10, 3.0),  # newspaper subscription, computer
    (0.05, 5.0),  # newspaper subscription, manual
)
# Spread of real service times around the standard (lognormal sigma): some customers take twice as long.
SERVICE_SPREAD = 0.35
STEP_MIN = 0.05


@dataclass(frozen=True)
class LobbyPlan:
    windows: int = 2
    max_windows: int = 4
    base_per_min: float = 0.3
    peak_per_min: float = 0.9
    peak_from_min: float = 2.0
    peak_to_min: float = 40.0
    # a day in small: the peak comes back every `cycle_min` (0: once), so a demo keeps showing alerts fire and clear
    cycle_min: float = 0.0


@dataclass
class Lobby:
    plan: LobbyPlan
    rng: random.Random = field(default_factory=random.Random)
    minute: float = 0.0
    waiting: int = 0
    windows_open: int = 0
    served: int = 0
    _busy: list[float] = field(default_factory=list)  # remaining minutes per open window (0 = free)

    def __post_init__(self) -> None:
        self.windows_open = self.plan.windows
        self._busy = [0.0] * self.plan.windows

    @property
    def serving(self) -> int:
        return sum(1 for r in self._busy if r > 0)

    def rate(self, minute: float) -> float:
        if self.plan.cycle_min > 0:
            minute %= self.plan.cycle_min
        if self.plan.peak_from_min <= minute < self.plan.peak_to_min:
            return self.plan.peak_per_min
        return self.plan.base_per_min

    def open_window(self) -> bool:
        """Open a flexible window, if the branch has one left."""
        if self.windows_open >= self.plan.max_windows:
            return False
        self.windows_open += 1
        self._busy.append(0.0)
        return True

    def close_window(self) -> bool:
        """Close a flexible window opened for a peak (one that is free), down to the plan's windows."""
        if self.windows_open <= self.plan.windows or 0.0 not in self._busy:
            return False
        self._busy.remove(0.0)
        self.windows_open -= 1
        return True

    def service_minutes(self) -> float:
        standard = _pick_standard(self.rng.random())
        return standard * math.exp(self.rng.gauss(0.0, SERVICE_SPREAD) - SERVICE_SPREAD**2 / 2)

    def advance(self, minutes: float) -> None:
        end = self.minute + minutes
        while self.minute < end:
            step = min(STEP_MIN, end - self.minute)
            self.waiting += _poisson(self.rng, self.rate(self.minute) * step)
            for i, busy in enumerate(self._busy):
                left = max(0.0, busy - step)
                if left == 0 and self.waiting > 0:
                    self.waiting -= 1
                    self.served += 1
                    left = self.service_minutes()
                self._busy[i] = left
            self.minute += step


def _pick_standard(u: float) -> float:
    for share, standard in SERVICE_MIX:
        u -= share
        if u <= 0:
            return standard
    return SERVICE_MIX[-1][1]


def _poisson(rng: random.Random, mean: float) -> int:
    # Knuth's method: fine for the small means of one simulation step
    limit, k, p = math.exp(-mean), 0, 1.0
    while True:
        p *= rng.random()
        if p <= limit:
            return k
        k += 1
