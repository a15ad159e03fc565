"""Time series in InfluxDB 2 through influxdb-client, and read back with InfluxQL.

Writes are batched (5,000 lines, gzip, flushed every second) and retried by the client with exponential backoff.
A batch that still fails when its retry time runs out is not dropped: it goes to a local spool (SQLite) and is
written again later, so InfluxDB being down for longer than the retry time loses nothing. Writes are idempotent
(same measurement, tags and time overwrite), so a batch written twice is harmless. A batch InfluxDB refuses
for its content (400 bad line or field type conflict, 413 too large, 422 outside retention) is split until the
refused lines are found; those are set aside (`set_aside`: the server's dead letters) and the rest written, so
one bad point never blocks the spool's head.

Reads use InfluxQL on the `/query` endpoint, which InfluxDB 1.8+, 2.x (v1 compatibility API with a DBRP mapping)
and 3.x all serve, like the dashboards do.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import httpx
from influxdb_client.client.influxdb_client import InfluxDBClient
from influxdb_client.client.write_api import SYNCHRONOUS, WriteOptions
from influxdb_client.domain.write_precision import WritePrecision
from influxdb_client.rest import ApiException

from server.storage.points import SCHEMA, Point

log = logging.getLogger(__name__)

# The client's stubs type this as a str enum member and its signature as WritePrecision; it is both.
_NANOSECONDS: Any = WritePrecision.NS

# Lines per batch: InfluxDB's guidance is 5,000 for best throughput.
BATCH_SIZE = 5000
FLUSH_INTERVAL_MS = 1000
# How long the client keeps retrying a batch before it goes to the spool.
MAX_RETRY_TIME_MS = 60_000
SPOOL_RETRY_S = 15.0
# Answers that say the lines themselves are wrong: no retry helps (429 and 5xx pass, and are retried).
CONTENT_STATUSES = frozenset({400, 413, 422})


class Spool:
    """Line-protocol batches InfluxDB did not take, kept on disk until it does."""

    def __init__(self, path: Path) -> None:
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("CREATE TABLE IF NOT EXISTS spool (id INTEGER PRIMARY KEY, lines TEXT NOT NULL)")
        self._lock = threading.Lock()

    def put(self, lines: str) -> None:
        with self._lock:
            self._db.execute("INSERT INTO spool (lines) VALUES (?)", (lines,))

    def oldest(self) -> tuple[int, str] | None:
        with self._lock:
            row = self._db.execute("SELECT id, lines FROM spool ORDER BY id LIMIT 1").fetchone()
        return None if row is None else (int(row[0]), str(row[1]))

    def remove(self, batch_id: int) -> None:
        with self._lock:
            self._db.execute("DELETE FROM spool WHERE id = ?", (batch_id,))

    def depth(self) -> int:
        with self._lock:
            return int(self._db.execute("SELECT count(*) FROM spool").fetchone()[0])

    def close(self) -> None:
        with self._lock:
            self._db.close()


class InfluxStore:
    def __init__(
        self,
        url: str,
        token: str,
        org: str,
        bucket: str,
        spool_path: Path,
        *,
        max_retry_time_ms: int = MAX_RETRY_TIME_MS,
        flush_interval_ms: int = FLUSH_INTERVAL_MS,
        spool_retry_s: float = SPOOL_RETRY_S,
        set_aside: Callable[[str, str], None] | None = None,
    ) -> None:
        self._url = url.rstrip("/")
        self._token = token
        self._org = org
        self._bucket = bucket
        self._client = InfluxDBClient(url=url, token=token, org=org, enable_gzip=True)
        self._writer = self._client.write_api(
            write_options=WriteOptions(
                batch_size=BATCH_SIZE,
                flush_interval=flush_interval_ms,
                retry_interval=500,
                max_retries=50,
                max_retry_delay=10_000,
                max_retry_time=max_retry_time_ms,
                exponential_base=2,
            ),
            success_callback=self._on_success,
            error_callback=self._on_error,
            retry_callback=self._on_retry,
        )
        self._sync_writer = self._client.write_api(write_options=SYNCHRONOUS)
        self._spool = Spool(spool_path)
        self._http = httpx.Client(timeout=10.0, headers={"Authorization": f"Token {token}"})
        self._lock = threading.Lock()
        self.submitted = 0
        self.written = 0
        self.retries = 0
        self.spooled = 0
        self.refused = 0
        self._set_aside = set_aside
        self._stop = threading.Event()
        self._closed = False
        self._spool_depth = 0
        self._spool_retry_s = spool_retry_s
        self._drainer = threading.Thread(target=self._drain_spool, name="influx-spool", daemon=True)
        self._drainer.start()

    # -- writing -------------------------------------------------------------------------------------
    def write(self, points: Sequence[Point]) -> None:
        if not points:
            return
        self._writer.write(self._bucket, self._org, [p.line() for p in points], write_precision=_NANOSECONDS)
        with self._lock:
            self.submitted += len(points)

    def _on_success(self, _conf: object, data: str | bytes) -> None:
        with self._lock:
            self.written += _line_count(data)

    def _on_retry(self, _conf: object, _data: str | bytes, exc: Exception) -> None:
        with self._lock:
            self.retries += 1
        if self.retries == 1 or self.retries % 100 == 0:
            log.warning("InfluxDB write failed, retrying (%d retries so far): %s", self.retries, exc)

    def _on_error(self, _conf: object, data: str | bytes, exc: Exception) -> None:
        text = data.decode() if isinstance(data, bytes) else data
        self._spool.put(text)
        with self._lock:
            self.spooled += _line_count(text)
        log.error("InfluxDB did not take a batch of %d lines; spooled for retry: %s", _line_count(text), exc)

    def _drain_spool(self) -> None:
        while not self._stop.wait(self._spool_retry_s):
            self.flush_spool()

    def flush_spool(self) -> int:
        """Write spooled batches now; return how many lines went out."""
        sent = 0
        while (batch := self._spool.oldest()) is not None:
            batch_id, lines = batch
            try:
                written = self._send(lines.splitlines())
            except Exception as exc:  # InfluxDB down or busy: keep the batch, try again later
                log.warning("spooled batch still not taken by InfluxDB: %s", exc)
                break
            self._spool.remove(batch_id)
            sent += written
            with self._lock:
                self.written += written
        return sent

    def _send(self, lines: list[str]) -> int:
        """Write the lines, setting aside those InfluxDB refuses for their content; returns how many were
        written. Raises when the failure may pass (the caller keeps the batch)."""
        lines = [line for line in lines if line.strip()]
        if not lines:
            return 0
        try:
            self._sync_writer.write(self._bucket, self._org, "\n".join(lines), write_precision=_NANOSECONDS)
        except ApiException as exc:
            if exc.status not in CONTENT_STATUSES:
                raise
            if len(lines) == 1:
                self._refuse(lines[0], f"InfluxDB refused the point ({exc.status}): {_reason(exc)}")
                return 0
            # idempotent: lines of a partial write that InfluxDB took already are simply written again
            half = len(lines) // 2
            return self._send(lines[:half]) + self._send(lines[half:])
        return len(lines)

    def _refuse(self, line: str, reason: str) -> None:
        with self._lock:
            self.refused += 1
        log.error("set aside a point InfluxDB will not take: %s", reason)
        if self._set_aside is not None:
            self._set_aside(line, reason)

    # -- reading -------------------------------------------------------------------------------------
    def query(self, measurement: str, branch: str, since_ns: int, until_ns: int | None = None) -> list[Point]:
        tag_keys = SCHEMA[measurement][0]
        until = f" AND time < {int(until_ns)}" if until_ns is not None else ""
        influxql = (
            f'SELECT * FROM "{measurement}" WHERE "branch" = \'{_quote(branch)}\' '
            f"AND time >= {int(since_ns)}{until} ORDER BY time ASC"
        )
        response = self._http.get(f"{self._url}/query", params={"db": self._bucket, "q": influxql, "epoch": "ns"})
        response.raise_for_status()
        points: list[Point] = []
        for result in response.json().get("results", []):
            if "error" in result:
                raise RuntimeError(f"InfluxQL error: {result['error']}")
            for series in result.get("series", []):
                columns = series["columns"]
                for row in series["values"]:
                    record = dict(zip(columns, row, strict=True))
                    tags = {k: str(record[k]) for k in tag_keys if record.get(k) is not None}
                    fields = {k: v for k, v in record.items() if k not in tag_keys and k != "time" and v is not None}
                    points.append(Point.make(measurement, tags, fields, int(record["time"])))
        return points

    def health(self) -> dict[str, object]:
        with self._lock:
            return {
                "backend": "influxdb",
                "submitted": self.submitted,
                "written": self.written,
                "retries": self.retries,
                "spooled_lines": self.spooled,
                "refused_lines": self.refused,
                "spool_batches": self._spool_depth if self._closed else self._spool.depth(),
            }

    def close(self) -> None:
        self._writer.close()  # type: ignore[no-untyped-call]  # flushes the batch in hand
        self._stop.set()
        self._drainer.join(5)
        self.flush_spool()
        self._spool_depth = self._spool.depth()
        self._closed = True
        self._spool.close()
        self._http.close()
        self._client.close()  # type: ignore[no-untyped-call]


def _line_count(data: str | bytes) -> int:
    text = data.decode() if isinstance(data, bytes) else data
    return sum(1 for line in text.splitlines() if line.strip())


def _reason(exc: ApiException) -> str:
    body = exc.body.decode(errors="replace") if isinstance(exc.body, bytes) else str(exc.body or exc.reason)
    return body[:500]


def _quote(value: str) -> str:
    return value.replace("\\", "\\\\").replace("'", "\\'")
