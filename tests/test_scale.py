"""The scale-out's parts against a real 3-node NATS cluster (the pinned build, >= 2.11) and a real Mosquitto:
the stream partitioned by branch, one owner per partition that moves when it dies or stalls, and forwarders that
lose nothing when killed."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
import re
import subprocess
import sys
import threading
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

import paho.mqtt.client as mqtt
import pytest
from nats.aio.client import Client
from nats.errors import ConnectionClosedError as NatsConnectionClosed
from sqlalchemy.orm import Session, sessionmaker

from bench.alert_check import compare, expected_fired, fired
from bench.fleet import occupancy
from bench.ingest import device_ids, site, zone_of
from bench.nats_cluster import NatsCluster
from bench.processes import Forward, Victoria, Work
from bench.tally import Sent, settle_victoria
from bench.traffic import publish as publish_burst
from bench.webhook import Notices
from lobby_sim.broker import Mosquitto
from server.ingest.mqtt_source import Received
from server.registry import fence
from server.registry.database import make_engine, make_sessions
from server.registry.site import SiteSpec, import_site
from server.scale import jetstream, subjects
from server.scale.forwarder import Forwarder, ForwardStats, route
from server.scale.pinned import Delivery, PinnedPull, take_back
from server.scale.worker import HEARTBEAT_S, SETTLE_S
from tests.helpers import eventually

T = TypeVar("T")
PARTITIONS = 8


def run(cluster: NatsCluster, body: Callable[[Client], Awaitable[T]], layout: jetstream.Layout | None) -> T:
    """`body` with a connection to a fresh stream (made as `layout` says; None: as it is), on an event loop of
    its own thread (the page tests' Playwright keeps one running on the main thread)."""

    async def main() -> T:
        nc = Client()
        await nc.connect(servers=cluster.urls)
        try:
            if layout is not None:
                with contextlib.suppress(jetstream.JetStreamError):
                    await jetstream.api(nc, f"STREAM.DELETE.{subjects.STREAM}")
                await jetstream.ensure(nc, layout)
            return await body(nc)
        finally:
            await nc.close()

    with ThreadPoolExecutor(1, thread_name_prefix="asyncio_nats") as pool:
        return pool.submit(asyncio.run, main()).result()


async def stream_messages(nc: Client) -> list[dict[str, Any]]:
    """Every message the stream holds, with its subject and headers."""
    info = await jetstream.api(nc, f"STREAM.INFO.{subjects.STREAM}")
    found = []
    for seq in range(info["state"]["first_seq"], info["state"]["last_seq"] + 1):
        try:
            got = await jetstream.api(nc, f"STREAM.MSG.GET.{subjects.STREAM}", {"seq": seq})
        except jetstream.JetStreamError:
            continue  # acknowledged and gone (work queue)
        found.append(got["message"])
    return found


def test_every_message_of_a_branch_lands_in_one_partition(cluster: NatsCluster) -> None:
    branches = [f"bj-{i:03d}" for i in range(40)] + ["北京 西城.1"]  # a site's ids may hold anything

    async def body(nc: Client) -> dict[str, set[str]]:
        js = nc.jetstream()
        for branch in branches:
            for device in ("cam-1", "bell-2"):
                await js.publish(subjects.subject(branch, device, "queue"), b"{}")
        info = await jetstream.api(nc, f"STREAM.INFO.{subjects.STREAM}", {"subjects_filter": ">"})
        partitions: dict[str, set[str]] = {}
        for name in info["state"]["subjects"]:
            _, _, partition, branch, _, _ = name.split(".")
            partitions.setdefault(branch, set()).add(partition)
        return partitions

    partitions = run(cluster, body, jetstream.Layout(partitions=PARTITIONS))
    assert set(partitions) == {subjects.token(b) for b in branches}
    assert all(len(p) == 1 for p in partitions.values()), partitions
    assert len(set.union(*partitions.values())) >= PARTITIONS // 2  # spread, not all in one


def test_a_stream_with_another_partitioning_is_refused(cluster: NatsCluster) -> None:
    async def body(nc: Client) -> str:
        with pytest.raises(jetstream.JetStreamError) as refused:
            await jetstream.ensure(nc, jetstream.Layout(partitions=PARTITIONS * 2, replicas=3))
        return str(refused.value)

    assert "not into 16 partitions" in run(cluster, body, jetstream.Layout(partitions=PARTITIONS))


class Owner:
    """A worker's side of one partition: what it got, under which pin, and the pins it lost."""

    def __init__(self, name: str, nc: Client) -> None:
        self.name = name
        self.nc = nc
        self.got: list[Delivery] = []
        self.lost: list[str] = []
        self.pull = PinnedPull(nc, 0, self._deliver, lambda _p, pin: self.lost.append(pin), expires_s=1.0)
        self.task: asyncio.Task[None] | None = None

    def _deliver(self, delivery: Delivery) -> None:
        self.got.append(delivery)
        asyncio.get_running_loop().create_task(self._ack(delivery))

    async def _ack(self, delivery: Delivery) -> None:
        # the owner "killed" (its connection closed) while an ack was on its way: that ack is lost, as in a crash
        with contextlib.suppress(NatsConnectionClosed):
            await self.nc.publish(delivery.ack_subject, b"+ACK")

    def start(self) -> None:
        self.task = asyncio.create_task(self.pull.run())

    async def pause(self) -> None:
        """Stop pulling without a word, as a worker stalled in a long pause would."""
        self.pull.stop()
        assert self.task is not None
        await self.task

    async def resume(self) -> None:
        pin = self.pull.pin
        self.pull = PinnedPull(self.nc, 0, self._deliver, lambda _p, lost: self.lost.append(lost), expires_s=1.0)
        self.pull.pin = pin  # it still believes it owns the partition
        self.start()


async def until(condition: Callable[[], bool], timeout: float, what: str) -> float:
    started = time.monotonic()
    while not condition():
        if time.monotonic() - started > timeout:
            raise AssertionError(f"{what}: not within {timeout} s")
        await asyncio.sleep(0.02)
    return time.monotonic() - started


async def publish(nc: Client, first: int, n: int) -> None:
    js = nc.jetstream()
    for i in range(first, first + n):
        await js.publish(subjects.subject("b1", "cam-1", "queue"), str(i).encode())


async def owner_and_standby(cluster: NatsCluster, nc: Client) -> tuple[Owner, Owner]:
    """a, pinned to partition 0 with 5 messages; b pulling beside it, on a connection of its own."""
    connections = [Client(), Client()]
    for c in connections:
        await c.connect(servers=cluster.urls)
    a, b = (Owner(name, c) for name, c in zip("ab", connections, strict=True))
    a.start()
    await publish(nc, 0, 5)
    await until(lambda: len(a.got) == 5, 10, "a owns the partition")
    b.start()
    return a, b


def test_one_owner_at_a_time_and_the_partition_moves_when_it_dies(cluster: NatsCluster) -> None:
    async def body(nc: Client) -> None:
        connections = [Client(), Client()]
        for c in connections:
            await c.connect(servers=cluster.urls)
        owners = [Owner(name, c) for name, c in zip("ab", connections, strict=True)]
        for owner in owners:
            owner.start()
        await publish(nc, 0, 50)
        await until(lambda: sum(len(o.got) for o in owners) == 50, 10, "50 delivered")
        first = next(o for o in owners if o.got)
        second = next(o for o in owners if o is not first)
        assert (len(first.got), len(second.got)) == (50, 0)  # pinned: one owner, never split
        assert {d.pin for d in first.got} == {first.pull.pin} != {""}
        await first.nc.close()  # killed
        await publish(nc, 50, 50)
        taken = await until(lambda: len(second.got) == 50, 15, "the standby took the partition over")
        assert taken < 10  # priority_timeout 5 s, or at once when the server sees the connection go
        assert second.pull.pin
        assert second.pull.pin != first.pull.pin
        assert sorted(int(d.data) for o in owners for d in o.got) == list(range(100))  # nothing lost
        await second.pause()
        await second.nc.close()

    run(cluster, body, jetstream.Layout(partitions=1, priority_timeout_s=5.0))


def test_a_stalled_owner_is_told_its_pin_is_gone_and_a_release_hands_over_at_once(cluster: NatsCluster) -> None:
    async def body(nc: Client) -> None:
        a, b = await owner_and_standby(cluster, nc)
        await a.pause()  # stalled past the priority timeout: the server pins b
        await publish(nc, 5, 5)
        await until(lambda: len(b.got) == 5, 15, "b pinned while a stalls")
        stale = a.pull.pin
        await a.resume()
        await until(lambda: a.lost == [stale], 10, "a hears 423 and drops the partition")
        assert a.pull.pin == ""
        assert len(a.got) == 5
        started = time.monotonic()
        await b.pull.release()  # handed on at once, not after the priority timeout
        assert b.lost == [b.got[-1].pin]
        await publish(nc, 10, 5)
        await until(lambda: len(a.got) == 10, 15, "a pinned again after b released")
        assert time.monotonic() - started < 3.0
        await a.pause()
        for owner in (a, b):
            await owner.nc.close()

    run(cluster, body, jetstream.Layout(partitions=1, priority_timeout_s=6.0))


def test_a_gone_workers_pin_is_taken_back_at_once_even_if_it_never_listed_it(cluster: NatsCluster) -> None:
    """A worker learns its pin with the first message under it and lists it at its next heartbeat; killed in
    between (a CI run: just after it was handed its partitions), its pin is known to nobody. On the partitions it
    was preferred for, a pin no live worker holds is taken back; a live worker's is not, nor one elsewhere."""

    async def body(nc: Client) -> None:
        a, b = await owner_and_standby(cluster, nc)
        assert await take_back(nc, {}, {0}, {a.pull.pin}) == []  # a lives and listed its pin
        assert await take_back(nc, {}, set(), set()) == []  # not a partition the gone worker was preferred for
        await a.nc.close()  # killed before it listed its pin
        assert await take_back(nc, {}, {0}, set()) == [0]
        await publish(nc, 5, 5)
        taken = await until(lambda: len(b.got) == 5, 40, "b pinned")
        assert taken < 5.0  # not the priority timeout's 30 s
        assert sorted(int(d.data) for o in (a, b) for d in o.got) == list(range(10))
        await b.pause()
        await b.nc.close()

    run(cluster, body, jetstream.Layout(partitions=1, priority_timeout_s=30.0))


def test_routes_carry_the_branch_and_send_strangers_on_to_be_refused() -> None:
    branches = {"cam-001": "bj-001"}
    assert route("lobby/v1/cam-001/queue", branches.get) == ("lw.in.bj-001.cam-001.queue", "cam-001")
    assert route("lobby/v1/cam-999/queue", branches.get) == ("lw.in._.cam-999.queue", "cam-999")
    assert route("lobby/v1/../queue", branches.get) == ("lw.in._._._", "_")
    one = subjects.MessageId.of("cam-001", b'{"stream": "s1", "seq": 7, "v": 1}')
    assert one == subjects.MessageId.of("cam-001", b'{"v": 1, "seq": 7, "stream": "s1", "ts": "later"}')
    assert subjects.MessageId.of("cam-001", b"not json") == subjects.MessageId.of("cam-001", b"not json")
    assert subjects.MessageId.of("cam-001", b"not json") != subjects.MessageId.of("cam-001", b"other")


def test_a_forwarder_holds_what_jetstream_does_not_take_and_publishes_it_again(cluster: NatsCluster) -> None:
    """No stream yet (nobody answers), then a stream: each message is acknowledged to the broker once,
    only after its PubAck, and a republish of one already stored counts as a duplicate."""
    acked: list[Received] = []

    def report(seq: int) -> Received:
        payload = json.dumps({"v": 1, "stream": "s1", "seq": seq}).encode()
        return Received("lobby/v1/dev-b1-cam/queue", payload, time.time(), seq, 1)

    async def body(nc: Client) -> ForwardStats:
        with contextlib.suppress(jetstream.JetStreamError):
            await jetstream.api(nc, f"STREAM.DELETE.{subjects.STREAM}")
        forwarder = Forwarder(nc, {"dev-b1-cam": "b1"}.get, acked.extend)
        running = asyncio.create_task(forwarder.run())
        for seq in (1, 2, 3):
            await asyncio.to_thread(forwarder.handoff, report(seq))
        while forwarder.stats.retries < 3:
            await asyncio.sleep(0.05)
        assert acked == []  # refused: left with the broker, unacknowledged
        await jetstream.ensure(nc, jetstream.Layout(partitions=PARTITIONS))
        while len(acked) < 3:
            await asyncio.sleep(0.05)
        await asyncio.to_thread(forwarder.handoff, report(2))  # the broker's redelivery after a crash
        while len(acked) < 4:
            await asyncio.sleep(0.05)
        forwarder.stop()
        await running
        assert [m["seq"] for m in map(stored_payload, await stream_messages(nc))] == [1, 2, 3]
        return forwarder.stats

    stats = run(cluster, body, None)
    assert sorted(r.mid for r in acked) == [1, 2, 2, 3]
    assert (stats.received, stats.forwarded, stats.duplicates) == (4, 4, 1)
    assert stats.retries >= 3


def stored_payload(message: dict[str, Any]) -> dict[str, Any]:
    return dict(json.loads(base64.b64decode(message["data"])))


def test_a_forwarder_killed_mid_stream_loses_nothing_and_stores_nothing_twice(
    cluster: NatsCluster, mosquitto: Mosquitto, tmp_path: Path
) -> None:
    devices = device_ids(6)
    spec = SiteSpec.model_validate(site(len(devices), 0))
    with make_sessions(make_engine(f"sqlite:///{tmp_path}/registry.sqlite3"))() as session:
        import_site(session, spec)
    branch_of = {d.id: b.id for b in spec.branches for d in b.devices}
    run(cluster, lambda _nc: asyncio.sleep(0), jetstream.Layout(partitions=PARTITIONS))
    first = Forward(tmp_path, "f1", mosquitto.port, cluster.urls, PARTITIONS)
    second = Forward(tmp_path, "f2", mosquitto.port, cluster.urls, PARTITIONS)
    first.start()
    second.start()
    publisher = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="pub", protocol=mqtt.MQTTv5)
    publisher.connect("127.0.0.1", mosquitto.port)
    publisher.loop_start()
    sent = 0
    try:
        time.sleep(2.0)  # both subscribed
        for i in range(1500):
            device = devices[i % len(devices)]
            body = {"v": 1, "stream": "s1", "seq": i // len(devices) + 1, "zones": []}
            publisher.publish(f"lobby/v1/{device}/queue", json.dumps(body), qos=1).wait_for_publish(10)
            sent += 1
            if i == 700:
                first.kill()  # mid-stream, with messages in flight
            if i == 1000:
                first.start()  # back under its name: the broker kept its share for it
        publisher.publish("lobby/v1/stranger-1/queue", b'{"v": 1}', qos=1).wait_for_publish(10)

        def stored() -> list[dict[str, Any]]:
            return run(cluster, stream_messages, None)

        deadline = time.monotonic() + 60
        while len(messages := stored()) < sent + 1 and time.monotonic() < deadline:
            time.sleep(0.5)
    finally:
        publisher.loop_stop()
        publisher.disconnect()
        first.stop()
        second.stop()
    assert len(messages) == sent + 1
    ids = [headers(m).get(subjects.ID_HEADER) for m in messages]
    assert len(set(ids)) == len(ids)  # a republished message is a duplicate JetStream dropped
    for message in messages:
        device = headers(message)[subjects.TOPIC_HEADER].split("/")[2]
        assert message["subject"].split(".")[3] == subjects.token(branch_of.get(device, subjects.NO_BRANCH))


def headers(message: dict[str, Any]) -> dict[str, str]:
    """The headers of a message from STREAM.MSG.GET (base64 of the NATS/1.0 header block)."""
    lines = base64.b64decode(message.get("hdrs", "")).decode().split("\r\n")[1:]
    return dict(line.split(": ", 1) for line in lines if ": " in line)


def test_the_unsafe_shared_subscription_setting_is_refused_with_its_replacement(tmp_path: Path) -> None:
    env = {**os.environ, "LOBBYWATCH_MODE": "dev", "LOBBYWATCH_MQTT_SHARED_GROUP": "ingest"}
    done = subprocess.run(
        [sys.executable, "-m", "server.cli", "--lang", "en", "serve"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
        check=False,
    )
    assert done.returncode == 2
    assert "LOBBYWATCH_MQTT_SHARED_GROUP was removed" in done.stderr
    assert "lobbywatch forward" in done.stderr


def branch_per_device(cluster: NatsCluster, tmp_path: Path, devices: list[str]) -> dict[str, object]:
    """A registry in `tmp_path` with a branch per device, spread over the partitions, every zone firing at 5 and
    clearing at 2 once a cycle; and the stream made. Returns the site."""
    site_config = site(len(devices), len(devices), per_branch=1)
    with make_sessions(make_engine(f"sqlite:///{tmp_path}/registry.sqlite3"))() as session:
        import_site(session, SiteSpec.model_validate(site_config))
    run(cluster, lambda _nc: asyncio.sleep(0), jetstream.Layout(partitions=PARTITIONS))
    return site_config


def test_workers_share_the_partitions_and_one_killed_loses_nothing_and_fires_each_alert_once(
    cluster: NatsCluster, mosquitto: Mosquitto, tmp_path: Path
) -> None:
    """Real processes: a forwarder, two workers writing to VictoriaMetrics (InfluxDB's write path) and to one
    registry; one worker killed with -9 mid-burst. Every report is stored, and the alerts notified are
    those a single process fires over the same reports."""
    devices = device_ids(12)
    site_config = branch_per_device(cluster, tmp_path, devices)
    # one sample per series and millisecond, as InfluxDB keeps one point per series and time: what the killed
    # worker wrote but had not recorded as processed, the survivor writes again (bench.scale counts those)
    victoria = Victoria(tmp_path)
    victoria.start()
    notices = Notices()
    storage = {
        "LOBBYWATCH_STORAGE": "influxdb",
        "LOBBYWATCH_INFLUX_URL": victoria.url,
        "LOBBYWATCH_WEBHOOK_URL": notices.url,
        "LOBBYWATCH_GROUP_WAIT_S": "0",
    }
    forward = Forward(tmp_path, "f1", mosquitto.port, cluster.urls, PARTITIONS)
    workers = [Work(tmp_path, f"w{i}", mosquitto.port, cluster.urls, PARTITIONS, storage) for i in (1, 2)]
    sent = Sent()
    try:
        for process in (forward, *workers):
            process.start()
        for process in workers:  # a loaded machine takes seconds to start one
            wait_for_line(tmp_path / f"worker-{process.name}.log", f"worker {process.name}: ", 60)
        time.sleep(SETTLE_S + 2 * HEARTBEAT_S)  # each has seen the other, and holds its partitions
        burst = threading.Thread(target=publish_burst, args=(mosquitto.port, devices, 100.0, 12.0, sent, "pub"))
        burst.start()
        try:

            def owning() -> list[Work]:
                return [w for w in workers if "taken on" in (tmp_path / f"worker-{w.name}.log").read_text()]

            deadline = time.monotonic() + 8
            while len(owning()) < 2 and time.monotonic() < deadline:
                time.sleep(0.2)
            assert len(owning()) == 2, "each worker owns partitions with traffic"
            time.sleep(max(0.0, deadline - 3 - time.monotonic()))  # in the middle of the burst
            workers[0].kill()
        finally:
            burst.join()
        counts = settle_victoria(sent, victoria.url, 90)
        time.sleep(3.0)  # notices of the last reports
        alerts = compare(expected_fired(site_config, sent.messages, tmp_path / "replay"), fired(notices))
    finally:
        for process in (forward, *workers):
            process.stop()
        victoria.stop()
        notices.stop()
    assert counts["sent"] >= 1000
    assert counts["lost"] == 0, counts
    assert counts["stored"] == counts["sent"], counts
    assert alerts["alerts_expected"] >= 12
    assert (alerts["alerts_missing"], alerts["alerts_duplicated"], alerts["alerts_unexpected"]) == (0, 0, 0), alerts
    w1, w2 = ((tmp_path / f"worker-w{i}.log").read_text() for i in (1, 2))
    taken = taken_on(w1)
    assert taken
    assert taken <= taken_on(w2)  # the survivor's now
    # and at once: the survivor found w1's connection gone and unpinned what it held, not waiting out the
    # consumers' priority timeout
    found = re.search(r"worker w1 is gone \(its connection closed\): its partitions \[([\d, ]+)\] unpinned", w2)
    assert found, "\n".join(line for line in w2.splitlines() if "gone" in line or "taken on" in line or "unpin" in line)
    assert {int(p) for p in found.group(1).split(", ")} <= taken


def test_a_worker_lost_for_good_while_influxdb_is_down_loses_nothing(
    cluster: NatsCluster, mosquitto: Mosquitto, tmp_path: Path
) -> None:
    """A worker acknowledges to JetStream only what InfluxDB has taken. Killed with -9 while InfluxDB is down and
    never started again (its disk gone with it), it leaves every report it held to the next worker. Measured
    before, with a spool on the worker's disk: the reports it had acknowledged were lost."""
    devices = device_ids(4)
    branch_per_device(cluster, tmp_path, devices)
    victoria = Victoria(tmp_path)
    storage = {"LOBBYWATCH_STORAGE": "influxdb", "LOBBYWATCH_INFLUX_URL": victoria.url}
    forward = Forward(tmp_path, "f1", mosquitto.port, cluster.urls, PARTITIONS)
    lost_worker, next_worker = (
        Work(tmp_path, name, mosquitto.port, cluster.urls, PARTITIONS, storage) for name in ("w1", "w2")
    )
    first_log = tmp_path / "worker-w1.log"
    sent = Sent()
    try:
        forward.start()
        lost_worker.start()
        time.sleep(5.0)  # the forwarder subscribed (the stand-in devices do not answer requests to resend)
        publish_burst(mosquitto.port, devices, 40.0, 3.0, sent, "pub")
        # a worker takes a partition on with its first message
        eventually(lambda: "taken on" in first_log.read_text(), 30, "the first worker got the reports")
        time.sleep(3.0)  # time to store them (or to have them in a spool of its own) and acknowledge that
        lost_worker.kill()
        victoria.start()
        next_worker.start()
        counts = settle_victoria(sent, victoria.url, 90)
    finally:
        for process in (forward, lost_worker, next_worker):
            process.stop()
        victoria.stop()
    assert counts["sent"] >= 100
    assert (counts["lost"], counts["stored"]) == (0, counts["sent"]), counts
    assert taken_on((tmp_path / "worker-w2.log").read_text())


def wait_for_line(path: Path, text: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not (path.exists() and text in path.read_text(errors="replace")):
        if time.monotonic() > deadline:
            raise AssertionError(f"{path.name} has no line with {text!r} after {timeout} s")
        time.sleep(0.2)


def taken_on(log: str) -> set[int]:
    """The partitions a worker's log says it took on."""
    return {int(p) for p in re.findall(r"partition (\d+) taken on", log)}


def test_a_former_owner_cannot_save_over_the_new_one(sessions: sessionmaker[Session]) -> None:
    now = datetime.now(UTC)
    with sessions() as session:
        fence.claim(session, 3, "pin-a", "w1", now)
        fence.check(session, {3: "pin-a"})  # ours
    with sessions() as session:
        fence.claim(session, 3, "pin-b", "w2", now)  # pinned anew: w2's from here on
    with sessions() as session, pytest.raises(fence.Fenced) as refused:
        fence.check(session, {3: "pin-a", 4: ""})
    assert refused.value.partitions == frozenset({3, 4})
    with sessions() as session:
        fence.check(session, {3: "pin-b"})


def test_a_report_that_reaches_the_stream_after_newer_ones_still_fires_its_alert_in_order(
    cluster: NatsCluster, mosquitto: Mosquitto, tmp_path: Path
) -> None:
    """A forwarder's publish that timed out while a NATS node died lands in the stream seconds after its
    device's newer reports. The report that breached must still be the one that fires (the rules move on new
    reports only: taken late, it would be history, and the alert would fire on the next report instead)."""
    device = device_ids(1)[0]
    site_config = site(1, 1, per_branch=1)
    branch = str(site_config["branches"][0]["id"])  # type: ignore[index]
    with make_sessions(make_engine(f"sqlite:///{tmp_path}/registry.sqlite3"))() as session:
        import_site(session, SiteSpec.model_validate(site_config))
    run(cluster, lambda _nc: asyncio.sleep(0), jetstream.Layout(partitions=PARTITIONS))
    notices = Notices()
    storage = {"LOBBYWATCH_WEBHOOK_URL": notices.url, "LOBBYWATCH_GROUP_WAIT_S": "0"}
    worker = Work(tmp_path, "w1", mosquitto.port, cluster.urls, PARTITIONS, storage)
    start = datetime.now(UTC).replace(microsecond=0)
    messages = {
        seq: json.dumps(
            {
                "v": 1,
                "stream": "0dd0dd0dd0dd0dd0",
                "seq": seq,
                "ts": (start + timedelta(seconds=seq)).isoformat(),
                "uptime_s": float(seq),
                "zones": [{"zone": zone_of(device), "occupancy": occupancy(seq)}],
            }
        ).encode()
        for seq in range(1, 51)
    }
    breach = next(seq for seq in messages if occupancy(seq) > 1)

    async def put(nc: Client, order: list[int], pause_before: int | None = None) -> None:
        js = nc.jetstream()
        for seq in order:
            if seq == pause_before:
                await asyncio.sleep(1.5)  # the late publish, well within the worker's wait
            headers = {
                subjects.ID_HEADER: subjects.MessageId.of(device, messages[seq]).value,
                subjects.TOPIC_HEADER: f"lobby/v1/{device}/queue",
                subjects.RECEIVED_HEADER: repr(time.time()),
            }
            await js.publish(subjects.subject(branch, device, "queue"), messages[seq], headers=headers)

    try:
        worker.start()
        run(cluster, lambda nc: put(nc, [1]), None)
        log = tmp_path / "worker-w1.log"
        deadline = time.monotonic() + 20
        while "taken on" not in log.read_text() and time.monotonic() < deadline:
            time.sleep(0.2)
        time.sleep(jetstream.Layout().ack_wait_s + 2.0)  # past the hold of a partition just taken on
        late_order = [s for s in messages if s not in (1, breach)] + [breach]
        run(cluster, lambda nc: put(nc, late_order, pause_before=breach), None)
        expected = expected_fired(site_config, [(f"lobby/v1/{device}/queue", messages[s]) for s in messages], tmp_path)
        deadline = time.monotonic() + 30
        while sum(fired(notices).values()) < sum(expected.values()) and time.monotonic() < deadline:
            time.sleep(0.2)
        alerts = compare(expected, fired(notices))
    finally:
        worker.stop()
        notices.stop()
    assert alerts["alerts_expected"] == 1
    assert (alerts["alerts_missing"], alerts["alerts_unexpected"], alerts["alerts_duplicated"]) == (0, 0, 0), alerts


def test_the_scale_benchmark_drains_a_backlog_with_two_workers_and_loses_nothing() -> None:
    """`bench.scale`'s workers section, reduced: two real workers drain a backlog put straight into the stream;
    every report is stored once, and the figures it prints are its own (measured, not asserted here)."""
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "bench.scale",
            "--only",
            "workers",
            "--workers",
            "2",
            "--messages",
            "3000",
            "--devices",
            "60",
            "--idle-seconds",
            "2",
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["failed_sections"] == []
    (two,) = result["workers"]
    assert (two["n"], two["messages"], two["lost"], two["duplicate_points"]) == (2, 3000, 0, 0)
    assert two["rate"] > 0
    assert two["busy_cpu_us_per_msg"] > 0
