import os
import queue
import time
from http.server import BaseHTTPRequestHandler
from pathlib import Path

import pytest
from gpiozero.pins.mock import MockFactory

from edge_agent.buttons import ButtonInput, CallButtons
from edge_agent.config import ButtonConfig, ConfigError, parse_config
from edge_agent.health import HealthProbe
from edge_agent.sensors import SensorEnv, build_sensor
from edge_agent.sensors.clock import Clock as ClockSensor
from edge_agent.sensors.clock import Config as ClockConfig
from edge_agent.sensors.clock import KernelClock
from lobbywatch.protocol import CallKind, Reading, SensorKind
from tests.helpers import serving


def fake_thermal(root: Path, text: str) -> Path:
    zone = root / "class" / "thermal" / "thermal_zone0"
    zone.mkdir(parents=True)
    (zone / "temp").write_text(text)
    return root


def sensor(config: dict[str, object], env: SensorEnv | None = None) -> list[Reading]:
    parsed = parse_config({"device_id": "dev-001", "sensors": [config]}).sensors[0]
    return build_sensor(parsed, env or SensorEnv()).read()


def test_board_temperature_from_sysfs(tmp_path: Path) -> None:
    (reading,) = sensor({"type": "board_temperature"}, SensorEnv(fake_thermal(tmp_path, "51234\n")))
    assert (reading.kind, reading.value, reading.ok, reading.unit) == (SensorKind.BOARD_TEMPERATURE, 51.2, True, "°C")


def test_board_too_hot_is_not_ok(tmp_path: Path) -> None:
    (reading,) = sensor({"type": "board_temperature", "max_c": 80}, SensorEnv(fake_thermal(tmp_path, "85000")))
    assert not reading.ok
    assert reading.detail == "above 80"


def test_missing_or_garbled_sysfs_is_a_fault_not_a_crash(tmp_path: Path) -> None:
    (reading,) = sensor({"type": "board_temperature"}, SensorEnv(tmp_path))
    assert reading.value is None
    assert not reading.ok
    assert "cannot read" in (reading.detail or "")
    (garbled,) = sensor({"type": "board_temperature"}, SensorEnv(fake_thermal(tmp_path / "g", "hot")))
    assert garbled.value is None


def test_simulated_sensor_stays_near_its_mean_and_flags_limits() -> None:
    config = {"type": "simulated", "key": "t", "kind": "temperature", "mean": 23, "spread": 1, "low": 16, "high": 30}
    parsed = parse_config({"device_id": "dev-001", "sensors": [config]}).sensors[0]
    probe = build_sensor(parsed, SensorEnv(seed=1))
    readings = [probe.read()[0] for _ in range(500)]
    assert all(r.value is not None and 18 < r.value < 28 for r in readings)
    assert all(r.ok for r in readings)
    assert sensor(config, SensorEnv(seed=1)) == sensor(config, SensorEnv(seed=1))  # seeded: repeatable
    hot = {**config, "mean": 35, "spread": 0.1}
    assert not sensor(hot, SensorEnv(seed=1))[0].ok


def w1(root: Path, address: str, text: str) -> Path:
    folder = root / "bus" / "w1" / "devices" / address
    folder.mkdir(parents=True)
    (folder / "w1_slave").write_text(text)
    return root


def test_ds18b20_reads_the_probe_and_checks_its_crc(tmp_path: Path) -> None:
    good = "72 01 4b 46 7f ff 0e 10 57 : crc=57 YES\n72 01 4b 46 7f ff 0e 10 57 t=23125\n"
    (reading,) = sensor({"type": "ds18b20", "key": "lobby"}, SensorEnv(w1(tmp_path / "a", "28-0316a2790aff", good)))
    assert (reading.value, reading.ok, reading.kind) == (23.125, True, SensorKind.TEMPERATURE)
    bad_crc = good.replace("YES", "NO")
    (reading,) = sensor({"type": "ds18b20", "key": "lobby"}, SensorEnv(w1(tmp_path / "b", "28-0316a2790aff", bad_crc)))
    assert not reading.ok
    assert "CRC" in (reading.detail or "")
    reset = good.replace("t=23125", "t=85000")
    (reading,) = sensor({"type": "ds18b20", "key": "lobby"}, SensorEnv(w1(tmp_path / "c", "28-0316a2790aff", reset)))
    assert "power-on reset" in (reading.detail or "")
    cold = good.replace("t=23125", "t=12000")
    (reading,) = sensor({"type": "ds18b20", "key": "lobby"}, SensorEnv(w1(tmp_path / "d", "28-0316a2790aff", cold)))
    assert (reading.ok, reading.detail) == (False, "below 16")
    (reading,) = sensor({"type": "ds18b20", "key": "lobby"}, SensorEnv(tmp_path / "none"))
    assert "0 DS18B20 probes found" in (reading.detail or "")


def iio(root: Path, kind: str, name: str, files: dict[str, str]) -> Path:
    folder = root / kind / name
    folder.mkdir(parents=True)
    for file_name, text in files.items():
        (folder / file_name).write_text(text)
    return root


def test_bme280_and_sht3x_through_the_kernel_drivers(tmp_path: Path) -> None:
    root = iio(
        tmp_path,
        "bus/iio/devices",
        "iio:device0",
        {"name": "bme280\n", "in_temp_input": "24310\n", "in_humidityrelative_input": "47880\n"},
    )
    temperature, humidity = sensor({"type": "bme280", "key": "hall"}, SensorEnv(root))
    assert (temperature.sensor, temperature.value, temperature.ok) == ("hall-temp", 24.31, True)
    assert (humidity.sensor, humidity.value, humidity.unit, humidity.kind) == (
        "hall-humidity",
        47.9,
        "%",
        SensorKind.HUMIDITY,
    )
    root = iio(
        tmp_path / "s", "class/hwmon", "hwmon1", {"name": "sht3x\n", "temp1_input": "31500", "humidity1_input": "85000"}
    )
    temperature, humidity = sensor({"type": "sht3x", "key": "hall"}, SensorEnv(root))
    assert (temperature.ok, temperature.detail) == (False, "above 30")
    assert (humidity.ok, humidity.detail) == (False, "above 80")
    missing = sensor({"type": "bme280", "key": "hall"}, SensorEnv(tmp_path / "empty"))
    assert all(not r.ok and "i2c-sensor overlay" in (r.detail or "") for r in missing)


def test_bh1750_light(tmp_path: Path) -> None:
    root = iio(
        tmp_path,
        "bus/iio/devices",
        "iio:device1",
        {"name": "bh1750", "in_illuminance_raw": "410", "in_illuminance_scale": "0.833333"},
    )
    (reading,) = sensor({"type": "bh1750", "key": "light"}, SensorEnv(root))
    assert (reading.kind, reading.value, reading.ok) == (SensorKind.LIGHT, 341.7, True)
    (dim,) = sensor({"type": "bh1750", "key": "light", "low": 500}, SensorEnv(root))
    assert (dim.ok, dim.detail) == (False, "below 500")


def test_door_contact_on_a_mock_pin() -> None:
    factory = MockFactory()
    parsed = parse_config({"device_id": "dev-001", "sensors": [{"type": "door", "key": "back", "pin": 5}]}).sensors[0]
    door = build_sensor(parsed, SensorEnv(pin_factory=factory))
    factory.pin(5).drive_low()  # the reed switch closes the circuit
    assert door.read()[0].detail == "closed"
    factory.pin(5).drive_high()
    (reading,) = door.read()
    assert (reading.value, reading.detail, reading.ok) == (1.0, "open", True)
    door.close()  # type: ignore[attr-defined]


def test_equipment_reachability_over_tcp_and_http() -> None:
    class Status(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200 if self.path == "/ok" else 503)
            self.end_headers()
            self.wfile.write(b"status")

        def log_message(self, *args: object) -> None:
            return None

    with serving(Status) as server:
        port = server.server_address[1]
        (up,) = sensor({"type": "equipment", "key": "kiosk", "host": "127.0.0.1", "port": port})
        assert up.ok
        assert up.value is not None
        (page,) = sensor({"type": "equipment", "key": "kiosk", "url": f"http://127.0.0.1:{port}/ok"})
        assert page.ok
        (failing,) = sensor({"type": "equipment", "key": "kiosk", "url": f"http://127.0.0.1:{port}/broken"})
        assert (failing.ok, failing.detail) == (False, "answers HTTP 503")
    (down,) = sensor({"type": "equipment", "key": "atm", "host": "127.0.0.1", "port": port, "timeout_s": 1})
    assert not down.ok
    assert down.value is None
    assert "not reachable" in (down.detail or "")
    with pytest.raises(ConfigError, match="either url, or host and port"):
        parse_config({"device_id": "dev-001", "sensors": [{"type": "equipment", "key": "x", "host": "a"}]})


def test_clock_from_the_kernel() -> None:
    (reading,) = sensor({"type": "clock"})  # the real adjtimex() of this machine
    assert reading.kind is SensorKind.CLOCK
    assert reading.value is not None or "cannot ask" in (reading.detail or "")
    config = ClockConfig(type="clock", max_offset_ms=100)
    unsynced = ClockSensor(config, SensorEnv(), read=lambda: KernelClock(False, 0.0, 16000.0))
    assert "not synchronised" in (unsynced.read()[0].detail or "")
    off = ClockSensor(config, SensorEnv(), read=lambda: KernelClock(True, 250.0, 30.0))
    assert off.read()[0].detail == "250 ms off"
    fine = ClockSensor(config, SensorEnv(), read=lambda: KernelClock(True, 0.4, 30.0))
    assert fine.read()[0].ok


def test_health_probe_reads_this_process(tmp_path: Path) -> None:
    probe = HealthProbe(run_root=tmp_path)
    first = probe.sample(0.0)
    assert first.mem_rss_mb > 5
    assert first.clock_synced is None  # no timesyncd here: unknown, not "false"
    (tmp_path / "systemd" / "timesync").mkdir(parents=True)
    assert probe.clock_synced() is False
    (tmp_path / "systemd" / "timesync" / "synchronized").touch()
    assert probe.clock_synced() is True
    sum(i * i for i in range(2_000_000))
    second = probe.sample(sum(os.times()[:2]) + 10)
    assert second.cpu_pct >= 0


def test_short_press_calls_long_hold_or_answer_button_answers_and_the_led_blinks() -> None:
    factory = MockFactory()
    inputs: queue.SimpleQueue[ButtonInput] = queue.SimpleQueue()
    config = ButtonConfig(
        key="ramp-bell", kind=CallKind.ACCESSIBILITY, pin=17, bounce_ms=0, answer_hold_s=0.3, answer_pin=27, led_pin=22
    )
    buttons = CallButtons([config], inputs.put, factory)
    bell, answer, led = factory.pin(17), factory.pin(27), factory.pin(22)
    try:
        bell.drive_low()
        time.sleep(0.05)
        bell.drive_high()
        assert inputs.get(timeout=2) == ButtonInput("ramp-bell", "press")
        bell.drive_low()
        time.sleep(0.4)  # staff hold it
        bell.drive_high()
        assert inputs.get(timeout=2) == ButtonInput("ramp-bell", "answered")
        answer.drive_low()
        assert inputs.get(timeout=2) == ButtonInput("ramp-bell", "answered")
        answer.drive_high()
        assert buttons.indicate("ramp-bell", help_coming=True)
        states = set()
        deadline = time.monotonic() + 3
        while time.monotonic() < deadline and states != {True, False}:
            states.add(bool(led.state))
            time.sleep(0.05)
        assert states == {True, False}  # blinking
        buttons.indicate("ramp-bell", help_coming=False)
        time.sleep(0.1)
        assert not led.state
        assert not buttons.indicate("no-such-button", help_coming=True)
    finally:
        buttons.close()
