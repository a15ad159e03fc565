"""The board's own SoC temperature from sysfs (`/sys/class/thermal/thermal_zoneN/temp`, millidegrees C)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from edge_agent.sensors.base import Key, SensorConfig, SensorEnv, judged, read_number
from lobbywatch.protocol import Reading, SensorKind


class Config(SensorConfig):
    type: Literal["board_temperature"]
    key: Key = "board"
    zone: int = Field(0, ge=0, description="thermal zone number under /sys/class/thermal")
    max_c: float = Field(80.0, description="above this the board is reported not ok (the Pi throttles at 80-85)")


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
