"""A door contact (reed switch) on a GPIO pin through gpiozero: value 1 open, 0 closed.

Whether an open door is a problem depends on the time (after hours), so the server's rules judge it; the
reading is ok as long as the contact can be read."""

from __future__ import annotations

from typing import Literal

from gpiozero import Button
from pydantic import Field

from edge_agent.sensors.base import Key, SensorConfig, SensorEnv
from lobbywatch.protocol import Reading, SensorKind


class Config(SensorConfig):
    type: Literal["door"]
    key: Key
    pin: int = Field(ge=0, le=27, description="BCM GPIO number; the contact connects the pin to ground when shut")


class Door:
    def __init__(self, config: Config, env: SensorEnv) -> None:
        self.key = config.key
        self._contact = Button(config.pin, pull_up=True, pin_factory=env.pin_factory)

    def read(self) -> list[Reading]:
        closed = self._contact.is_pressed
        return [Reading(sensor=self.key, kind=SensorKind.DOOR, value=0.0 if closed else 1.0, ok=True,
                        detail="closed" if closed else "open")]

    def close(self) -> None:
        self._contact.close()


build = Door
