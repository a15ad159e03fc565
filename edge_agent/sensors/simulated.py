"""A simulated sensor: a value wandering around a mean, for demos and for devices without the hardware yet."""

from __future__ import annotations

import random

from edge_agent.sensors.base import SensorEnv, judged
from lobbywatch.device_config import SimulatedConfig
from lobbywatch.protocol import Reading

Config = SimulatedConfig  # the sensor's settings live in the shared device-config model


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
