"""Time series in SQLite: the embedded default for a demo or a single small office.

One table keyed like InfluxDB (measurement, series, time) so that a resent point overwrites itself.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Sequence
from pathlib import Path

from server.storage.base import RefusedPoints
from server.storage.points import Point

# What SQLite raises for a value it cannot hold (an integer past 64 bits, a string too long, a type it has no
# column type for): no retry helps. OperationalError (disk full, locked) passes, so it is not here.
_CONTENT_ERRORS = (
    OverflowError,
    ValueError,
    TypeError,
    sqlite3.IntegrityError,
    sqlite3.DataError,
    sqlite3.InterfaceError,
)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS points (
    measurement TEXT NOT NULL,
    branch      TEXT NOT NULL,
    series      TEXT NOT NULL,
    time_ns     INTEGER NOT NULL,
    tags        TEXT NOT NULL,
    fields      TEXT NOT NULL,
    PRIMARY KEY (measurement, series, time_ns)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS points_branch_time ON points (measurement, branch, time_ns);
"""


class SqliteStore:
    def __init__(self, path: Path) -> None:
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        # NORMAL in WAL: a commit survives a crash of this process; the broker's redelivery of unacknowledged
        # messages and the devices' outboxes cover a power cut of the server.
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute("PRAGMA cache_size=-65536")  # 64 MiB: the two indexes stay in memory while they grow
        self._db.executescript(_SCHEMA)
        self._lock = threading.Lock()
        self.written = 0

    def write(self, points: Sequence[Point]) -> None:
        if not points:
            return
        try:  # NaN and infinities have no place in a time series (and no JSON of their own)
            rows = [
                (
                    p.measurement,
                    p.tag("branch") or "",
                    p.series,
                    p.time_ns,
                    json.dumps(p.tags),
                    json.dumps(p.fields, allow_nan=False),
                )
                for p in points
            ]
        except _CONTENT_ERRORS as exc:
            raise RefusedPoints(f"SQLite cannot store these points: {exc}") from exc
        with self._lock:
            self._db.execute("BEGIN")
            try:
                self._db.executemany("INSERT OR REPLACE INTO points VALUES (?, ?, ?, ?, ?, ?)", rows)
                self._db.execute("COMMIT")
            except BaseException as exc:
                # never leave a transaction open: the next BEGIN would fail for ever after
                if self._db.in_transaction:
                    self._db.execute("ROLLBACK")
                if isinstance(exc, _CONTENT_ERRORS):
                    raise RefusedPoints(f"SQLite cannot store these points: {exc}") from exc
                raise
            self.written += len(rows)

    def query(self, measurement: str, branch: str, since_ns: int, until_ns: int | None = None) -> list[Point]:
        with self._lock:
            rows = self._db.execute(
                "SELECT tags, fields, time_ns FROM points WHERE measurement = ? AND branch = ? "
                "AND time_ns >= ? AND time_ns < ? ORDER BY time_ns",
                (measurement, branch, since_ns, until_ns if until_ns is not None else 2**63 - 1),
            ).fetchall()
        return [
            Point(measurement, tuple((k, v) for k, v in json.loads(tags)), json.loads(fields), int(time_ns))
            for tags, fields, time_ns in rows
        ]

    def count(self, measurement: str | None = None) -> int:
        with self._lock:
            if measurement is None:
                return int(self._db.execute("SELECT count(*) FROM points").fetchone()[0])
            return int(
                self._db.execute("SELECT count(*) FROM points WHERE measurement = ?", (measurement,)).fetchone()[0]
            )

    def health(self) -> dict[str, object]:
        return {"backend": "sqlite", "written": self.written}

    def close(self) -> None:
        with self._lock:
            self._db.close()
