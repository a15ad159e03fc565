"""Figures of a stream of numbers: a uniform sample (Vitter's algorithm R) for percentiles over a whole run, and
durations counted into fixed buckets (a histogram, as Prometheus reads it)."""

from __future__ import annotations

import bisect
import random
import threading
from collections.abc import Sequence


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


# seconds: a store write takes milliseconds when healthy and seconds when the disk or database struggles
STORE_BUCKETS_S = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class Durations:
    """How many durations fell at or under each bucket's bound (cumulative, the last is +Inf), their sum."""

    def __init__(self, bounds: Sequence[float] = STORE_BUCKETS_S) -> None:
        self.bounds = tuple(bounds)
        self._counts = [0] * (len(self.bounds) + 1)
        self._sum = 0.0
        self._lock = threading.Lock()

    def add(self, seconds: float) -> None:
        with self._lock:
            self._counts[bisect.bisect_left(self.bounds, seconds)] += 1
            self._sum += seconds

    def snapshot(self) -> tuple[list[tuple[float, int]], float]:
        """[(bound, count at or under it)] with +Inf last, and the sum."""
        with self._lock:
            counts, total = list(self._counts), self._sum
        cumulative, running = [], 0
        for bound, count in zip((*self.bounds, float("inf")), counts, strict=True):
            running += count
            cumulative.append((bound, running))
        return cumulative, total
