"""A scale-out process's sign of life for its container's health check: a file touched every `EVERY_S` while the
process has what it needs (its connections), which the check finds fresh (`deploy`'s compose file: younger than
`STALE_S`). A forwarder or worker serves no HTTP, and a process that hangs stops touching it."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from pathlib import Path

log = logging.getLogger(__name__)

EVERY_S = 5.0
UNHEALTHY_EVERY_S = 1.0
STALE_S = 30.0  # the health check's limit (docker-compose.yml says the same)


async def beat(path: Path | None, healthy: Callable[[], bool], stopping: asyncio.Event) -> None:
    """Touch `path` every `EVERY_S` while `healthy()`, until `stopping`; nothing without a path."""
    if path is None:
        return
    while not stopping.is_set():
        touched = False
        if healthy():
            try:
                path.touch()
                touched = True
            except OSError as exc:  # a full or read-only disk: the check fails, which is what it should say
                log.warning("heartbeat file %s not touched: %s", path, exc)
        with contextlib.suppress(TimeoutError):  # not healthy yet (starting): looked at again sooner
            await asyncio.wait_for(stopping.wait(), EVERY_S if touched else UNHEALTHY_EVERY_S)
