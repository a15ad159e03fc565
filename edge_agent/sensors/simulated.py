"""A simulated sensor: a value wandering around a mean, for demos and for devices without the hardware yet."""

from __future__ import annotations

import random
from typing import Literal

from pydantic import Field

from edge_agent.sensors.base import Key, SensorConfig, SensorEnv, judged
from lobbywatch.protocol import Reading, SensorKind


class Config(SensorConfig):
    type: Literal["simulated"]
    key: Key
    kind: SensorKind
    mean: float = Field(description="value the simulated reading wanders around")
    spread: float = Field(1.0, ge=0, description="how far it wanders")
    unit: str | None = None
    low: float | None = Field(None, description="below this the reading is reported not ok")
    high: float | None = Field(None, description="above this the reading is reported not ok")


class SimulatedSensor:
    def __init__(self, config: Config, env: SensorEnv) -> None:
        self.key = config.key
        self._config = config
        self._rng = random.Random(env.seed)
        self._value = config.mean

    def read(self) -> list[Reading]:
        c = self._config
        # mean-reverting walk: stays near the mean, moves a little each reading
        self._value += 0.3 * (c.mean - self._value) + self._rng.gauss(0, c.spread * 0.3)
        return [judged(self.key, c.kind, round(self._value, 2), c.unit, c.low, c.high)]


build = SimulatedSensor
