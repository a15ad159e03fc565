"""Facility sensors. Each type is one module with a `build(config, env) -> Sensor`; `build_sensor` picks it."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from edge_agent.config import BoardTemperatureConfig, SensorConfig, SimulatedConfig
from lobbywatch.protocol import Reading


class Sensor(Protocol):
    key: str

    def read(self) -> Reading:
        """One reading; a sensor that cannot be read returns value None and ok False, never raises."""


@dataclass(frozen=True)
class SensorEnv:
    """Where drivers find the hardware; tests point these at fake trees."""

    sysfs_root: Path = Path("/sys")
    seed: int | None = None


def build_sensor(config: SensorConfig, env: SensorEnv) -> Sensor:
    from edge_agent.sensors import board_temperature, simulated

    if isinstance(config, BoardTemperatureConfig):
        return board_temperature.BoardTemperature(config, env.sysfs_root)
    if isinstance(config, SimulatedConfig):
        return simulated.SimulatedSensor(config, env.seed)
    raise TypeError(f"no driver for sensor config {type(config).__name__}")
