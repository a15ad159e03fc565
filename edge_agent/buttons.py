"""Call buttons on GPIO through gpiozero; a press is handed on as the button's key, nothing more."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import partial

from gpiozero import Button
from gpiozero.pins import Factory
from gpiozero.pins.mock import MockFactory

from edge_agent.config import ButtonConfig


def make_pin_factory(kind: str) -> Factory | None:
    """'mock' gives software-driven pins (tests, demos); 'auto' lets gpiozero find the Pi's pins."""
    return MockFactory() if kind == "mock" else None


class CallButtons:
    def __init__(
        self, configs: Sequence[ButtonConfig], on_press: Callable[[str], None], factory: Factory | None
    ) -> None:
        self._buttons: list[Button] = []
        for config in configs:
            button = Button(
                config.pin, pull_up=True, bounce_time=(config.bounce_ms / 1000) or None, pin_factory=factory
            )
            # runs on gpiozero's thread: only hand the key on
            button.when_pressed = partial(on_press, config.key)
            self._buttons.append(button)

    def close(self) -> None:
        for button in self._buttons:
            button.close()
