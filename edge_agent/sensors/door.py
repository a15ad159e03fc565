"""A door contact (reed switch) on a GPIO pin through gpiozero: value 1 open, 0 closed.

Whether an open door is a problem depends on the time (after hours), so the server's rules judge it; the
reading is ok as long as the contact can be read."""

from __future__ import annotations

from gpiozero import Button

from edge_agent.sensors.base import SensorEnv
from lobbywatch.device_config import DoorConfig
from lobbywatch.protocol import Reading, SensorKind

Config = DoorConfig  # the sensor's settings live in the shared device-config model


class Door:
    def __init__(self, config: Config, env: SensorEnv) -> None:
        self.key = config.key
        self._contact = Button(config.pin, pull_up=True, pin_factory=env.pin_factory)

    def read(self) -> list[Reading]:
        closed = self._contact.is_pressed
        return [
            Reading(
                sensor=self.key,
                kind=SensorKind.DOOR,
                value=0.0 if closed else 1.0,
                ok=True,
                detail="closed" if closed else "open",
            )
        ]

    def close(self) -> None:
        self._contact.close()


build = Door
