"""The board's own SoC temperature from sysfs (`/sys/class/thermal/thermal_zoneN/temp`, millidegrees C)."""

from __future__ import annotations

from pathlib import Path

from edge_agent.config import BoardTemperatureConfig
from lobbywatch.protocol import Reading, SensorKind


class BoardTemperature:
    def __init__(self, config: BoardTemperatureConfig, sysfs_root: Path) -> None:
        self.key = config.key
        self._max_c = config.max_c
        self._path = sysfs_root / "class" / "thermal" / f"thermal_zone{config.zone}" / "temp"

    def read(self) -> Reading:
        try:
            celsius = int(self._path.read_text().strip()) / 1000.0
        except (OSError, ValueError) as exc:
            return Reading(
                sensor=self.key, kind=SensorKind.BOARD_TEMPERATURE, value=None, unit="°C", ok=False,
                detail=f"cannot read {self._path}: {exc}"[:200],
            )
        ok = celsius <= self._max_c
        return Reading(
            sensor=self.key, kind=SensorKind.BOARD_TEMPERATURE, value=round(celsius, 1), unit="°C", ok=ok,
            detail=None if ok else f"above {self._max_c} °C",
        )
