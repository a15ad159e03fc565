"""BH1750 ambient light sensor through the kernel `bh1750` IIO driver (`i2c-sensor` overlay):
lux = `in_illuminance_raw` × `in_illuminance_scale` under `/sys/bus/iio/devices/iio:deviceN/`."""

from __future__ import annotations

from edge_agent.sensors.base import SensorEnv, judged, read_number
from lobbywatch.device_config import Bh1750Config
from lobbywatch.protocol import Reading, SensorKind

Config = Bh1750Config  # the sensor's settings live in the shared device-config model


class Bh1750:
    def __init__(self, config: Config, env: SensorEnv) -> None:
        self.key = config.key
        self._config = config
        self._root = env.sysfs_root / "bus" / "iio" / "devices"

    def read(self) -> list[Reading]:
        for device in sorted(self._root.glob("*")):
            try:
                if (device / "name").read_text().strip() != "bh1750":
                    continue
            except OSError:
                continue
            raw, problem = read_number(device / "in_illuminance_raw")
            scale, scale_problem = read_number(device / "in_illuminance_scale")
            lux = None if raw is None or scale is None else round(raw * scale, 1)
            return [judged(self.key, SensorKind.LIGHT, lux, "lx", self._config.low, None, problem or scale_problem)]
        return [
            judged(
                self.key,
                SensorKind.LIGHT,
                None,
                "lx",
                problem=f"no bh1750 under {self._root}: check the i2c-sensor overlay and the wiring",
            )
        ]


build = Bh1750
