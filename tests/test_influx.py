"""The InfluxDB 2 writer against real servers: VictoriaMetrics takes the v2 write API, InfluxDB 1.6 runs InfluxQL."""

import time
from pathlib import Path

import httpx

from server.storage.influx_store import InfluxStore
from server.storage.points import Point
from tests.helpers import eventually
from tests.services import Influx1, InfluxWriteStandIn, VictoriaMetrics


def sample_points(now_ns: int, n: int) -> list[Point]:
    points = []
    for i in range(n):
        t = now_ns - (n - i) * 1_000_000_000
        points.append(
            Point.make(
                "occupancy",
                {"branch": "b1", "zone": "queue", "device": "d1"},
                {"occupancy": i % 9, "known": True, "error": 0.5},
                t,
            )
        )
        tags = {"branch": "b1", "device": "d1", "sensor": "lobby temp", "kind": "temperature"}
        points.append(Point.make("facility", tags, {"value": 20.0 + i / 10, "ok": True}, t))
    return points


def store_for(url: str, tmp_path: Path, **options: object) -> InfluxStore:
    return InfluxStore(url, "test-token", "lobbywatch", "lobbywatch", tmp_path / "spool.sqlite3", **options)  # type: ignore[arg-type]


def test_every_point_arrives_with_tags_and_field_types(victoria: VictoriaMetrics, tmp_path: Path) -> None:
    store = store_for(victoria.url, tmp_path)
    now = time.time_ns()
    written = sample_points(now, 300)
    store.write(written[:250])
    store.write(written[250:])
    store.close()  # flushes the batch in hand
    assert store.health()["written"] == 600
    occupancy = eventually(lambda: victoria.export("occupancy_occupancy"), what="occupancy exported")
    (series,) = occupancy
    assert series["metric"] == {"__name__": "occupancy_occupancy", "branch": "b1", "zone": "queue", "device": "d1"}
    assert series["values"] == [float(i % 9) for i in range(300)]
    assert series["timestamps"] == [(now - (300 - i) * 1_000_000_000) // 1_000_000 for i in range(300)]
    (known,) = victoria.export("occupancy_known")
    assert set(known["values"]) == {1.0}  # a boolean field
    (temperature,) = victoria.export("facility_value")
    assert temperature["metric"]["sensor"] == "lobby temp"  # escaped space survives
    assert temperature["values"][-1] == 20.0 + 299 / 10


def test_points_written_while_influx_is_down_arrive_later(victoria: VictoriaMetrics, tmp_path: Path) -> None:
    victoria.stop()
    store = store_for(victoria.url, tmp_path, retry_s=(0.2,))
    store.write(sample_points(time.time_ns(), 50))
    assert store.health()["spool_batches"] == 1  # on disk when write returned
    eventually(lambda: store.health()["retries"] >= 2, timeout=20, what="InfluxDB tried while down")
    assert store.health()["written"] == 0
    victoria.start()
    eventually(lambda: store.health()["spool_batches"] == 0, timeout=20, what="spool drained")
    store.close()
    assert store.health()["written"] == 100
    eventually(lambda: victoria.export("occupancy_occupancy"), what="occupancy exported")
    assert len(victoria.export("occupancy_occupancy")[0]["values"]) == 50


def test_influxql_reads_back_what_the_writer_wrote(influx1: Influx1, tmp_path: Path) -> None:
    influx1.query("CREATE DATABASE reads")
    written = sample_points(time.time_ns(), 20)
    # the same lines the writer sends to InfluxDB 2, through 1.x's own write endpoint
    body = "\n".join(p.line() for p in written)
    httpx.post(f"{influx1.url}/write", params={"db": "reads", "precision": "ns"}, content=body).raise_for_status()
    store = InfluxStore(influx1.url, "unused", "lobbywatch", "reads", tmp_path / "spool.sqlite3")
    try:
        read = store.query("occupancy", "b1", 0)
        facility = store.query("facility", "b1", written[10].time_ns)
        assert store.query("occupancy", "other-branch", 0) == []
    finally:
        store.close()
    assert read == [p for p in written if p.measurement == "occupancy"]
    expected = [p.fields["value"] for p in written[10:] if p.measurement == "facility"]
    assert [p.fields["value"] for p in facility] == expected


def test_a_point_influxdb_refuses_is_set_aside_and_never_blocks_the_spool(tmp_path: Path) -> None:
    stand_in = InfluxWriteStandIn()
    set_aside: list[tuple[str, str]] = []
    store = store_for(stand_in.url, tmp_path, set_aside=lambda line, reason: set_aside.append((line, reason)))
    try:
        now = time.time_ns()
        good = sample_points(now, 50)
        tags = {"branch": "b1", "device": "d1", "sensor": "lobby temp", "kind": "temperature"}
        wrong = Point.make("facility", tags, {"value": "not a number"}, now)  # a type InfluxDB has as float
        store.write([*good[:60], wrong, *good[60:]])
        # the batch is refused as a whole (400); the sender splits it until it finds the bad line
        eventually(lambda: store.health()["spool_batches"] == 0 and set_aside, what="the refused line set aside")
        assert store.health()["written"] == 100
        assert [line for line, _ in set_aside] == [wrong.line()]
        assert "field type conflict" in set_aside[0][1]
        assert stand_in.lines == {p.line() for p in good}
        store.write(sample_points(now + 10**12, 5))
        eventually(lambda: len(stand_in.lines) == 110, what="the next batch written: the head is not blocked")
        assert store.health()["refused_lines"] == 1
    finally:
        store.close()
        stand_in.stop()


WRITER = """
import sys, time
from pathlib import Path
from server.storage.influx_store import InfluxStore
from tests.test_influx import sample_points
store = InfluxStore(sys.argv[1], "t", "lobbywatch", "lobbywatch", Path(sys.argv[2]), retry_s=(0.2,))
store.write(sample_points(int(sys.argv[3]), 200))
print("written", flush=True)  # write returned: the server would acknowledge the MQTT messages now
time.sleep(600)
"""


def test_a_server_killed_while_influxdb_is_down_loses_nothing(victoria: VictoriaMetrics, tmp_path: Path) -> None:
    """Measured before: written into the client's memory and acknowledged, 4,279 of 15,795 were lost."""
    import signal
    import subprocess
    import sys

    victoria.stop()
    now = time.time_ns()
    writer = subprocess.Popen(
        [sys.executable, "-c", WRITER, victoria.url, str(tmp_path / "spool.sqlite3"), str(now)],
        stdout=subprocess.PIPE,
        text=True,
        cwd=Path(__file__).parent.parent,
    )
    try:
        assert writer.stdout is not None
        assert writer.stdout.readline().strip() == "written"
    finally:
        writer.send_signal(signal.SIGKILL)  # kill -9: nothing flushed on the way out
        writer.wait(10)
    victoria.start()
    store = store_for(victoria.url, tmp_path)  # the next start, on the same spool
    try:
        eventually(lambda: store.health()["spool_batches"] == 0, timeout=30, what="the spool replayed")
    finally:
        store.close()
    (series,) = eventually(lambda: victoria.export("occupancy_occupancy"), what="occupancy exported")
    assert len(series["values"]) == 200
    assert series["timestamps"][0] == (now - 200 * 1_000_000_000) // 1_000_000


def test_without_a_spool_write_returns_only_once_influxdb_has_the_points(
    victoria: VictoriaMetrics, tmp_path: Path
) -> None:
    """A scale-out worker's store: nothing on its own disk, so a worker lost for good loses nothing it
    acknowledged; while InfluxDB is down `write` raises and the caller keeps the batch."""
    store = InfluxStore(victoria.url, "t", "lobbywatch", "lobbywatch", None)
    points = sample_points(time.time_ns(), 40)
    try:
        victoria.stop()
        try:
            store.write(points)
        except Exception as exc:
            refused_while_down: Exception | None = exc
        else:
            refused_while_down = None
        assert refused_while_down is not None, "write returned while InfluxDB was down"
        assert store.health()["written"] == 0
        victoria.start()
        store.write(points)
        assert store.health()["written"] == 80  # counted when write returned: InfluxDB has them
        assert store.health()["spool_batches"] == 0
    finally:
        store.close()
    (series,) = eventually(lambda: victoria.export("occupancy_occupancy"), what="occupancy exported")
    assert len(series["values"]) == 40
