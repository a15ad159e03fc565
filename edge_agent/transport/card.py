"""The SD card's space, as the outbox sees it: its own growth must never fill the card, and a small reserve
file is kept beside it, given up when the card is full all the same (filled by something else), so that the
outbox can still checkpoint and make room."""

from __future__ import annotations

import contextlib
import logging
import shutil
from pathlib import Path

log = logging.getLogger(__name__)

WAL_LIMIT = 256 * 1024  # the write-ahead log is cut back to this after a checkpoint
RESERVE_BYTES = 256 * 1024  # kept free beside the outbox for a card that is full all the same


def bound(path: Path, max_bytes: int) -> int:
    """The configured size, or what the card can hold besides the log and the reserve, if less."""
    held = sum(p.stat().st_size for p in path.parent.glob(path.name + "*") if p.is_file())
    room = shutil.disk_usage(path.parent).free + held - RESERVE_BYTES - 2 * WAL_LIMIT
    if room < max_bytes:
        log.warning(
            "outbox bounded by the card's free space: %d KiB (configured %d KiB)", room // 1024, max_bytes // 1024
        )
    return min(max_bytes, max(0, int(room * 0.9)))


def keep_reserve(reserve: Path) -> None:
    if reserve.exists():
        return
    try:
        reserve.write_bytes(bytes(RESERVE_BYTES))
    except OSError as exc:  # no room for it now: tried again after the next relief
        log.warning("no room for the outbox's reserve file: %s", exc)
        with contextlib.suppress(OSError):
            reserve.unlink()


def give_up_reserve_if_full(reserve: Path) -> None:
    if shutil.disk_usage(reserve.parent).free < RESERVE_BYTES:
        with contextlib.suppress(OSError):
            reserve.unlink()
            log.warning("card full: gave up the outbox's reserve to make room")
