"""The ingest's thread: takes received messages from the MQTT thread, runs the pipeline in batches, and
acknowledges each batch to the broker only once it is stored."""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable, Sequence

from server.ingest.mqtt_source import Received
from server.ingest.pipeline import Pipeline
from server.ingest.repair import ResendRequest

log = logging.getLogger(__name__)

# Messages per stored batch, at most: a flood's batches get this large. Each batch saves the state of every device
# it heard from and rewrites a page of each series it adds to, whatever its size, so larger batches cost less a
# message: 10,000 against 2,000 took the server from 0.51 to 0.62 of the bare subscriber (`bench.ingest`).
MAX_BATCH = 10_000
# Messages received but not yet processed. Mosquitto 2.0.11 was seen to send a manually acknowledging client
# three times its Receive Maximum, so the bound is ours: when the queue is full, paho's reader waits, TCP
# pushes back, and the broker holds the rest (tests/test_ingest.py checks the bound).
MAX_BACKLOG = 10_000
TICK_S = 1.0  # how often time-driven rules are looked at
# A batch costs about 6 ms of CPU whatever its size (writing the points, saving state, committing) and 60-100 us a
# message, so a batch of 15 costs five times as much a message as one of thousands: a batch under FULL_ENOUGH
# waits up to LINGER_S from its first message for more. From a hundred messages on, the fixed part is at most
# half of the cost; waiting for more only made a queue (a floor of 1,000 took `bench.ingest`'s p50 latency at
# 5,000 msg/s from 8 to 250-350 ms). At 1,000 msg/s over two workers, the workers' CPU a message went from 681
# to 425 us (`bench.scale`: docs/scale.md). A notice waits LINGER_S more at most.
LINGER_S = 0.1
FULL_ENOUGH = 100


class IngestWorker:
    """Takes received messages from the MQTT thread, runs the pipeline in batches, acknowledges after storing."""

    def __init__(
        self,
        pipeline: Pipeline,
        ack: Callable[[Sequence[Received]], None],
        max_backlog: int = MAX_BACKLOG,
        ask_resend: Callable[[ResendRequest], None] | None = None,
    ) -> None:
        self._pipeline = pipeline
        self._ack = ack
        self._ask_resend = ask_resend
        self._ticked_at = 0.0
        self._queue: queue.Queue[Received | None] = queue.Queue(maxsize=max_backlog)
        self.peak_backlog = 0
        self.in_flight = 0  # messages of the batch being stored now
        self.last_progress = time.monotonic()  # a batch done, or nothing to do
        self._thread = threading.Thread(target=self._run, name="ingest", daemon=True)
        self.put = self._queue.put

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float = 30.0) -> None:
        self._queue.put(None)
        self._thread.join(timeout / 2)
        self._pipeline.request_stop()
        self._thread.join(timeout)
        self._pipeline.flush_devices()
        self._pipeline.flush_learnt()

    def backlog(self) -> int:
        return self._queue.qsize()

    def stalled_s(self) -> float:
        """How long messages have waited without a batch getting through (0 when it is moving)."""
        if self.backlog() + self.in_flight == 0:
            return 0.0
        return time.monotonic() - self.last_progress

    def _run(self) -> None:
        stopping = False
        while not stopping:
            try:
                first = self._queue.get(timeout=1.0)
            except queue.Empty:
                self.last_progress = time.monotonic()
                if not self._guarded(self._idle):
                    return
                continue
            self.peak_backlog = max(self.peak_backlog, self._queue.qsize() + 1)
            batch, stopping = self._gather(first)
            if not batch:
                continue
            self.in_flight = len(batch)
            try:
                self._pipeline.process(batch)
            except Exception:
                # storage and registry failures are retried inside; this is a stop with them still down, or a
                # bug of ours. Either way the batch stays unacknowledged: the broker delivers it again (MQTT at
                # our persistent session's next start, JetStream after its ack wait)
                if self._pipeline.stopping.is_set():
                    log.exception("stopping with %d messages not stored; left unacknowledged", len(batch))
                    return
                self._pipeline.stats.internal_errors += 1
                log.exception("a batch of %d messages failed; left unacknowledged, going on", len(batch))
                self.in_flight = 0
                continue
            self._ack(batch)
            self.in_flight = 0
            self.last_progress = time.monotonic()
            if not self._guarded(self._repair):
                return

    def _gather(self, first: Received | None) -> tuple[list[Received], bool]:
        """A batch: `first` and what waits behind it, or comes within LINGER_S while the batch is small; and
        whether the stop came (None)."""
        batch = [] if first is None else [first]
        stopping = first is None
        closes = time.monotonic() + LINGER_S
        while len(batch) < MAX_BATCH:
            wait = closes - time.monotonic()
            try:
                if stopping or len(batch) >= FULL_ENOUGH or wait <= 0:
                    item = self._queue.get_nowait()
                else:
                    item = self._queue.get(timeout=wait)
            except queue.Empty:
                break
            if item is None:
                stopping = True
            else:
                batch.append(item)
        return batch, stopping

    def _idle(self) -> None:
        """Nothing received for a while: save the devices' state, run the clock's rules."""
        self._pipeline.flush_devices()
        self._repair()

    def _guarded(self, action: Callable[[], None]) -> bool:
        """Run `action` between batches; False: stop now."""
        try:
            action()
        except Exception:  # as for a batch: failures are retried inside, so this is a stop or a bug of ours
            if self._pipeline.stopping.is_set():
                log.exception("stopping with state not saved")
                return False
            self._pipeline.stats.internal_errors += 1
            log.exception("saving state or running the clock's rules failed; going on")
        return True

    def _repair(self) -> None:
        now = time.monotonic()
        if now - self._ticked_at >= TICK_S:
            self._ticked_at = now
            self._pipeline.tick()
        if self._ask_resend is None:
            return
        for request in self._pipeline.resend_requests():
            self._ask_resend(request)
