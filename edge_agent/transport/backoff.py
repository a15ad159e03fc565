"""Reconnect delays: full-jitter exponential backoff, so a thousand devices back after an outage spread out."""

from __future__ import annotations

import random


class Backoff:
    def __init__(self, base_s: float = 1.0, cap_s: float = 120.0, rng: random.Random | None = None) -> None:
        self._base = base_s
        self._cap = cap_s
        self._rng = rng or random.Random()
        self._attempt = 0

    def next_delay(self) -> float:
        ceiling = min(self._cap, self._base * 2**self._attempt)
        self._attempt = min(self._attempt + 1, 30)
        return self._rng.uniform(0, ceiling)

    def reset(self) -> None:
        self._attempt = 0
