"""Which branch each device belongs to, as the forwarders need it: from the registry, cached, read again when
told of a change, every `REFRESH_S`, and when a device not in the cache speaks (at most every `UNKNOWN_RETRY_S`,
so that a stranger sending in a loop costs no database reads)."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from server.registry import models

log = logging.getLogger(__name__)

REFRESH_S = 300.0  # a safety net: changes are announced (`changed`)
UNKNOWN_RETRY_S = 10.0  # a device just enrolled is known within this long even if the announcement was missed


class DeviceBranches:
    def __init__(self, sessions: sessionmaker[Session], monotonic: Callable[[], float] = time.monotonic) -> None:
        self._sessions = sessions
        self._monotonic = monotonic
        self._lock = threading.Lock()
        self._branches: dict[str, str] = {}
        self._read_at = -REFRESH_S
        self._changed = True
        self.reads = 0

    def __call__(self, device: str) -> str | None:
        now = self._monotonic()
        if self._changed or now - self._read_at >= REFRESH_S:
            self.reload()
        branch = self._branches.get(device)
        if branch is None and now - self._read_at >= UNKNOWN_RETRY_S:
            self.reload()
            branch = self._branches.get(device)
        return branch

    def changed(self) -> None:
        """The registry's devices changed (an enrollment, a revocation, a device moved): read again at the next
        message. Safe from any thread."""
        self._changed = True

    def reload(self) -> None:
        with self._lock:
            self._changed = False
            with self._sessions() as session:
                rows = session.execute(
                    select(models.Device.id, models.Device.branch_id).where(models.Device.revoked_at.is_(None))
                )
                self._branches = {device: branch for device, branch in rows}
            self._read_at = self._monotonic()
            self.reads += 1
