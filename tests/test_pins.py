"""A worker's ownership of partitions as its ingest thread sees it, on the real pipeline and registry (no NATS: the
deliveries are made here, as the pinned pull hands them on). The case a bench run once found: a message still
queued under a pin the worker has lost must not take the partition on again."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import select

from server.ingest.mqtt_source import Received
from server.registry import models
from server.scale import subjects
from server.scale.owned import Ownership
from server.scale.pinned import Delivery
from server.scale.worker import WorkerRuntime
from server.settings import Settings
from tests.helpers import write_site

PARTITIONS = 4


def worker_runtime(tmp_path: Path, hold_s: float) -> WorkerRuntime:
    """A worker's wiring on SQLite, with no NATS: the tests hand its pipeline deliveries themselves."""
    settings = Settings(
        mode="dev",
        database_url=f"sqlite:///{tmp_path / 'registry.sqlite3'}",
        site_file=write_site(tmp_path),
        timeseries_path=tmp_path / "ts.sqlite3",
        mqtt_username=None,
        nats_partitions=PARTITIONS,
    )
    return WorkerRuntime(settings, Ownership(PARTITIONS), "w1", hold_s=hold_s)


@pytest.fixture
def worker(tmp_path: Path) -> Iterator[WorkerRuntime]:
    runtime = worker_runtime(tmp_path, hold_s=0.0)
    yield runtime
    runtime.store.close()


def report(partition: int, pin: str, seq: int, numbered: bool = False) -> Received:
    """A queue report as delivered under `pin`; `numbered`: with the forwarder's id (device/stream/seq), by
    which the worker puts each device's messages in order."""
    payload = {
        "v": 1,
        "stream": "0" * 16,
        "seq": seq,
        "ts": datetime.now(UTC).isoformat(),
        "uptime_s": 1.0,
        "zones": [{"zone": "queue", "occupancy": seq}],
    }
    headers = {subjects.ID_HEADER: f"dev-b1-cam/{'0' * 16}/{seq}"} if numbered else {}
    delivery = Delivery(partition, pin, f"lw.p.{partition}.b1.dev-b1-cam.queue", b"", headers, f"$JS.ACK.{seq}", seq)
    return Received(
        "lobby/v1/dev-b1-cam/queue", json.dumps(payload).encode(), datetime.now(UTC).timestamp(), 0, 1, delivery
    )


def claimed(worker: WorkerRuntime, partition: int) -> str | None:
    with worker.sessions() as session:
        return session.scalar(select(models.PartitionOwner.pin).where(models.PartitionOwner.partition == partition))


def test_a_message_under_a_lost_pin_never_takes_its_partition_back(worker: WorkerRuntime) -> None:
    partition = subjects.branch_partition("b1", PARTITIONS)
    pipeline = worker.owned
    acknowledged: list[int] = []
    pipeline.acknowledge = lambda deliveries: acknowledged.extend(d.stream_seq for d in deliveries)
    given_back: list[int] = []
    pipeline.give_back = lambda deliveries: given_back.extend(d.stream_seq for d in deliveries)

    pipeline.process([report(partition, "pin-a", 1)])
    assert (worker.ownership.pins, claimed(worker, partition), acknowledged) == ({partition: "pin-a"}, "pin-a", [1])

    worker.ownership.lost(partition, "pin-a")  # 423 from the server: another worker holds it now
    pipeline.process([report(partition, "pin-a", 2)])  # was queued before the loss was known
    assert worker.ownership.pins == {}
    assert claimed(worker, partition) == "pin-a"  # untouched: the new owner's claim would stand
    assert acknowledged == [1]  # not ours to acknowledge: the new owner gets it again
    assert given_back == [2]  # at once, not after the ack wait

    pipeline.process([report(partition, "pin-b", 2)])  # pinned to us again, under a new pin
    pipeline.process([report(partition, "pin-a", 3)])  # a straggler of the old pin, after that
    assert (worker.ownership.pins, claimed(worker, partition)) == ({partition: "pin-b"}, "pin-b")
    assert acknowledged == [1, 2]
    assert given_back == [2, 3]
    assert pipeline.claims == 2
    assert worker.store.count("occupancy") == 2  # seq 1 under pin-a, seq 2 under pin-b; the straggler not stored


def test_a_partition_taken_on_goes_on_from_each_devices_saved_number_and_only_a_stand_in_is_held(
    tmp_path: Path,
) -> None:
    """Taken on again (a former owner died with seq 2 in hand, unsaved): seq 3 waits for 2 alone, and the two go
    on in order as soon as 2 comes again. Won as a standby while the worker that prefers it lives: nothing of it
    is processed for the hold (it is handed on within seconds; its owner would process it again)."""
    worker = worker_runtime(tmp_path, hold_s=60.0)  # no wait runs out during the test
    partition = subjects.branch_partition("b1", PARTITIONS)
    pipeline = worker.owned
    acknowledged: list[int] = []
    pipeline.acknowledge = lambda deliveries: acknowledged.extend(d.stream_seq for d in deliveries)
    given_back: list[int] = []
    pipeline.give_back = lambda deliveries: given_back.extend(d.stream_seq for d in deliveries)
    try:
        pipeline.process([report(partition, "pin-a", 1, numbered=True)])
        assert acknowledged == [1]
        worker.ownership.lost(partition, "pin-a")
        pipeline.process([report(partition, "pin-b", 3, numbered=True)])  # taken on again, from saved seq 1
        assert (worker.ownership.pins, acknowledged) == ({partition: "pin-b"}, [1])  # 3 waits for 2
        pipeline.process([report(partition, "pin-b", 2, numbered=True)])
        assert acknowledged == [1, 2, 3]
        assert worker.store.count("occupancy") == 3

        worker.ownership.standing_in.add(partition)  # another live worker prefers it
        worker.ownership.lost(partition, "pin-b")
        pipeline.process([report(partition, "pin-c", 4, numbered=True)])
        assert (worker.ownership.pins, acknowledged) == ({partition: "pin-c"}, [1, 2, 3])
        assert worker.store.count("occupancy") == 3  # held whole, not processed
        assert given_back == []

        worker.ownership.lost(partition, "pin-c")  # handed on: what it held goes back at once
        pipeline.process([])
        assert given_back == [4]

        worker.ownership.standing_in.clear()
        pipeline.process([report(partition, "pin-d", 6, numbered=True)])  # waits for 5
        worker.ownership.lost(partition, "pin-d")
        pipeline.process([])
        assert (given_back, acknowledged) == ([4, 6], [1, 2, 3])  # the waiting one goes back too
    finally:
        worker.store.close()


def from_api(partition: int, pin: str, seq: int, event: dict[str, object]) -> Received:
    """What an API process publishes when a person acknowledges a call (`api_process.NatsLink`)."""
    delivery = Delivery(partition, pin, f"lw.p.{partition}.b1.{subjects.PEOPLE}.alert", b"", {}, f"$JS.ACK.{seq}", seq)
    return Received(subjects.PEOPLE_TOPIC, json.dumps(event).encode(), datetime.now(UTC).timestamp(), 0, 1, delivery)


def test_a_call_acknowledged_in_an_api_process_is_acted_on_by_the_owner_and_acknowledged_after_its_tick(
    worker: WorkerRuntime,
) -> None:
    partition = subjects.branch_partition("b1", PARTITIONS)
    pipeline = worker.owned
    acknowledged: list[int] = []
    pipeline.acknowledge = lambda deliveries: acknowledged.extend(d.stream_seq for d in deliveries)
    heard: list[dict[str, object]] = []
    pipeline.on_people = heard.append
    event = {"event": "acknowledged", "rule": "call_unanswered", "branch": "b1", "subject": "ramp-bell", "alert": 7}

    pipeline.process([report(partition, "pin-a", 1), from_api(partition, "pin-a", 2, event)])
    assert heard == [event]
    assert acknowledged == [1]  # the person's act waits for the tick that saves what the rules made of it
    pipeline.tick()
    assert acknowledged == [1, 2]

    pipeline.process([from_api(partition, "pin-a", 3, event | {"event": "resolved", "by": "王芳"})])
    pipeline.process(
        [Received(subjects.PEOPLE_TOPIC, b"[1, 2]", 0.0, 0, 1, from_api(partition, "pin-a", 4, {}).origin)]
    )
    assert acknowledged == [1, 2, 4]  # a list is no event: dropped at once, logged; the resolution waits for the tick
    assert [e["event"] for e in heard] == ["acknowledged", "resolved"]
    pipeline.tick()
    assert acknowledged == [1, 2, 4, 3]
    assert worker.store.count("occupancy") == 1  # the API's messages are no reports
