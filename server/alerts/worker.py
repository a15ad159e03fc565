"""Alert writes on their own thread, so that the ingest never waits for the alert database.

The ingest thread runs the rules (their state is in memory and cheap) and hands each transition here; this
thread writes it, decides on reminders and escalation, and queues the notices. In a replay the pipeline calls
the `AlertService` directly instead, so that simulated time stays deterministic.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol

from server.alerts.service import AlertService, Held
from server.registry.directory import BranchEntry
from server.rules.transitions import Transition

log = logging.getLogger(__name__)

RETRY_S = (0.2, 1.0, 5.0)


class AlertSink(Protocol):
    """What the ingest pipeline needs of the alerts: `AlertService` itself, or an `AlertWorker` around it."""

    def apply(self, change: Transition, branch: BranchEntry, subject_name: str) -> None: ...

    def tick(self, branches: Mapping[str, BranchEntry], held: Held) -> None: ...


@dataclass(frozen=True, slots=True)
class _Apply:
    change: Transition
    branch: BranchEntry
    subject_name: str


@dataclass(frozen=True, slots=True)
class _Tick:
    branches: Mapping[str, BranchEntry]
    held: Held


class AlertWorker:
    def __init__(self, service: AlertService) -> None:
        self._service = service
        # unbounded on purpose: transitions are few (a handful per zone and hour) and none may be dropped
        self._queue: queue.SimpleQueue[_Apply | _Tick | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name="alerts", daemon=True)
        self._idle = threading.Condition()
        self._pending = 0
        self.errors = 0

    def apply(self, change: Transition, branch: BranchEntry, subject_name: str) -> None:
        self._put(_Apply(change, branch, subject_name))

    def tick(self, branches: Mapping[str, BranchEntry], held: Held) -> None:
        self._put(_Tick(dict(branches), held))

    def _put(self, item: _Apply | _Tick) -> None:
        with self._idle:
            self._pending += 1
        self._queue.put(item)

    def backlog(self) -> int:
        return self._pending

    def wait_idle(self, timeout: float = 10.0) -> bool:
        """Until everything handed over so far is written (tests, shutdown)."""
        with self._idle:
            return self._idle.wait_for(lambda: self._pending == 0, timeout)

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float = 30.0) -> None:
        self._queue.put(None)  # after everything already queued: nothing handed over is lost on a clean stop
        self._thread.join(timeout)

    def _run(self) -> None:
        while (item := self._queue.get()) is not None:
            try:
                self._do(item)
            finally:
                with self._idle:
                    self._pending -= 1
                    self._idle.notify_all()

    def _do(self, item: _Apply | _Tick) -> None:
        for attempt, wait in enumerate((*RETRY_S, None), 1):
            try:
                if isinstance(item, _Apply):
                    self._service.apply(item.change, item.branch, item.subject_name)
                else:
                    self._service.tick(item.branches, item.held)
                return
            except Exception:  # the database busy or gone for a moment: each item is one transaction, so retry
                if wait is None:
                    self.errors += 1
                    log.exception("alert work failed %d times, given up: %s", attempt, item)
                    return
                log.warning("alert work failed (attempt %d), retrying in %s s", attempt, wait, exc_info=True)
                time.sleep(wait)
