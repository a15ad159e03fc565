"""The board's own SoC temperature from sysfs (`/sys/class/thermal/thermal_zoneN/temp`, millidegrees C)."""

from __future__ import annotations

from edge_agent.sensors.base import SensorEnv, judged, read_number
from lobbywatch.device_config import BoardTemperatureConfig
from lobbywatch.protocol import Reading, SensorKind

Config = BoardTemperatureConfig  # the sensor's settings live in the shared device-config model


class BoardTemperature:
    def __init__(self, config: Config, env: SensorEnv) -> None:
        self.key = config.key
        self._max_c = config.max_c
        self._path = env.sysfs_root / "class" / "thermal" / f"thermal_zone{config.zone}" / "temp"

    def read(self) -> list[Reading]:
        millidegrees, problem = read_number(self._path)
        value = None if millidegrees is None else round(millidegrees / 1000, 1)
        return [judged(self.key, SensorKind.BOARD_TEMPERATURE, value, "°C", high=self._max_c, problem=problem)]


build = BoardTemperature
