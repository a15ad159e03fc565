"""A uniform sample of a stream of numbers (Vitter's algorithm R), for percentiles over a whole run."""

from __future__ import annotations

import random
import threading


class Reservoir:
    def __init__(self, size: int, rng: random.Random | None = None) -> None:
        self._size = size
        self._rng = rng or random.Random(0)
        self._items: list[float] = []
        self._seen = 0
        self._lock = threading.Lock()

    def add(self, value: float) -> None:
        with self._lock:
            self._seen += 1
            if len(self._items) < self._size:
                self._items.append(value)
                return
            slot = self._rng.randrange(self._seen)
            if slot < self._size:
                self._items[slot] = value

    def percentiles(self, *ps: float) -> dict[str, float | None]:
        with self._lock:
            ordered = sorted(self._items)
        if not ordered:
            return {f"p{p:g}": None for p in ps}
        return {f"p{p:g}": round(ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))], 2) for p in ps}

    @property
    def seen(self) -> int:
        return self._seen
