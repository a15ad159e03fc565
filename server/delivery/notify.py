"""Delivery of alert notices: to the log and to a webhook, retried in the background, never blocking the ingest."""

from __future__ import annotations

import logging
import queue
import threading
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Protocol, runtime_checkable

import httpx

log = logging.getLogger(__name__)

# Attempts per notice and channel, with doubling waits from the first: 1+2+4+8 s, then it is reported failed.
ATTEMPTS = 5
FIRST_WAIT_S = 1.0


@dataclass(frozen=True, slots=True)
class Notice:
    alert_id: int
    change: str  # fired | resolved | reminded | escalated
    rule: str
    severity: str
    branch_id: str
    branch_name: str
    subject: str
    title: str  # in the branch's language
    body: str
    at_utc: str
    at_local: str
    url: str
    dashboard_url: str | None
    role: str = "duty_supervisor"  # who is asked; delivery routes to people by it


Outcome = Callable[[Notice, str, bool, str], None]  # notice, channel, delivered, detail
FLUSH_S = 1.0  # how often channels that hold notices back (grouping) are asked to send what is due
KEPT_OUTCOMES = 10_000  # outcomes kept to record again while the registry refuses them; older ones are dropped


@dataclass(frozen=True, slots=True)
class Delivered:
    """What became of a notice on one channel."""

    notice: Notice
    channel: str
    delivered: bool
    detail: str
    at: datetime


Record = Callable[[Sequence[Delivered]], None]  # the outcomes of a round of deliveries, kept together


class Channel(Protocol):
    name: str

    def deliver(self, notice: Notice) -> bool | None:
        """Hand the notice over, or raise; False when there was nobody to hand it to (nothing is recorded)."""


@runtime_checkable
class Holding(Protocol):
    """A channel that holds notices back to send several as one message (grouping)."""

    def flush(self, report: Outcome, force: bool = False) -> None:
        """Send what is due (everything held, when forced), reporting each notice's outcome."""


class LogChannel:
    name = "log"

    def deliver(self, notice: Notice) -> None:
        log.warning("ALERT %s [%s] %s — %s", notice.change, notice.severity, notice.title, notice.body)


class WebhookChannel:
    name = "webhook"

    def __init__(self, url: str, timeout_s: float = 5.0) -> None:
        self._url = url
        self._http = httpx.Client(timeout=timeout_s)

    def deliver(self, notice: Notice) -> None:
        response = self._http.post(self._url, json=asdict(notice))
        response.raise_for_status()

    def close(self) -> None:
        self._http.close()


class Dispatcher:
    """Hands notices to the channels on a thread of its own. The notices waiting when it comes to them all go
    out before any outcome is recorded, and a round's outcomes are recorded in one call: alerts fire in bursts
    (a batch of reports breaches many zones at once), and a registry transaction per notice and channel, each
    before the next notice went out, held the last of a burst back. A record that fails is kept for the next
    round (the notices went out; before, the failure ended this thread and nothing more was delivered)."""

    def __init__(
        self,
        channels: Sequence[Channel],
        record: Record,
        sleep: Callable[[float], bool] | None = None,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._now = now
        self._channels = list(channels)
        # a Protocol's isinstance is slow, and flushing runs every second: sorted out once
        self._holding = [channel for channel in self._channels if isinstance(channel, Holding)]
        self._record = record
        self._outcomes: list[Delivered] = []  # not yet recorded
        self._queue: queue.SimpleQueue[Notice | None] = queue.SimpleQueue()
        self._stop = threading.Event()
        self._sleep = sleep or self._stop.wait
        self._thread = threading.Thread(target=self._run, name="alert-dispatch", daemon=True)
        self.delivered = 0
        self.failed = 0
        self.failed_by_channel: Counter[str] = Counter()

    def start(self) -> None:
        self._thread.start()

    def submit(self, notice: Notice) -> None:
        self._queue.put(notice)

    def stop(self, timeout: float = 10.0) -> None:
        self._queue.put(None)
        self._thread.join(timeout)
        self._stop.set()

    def deliver_now(self, notice: Notice) -> None:
        """Deliver on the caller's thread (a replay on its simulated clock); the same path as `_run`'s."""
        for channel in self._channels:
            self._deliver(channel, notice)
        self._record_outcomes()

    def flush_now(self, force: bool = False) -> None:
        self._flush(force)
        self._record_outcomes()

    def _run(self) -> None:
        stopping = False
        while not stopping:
            try:
                notices = [self._queue.get(timeout=FLUSH_S)]
            except queue.Empty:
                self._flush(force=False)
                self._record_outcomes()
                continue
            while notices[-1] is not None:  # the stop comes last
                try:
                    notices.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            stopping = notices[-1] is None
            for notice in notices:
                if notice is not None:
                    for channel in self._channels:
                        self._deliver(channel, notice)
            self._flush(force=False)
            self._record_outcomes()
        self._flush(force=True)  # stopping: what is held back goes now rather than never
        self._record_outcomes()

    def _flush(self, force: bool) -> None:
        for channel in self._holding:
            channel.flush(self._outcome, force)

    def _outcome(self, notice: Notice, channel: str, delivered: bool, detail: str) -> None:
        if delivered:
            self.delivered += 1
        else:
            self.failed += 1
            self.failed_by_channel[channel] += 1
        self._outcomes.append(Delivered(notice, channel, delivered, detail, self._now()))

    def _record_outcomes(self) -> None:
        """Record what became of the notices; kept for the next round while that fails (the registry away)."""
        if not self._outcomes:
            return
        try:
            self._record(self._outcomes)
        except Exception as exc:  # the notices went out; what is lost is only their record, and only past the bound
            log.error("recording %d notice outcomes failed, trying again later: %s", len(self._outcomes), exc)
            del self._outcomes[:-KEPT_OUTCOMES]
            return
        self._outcomes = []

    def _deliver(self, channel: Channel, notice: Notice) -> None:
        wait = FIRST_WAIT_S
        error = ""
        for attempt in range(1, ATTEMPTS + 1):
            try:
                handed = channel.deliver(notice)
            except Exception as exc:  # any channel failure is retried, then reported
                error = f"{type(exc).__name__}: {exc}"
                log.warning(
                    "delivery of alert %d via %s failed (attempt %d/%d): %s",
                    notice.alert_id,
                    channel.name,
                    attempt,
                    ATTEMPTS,
                    error,
                )
                if attempt < ATTEMPTS:
                    self._sleep(wait)
                    wait *= 2
                continue
            if handed is False:
                return
            self._outcome(notice, channel.name, True, "")
            return
        self._outcome(notice, channel.name, False, error)
