"""Counting for the fault suite: what was sent, by device and sequence number, against the rows in the store.

Rows are counted, not keys: a message stored twice is two rows (VictoriaMetrics is run with one sample per
series and millisecond, as InfluxDB keeps one point per series and time, so there a resend is idempotent).
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx

from lobbywatch.protocol.topics import Channel, Topic
from server.storage.points import DEVICE_HEALTH, OCCUPANCY, epoch_ns

Key = tuple[str, str, int]  # measurement, device, time in ns
STORED_AS = {Channel.QUEUE: OCCUPANCY, Channel.HEALTH: DEVICE_HEALTH}  # what the tally checks, message by message


@dataclass
class Sent:
    """What the bench publishers sent: (device, seq) -> device time in ns."""

    times: dict[tuple[str, int], int] = field(default_factory=dict)
    messages: list[tuple[str, bytes]] = field(default_factory=list)  # topic, payload
    lock: threading.Lock = field(default_factory=threading.Lock)


def stored_sqlite(work: Path) -> Counter[Key]:
    rows: Counter[Key] = Counter()
    with sqlite3.connect(work / "ts.sqlite3") as db:
        for measurement, tags, time_ns in db.execute(
            "SELECT measurement, tags, time_ns FROM points WHERE measurement IN (?, ?)", (OCCUPANCY, DEVICE_HEALTH)
        ):
            rows[(measurement, dict(json.loads(tags)).get("device", ""), int(time_ns))] += 1
    return rows


class ExportError(RuntimeError):
    """VictoriaMetrics did not give a whole export: an error status, or a body that is not JSON lines."""


def stored_victoria(url: str, attempts: int = 5) -> Counter[Key]:
    """The stored occupancy rows; a failed or cut-off export (it happens under load) is asked for again."""
    for attempt in range(1, attempts + 1):
        try:
            return _export_victoria(url)
        except (ExportError, httpx.HTTPError) as exc:
            if attempt == attempts:
                raise ExportError(f"VictoriaMetrics export at {url} failed {attempts} times; last: {exc}") from exc
            time.sleep(0.5 * attempt)
    raise AssertionError("unreachable")


def _export_victoria(url: str) -> Counter[Key]:
    httpx.get(f"{url}/internal/force_flush", timeout=10).raise_for_status()
    # to a day ahead: an export stops at now unless told, and a preload's reports, a millisecond apart from now
    # on, lie ahead of it (160,000 of them, 160 s: the tally counted those not yet due as lost)
    params = {"match[]": '{__name__="occupancy_occupancy"}', "end": str(int(time.time()) + 86_400)}
    response = httpx.get(f"{url}/api/v1/export", params=params, timeout=60)
    if response.status_code != 200:
        raise ExportError(f"status {response.status_code}: {response.text[:200]!r}")
    rows: Counter[Key] = Counter()
    for number, line in enumerate(response.text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            series = json.loads(line)
            stamps, device = series["timestamps"], series["metric"].get("device", "")
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise ExportError(f"line {number} of the export is not a series: {line[:200]!r}") from exc
        for ms in stamps:
            rows[(OCCUPANCY, device, int(ms) * 1_000_000)] += 1
    return rows


def count_published(sent: Sent, stored: Counter[Key]) -> dict[str, int]:
    keys = [(OCCUPANCY, device, t) for (device, _seq), t in sent.times.items()]
    return {
        "sent": len(keys),
        "stored": sum(1 for k in keys if stored[k]),
        "dropped_counted": 0,  # the publishers keep no outbox: nothing is dropped by a bound
        "lost": sum(1 for k in keys if not stored[k]),
        "duplicated": sum(1 for k in keys if stored[k] > 1),
    }


def settle_victoria(
    sent: Sent, url: str, timeout: float, empty: Callable[[], bool] | None = None, still_s: float = 30.0
) -> dict[str, int]:
    """`count_published` once everything sent is stored in the VictoriaMetrics at `url`, or when `timeout` is up,
    or when `empty()` says nothing is on its way any more and the store has not grown for `still_s` (what is
    missing then is lost: no need to wait out the timeout)."""
    deadline = time.monotonic() + timeout
    stored, grew_at = -1, time.monotonic()
    while (counts := count_published(sent, stored_victoria(url)))["lost"] and time.monotonic() < deadline:
        if counts["stored"] != stored:
            stored, grew_at = counts["stored"], time.monotonic()
        elif empty is not None and time.monotonic() - grew_at >= still_s and empty():
            break
        time.sleep(1.0)
    return counts


@dataclass
class DeviceTally:
    made: int = 0  # sequence numbers used
    checked: int = 0  # queue and health messages made, each looked up in the store
    stored: int = 0
    duplicated: int = 0
    unsent: int = 0  # still waiting in the outbox
    dropped: int = 0  # the outbox's own count of what it dropped at its bound
    replies: int = 0  # command replies: not time series, not looked up
    unstored: list[datetime] = field(default_factory=list)  # device times of queue reports not in the store


def made_messages(work: Path, device: str) -> dict[int, tuple[str, bytes]]:
    """seq -> (topic, payload) of every message the device's outbox took: its journal (`bench.fleet`), and what
    is still in the outbox (a kill -9 may cut the journal's last line)."""
    made: dict[int, tuple[str, bytes]] = {}
    journal = work / "journal" / f"{device}.jsonl"
    for line in journal.read_text().splitlines() if journal.exists() else []:
        try:
            seq, topic, payload = json.loads(line)
        except ValueError:
            continue
        made[int(seq)] = (str(topic), str(payload).encode())
    outbox = work / "agents" / device / "outbox.sqlite3"
    if outbox.exists():
        with sqlite3.connect(outbox) as db:
            for seq, topic, payload in db.execute("SELECT seq, topic, payload FROM outbox"):
                made.setdefault(int(seq), (str(topic), bytes(payload)))
    return made


def tally_device(work: Path, device: str, stored: Counter[Key], until: datetime | None = None) -> DeviceTally:
    """`until`: leave out messages made after this (the health reports agents go on making while the count
    settles: the last of them are always on their way)."""
    tally = DeviceTally()
    with sqlite3.connect(work / "agents" / device / "outbox.sqlite3") as db:
        meta = dict(db.execute("SELECT key, value FROM meta").fetchall())
        unsent = {int(seq) for (seq,) in db.execute("SELECT seq FROM outbox WHERE acked = 0")}
    tally.made, tally.dropped = int(meta.get("next_seq", 1)) - 1, int(meta.get("dropped", 0))
    made = made_messages(work, device)
    for seq in range(1, tally.made + 1):
        topic, payload = made.get(seq, ("", b""))
        measurement = STORED_AS.get(Topic.parse(topic).channel) if topic else OCCUPANCY  # unknown: must be stored
        made_at = datetime.fromisoformat(json.loads(payload)["ts"]) if payload else None
        if until is not None and made_at is not None and made_at > until:
            continue
        if measurement is None:
            tally.replies += 1
            continue
        tally.checked += 1
        tally.unsent += seq in unsent
        times = stored[(measurement, device, epoch_ns(made_at))] if made_at is not None else 0
        tally.stored += times > 0
        tally.duplicated += times > 1
        if not times and made_at is not None and measurement == OCCUPANCY:
            tally.unstored.append(made_at)
    return tally


def count_agents(
    work: Path,
    stored: Counter[Key],
    known: dict[str, dict[str, Any]],
    not_stored: dict[str, int],
    until: datetime | None = None,
) -> tuple[dict[str, Any], list[tuple[str, datetime]]]:
    """Every agent's messages against the store. `known`: the server's device list (what it was told of
    losses); `not_stored`: each agent's count of messages its card did not take. A message is `dropped_counted`
    when it was dropped by a documented bound and the server knows it; `lost` when it is neither stored nor that.
    Also returns (device, device time) of each queue report not stored."""
    total: Counter[str] = Counter()
    unstored_reports: list[tuple[str, datetime]] = []
    for path in sorted((work / "agents").glob("*/outbox.sqlite3")):
        device = path.parent.name
        tally = tally_device(work, device, stored, until)
        told = known.get(device, {})
        missing = tally.checked - tally.stored
        dropped = min(missing, tally.dropped, told.get("outbox_dropped") or 0)
        unstored = not_stored.get(device, 0)
        counted = min(unstored, told.get("not_stored") or 0)
        total.update(
            sent=tally.checked + unstored,
            stored=tally.stored,
            duplicated=tally.duplicated,
            dropped_counted=dropped + counted,
            unsent=tally.unsent,
            replies=tally.replies,
            lost=missing - dropped + unstored - counted,
        )
        unstored_reports += [(device, at) for at in tally.unstored]
    keys = ("sent", "stored", "dropped_counted", "lost", "duplicated", "unsent", "replies")
    return {key: total[key] for key in keys}, unstored_reports
