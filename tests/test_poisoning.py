"""No message can stall the ingest: far-off timestamps, NaN, huge numbers and anything the store refuses are
set aside with their reason and raw payload, counted, and every valid message around them is stored.
Against a real Mosquitto and the real server; the store is the real SQLite store."""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from lobby_sim.broker import Mosquitto
from server.app import create_app
from server.ingest import dead_letters
from server.ingest.mqtt_source import Received
from server.runtime import Runtime
from server.settings import Settings
from server.storage.base import RefusedPoints
from server.storage.points import Point
from server.storage.sqlite_store import SqliteStore
from tests.helpers import Device, eventually, start_runtime, write_site


@pytest.fixture
def runtime(tmp_path: Path, mosquitto: Mosquitto) -> Iterator[Runtime]:
    rt = start_runtime(tmp_path, mosquitto.port, ingest_stall_s=2.0)
    yield rt
    rt.stop()


def occupancies(runtime: Runtime) -> list[int]:
    return [int(p.fields["occupancy"]) for p in runtime.store.query("occupancy", "b1", 0)]


def health(runtime: Runtime) -> dict[str, object]:
    with TestClient(create_app(runtime=runtime)) as client:
        body: dict[str, object] = client.get("/api/v1/health").json()
        return body


def letters(runtime: Runtime) -> list[dict[str, object]]:
    with TestClient(create_app(runtime=runtime)) as client:
        response = client.get("/api/v1/dead-letters")
        assert response.status_code == 200, response.text
        body: list[dict[str, object]] = response.json()
        return body


POISON = {
    # before the contract had ranges, the first stalled the ingest of every branch for good
    "year 2300": {"ts": "2300-01-01T00:00:00+00:00"},
    "year 1600": {"ts": "1600-01-01T00:00:00+00:00"},
    "year 9999": {"ts": "9999-12-31T23:59:59+00:00"},
    "huge seq": {"seq": 10**30},
    "huge uptime": {"uptime_s": 1e308},
}


def test_poisoned_messages_are_set_aside_and_the_rest_stored(runtime: Runtime, device: Device) -> None:
    device.queue(1)
    for name, change in POISON.items():
        payload = device.envelope(zones=[{"zone": "queue", "occupancy": 2}])
        payload.update(change)
        device.send("queue", payload)
        device.queue(len(name))  # a valid message right after each poisoned one
    for literal in (b"NaN", b"Infinity", b"-Infinity", b"1e999"):  # not JSON numbers, or not finite ones
        body = json.dumps(device.envelope(zones=[{"zone": "queue", "occupancy": 1, "error": 0.5}]))
        device.send("queue", body.replace('"error": 0.5', f'"error": {literal.decode()}').encode())
    device.queue(42)
    eventually(lambda: 42 in occupancies(runtime), what="the last valid message stored")
    assert sorted(occupancies(runtime)) == sorted([1, *[len(n) for n in POISON], 42])
    state = health(runtime)
    assert state["status"] == "ok", state
    refused = state["refused"]
    assert isinstance(refused, dict)
    assert sum(refused.values()) == len(POISON) + 4
    kept = eventually(lambda: len(letters(runtime)) == len(POISON) + 4 and letters(runtime), what="dead letters")
    assert {x["device"] for x in kept} == {"dev-b1-cam"}
    year_2300 = next(x for x in kept if "2300" in str(x["payload"]))
    assert year_2300["cause"] == "invalid"
    assert "outside 2020-2099" in str(year_2300["detail"])
    assert json.loads(str(year_2300["payload"]))["ts"].startswith("2300")  # the raw payload, as sent
    nan = [x for x in kept if "NaN" in str(x["payload"])]
    assert nan
    assert nan[0]["cause"] in ("invalid", "not_json")


def test_a_device_clock_far_off_is_refused_and_its_skew_reported(runtime: Runtime, device: Device) -> None:
    ahead = datetime.now(UTC) + timedelta(days=3)
    device.send("queue", device.envelope(ts=ahead.isoformat(), zones=[{"zone": "queue", "occupancy": 9}]))
    behind = datetime.now(UTC) - timedelta(days=90)
    device.send("queue", device.envelope(ts=behind.isoformat(), zones=[{"zone": "queue", "occupancy": 8}]))
    device.queue(3)
    eventually(lambda: occupancies(runtime) == [3], what="the valid message stored")
    assert health(runtime)["refused"] == {"ts_out_of_range": 2}
    with TestClient(create_app(runtime=runtime)) as client:
        (listed,) = client.get("/api/v1/devices").json()[:1]
    assert listed["clock_skew_ms"] < -80 * 86400 * 1000  # the last far-off one: 90 days behind
    causes = [x["cause"] for x in letters(runtime)]
    assert causes == ["ts_out_of_range", "ts_out_of_range"]
    assert "3 d ahead of the server's clock" in str(letters(runtime)[1]["detail"])


def test_sqlite_store_rolls_back_and_takes_the_next_write(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "ts.sqlite3")
    huge = Point.make("occupancy", {"branch": "b1", "zone": "q"}, {"occupancy": 1}, 2**70)
    with pytest.raises(RefusedPoints, match="SQLite cannot store"):
        store.write([Point.make("occupancy", {"branch": "b1", "zone": "q"}, {"occupancy": 2}, 10), huge])
    nan = Point.make("occupancy", {"branch": "b1", "zone": "q"}, {"error": float("nan")}, 20)
    with pytest.raises(RefusedPoints):
        store.write([nan])
    store.write([Point.make("occupancy", {"branch": "b1", "zone": "q"}, {"occupancy": 3}, 30)])  # no open BEGIN
    assert [p.fields["occupancy"] for p in store.query("occupancy", "b1", 0)] == [3]  # all or nothing


class PickyStore(SqliteStore):
    """The real SQLite store, refusing (as a store does for content) any point with occupancy 13."""

    def write(self, points: Sequence[Point]) -> None:
        if any(p.fields.get("occupancy") == 13 for p in points):
            raise RefusedPoints("occupancy 13 is refused by this store")
        super().write(points)


def test_a_message_the_store_refuses_is_set_aside_and_the_batch_stored(tmp_path: Path) -> None:
    picky = PickyStore(tmp_path / "picky.sqlite3")
    rt = Runtime(
        Settings(
            mode="dev",
            database_url=f"sqlite:///{tmp_path / 'registry.sqlite3'}",
            site_file=write_site(tmp_path),
            timeseries_path=tmp_path / "ts.sqlite3",
        ),
        store=picky,
    )
    device = Device.offline("dev-b1-cam")
    try:
        now = time.time()
        batch = [
            Received(
                "lobby/v1/dev-b1-cam/queue",
                json.dumps(device.envelope(zones=[{"zone": "queue", "occupancy": n}])).encode(),
                now,
                i,
                1,
            )
            for i, n in enumerate((1, 13, 2, 13, 3))
        ]
        rt.pipeline.process(batch)  # one batch: the store refuses it whole, then two of its messages
        assert sorted(int(p.fields["occupancy"]) for p in picky.query("occupancy", "b1", 0)) == [1, 2, 3]
        assert rt.pipeline.stats.store_refused == 2
        with rt.sessions() as session:
            kept = dead_letters.recent(session)
        assert [(x.cause, json.loads(x.payload)["zones"][0]["occupancy"]) for x in kept] == [
            ("storage_refused", 13),
            ("storage_refused", 13),
        ]
        assert "occupancy 13 is refused" in kept[0].detail
    finally:
        picky.close()
        rt.store.close()
        rt.engine.dispose()


def test_health_is_degraded_while_ingest_cannot_advance(runtime: Runtime, device: Device, tmp_path: Path) -> None:
    locker = sqlite3.connect(tmp_path / "ts.sqlite3", isolation_level=None)
    locker.execute("BEGIN EXCLUSIVE")  # another process holds the time-series database: every write waits and fails
    try:
        device.queue(5)
        # first stalled (the write waits for the lock), then stalled with the store's own words
        eventually(lambda: "has not advanced" in str(health(runtime)["reasons"]), timeout=30, what="stalled")
        state = eventually(
            lambda: "database is locked" in str((h := health(runtime))["reasons"]) and h,
            timeout=30,
            what="the store's error in the reasons",
        )
        assert state["status"] == "degraded"
    finally:
        locker.execute("ROLLBACK")
        locker.close()
    eventually(lambda: occupancies(runtime) == [5], timeout=30, what="stored once the lock is gone")
    eventually(lambda: health(runtime)["status"] == "ok", what="health ok again")
