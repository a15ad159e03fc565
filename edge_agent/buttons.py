"""Call buttons on GPIO through gpiozero, with their "answered" input and "help is coming" LED.

A short press is a call. Staff answer a call at the button by holding it (`answer_hold_s`) or by pressing a
separate answer button; because a hold starts as a press, a call is only sent when the button is released
before the hold time. Callbacks run on gpiozero's thread and only hand `ButtonInput`s on.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal

from gpiozero import LED, Button
from gpiozero.pins import Factory
from gpiozero.pins.mock import MockFactory

from edge_agent.config import ButtonConfig

BLINK_S = 0.5


@dataclass(frozen=True, slots=True)
class ButtonInput:
    key: str
    action: Literal["press", "answered"]


def make_pin_factory(kind: str) -> Factory | None:
    """'mock' gives software-driven pins (tests, demos); 'auto' lets gpiozero find the Pi's pins."""
    return MockFactory() if kind == "mock" else None


class CallButtons:
    def __init__(
        self, configs: Sequence[ButtonConfig], hand_on: Callable[[ButtonInput], None], factory: Factory | None
    ) -> None:
        self._hand_on = hand_on
        self._devices: list[Button | LED] = []
        self._leds: dict[str, LED] = {}
        self._pressed_at: dict[str, float] = {}
        self._identify_timer: threading.Timer | None = None
        for config in configs:
            button = Button(
                config.pin, pull_up=True, bounce_time=(config.bounce_ms / 1000) or None, pin_factory=factory
            )
            button.when_pressed = lambda key=config.key: self._down(key)
            button.when_released = lambda key=config.key, hold=config.answer_hold_s: self._up(key, hold)
            self._devices.append(button)
            if config.answer_pin is not None:
                answer = Button(
                    config.answer_pin, pull_up=True, bounce_time=(config.bounce_ms / 1000) or None, pin_factory=factory
                )
                answer.when_pressed = lambda key=config.key: hand_on(ButtonInput(key, "answered"))
                self._devices.append(answer)
            if config.led_pin is not None:
                led = LED(config.led_pin, pin_factory=factory)
                self._leds[config.key] = led
                self._devices.append(led)

    def _down(self, key: str) -> None:
        self._pressed_at[key] = time.monotonic()

    def _up(self, key: str, hold_s: float | None) -> None:
        pressed_at = self._pressed_at.pop(key, None)
        held = 0.0 if pressed_at is None else time.monotonic() - pressed_at
        self._hand_on(ButtonInput(key, "answered" if hold_s is not None and held >= hold_s else "press"))

    def indicate(self, key: str, help_coming: bool) -> bool:
        """Blink the button's LED while help is on its way; False when the button has no LED."""
        led = self._leds.get(key)
        if led is None:
            return False
        if help_coming:
            led.blink(on_time=BLINK_S, off_time=BLINK_S)
        else:
            led.off()
        return True

    def blink_all(self, seconds: float) -> int:
        """Every LED on for `seconds`, then off (a technician finding the device); returns how many there are."""
        shown = [key for key in self._leds if self.indicate(key, help_coming=True)]
        if self._identify_timer is not None:
            self._identify_timer.cancel()
        self._identify_timer = threading.Timer(seconds, lambda: [self.indicate(k, help_coming=False) for k in shown])
        self._identify_timer.daemon = True
        self._identify_timer.start()
        return len(shown)

    def close(self) -> None:
        if self._identify_timer is not None:
            self._identify_timer.cancel()
            self._identify_timer.join(5)
        for device in self._devices:
            device.close()
