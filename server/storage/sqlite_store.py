"""Time series in SQLite: the embedded default for a demo or a single small office.

Laid out like InfluxDB: a series (measurement and tags) is stored once and numbered, and each sample is keyed by
(series number, time), so that a resent point overwrites itself and an insert touches one short key. The view
`points` gives the rows with their measurement and tags, as the first layout had them (one table keyed by the
tags' text, 2.6 times slower to write; a file in that layout is moved over when opened).
"""

from __future__ import annotations

import json
import math
import sqlite3
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path

import orjson

from server.storage.base import RefusedPoints
from server.storage.points import FieldValue, Point

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
CREATE TABLE IF NOT EXISTS series (
    id          INTEGER PRIMARY KEY,
    measurement TEXT NOT NULL,
    branch      TEXT NOT NULL,
    key         TEXT NOT NULL UNIQUE,
    tags        TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS series_of_branch ON series (measurement, branch);
CREATE TABLE IF NOT EXISTS samples (
    series      INTEGER NOT NULL REFERENCES series (id),
    time_ns     INTEGER NOT NULL,
    fields      TEXT NOT NULL,
    PRIMARY KEY (series, time_ns)
) WITHOUT ROWID;
CREATE VIEW IF NOT EXISTS points AS
    SELECT s.measurement, s.branch, s.key AS series, p.time_ns, s.tags, p.fields
    FROM samples p JOIN series s ON s.id = p.series;
"""

# The first layout's table, moved into the series and samples in one transaction when such a file is opened.
_MOVE_V1 = """
ALTER TABLE points RENAME TO points_v1;
DROP INDEX IF EXISTS points_branch_time;
{schema}
INSERT OR IGNORE INTO series (measurement, branch, key, tags)
    SELECT measurement, branch, measurement || ',' || series, tags FROM points_v1;
INSERT OR REPLACE INTO samples (series, time_ns, fields)
    SELECT s.id, p.time_ns, p.fields FROM points_v1 p JOIN series s ON s.key = p.measurement || ',' || p.series;
DROP TABLE points_v1;
"""


def fields_json(fields: Mapping[str, FieldValue]) -> str:
    """A point's fields as JSON. NaN and infinities have no place in a time series (and no JSON of their own):
    orjson writes them as null, and a point's fields hold no None, so a null is looked into."""
    text = orjson.dumps(fields)
    if b"null" in text and any(isinstance(v, float) and not math.isfinite(v) for v in fields.values()):
        raise ValueError(f"a field is not a finite number: {dict(fields)}")
    return text.decode()


class SqliteStore:
    def __init__(self, path: Path) -> None:
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        # NORMAL in WAL: a commit survives a crash of this process; the broker's redelivery of unacknowledged
        # messages and the devices' outboxes cover a power cut of the server.
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute("PRAGMA cache_size=-65536")  # 64 MiB: the indexes stay in memory while they grow
        first_layout = self._db.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'points'")
        if first_layout.fetchone():
            self._db.executescript(f"BEGIN; {_MOVE_V1.format(schema=_SCHEMA)} COMMIT;")
        self._db.executescript(_SCHEMA)
        self._lock = threading.Lock()
        self._series: dict[tuple[str, tuple[tuple[str, str], ...]], int] = {}  # series -> number, seen by this process
        self.written = 0

    def write(self, points: Sequence[Point]) -> None:
        if not points:
            return
        try:
            rows = [(p, fields_json(p.fields)) for p in points]
        except _CONTENT_ERRORS as exc:
            raise RefusedPoints(f"SQLite cannot store these points: {exc}") from exc
        with self._lock:
            self._db.execute("BEGIN")
            try:
                numbered = [(self._number(point), point.time_ns, fields) for point, fields in rows]
                self._db.executemany("INSERT OR REPLACE INTO samples VALUES (?, ?, ?)", numbered)
                self._db.execute("COMMIT")
            except BaseException as exc:
                # never leave a transaction open: the next BEGIN would fail for ever after
                if self._db.in_transaction:
                    self._db.execute("ROLLBACK")
                self._series.clear()  # numbers given in the transaction rolled back are not in the file
                if isinstance(exc, _CONTENT_ERRORS):
                    raise RefusedPoints(f"SQLite cannot store these points: {exc}") from exc
                raise
            self.written += len(rows)

    def _number(self, point: Point) -> int:
        """The series' number, made in the write's transaction the first time it is seen."""
        number = self._series.get((point.measurement, point.tags))  # no key text built for a series seen before
        if number is None:
            key = f"{point.measurement},{point.series}"
            found = self._db.execute("SELECT id FROM series WHERE key = ?", (key,)).fetchone()
            if found is None:
                found = self._db.execute(
                    "INSERT INTO series (measurement, branch, key, tags) VALUES (?, ?, ?, ?) RETURNING id",
                    (point.measurement, point.tag("branch") or "", key, json.dumps(point.tags)),
                ).fetchone()
            number = self._series[(point.measurement, point.tags)] = int(found[0])
        return number

    def query(self, measurement: str, branch: str, since_ns: int, until_ns: int | None = None) -> list[Point]:
        with self._lock:
            rows = self._db.execute(
                "SELECT s.tags, p.fields, p.time_ns FROM series s JOIN samples p ON p.series = s.id "
                "WHERE s.measurement = ? AND s.branch = ? AND p.time_ns >= ? AND p.time_ns < ? ORDER BY p.time_ns",
                (measurement, branch, since_ns, until_ns if until_ns is not None else 2**63 - 1),
            ).fetchall()
        return [
            Point(measurement, tuple((k, v) for k, v in json.loads(tags)), json.loads(fields), int(time_ns))
            for tags, fields, time_ns in rows
        ]

    def count(self, measurement: str | None = None) -> int:
        with self._lock:
            if measurement is None:
                return int(self._db.execute("SELECT count(*) FROM samples").fetchone()[0])
            return int(
                self._db.execute("SELECT count(*) FROM points WHERE measurement = ?", (measurement,)).fetchone()[0]
            )

    def health(self) -> dict[str, object]:
        return {"backend": "sqlite", "written": self.written}

    def close(self) -> None:
        with self._lock:
            self._db.close()
