"""Every sensor type the agent knows. Adding one: a module with `Config` and `build`, and a line in each list."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from edge_agent.sensors import bh1750, board_temperature, climate, clock, door, ds18b20, equipment, simulated
from edge_agent.sensors.base import Sensor, SensorEnv
from lobbywatch.device_config import AnySensorConfig  # the union every device config validates against

__all__ = ["AnySensorConfig", "build_sensor"]

_BUILDERS: dict[type, Callable[[Any, SensorEnv], Sensor]] = {
    board_temperature.Config: board_temperature.build,
    simulated.Config: simulated.build,
    ds18b20.Config: ds18b20.build,
    climate.Config: climate.build,
    bh1750.Config: bh1750.build,
    door.Config: door.build,
    equipment.Config: equipment.build,
    clock.Config: clock.build,
}


def build_sensor(config: Any, env: SensorEnv) -> Sensor:
    return _BUILDERS[type(config)](config, env)
