"""DS18B20 1-wire temperature probe, through the kernel's w1-gpio overlay: `/sys/bus/w1/devices/28-*/w1_slave`.

The file has two lines: the first ends in `YES` when the CRC is good, the second in `t=<millidegrees>`.
"""

from __future__ import annotations

from pathlib import Path

from edge_agent.sensors.base import SensorEnv, judged
from lobbywatch.device_config import Ds18b20Config
from lobbywatch.protocol import Reading, SensorKind

# The probe reports 85.000 °C when it lost power during a conversion: a known false reading, not a fire.
POWER_ON_RESET_MC = 85000


Config = Ds18b20Config  # the sensor's settings live in the shared device-config model


class Ds18b20:
    def __init__(self, config: Config, env: SensorEnv) -> None:
        self.key = config.key
        self._config = config
        self._devices = env.sysfs_root / "bus" / "w1" / "devices"

    def _file(self) -> tuple[Path | None, str | None]:
        if self._config.address:
            return self._devices / self._config.address / "w1_slave", None
        found = sorted(self._devices.glob("28-*"))
        if len(found) != 1:
            return None, f"{len(found)} DS18B20 probes found: set the address"
        return found[0] / "w1_slave", None

    def read(self) -> list[Reading]:
        c = self._config
        path, problem = self._file()
        value = None
        if path is not None:
            try:
                crc_line, data_line = path.read_text().strip().splitlines()[:2]
                millidegrees = int(data_line.rsplit("t=", 1)[1])
                if not crc_line.endswith("YES"):
                    problem = "CRC error on the 1-wire bus (cable too long or loose?)"
                elif millidegrees == POWER_ON_RESET_MC:
                    problem = "power-on reset value (85 °C): check the probe's supply"
                else:
                    value = millidegrees / 1000  # 0.0625 °C steps: exact in binary, no rounding
            except (OSError, ValueError, IndexError) as exc:
                problem = f"cannot read {path}: {exc}"
        return [judged(self.key, SensorKind.TEMPERATURE, value, "°C", c.low, c.high, problem)]


build = Ds18b20
