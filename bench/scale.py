"""Scale-out benchmark: forwarders and workers as real processes on a real 3-node NATS cluster, Mosquitto,
PostgreSQL for the registry and VictoriaMetrics (InfluxDB's write path, every sample kept).

    python -m bench.scale [--workers 1,2,4] [--messages 40000] [--seconds 60] [--rate 200]

- workers: a backlog of --messages queue reports put in the stream, drained by n workers: messages/s and the
  workers' CPU microseconds per message (what scales on more cores is the flat CPU cost per message);
- failover: a burst of --seconds at --rate through the forwarder, every zone alerting once a cycle, one of two
  workers killed with -9 in its middle: stored, lost, duplicate points, alerts against a single-process replay
  of the same reports, and how long the dead worker's partitions went unowned;
- node_kill: the same burst with one NATS node killed in its middle and started again.
Prints progress, then a JSON object on the last line.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import tempfile
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

from bench.alert_check import compare, expected_fired, fired
from bench.ingest import device_ids, site, zone_of
from bench.nats_cluster import NatsCluster
from bench.processes import Child, Forward, Victoria, Work
from bench.tally import Sent, count_published, stored_victoria
from bench.traffic import publish
from bench.webhook import Notices
from lobby_sim.broker import Mosquitto
from server.registry.database import make_engine, make_sessions
from server.registry.site import SiteSpec, import_site
from server.scale import jetstream, subjects

PARTITIONS = 16
PER_BRANCH = 3  # devices per branch, as in a post office lobby (camera, call buttons, sensors)
PG_ADMIN = "postgresql://postgres@127.0.0.1:5432/postgres"
HOLD_S = jetstream.Layout().ack_wait_s + 1.0  # a worker holds a partition's messages this long on taking it


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
        async def count(nc: Client) -> int:
            info = await jetstream.api(nc, f"STREAM.INFO.{subjects.STREAM}")
            return int(info["state"]["messages"])

        messages: int = run_async(self, count)
        return messages


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


def preload(servers: Rig, messages: int, sent: Sent, first_seq: int) -> None:
    """`messages` queue reports straight into the stream, as the forwarders would put them (headers and ids)."""
    now = datetime.now(UTC).replace(microsecond=0)

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


def cpu_s(processes: Sequence[Child]) -> float:
    """CPU seconds the processes have used so far (those running)."""
    total = 0.0
    for process in processes:
        if process.process is not None:
            times = psutil.Process(process.process.pid).cpu_times()
            total += times.user + times.system
    return total


def drain(work: Path, workers: int, messages: int, devices: int) -> dict[str, Any]:
    with rig(work, devices, alerting=0) as servers:
        for i in range(workers):
            servers.worker(f"w{i + 1}")
        time.sleep(3.0)  # the workers see each other before the first messages: each takes its own partitions
        sent = Sent()
        preload(servers, len(servers.devices), sent, 1)  # one message a device: every partition owned
        wait_empty(servers, HOLD_S + 30)
        before = cpu_s(servers.workers)
        started = time.monotonic()
        preload(servers, messages, sent, 2)
        wait_empty(servers, 600)
        elapsed = time.monotonic() - started
        cpu = cpu_s(servers.workers) - before
        counts = settle_stored(servers, sent)
    return {
        "n": workers,
        "messages": messages,
        "rate": round(messages / elapsed),
        "cpu_us_per_msg": round(cpu / messages * 1e6),
        "lost": counts["lost"],
        "duplicate_points": counts["duplicated"],
    }


def wait_empty(servers: Rig, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while servers.stream_messages() > 0:
        if time.monotonic() > deadline:
            raise TimeoutError(f"the stream still holds messages after {timeout} s")
        time.sleep(0.2)


def settle_stored(servers: Rig, sent: Sent, timeout: float = 120.0) -> dict[str, int]:
    deadline = time.monotonic() + timeout
    while (counts := count_published(sent, stored_victoria(servers.victoria.url)))["lost"]:
        if time.monotonic() > deadline:
            break
        time.sleep(1.0)
    return counts


def burst(work: Path, args: argparse.Namespace, fault: Callable[[Rig], dict[str, Any]]) -> dict[str, Any]:
    """Two workers and a forwarder; --rate reports a second for --seconds through Mosquitto, `fault` in the
    middle; then what was stored and notified, against a single-process replay of the same reports."""
    devices = max(12, round(args.rate / 8))  # 8 reports a second a device: a cycle of 50 (one alert) in 6 s
    with rig(work, devices, alerting=devices) as servers:
        servers.forwarder("f1")
        for name in ("w1", "w2"):
            servers.worker(name)
        time.sleep(3.0 + HOLD_S)
        sent = Sent()
        publisher = threading.Thread(
            target=publish, args=(servers.broker.port, servers.devices, args.rate, args.seconds, sent, "bench-pub")
        )
        forwarders, nodes = cpu_s(servers.forwarders), cpu_s(servers.cluster.nodes)
        publisher.start()
        time.sleep(args.seconds / 2)
        observed = fault(servers)
        publisher.join()
        counts = settle_stored(servers, sent)
        # per message forwarded; the NATS figure is the three nodes together (R3), and only while all ran
        costs = {
            "forwarder_cpu_us_per_msg": round((cpu_s(servers.forwarders) - forwarders) / counts["sent"] * 1e6),
            "nats_cpu_us_per_msg": round((cpu_s(servers.cluster.nodes) - nodes) / counts["sent"] * 1e6),
        }
        time.sleep(HOLD_S + 5.0)  # the last notices
        alerts = compare(expected_fired(servers.site, sent.messages, work / "replay"), fired(servers.notices))
    return {
        "sent": counts["sent"],
        "stored_unique": counts["stored"],
        "lost": counts["lost"],
        "duplicate_points": counts["duplicated"],
        **{k: alerts[k] for k in ("alerts_expected", "alerts_missing", "alerts_duplicated", "alerts_unexpected")},
        **observed,
        **costs,
    }


def kill_worker(servers: Rig) -> dict[str, Any]:
    """Kill -9 one worker; `takeover_s`: until the survivor processes the last of the dead one's partitions
    again (pinned, then holding them for the ack wait so that the dead one's unacknowledged come in order)."""
    victim, survivor = servers.workers
    held = holding(victim.work / f"worker-{victim.name}.log")
    killed_at = time.time()
    victim.kill()
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        now = holding(survivor.work / f"worker-{survivor.name}.log")
        again = {p: t for p, t in now.items() if p in held and t > killed_at}
        if set(again) == set(held):
            pinned = max(again.values(), default=killed_at) - killed_at
            return {
                "partitions_moved": len(held),
                "pinned_s": round(pinned, 1),
                "takeover_s": round(pinned + HOLD_S, 1),
            }
        time.sleep(0.2)
    return {"partitions_moved": len(held), "pinned_s": None, "takeover_s": None}


def holding(log: Path) -> dict[int, float]:
    """The partitions a worker holds by its log, each with when it took it on."""
    held: dict[int, float] = {}
    for line in log.read_text().splitlines():
        if " taken on (" in line:
            at = datetime.strptime(line[:23], "%Y-%m-%d %H:%M:%S,%f").astimezone()
            held[int(line.split("partition ")[1].split()[0])] = at.timestamp()
        elif " handed on (" in line:
            for partition in line.split("partitions [")[1].split("]")[0].split(", "):
                held.pop(int(partition), None)
    return held


def kill_node(servers: Rig) -> dict[str, Any]:
    node = servers.cluster.nodes[1]
    node.kill()
    time.sleep(5.0)
    node.start()
    return {"node_down_s": 5.0}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workers", default="1,2,4", help="worker counts to drain the backlog with")
    parser.add_argument("--messages", type=int, default=40_000, help="the backlog drained at each count")
    parser.add_argument("--devices", type=int, default=300, help="devices of the backlog")
    parser.add_argument("--seconds", type=float, default=60.0, help="length of the failover and node-kill bursts")
    parser.add_argument("--rate", type=float, default=200.0, help="reports a second in the bursts")
    parser.add_argument("--only", choices=["workers", "failover", "node_kill"], action="append")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="lobbywatch-scale-"))
    sections = args.only or ["workers", "failover", "node_kill"]
    result: dict[str, Any] = {"partitions": PARTITIONS, "work": str(work)}
    if "workers" in sections:
        result["workers"] = []
        for n in (int(x) for x in args.workers.split(",")):
            print(f"workers: {n} draining {args.messages} messages", flush=True)
            figures = drain(work / f"drain-{n}", n, args.messages, args.devices)
            print(f"  {figures}", flush=True)
            result["workers"].append(figures)
    if "failover" in sections:
        print(f"failover: {args.rate:.0f} reports/s for {args.seconds:.0f} s, a worker killed halfway", flush=True)
        result["failover"] = burst(work / "failover", args, kill_worker)
        print(f"  {result['failover']}", flush=True)
    if "node_kill" in sections:
        print(f"node_kill: {args.rate:.0f} reports/s for {args.seconds:.0f} s, a NATS node killed halfway", flush=True)
        result["node_kill"] = burst(work / "node-kill", args, kill_node)
        print(f"  {result['node_kill']}", flush=True)
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
