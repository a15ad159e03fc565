"""The device config an enrolled device starts with, by hardware profile (firmware_configs/ has the same
profiles as commented files for installing by hand)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

CA_FILE = "/etc/lobbywatch/ca.crt"
PASSWORD_FILE = "/etc/lobbywatch/mqtt.password"  # noqa: S105 - where the password goes, not a password
FULL_FRAME = [[0, 0], [640, 0], [640, 480], [0, 480]]  # until a technician draws the zone on a snapshot


@dataclass(frozen=True, slots=True)
class BrokerPublic:
    """Where devices connect: the broker's address as seen from a branch, not from the server."""

    host: str
    port: int
    tls: bool


def device_config(
    device_id: str,
    profile: str,
    broker: BrokerPublic,
    locale: str,
    zones: list[str],
    sections: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """A config the agent accepts (tests/test_provisioning.py parses every profile's with the agent's parser).
    `sections`: what the server last pushed to the device this one replaces (zones drawn, sensors)."""
    config: dict[str, Any] = {
        "device_id": device_id,
        "locale": locale,
        "broker": {
            "host": broker.host,
            "port": broker.port,
            "tls": broker.tls,
            **({"ca_file": CA_FILE} if broker.tls else {}),
            "password_file": PASSWORD_FILE,
        },
        "sensors": [{"type": "board_temperature"}, {"type": "clock"}],  # any Pi has these; the rest are pushed
    }
    if profile in ("lobby-camera", "combined"):
        config["camera"] = {
            "source": "0",
            "fps": 1,
            "zones": [{"key": key, "polygon": FULL_FRAME} for key in zones or ["queue"]],
        }
    if profile in ("call-buttons", "combined"):
        config["buttons"] = [{"key": "ramp", "kind": "accessibility", "pin": 17, "led_pin": 27}]
    config.update(sections or {})
    return config


def with_calibrations(config: dict[str, Any], calibrations: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """The config with each camera zone carrying the calibration the server keeps for that zone, where it was
    fitted on the same polygon: a zone redrawn since is calibrated again on the camera."""
    camera = config.get("camera")
    if not calibrations or not isinstance(camera, dict):
        return config

    def carrying(zone: Any) -> Any:
        kept = calibrations.get(str(zone.get("key"))) if isinstance(zone, dict) else None
        if kept is None or kept.get("polygon") != [list(p) for p in zone.get("polygon", [])]:
            return zone
        return {**zone, "calibration": kept}

    zones = [carrying(zone) for zone in camera.get("zones", [])]
    return {**config, "camera": {**camera, "zones": zones}}
