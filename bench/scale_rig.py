"""The scale-out benchmark's rig: a 3-node NATS cluster, Mosquitto, VictoriaMetrics keeping every sample and a
fresh PostgreSQL registry, with forwarders and workers as real processes; and the waits and tallies its sections
share (`bench.scale`)."""

from __future__ import annotations

import asyncio
import json
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psutil
import psycopg
from nats.aio.client import Client
from nats.errors import Error as NatsError

from bench.ingest import device_ids, site, zone_of
from bench.nats_cluster import NatsCluster
from bench.processes import Child, Forward, Victoria, Work
from bench.tally import Sent, settle_victoria
from bench.webhook import Notices
from lobby_sim.broker import Mosquitto
from server.registry.database import make_engine, make_sessions
from server.registry.site import SiteSpec, import_site
from server.scale import jetstream, subjects
from server.scale.placement import preferred

PARTITIONS = 16
PER_BRANCH = 3  # devices per branch, as in a post office lobby (camera, call buttons, sensors)
PG_ADMIN = "postgresql://postgres@127.0.0.1:5432/postgres"
HOLD_S = jetstream.Layout().ack_wait_s + 1.0  # a device's message after a gap waits this long for it at most


class Rig:
    """One section's servers: the NATS cluster, Mosquitto, VictoriaMetrics, a fresh registry database."""

    def __init__(self, work: Path, devices: int, alerting: int) -> None:
        self.work = work
        self.devices = device_ids(devices)
        self.site = site(devices, alerting, PER_BRANCH)
        self.cluster = NatsCluster(work / "nats")
        self.broker = Mosquitto(work / "broker", persistence=True)
        self.victoria = Victoria(work, dedup=False)
        self.notices = Notices()
        self.database = f"lw_scale_{uuid.uuid4().hex[:10]}"
        self.database_url = f"postgresql+psycopg://postgres@127.0.0.1:5432/{self.database}"
        self.workers: list[Work] = []
        self.forwarders: list[Forward] = []

    def start(self) -> None:
        with psycopg.connect(PG_ADMIN, autocommit=True) as admin:
            admin.execute(f"CREATE DATABASE {self.database}")
        engine = make_engine(self.database_url)
        with make_sessions(engine)() as session:
            import_site(session, SiteSpec.model_validate(self.site))
        engine.dispose()
        self.cluster.start()
        self.broker.start()
        self.victoria.start()
        run_async(self, lambda nc: jetstream.ensure(nc, jetstream.Layout(partitions=PARTITIONS)))

    def stop(self) -> None:
        for process in (*self.workers, *self.forwarders):
            process.stop()
        self.victoria.stop()
        self.broker.stop()
        self.cluster.stop()
        self.notices.stop()
        with psycopg.connect(PG_ADMIN, autocommit=True) as admin:
            admin.execute(f"DROP DATABASE IF EXISTS {self.database} WITH (FORCE)")

    def worker(self, name: str) -> Work:
        storage = {
            "LOBBYWATCH_STORAGE": "influxdb",
            "LOBBYWATCH_INFLUX_URL": self.victoria.url,
            "LOBBYWATCH_WEBHOOK_URL": self.notices.url,
            "LOBBYWATCH_GROUP_WAIT_S": "0",
        }
        worker = Work(
            self.work, name, self.broker.port, self.cluster.urls, PARTITIONS, storage, database_url=self.database_url
        )
        worker.start()
        self.workers.append(worker)
        return worker

    def forwarder(self, name: str) -> Forward:
        forward = Forward(
            self.work, name, self.broker.port, self.cluster.urls, PARTITIONS, database_url=self.database_url
        )
        forward.start()
        self.forwarders.append(forward)
        return forward

    def stream_messages(self) -> int:
        """What the stream holds now (not yet acknowledged by a worker)."""
        return self._stream_state("messages")

    def stream_sequence(self) -> int:
        """The stream's last sequence number: the messages it ever took, each once (a forwarder's duplicate,
        dropped by its `Nats-Msg-Id`, takes none)."""
        return self._stream_state("last_seq")

    def _stream_state(self, key: str) -> int:
        async def read(nc: Client) -> int:
            info = await jetstream.api(nc, f"STREAM.INFO.{subjects.STREAM}")
            return int(info["state"][key])

        value: int = run_async(self, read)
        return value


@contextmanager
def rig(work: Path, devices: int, alerting: int) -> Iterator[Rig]:
    servers = Rig(work, devices, alerting)
    try:
        servers.start()
        yield servers
    finally:
        servers.stop()


def run_async(servers: Rig, body: Callable[[Client], Any]) -> Any:
    async def main() -> Any:
        nc = Client()
        await nc.connect(servers=servers.cluster.urls)
        try:
            return await body(nc)
        finally:
            await nc.close()

    return asyncio.run(main())


def preload(servers: Rig, messages: int, sent: Sent, first_seq: int, after: datetime | None = None) -> datetime:
    """`messages` queue reports straight into the stream, as the forwarders would put them (headers and ids), a
    millisecond apart from now on, or from `after` when that is later (a device's reports of two preloads in one
    second must not share a time: two reports at one time are one point); returns the last report's time."""
    now = datetime.now(UTC).replace(microsecond=0)
    if after is not None:
        now = max(now, after + timedelta(milliseconds=1))

    async def put(nc: Client) -> None:
        js = nc.jetstream()
        branches: list[dict[str, Any]] = servers.site["branches"]  # type: ignore[assignment]
        branch_of = {d["id"]: b["id"] for b in branches for d in b["devices"]}
        for n in range(messages):
            device = servers.devices[n % len(servers.devices)]
            seq = first_seq + n // len(servers.devices)
            ts = now + timedelta(milliseconds=n)
            payload = json.dumps(
                {
                    "v": 1,
                    "stream": "5ca1e5ca1e5ca1e0",
                    "seq": seq,
                    "ts": ts.isoformat(),
                    "uptime_s": 1.0,
                    "zones": [{"zone": zone_of(device), "occupancy": 1}],
                }
            ).encode()
            topic = f"lobby/v1/{device}/queue"
            headers = {
                subjects.ID_HEADER: subjects.MessageId.of(device, payload).value,
                subjects.TOPIC_HEADER: topic,
                subjects.RECEIVED_HEADER: repr(time.time()),
            }
            await js.publish_async(subjects.subject(branch_of[device], device, "queue"), payload, headers=headers)
            sent.times[(device, seq)] = int(ts.timestamp() * 1000) * 1_000_000
        await js.publish_async_completed()

    run_async(servers, put)
    return now + timedelta(milliseconds=messages - 1)


def cpu_s(processes: Sequence[Child]) -> float:
    """CPU seconds the processes have used so far (those running)."""
    total = 0.0
    for process in processes:
        if process.process is not None:
            times = psutil.Process(process.process.pid).cpu_times()
            total += times.user + times.system
    return total


def wait_empty(servers: Rig, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while servers.stream_messages() > 0:
        if time.monotonic() > deadline:
            raise TimeoutError(f"the stream still holds messages after {timeout} s")
        time.sleep(0.2)


def wait_placed(servers: Rig, timeout: float = 60.0) -> None:
    """Until no partition is held, by the workers' logs, by a worker that does not prefer it: the first placement
    (each pulls the partitions it prefers among the workers it sees, and hands on what another live worker
    prefers) is over, so that a timed run does not include its handovers. (A worker logs a partition as
    taken on at its first message, so one handed to it shows as held by nobody until then.)"""
    names = {worker.name for worker in servers.workers}
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        held = {p: w.name for w in servers.workers for p in holding(w.work / f"worker-{w.name}.log")}
        if held and all(preferred(p, names) == name for p, name in held.items()):
            return
        time.sleep(0.2)
    raise TimeoutError(f"the workers still hold partitions they do not prefer after {timeout} s")


def holding(log: Path) -> dict[int, float]:
    """The partitions a worker holds by its log, each with when it took it on."""
    held: dict[int, float] = {}
    if not log.exists():
        return held
    for line in log.read_text(errors="replace").splitlines():
        if " taken on (" in line:
            at = datetime.strptime(line[:23], "%Y-%m-%d %H:%M:%S,%f").astimezone()
            held[int(line.split("partition ")[1].split()[0])] = at.timestamp()
        elif " handed on (" in line:
            for partition in line.split("partitions [")[1].split("]")[0].split(", "):
                held.pop(int(partition), None)
    return held


def settle_stored(servers: Rig, sent: Sent, timeout: float = 120.0) -> dict[str, int]:
    """The tally once all is stored; or, with messages missing, once the stream is empty and nothing more came
    for 30 s (the broker dropped them, say: a forwarder that did not keep up)."""
    return settle_victoria(sent, servers.victoria.url, timeout, lambda: servers.stream_messages() == 0)


def broker_drop_warnings(log: Path) -> int:
    """How often Mosquitto logged that it started dropping messages for a client (its queue for it full; one line
    per start, not per message): 0 means nothing was dropped. (Mosquitto's `$SYS/broker/publish/messages/dropped`
    is no measure of it: in 2.0.11 it stayed 0 while the log said a client's messages were being dropped, and
    under the bench's load it did not answer at all.)"""
    return sum("messages are being dropped" in line for line in log.read_text(errors="replace").splitlines())


class Backlog:
    """The stream's largest backlog, sampled every second while it runs (what overload queued in JetStream)."""

    def __init__(self, servers: Rig) -> None:
        self._servers = servers
        self.largest = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="bench-backlog", daemon=True)

    def __enter__(self) -> Backlog:
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        while not self._stop.wait(1.0):
            try:
                self.largest = max(self.largest, self._servers.stream_messages())
            except (NatsError, TimeoutError):  # a node killed or the cluster busy: this sample is skipped
                continue
