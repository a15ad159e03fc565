"""A simulated sensor: a value wandering around a mean, for demos and for devices without the hardware yet."""

from __future__ import annotations

import random

from edge_agent.config import SimulatedConfig
from lobbywatch.protocol import Reading


class SimulatedSensor:
    def __init__(self, config: SimulatedConfig, seed: int | None = None) -> None:
        self.key = config.key
        self._config = config
        self._rng = random.Random(seed)
        self._value = config.mean

    def read(self) -> Reading:
        c = self._config
        # mean-reverting walk: stays near the mean, moves a little each reading
        self._value += 0.3 * (c.mean - self._value) + self._rng.gauss(0, c.spread * 0.3)
        value = round(self._value, 2)
        too_low = c.low is not None and value < c.low
        too_high = c.high is not None and value > c.high
        detail = f"below {c.low}" if too_low else f"above {c.high}" if too_high else None
        return Reading(sensor=self.key, kind=c.kind, value=value, unit=c.unit, ok=not (too_low or too_high),
                       detail=detail)
