"""Temperature and humidity from a BME280 (kernel `bmp280` IIO driver) or an SHT3x (kernel `sht3x` hwmon driver),
both enabled with the Pi's `i2c-sensor` device-tree overlay. The kernel does the I2C; we read sysfs:
- BME280: `/sys/bus/iio/devices/iio:deviceN/` with `name` = bme280, `in_temp_input` (m°C),
  `in_humidityrelative_input` (m%);
- SHT3x: `/sys/class/hwmon/hwmonN/` with `name` = sht3x, `temp1_input` (m°C), `humidity1_input` (m%).
"""

from __future__ import annotations

from pathlib import Path

from edge_agent.sensors.base import SensorEnv, judged, read_number
from lobbywatch.device_config import ClimateConfig
from lobbywatch.protocol import Reading, SensorKind

FILES = {
    "bme280": ("bus/iio/devices", "in_temp_input", "in_humidityrelative_input"),
    "sht3x": ("class/hwmon", "temp1_input", "humidity1_input"),
}


Config = ClimateConfig  # the sensor's settings live in the shared device-config model


class Climate:
    def __init__(self, config: Config, env: SensorEnv) -> None:
        self.key = config.key
        self._config = config
        folder, self._temp_file, self._humidity_file = FILES[config.type]
        self._root = env.sysfs_root / folder

    def _device(self) -> Path | None:
        for device in sorted(self._root.glob("*")):
            try:
                if (device / "name").read_text().strip() == self._config.type:
                    return device
            except OSError:
                continue
        return None

    def read(self) -> list[Reading]:
        c = self._config
        device = self._device()
        temp_problem: str | None
        humidity_problem: str | None
        if device is None:
            problem = f"no {c.type} under {self._root}: check the i2c-sensor overlay and the wiring"
            temperature = humidity = None
            temp_problem = humidity_problem = problem
        else:
            temperature, temp_problem = read_number(device / self._temp_file)
            humidity, humidity_problem = read_number(device / self._humidity_file)
        celsius = None if temperature is None else round(temperature / 1000, 2)
        percent = None if humidity is None else round(humidity / 1000, 1)
        return [
            judged(
                f"{self.key}-temp",
                SensorKind.TEMPERATURE,
                celsius,
                "°C",
                c.temperature_low,
                c.temperature_high,
                temp_problem,
            ),
            judged(
                f"{self.key}-humidity",
                SensorKind.HUMIDITY,
                percent,
                "%",
                c.humidity_low,
                c.humidity_high,
                humidity_problem,
            ),
        ]


build = Climate
