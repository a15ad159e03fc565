"""Call-button presses: repeated presses within the guard time are one call, not many."""

from __future__ import annotations


class PressFilter:
    def __init__(self, repeat_guard_s: float) -> None:
        self._guard = repeat_guard_s
        self._last: dict[str, float] = {}

    def accept(self, button: str, at: float) -> bool:
        last = self._last.get(button)
        if last is not None and at - last < self._guard:
            return False
        self._last[button] = at
        return True
