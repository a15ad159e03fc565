"""Time series in InfluxDB 2 through influxdb-client, and read back with InfluxQL.

Durable before acknowledged, in one of two ways:
- spooled (`lobbywatch serve`): `write` puts the batch's lines in a local write-ahead spool (SQLite, fsynced at
  every commit) and returns; only then does the ingest acknowledge the MQTT messages. A sender thread writes the
  spool to InfluxDB, oldest first, up to 5,000 lines a request, and deletes what InfluxDB took; while InfluxDB
  is down it retries with backoff, and a server killed meanwhile finds the spool at its next start and goes on.
- direct (`spool_path=None`, a scale-out worker): `write` returns once InfluxDB has taken the lines, and raises
  while it does not. A worker may be lost for good with its disk (a machine gone, a pod moved), so a spool of
  its own would lose what it held; JetStream keeps the unacknowledged messages instead, on replicated disks,
  and delivers them to whichever worker owns the partition next.
Writes are idempotent (same measurement, tags and time overwrite), so a batch written twice is harmless. A
batch InfluxDB refuses for its content (400 bad line or field type conflict, 413 too large, 422 outside
retention) is split until the refused lines are found; those are set aside (`set_aside`: the server's dead
letters) and the rest written, so one bad point never blocks the spool's head or the ingest.

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
from influxdb_client.client.write_api import SYNCHRONOUS
from influxdb_client.domain.write_precision import WritePrecision
from influxdb_client.rest import ApiException

from server.storage.points import SCHEMA, Point

log = logging.getLogger(__name__)

# The client's stubs type this as a str enum member and its signature as WritePrecision; it is both.
_NANOSECONDS: Any = WritePrecision.NS

# Lines per request: InfluxDB's guidance is 5,000 for best throughput.
BATCH_SIZE = 5000
RETRY_S = (0.5, 1.0, 2.0, 5.0, 10.0, 15.0)  # waits between attempts while InfluxDB does not take the spool
IDLE_S = 1.0  # the sender looks at the spool at least this often
# Answers that say the lines themselves are wrong: no retry helps (429 and 5xx pass, and are retried).
CONTENT_STATUSES = frozenset({400, 413, 422})


class Spool:
    """Line-protocol batches not yet taken by InfluxDB, on disk: every batch goes through it."""

    def __init__(self, path: Path) -> None:
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")  # a batch put is on disk before the MQTT acknowledgement
        self._db.execute("CREATE TABLE IF NOT EXISTS spool (id INTEGER PRIMARY KEY, lines TEXT NOT NULL)")
        self._lock = threading.Lock()

    def put(self, lines: str) -> None:
        with self._lock:
            self._db.execute("INSERT INTO spool (lines) VALUES (?)", (lines,))

    def oldest(self, max_lines: int = BATCH_SIZE) -> tuple[list[int], list[str]]:
        """The oldest batches, whole, up to about `max_lines` lines (at least one batch)."""
        ids: list[int] = []
        lines: list[str] = []
        with self._lock:
            for batch_id, text in self._db.execute("SELECT id, lines FROM spool ORDER BY id LIMIT 200"):
                batch = [line for line in str(text).splitlines() if line.strip()]
                if ids and len(lines) + len(batch) > max_lines:
                    break
                ids.append(int(batch_id))
                lines.extend(batch)
        return ids, lines

    def remove(self, ids: Sequence[int]) -> None:
        with self._lock:
            self._db.executemany("DELETE FROM spool WHERE id = ?", [(i,) for i in ids])

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
        spool_path: Path | None,
        *,
        retry_s: Sequence[float] = RETRY_S,
        set_aside: Callable[[str, str], None] | None = None,
    ) -> None:
        self._url = url.rstrip("/")
        self._org = org
        self._bucket = bucket
        self._client = InfluxDBClient(url=url, token=token, org=org, enable_gzip=True)
        self._sync_writer = self._client.write_api(write_options=SYNCHRONOUS)
        self._spool = Spool(spool_path) if spool_path is not None else None
        self._http = httpx.Client(timeout=10.0, headers={"Authorization": f"Token {token}"})
        self._lock = threading.Lock()
        self._send_lock = threading.Lock()  # one sender at a time: the thread, or a flush asked for
        self.submitted = 0
        self.written = 0
        self.retries = 0
        self.refused = 0
        self._set_aside = set_aside
        self._retry_s = tuple(retry_s)
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._closed = False
        self._spool_depth = 0
        self._sender = threading.Thread(target=self._send_loop, name="influx-spool", daemon=True)
        if self._spool is not None:
            self._sender.start()

    # -- writing -------------------------------------------------------------------------------------
    def write(self, points: Sequence[Point]) -> None:
        """On disk when it returns: in the spool (InfluxDB gets it from there), or in InfluxDB itself when there
        is no spool (raises while InfluxDB does not take it)."""
        if not points:
            return
        lines = [p.line() for p in points]
        with self._lock:
            self.submitted += len(points)
        if self._spool is None:
            try:
                written = self._send(lines)
            except Exception:
                with self._lock:
                    self.retries += 1
                raise
            with self._lock:
                self.written += written
            return
        self._spool.put("\n".join(lines))
        self._wake.set()

    def _send_loop(self) -> None:
        attempt = 0
        while not self._stop.is_set():
            try:
                self.flush_spool(raise_errors=True)
                attempt = 0
                self._wake.wait(IDLE_S)
                self._wake.clear()
            except Exception as exc:  # InfluxDB down or busy: keep the spool, try again later
                wait = self._retry_s[min(attempt, len(self._retry_s) - 1)]
                attempt += 1
                with self._lock:
                    self.retries += 1
                if attempt == 1 or attempt % 20 == 0:
                    log.warning(
                        "InfluxDB does not take the spool (%d attempts), retrying in %s s: %s", attempt, wait, exc
                    )
                self._stop.wait(wait)

    def flush_spool(self, raise_errors: bool = False) -> int:
        """Write the spool now, oldest first; return how many lines went out. Stops at the first failure that
        may pass (raised when asked)."""
        sent = 0
        if self._spool is None:
            return sent
        with self._send_lock:
            while True:
                ids, lines = self._spool.oldest()
                if not ids:
                    return sent
                try:
                    written = self._send(lines)
                except Exception:
                    if raise_errors:
                        raise
                    return sent
                self._spool.remove(ids)
                sent += written
                with self._lock:
                    self.written += written

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
                "refused_lines": self.refused,
                "spool_batches": self._spool_depth if self._closed or self._spool is None else self._spool.depth(),
            }

    def close(self, flush_s: float = 10.0) -> None:
        """Stop the sender after one last try; what InfluxDB did not take stays in the spool for the next start."""
        self._stop.set()
        self._wake.set()
        if self._spool is not None:
            self._sender.join(flush_s)
            self.flush_spool()
            self._spool_depth = self._spool.depth()
            self._spool.close()
        self._closed = True
        self._http.close()
        self._client.close()  # type: ignore[no-untyped-call]


def _reason(exc: ApiException) -> str:
    body = exc.body.decode(errors="replace") if isinstance(exc.body, bytes) else str(exc.body or exc.reason)
    return body[:500]


def _quote(value: str) -> str:
    return value.replace("\\", "\\\\").replace("'", "\\'")
