"""The durable outbox: every message is written here, with its sequence number, before it is sent.

SQLite in WAL mode with `synchronous=FULL`: a message whose append returned survives a power cut (the WAL is
fsynced at each commit). A device sends well under one message a second, so the fsync per message is cheap even
on an SD card. Acknowledged messages stay as history (for resend requests) until `history_rows` is passed.
"""

from __future__ import annotations

import secrets
import sqlite3
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS outbox (
    seq      INTEGER PRIMARY KEY,
    topic    TEXT NOT NULL,
    payload  BLOB NOT NULL,
    acked    INTEGER NOT NULL DEFAULT 0,
    refused  TEXT
);
CREATE INDEX IF NOT EXISTS outbox_pending ON outbox (acked, seq);
"""


@dataclass(frozen=True, slots=True)
class Pending:
    seq: int
    topic: str
    payload: bytes


class Outbox:
    def __init__(self, path: Path, history_rows: int = 100_000) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._history_rows = history_rows
        self._lock = threading.Lock()
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.executescript(_SCHEMA)
        self.stream = self._meta("stream") or self._init_stream()
        self._pruned_since = 0

    def _meta(self, key: str) -> str | None:
        row = self._db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return None if row is None else str(row[0])

    def _init_stream(self) -> str:
        stream = secrets.token_hex(8)
        with self._lock:
            self._db.execute("INSERT OR IGNORE INTO meta VALUES ('stream', ?), ('next_seq', '1')", (stream,))
        return self._meta("stream") or stream

    def append(self, topic: str, build: Callable[[int, str], bytes]) -> int:
        """Allocate the next sequence number, build the payload with it and store both in one transaction."""
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                seq = int(self._meta("next_seq") or 1)
                payload = build(seq, self.stream)
                self._db.execute("INSERT INTO outbox (seq, topic, payload) VALUES (?, ?, ?)", (seq, topic, payload))
                self._db.execute("UPDATE meta SET value = ? WHERE key = 'next_seq'", (str(seq + 1),))
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
        return seq

    def pending(self, after_seq: int, limit: int) -> list[Pending]:
        """Messages not yet acknowledged, in sequence order, starting after `after_seq`."""
        with self._lock:
            rows = self._db.execute(
                "SELECT seq, topic, payload FROM outbox WHERE acked = 0 AND seq > ? ORDER BY seq LIMIT ?",
                (after_seq, limit),
            ).fetchall()
        return [Pending(int(s), str(t), bytes(p)) for s, t, p in rows]

    def mark_acked(self, seqs: Sequence[int]) -> None:
        if not seqs:
            return
        with self._lock:
            self._db.executemany("UPDATE outbox SET acked = 1 WHERE seq = ?", [(s,) for s in seqs])
            self._pruned_since += len(seqs)
            if self._pruned_since >= 1000:
                self._prune()

    def requeue(self, first: int, last: int) -> tuple[int, list[list[int]]]:
        """Send [first, last] again (a resend request); return how many and which sub-ranges are gone."""
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            present = [int(r[0]) for r in self._db.execute(
                "SELECT seq FROM outbox WHERE seq BETWEEN ? AND ? AND refused IS NULL ORDER BY seq", (first, last))]
            self._db.execute(
                "UPDATE outbox SET acked = 0 WHERE seq BETWEEN ? AND ? AND refused IS NULL", (first, last))
            self._db.execute("COMMIT")
        return len(present), _missing_runs(first, last, present)

    def mark_refused(self, seq: int, reason: str) -> None:
        """The broker refused the message for good (e.g. not authorised): keep it, but stop resending it."""
        with self._lock:
            self._db.execute("UPDATE outbox SET acked = 1, refused = ? WHERE seq = ?", (reason, seq))

    def _prune(self) -> None:
        self._pruned_since = 0
        self._db.execute(
            "DELETE FROM outbox WHERE acked = 1 AND seq <= "
            "(SELECT seq FROM outbox WHERE acked = 1 ORDER BY seq DESC LIMIT 1 OFFSET ?)",
            (self._history_rows,),
        )

    def depth(self) -> int:
        with self._lock:
            return int(self._db.execute("SELECT count(*) FROM outbox WHERE acked = 0").fetchone()[0])

    def refused_count(self) -> int:
        with self._lock:
            return int(self._db.execute("SELECT count(*) FROM outbox WHERE refused IS NOT NULL").fetchone()[0])

    def close(self) -> None:
        with self._lock:
            self._db.close()


def _missing_runs(first: int, last: int, present: list[int]) -> list[list[int]]:
    runs: list[list[int]] = []
    expected = first
    for seq in [*present, last + 1]:
        if seq > expected:
            runs.append([expected, seq - 1])
        expected = seq + 1
    return runs
