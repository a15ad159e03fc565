"""Refused messages: counted per cause, logged once per cause and device so a broken device cannot flood the log."""

from __future__ import annotations

import logging
import threading
from collections import Counter

log = logging.getLogger("server.ingest.rejects")

# Distinct (cause, device) pairs remembered for logging; past this every new pair is still counted, not logged.
MAX_LOGGED_PAIRS = 10_000


class Rejects:
    def __init__(self) -> None:
        self.by_cause: Counter[str] = Counter()
        self._logged: set[tuple[str, str]] = set()
        self._lock = threading.Lock()

    def refuse(self, cause: str, device: str, message: str) -> None:
        with self._lock:
            self.by_cause[cause] += 1
            pair = (cause, device)
            if pair in self._logged or len(self._logged) >= MAX_LOGGED_PAIRS:
                return
            self._logged.add(pair)
        log.warning(
            "refused message from %s (%s): %s; further %s refusals from it are counted, not logged",
            device,
            cause,
            message,
            cause,
        )

    def snapshot(self) -> dict[str, int]:
        with self._lock:
            return dict(self.by_cause)
