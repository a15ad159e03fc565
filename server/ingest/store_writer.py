"""Points to the time-series store, never lost: a storage failure that may pass (disk full, database down)
holds the batch and retries for as long as it lasts (the broker keeps what arrives meanwhile, unacknowledged);
a store that refuses points for their content gets the batch again message by message, and only the messages
it refuses are set aside: one device's bad message never stalls the others."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from server.ingest.stats import Durations
from server.storage.base import RefusedPoints, TimeSeriesStore
from server.storage.points import Point

log = logging.getLogger(__name__)

STORE_RETRY_S = (0.5, 1.0, 2.0, 5.0, 10.0)


def retry_wait(attempt: int) -> float:
    """The wait before trying a failed write again, after `attempt` failures before it (0: the first)."""
    return STORE_RETRY_S[min(attempt, len(STORE_RETRY_S) - 1)]


@dataclass(slots=True)
class IngestStats:
    received: int = 0
    stored_points: int = 0
    duplicates: int = 0
    late: int = 0
    internal_errors: int = 0
    store_failures: int = 0
    store_refused: int = 0  # messages the store refused for their content, set aside
    last_store_error: str | None = None  # while storage fails; None once a write went through
    registry_failures: int = 0  # saves of the ingest's state that failed and were retried
    last_registry_error: str | None = None  # while those saves fail; None once one went through
    store_seconds: Durations = field(default_factory=Durations)  # each write that went through


class StoreWriter:
    def __init__(self, store: TimeSeriesStore, stats: IngestStats, stopping: threading.Event) -> None:
        self.store = store
        self.stats = stats
        self._stopping = stopping

    def write(self, points: list[Point]) -> None:
        """Store, retrying for as long as storage is down. Raises RefusedPoints at once: no retry makes a store
        take what it refuses for its content; and what `stopping` ended, so that the batch stays unacknowledged."""
        attempt = 0
        while True:
            started = time.perf_counter()
            try:
                self.store.write(points)
            except RefusedPoints:
                raise
            except Exception as exc:  # disk full, database locked, InfluxDB down: hold the batch and retry
                self.stats.store_failures += 1
                self.stats.last_store_error = f"{type(exc).__name__}: {exc}"[:300]
                wait = retry_wait(attempt)
                attempt += 1
                log.error(
                    "storing %d points failed (attempt %d), retrying in %s s: %s", len(points), attempt, wait, exc
                )
                if self._stopping.wait(wait):
                    raise
                continue
            self.stats.store_seconds.add(time.perf_counter() - started)
            self.stats.stored_points += len(points)
            self.stats.last_store_error = None
            return

    def write_batch(
        self,
        points: list[Point],
        spans: Sequence[tuple[int, int]],
        ours: list[Point],
        refused: Callable[[int, str], None],
    ) -> None:
        """A batch's points, of which `spans[i]` = [start, end) are message i's, and points of our own (alerts).
        `refused(i, why)`: message i's points were refused for their content."""
        try:
            self.write(points + ours)
            return
        except RefusedPoints as exc:
            log.warning("the store refused a batch of %d messages (%s); storing them one by one", len(spans), exc)
        for i, (start, end) in enumerate(spans):  # find the messages it refuses; store the rest
            try:
                self.write(points[start:end])
            except RefusedPoints as exc:
                self.stats.store_refused += 1
                refused(i, str(exc))
        try:
            self.write(ours)
        except RefusedPoints:  # our own points: a bug, not a device's doing
            self.stats.internal_errors += 1
            log.exception("the store refused %d points of our own", len(ours))
