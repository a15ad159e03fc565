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


def device_config(device_id: str, profile: str, broker: BrokerPublic, locale: str, zones: list[str],
                  sections: dict[str, Any] | None = None) -> dict[str, Any]:
    """A config the agent accepts (tests/test_provisioning.py parses every profile's with the agent's parser).
    `sections`: what the server last pushed to the device this one replaces (zones drawn, sensors)."""
    config: dict[str, Any] = {
        "device_id": device_id, "locale": locale,
        "broker": {"host": broker.host, "port": broker.port, "tls": broker.tls,
                   **({"ca_file": CA_FILE} if broker.tls else {}), "password_file": PASSWORD_FILE},
        "sensors": [{"type": "board_temperature"}, {"type": "clock"}],  # any Pi has these; the rest are pushed
    }
    if profile in ("lobby-camera", "combined"):
        config["camera"] = {"source": "0", "fps": 1,
                            "zones": [{"key": key, "polygon": FULL_FRAME} for key in zones or ["queue"]]}
    if profile in ("call-buttons", "combined"):
        config["buttons"] = [{"key": "ramp", "kind": "accessibility", "pin": 17, "led_pin": 27}]
    config.update(sections or {})
    return config
