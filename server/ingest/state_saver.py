"""The ingest's state saved to the registry (devices and rule state), never given up on: a save that fails (a
deadlock with another writer, a lost connection, PostgreSQL restarting) is retried until it goes through, while
the batch stays unacknowledged and the broker keeps what arrives meanwhile. Only a fence (the branches are
another worker's now) or a stop ends the retries, by raising."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Collection

from sqlalchemy.orm import Session, sessionmaker

from lobbywatch.clock import Clock
from server.ingest import saved_state
from server.ingest.store_writer import IngestStats, retry_wait
from server.processing.branch import BranchProcessor
from server.registry.fence import Fenced

log = logging.getLogger(__name__)

Fence = Callable[[Session, Collection[str]], None]


class StateSaver:
    def __init__(
        self,
        sessions: sessionmaker[Session],
        clock: Clock,
        stats: IngestStats,
        stopping: threading.Event,
        fence: Fence,
    ) -> None:
        """`fence`: checks, in the transaction that saves their state, that these branches are still ours
        (raises `Fenced` if not)."""
        self._sessions = sessions
        self._clock = clock
        self._stats = stats
        self._stopping = stopping
        self._fence = fence
        self.touched: dict[str, BranchProcessor] = {}  # processors with state not yet saved
        self.last_flush = clock.monotonic()

    def rules(self) -> None:
        """The rule state of the branches that moved (their devices wait for the next full save)."""
        touched, now = list(self.touched.values()), self._clock.now()
        self._retrying("the rule state", lambda session: saved_state.save_rules(session, touched, now))
        saved_state.rules_saved(touched, now)
        self.touched = {branch: p for branch, p in self.touched.items() if p.dirty}

    def everything(self) -> None:
        """The devices' state and the rule state of the branches that moved, in one transaction."""
        touched, now = list(self.touched.values()), self._clock.now()
        self.last_flush = self._clock.monotonic()

        def save(session: Session) -> bool:
            wrote = saved_state.save_devices(session, touched)
            return saved_state.save_rules(session, touched, now) or wrote

        self._retrying("the batch's state", save)
        saved_state.devices_saved(touched)
        saved_state.rules_saved(touched, now)
        self.touched = {}

    def devices(self) -> None:
        touched = list(self.touched.values())
        self.last_flush = self._clock.monotonic()
        self._retrying("the devices' state", lambda session: saved_state.save_devices(session, touched))
        saved_state.devices_saved(touched)

    def drop(self, branches: Collection[str]) -> None:
        for branch in branches:
            self.touched.pop(branch, None)

    def _retrying(self, what: str, save: Callable[[Session], bool]) -> None:
        """One transaction: `save` writes (returns False when there was nothing to write), the fence checks the
        branches are ours, the commit. Retried on any failure but the fence's, with the same rows each time (the
        processors are marked saved only after the commit)."""
        branches = list(self.touched)
        attempt = 0
        while True:
            try:
                with self._sessions() as session:
                    if save(session):
                        self._fence(session, branches)
                        session.commit()
            except Fenced:
                raise
            except Exception as exc:
                self._stats.registry_failures += 1
                self._stats.last_registry_error = f"{type(exc).__name__}: {exc}"[:300]
                wait = retry_wait(attempt)
                attempt += 1
                log.error("saving %s failed (attempt %d), retrying in %s s: %s", what, attempt, wait, exc)
                if self._stopping.wait(wait):
                    raise
                continue
            self._stats.last_registry_error = None
            return
