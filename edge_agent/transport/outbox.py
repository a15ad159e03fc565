"""The durable outbox: every message is written here, with its sequence number, before it is sent.

Durability: SQLite in WAL mode with `synchronous=FULL`, so a message whose append returned survives a power cut
(the WAL is fsynced at every commit). A device sends well under one message a second, so an fsync per message
is cheap even on an SD card.

Bounds, so that a long outage or a full card never stops the agent:
- size: the file may not grow past `max_bytes` (SQLite `max_page_count`; the same error as a full disk), nor past
  what the card has free when the outbox opens (less a reserve for the write-ahead log), so that its own growth
  never fills the card; a small reserve file is kept beside it and given up when the card is full all the same
  (filled by something else), so that the outbox can still checkpoint and make room;
- age: a message not sent within `max_age_s` is dropped (stale by then: nobody acts on a queue a month old);
- history: acknowledged messages are kept for resend requests, the newest `history_rows` of them.
When space runs out, history goes first; then the oldest unsent messages are dropped. Every unsent message
ever dropped is counted (`dropped`, reported in the device's health) and the server sees it as a gap.
"""

from __future__ import annotations

import logging
import secrets
import sqlite3
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from edge_agent.transport import card

log = logging.getLogger(__name__)
T = TypeVar("T")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS outbox (
    seq      INTEGER PRIMARY KEY,
    topic    TEXT NOT NULL,
    payload  BLOB NOT NULL,
    created  REAL NOT NULL,
    acked    INTEGER NOT NULL DEFAULT 0,
    refused  TEXT
);
CREATE INDEX IF NOT EXISTS outbox_pending ON outbox (acked, seq);
"""
# Share of the unsent messages dropped at once when the outbox is full: enough to make room for a while.
DROP_SHARE = 0.01
FULL_RETRIES = 3
RELIEF_PAGES = 16  # pages above the bound that making room may use for a moment
DELETE_STEP = 64  # rows deleted at a time when making room


class OutboxFull(OSError):
    """Nothing could be freed: the message was not stored."""


@dataclass(frozen=True, slots=True)
class Pending:
    seq: int
    topic: str
    payload: bytes


class Outbox:
    def __init__(
        self,
        path: Path,
        history_rows: int = 100_000,
        max_bytes: int = 256 * 2**20,
        max_age_s: float = 30 * 86400,
    ) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._history_rows = history_rows
        self._max_age_s = max_age_s
        self._lock = threading.Lock()
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        # the log is checkpointed every 64 pages and cut back to 256 KiB: on a small card it must not eat the
        # room the messages need
        self._db.execute("PRAGMA wal_autocheckpoint=64")
        self._db.execute(f"PRAGMA journal_size_limit={card.WAL_LIMIT}")
        self._db.executescript(_SCHEMA)
        page_size = int(self._db.execute("PRAGMA page_size").fetchone()[0])
        self._reserve = path.with_name(path.name + ".reserve")
        self._max_pages = max(16, card.bound(path, max_bytes) // page_size)
        self._db.execute(f"PRAGMA max_page_count = {self._max_pages}")
        card.keep_reserve(self._reserve)
        self.stream = self._meta("stream") or self._init_stream()
        self._pruned_since = 0

    def _meta(self, key: str) -> str | None:
        row = self._db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return None if row is None else str(row[0])

    def _init_stream(self) -> str:
        stream = secrets.token_hex(8)
        with self._lock:
            self._db.execute(
                "INSERT OR IGNORE INTO meta VALUES ('stream', ?), ('next_seq', '1'), ('dropped', '0')", (stream,)
            )
        return self._meta("stream") or stream

    # -- writing -------------------------------------------------------------------------------------
    def append(self, topic: str, build: Callable[[int, str], bytes], now: float) -> int:
        """Allocate the next sequence number, build the payload with it and store both in one transaction.

        Raises OutboxFull when no room could be made; the sequence number is then not used."""
        with self._lock:
            try:
                return self._with_room(lambda: self._insert(topic, build, now), unsent=True)
            except sqlite3.OperationalError as exc:
                if _is_full(exc):
                    raise OutboxFull(f"outbox full and nothing left to free: {exc}") from exc
                raise

    def _with_room(self, operation: Callable[[], T], unsent: bool) -> T:
        """Run a write; when the outbox or the disk is full, make room (the WAL first, then history, then,
        when `unsent`, the oldest unsent messages) and try again."""
        for attempt in range(FULL_RETRIES + 1):
            try:
                return operation()
            except sqlite3.OperationalError as exc:
                if not _is_full(exc) or attempt == FULL_RETRIES:
                    raise
                self._relieve(unsent)
        raise AssertionError("unreachable")

    def _relieve(self, unsent: bool) -> None:
        # a full card: the reserve file gives the room a checkpoint needs; the checkpoint gives back the
        # write-ahead log, and the deletions that follow free the rest
        card.give_up_reserve_if_full(self._reserve)
        self._checkpoint()
        # deleting rebalances the tree, which may want a page or two more than the bound leaves
        self._db.execute(f"PRAGMA max_page_count = {self._max_pages + RELIEF_PAGES}")
        try:
            self._make_room(unsent)
        except sqlite3.OperationalError as exc:
            log.warning("could not make room in the outbox yet: %s", exc)
        finally:
            self._db.execute(f"PRAGMA max_page_count = {self._max_pages}")
        self._checkpoint()
        card.keep_reserve(self._reserve)

    def _checkpoint(self) -> None:
        try:
            self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        except sqlite3.OperationalError as exc:
            log.warning("outbox checkpoint failed: %s", exc)

    def _insert(self, topic: str, build: Callable[[int, str], bytes], now: float) -> int:
        self._db.execute("BEGIN IMMEDIATE")
        try:
            seq = int(self._meta("next_seq") or 1)
            payload = build(seq, self.stream)
            self._db.execute(
                "INSERT INTO outbox (seq, topic, payload, created) VALUES (?, ?, ?, ?)", (seq, topic, payload, now)
            )
            self._db.execute("UPDATE meta SET value = ? WHERE key = 'next_seq'", (str(seq + 1),))
            self._db.execute("COMMIT")
        except BaseException:
            if self._db.in_transaction:  # SQLite has already rolled back after SQLITE_FULL
                self._db.execute("ROLLBACK")
            raise
        return seq

    def _write(self, statement: Callable[[], object]) -> None:
        """One write in its own transaction, rolled back on any error (SQLite has already, after SQLITE_FULL)."""
        self._db.execute("BEGIN IMMEDIATE")
        try:
            statement()
            self._db.execute("COMMIT")
        except BaseException:
            if self._db.in_transaction:
                self._db.execute("ROLLBACK")
            raise

    def _make_room(self, unsent: bool = True) -> None:
        history = 0
        while True:  # in small steps: each deletion's log must fit on a full card, and is checkpointed away
            freed = self._db.execute(
                "DELETE FROM outbox WHERE seq IN (SELECT seq FROM outbox WHERE acked = 1 ORDER BY seq LIMIT ?)",
                (DELETE_STEP,),
            ).rowcount
            history += freed
            if freed < DELETE_STEP:
                break
            self._checkpoint()
        if history:
            log.warning("outbox full: removed %d acknowledged messages kept for resends", history)
            return
        if not unsent:
            return
        pending = int(self._db.execute("SELECT count(*) FROM outbox WHERE acked = 0").fetchone()[0])
        victims = max(1, int(pending * DROP_SHARE))
        self._drop("seq IN (SELECT seq FROM outbox WHERE acked = 0 ORDER BY seq LIMIT ?)", (victims,), "outbox full")

    def _drop(self, where: str, params: tuple[object, ...], why: str) -> int:
        """Delete unsent messages matching `where` and count them; returns how many."""
        dropped = 0

        def delete() -> None:
            nonlocal dropped
            dropped = self._db.execute(f"DELETE FROM outbox WHERE acked = 0 AND {where}", params).rowcount
            if dropped:
                self._db.execute("UPDATE meta SET value = CAST(value AS INTEGER) + ? WHERE key = 'dropped'", (dropped,))

        self._write(delete)
        if dropped:
            log.error("%s: dropped the %d oldest unsent messages (the server will see the gap)", why, dropped)
        return dropped

    def expire(self, now: float) -> int:
        """Drop unsent messages older than the age bound; returns how many."""
        with self._lock:
            return self._drop("created < ?", (now - self._max_age_s,), "messages older than the age bound")

    # -- sending -------------------------------------------------------------------------------------
    def pending(self, after_seq: int, limit: int) -> list[Pending]:
        """Messages not yet acknowledged, in sequence order, starting after `after_seq`."""
        with self._lock:
            rows = self._db.execute(
                "SELECT seq, topic, payload FROM outbox WHERE acked = 0 AND seq > ? ORDER BY seq LIMIT ?",
                (after_seq, limit),
            ).fetchall()
        return [Pending(int(s), str(t), bytes(p)) for s, t, p in rows]

    def mark_acked(self, seqs: Sequence[int]) -> None:
        """Never fails for want of room: at its bound the outbox frees history first, then (delivered is
        delivered) forgets these messages instead of keeping them for resends."""
        if not seqs:
            return
        with self._lock:
            for first in range(0, len(seqs), DELETE_STEP):  # small steps: each one's log fits on a full card
                self._mark_acked([(s,) for s in seqs[first : first + DELETE_STEP]])
            self._pruned_since += len(seqs)
            if self._pruned_since >= 1000:
                self._prune()

    def _mark_acked(self, rows: list[tuple[int]]) -> None:
        try:
            self._with_room(
                lambda: self._write(lambda: self._db.executemany("UPDATE outbox SET acked = 1 WHERE seq = ?", rows)),
                unsent=False,
            )
        except sqlite3.OperationalError as exc:
            if not _is_full(exc):
                raise
            # still no room: forget them instead (a deletion needs the least); if even that fails, the error
            # goes to the link, which keeps them and marks them at its next turn
            self._with_room(
                lambda: self._write(lambda: self._db.executemany("DELETE FROM outbox WHERE seq = ?", rows)),
                unsent=False,
            )
            log.warning("outbox full: %d delivered messages not kept for resends", len(rows))

    def requeue(self, first: int, last: int) -> tuple[int, list[list[int]]]:
        """Send [first, last] again (a resend request); return how many and which sub-ranges are gone."""
        with self._lock:
            present = [
                int(r[0])
                for r in self._db.execute(
                    "SELECT seq FROM outbox WHERE seq BETWEEN ? AND ? AND refused IS NULL ORDER BY seq", (first, last)
                )
            ]
            self._write(
                lambda: self._db.execute(
                    "UPDATE outbox SET acked = 0 WHERE seq BETWEEN ? AND ? AND refused IS NULL", (first, last)
                )
            )
        return len(present), _missing_runs(first, last, present)

    def mark_refused(self, seq: int, reason: str) -> None:
        """The broker refused the message for good (e.g. not authorised): keep it, but stop resending it."""
        with self._lock:
            self._write(
                lambda: self._db.execute("UPDATE outbox SET acked = 1, refused = ? WHERE seq = ?", (reason, seq))
            )

    def _prune(self) -> None:
        self._pruned_since = 0
        self._db.execute(
            "DELETE FROM outbox WHERE acked = 1 AND seq <= "
            "(SELECT seq FROM outbox WHERE acked = 1 ORDER BY seq DESC LIMIT 1 OFFSET ?)",
            (self._history_rows,),
        )

    # -- counters ------------------------------------------------------------------------------------
    def depth(self) -> int:
        with self._lock:
            return int(self._db.execute("SELECT count(*) FROM outbox WHERE acked = 0").fetchone()[0])

    @property
    def dropped(self) -> int:
        with self._lock:
            return int(self._meta("dropped") or 0)

    def refused_count(self) -> int:
        with self._lock:
            return int(self._db.execute("SELECT count(*) FROM outbox WHERE refused IS NOT NULL").fetchone()[0])

    def last_seq(self) -> int:
        with self._lock:
            return int(self._meta("next_seq") or 1) - 1

    def close(self) -> None:
        with self._lock:
            self._db.close()


def _is_full(exc: sqlite3.OperationalError) -> bool:
    # SQLITE_FULL: the disk is full, or the file reached max_page_count
    return "full" in str(exc).lower()


def _missing_runs(first: int, last: int, present: list[int]) -> list[list[int]]:
    runs: list[list[int]] = []
    expected = first
    for seq in [*present, last + 1]:
        if seq > expected:
            runs.append([expected, seq - 1])
        expected = seq + 1
    return runs
