"""Fault suite: real processes, a fault injected and healed, every message counted by device and sequence.

    python -m bench.faults [--only NAME] [--devices 50] [--rate 200] [--seconds 20] [--down 8]

Each fault starts a persistent Mosquitto and `lobbywatch serve` (SQLite storage, or InfluxDB's write path on
VictoriaMetrics for `store-down`), publishes queue reports QoS 1 from --devices devices at --rate for --seconds,
each with its own (device, seq) and device time, injects the fault in the middle, heals it, and then counts in
the store what was sent, stored and lost. Faults built so far:

- `server-kill`: the server killed with -9 in the burst, started again --down seconds later (the broker keeps its
  session meanwhile);
- `store-down`: InfluxDB (VictoriaMetrics) down in the burst, the server killed with -9 while it is down and
  started again, then the store back: what the server acknowledged was in its spool on disk;
- `broker-restart`: Mosquitto stopped (gracefully, keeping its state) in the burst and started again --down
  seconds later; the publishers reconnect and send what they hold.

Prints a table, then a JSON object on its last line:
`{"faults": [{"name", "sent", "stored", "dropped_counted", "lost", "duplicated", "alerts_missing",
"alerts_duplicated", "heal_s"}, ...]}`. `lost` (neither stored nor counted as dropped) must be 0. The publishers
keep no outbox, so nothing is dropped by a documented bound here (`dropped_counted` 0); `duplicated` counts
(device, seq) pairs stored more than once (the stores key points by series and time, so a message stored
twice overwrites itself: what this checks is that the count of rows equals the count of distinct messages);
`alerts_*` are null: comparing with a replay of the same input is not built yet.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import paho.mqtt.client as mqtt
import yaml
from paho.mqtt.enums import CallbackAPIVersion

from bench.ingest import device_ids, site, zone_of
from lobby_sim.broker import Mosquitto, free_port, wait_for_port

SETTLE_S = 90.0


@dataclass
class Sent:
    """Every message published: (device, seq) -> device time in ns, as the store keys it."""

    times: dict[tuple[str, int], int] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)


class Server:
    def __init__(self, work: Path, broker_port: int, storage: dict[str, str]) -> None:
        self.work = work
        self.port = free_port()
        self.env = {**os.environ, "LOBBYWATCH_MODE": "dev", "LOBBYWATCH_MQTT_USERNAME": "",
                    "LOBBYWATCH_DATABASE_URL": f"sqlite:///{work}/registry.sqlite3",
                    "LOBBYWATCH_SITE_FILE": str(work / "site.yaml"),
                    "LOBBYWATCH_TIMESERIES_PATH": str(work / "ts.sqlite3"),
                    "LOBBYWATCH_SPOOL_PATH": str(work / "spool.sqlite3"), "LOBBYWATCH_MQTT_PORT": str(broker_port),
                    "LOBBYWATCH_MQTT_CLIENT_ID": "lobbywatch-ingest-faults", "LOBBYWATCH_HTTP_PORT": str(self.port),
                    "LOBBYWATCH_REPORTS_BY_MAIL": "false", **storage}
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        log = (self.work / "server.log").open("ab")
        self.process = subprocess.Popen([str(Path(sys.executable).parent / "lobbywatch"), "serve", "--log-level",
                                         "warning"], env=self.env, stdout=log, stderr=subprocess.STDOUT)
        wait_for_port(self.port, 60)
        deadline = time.monotonic() + 60
        while not self.health().get("broker_connected") and time.monotonic() < deadline:
            time.sleep(0.2)

    def health(self) -> dict[str, Any]:
        try:
            body: dict[str, Any] = httpx.get(f"http://127.0.0.1:{self.port}/api/v1/health", timeout=5).json()
        except httpx.HTTPError:
            return {}
        return body

    def kill(self) -> None:
        if self.process is not None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(15)
            self.process = None

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(30)
            self.process = None


def publish(port: int, devices: list[str], rate: float, seconds: float, sent: Sent, name: str) -> None:
    """QoS 1, paced; paho holds what cannot go while the broker is away and sends it when it is back."""
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=name, protocol=mqtt.MQTTv5)
    client.max_inflight_messages_set(200)
    acked = [0]
    client.on_publish = lambda *_args: acked.__setitem__(0, acked[0] + 1)  # PUBACKs, once each
    client.connect("127.0.0.1", port)
    client.loop_start()
    seq = dict.fromkeys(devices, 0)
    now = datetime.now(UTC)
    base = now.replace(microsecond=now.microsecond // 1000 * 1000)  # whole milliseconds, as VictoriaMetrics keeps
    started = time.monotonic()
    n = 0
    while (elapsed := time.monotonic() - started) < seconds:
        if n > elapsed * rate:
            time.sleep(min(0.01, n / rate - elapsed))
            continue
        device = devices[n % len(devices)]
        seq[device] += 1
        ts = base + timedelta(milliseconds=n)  # unique per message: the store keys points by time
        payload = json.dumps({"v": 1, "stream": "fa0175fa0175fa01", "seq": seq[device], "ts": ts.isoformat(),
                              "uptime_s": elapsed, "zones": [{"zone": zone_of(device), "occupancy": n % 7}]})
        client.publish(f"lobby/v1/{device}/queue", payload, qos=1)  # held by paho while the broker is away
        with sent.lock:
            sent.times[(device, seq[device])] = int(ts.timestamp() * 1_000_000) * 1000
        n += 1
    deadline = time.monotonic() + 120
    while acked[0] < n and time.monotonic() < deadline:
        time.sleep(0.1)
    client.disconnect()
    client.loop_stop()


def stored_sqlite(work: Path) -> dict[tuple[str, int], int]:
    """Occupancy rows per (device, time)."""
    counts: dict[tuple[str, int], int] = {}
    with sqlite3.connect(work / "ts.sqlite3") as db:
        for tags, time_ns in db.execute("SELECT tags, time_ns FROM points WHERE measurement = 'occupancy'"):
            device = dict(json.loads(tags)).get("device", "")
            counts[(device, int(time_ns))] = counts.get((device, int(time_ns)), 0) + 1
    return counts


def stored_victoria(url: str) -> dict[tuple[str, int], int]:
    httpx.get(f"{url}/internal/force_flush", timeout=10)
    response = httpx.get(f"{url}/api/v1/export", params={"match[]": '{__name__="occupancy_occupancy"}'}, timeout=30)
    counts: dict[tuple[str, int], int] = {}
    for line in response.text.splitlines():
        if not line.strip():
            continue
        series = json.loads(line)
        device = series["metric"].get("device", "")
        for ms in series["timestamps"]:
            counts[(device, int(ms) * 1_000_000)] = counts.get((device, int(ms) * 1_000_000), 0) + 1
    return counts


def count(sent: Sent, stored: dict[tuple[str, int], int]) -> dict[str, int]:
    keys = {(device, t) for (device, _seq), t in sent.times.items()}
    return {"sent": len(sent.times), "stored": sum(1 for k in keys if stored.get(k)),
            "lost": sum(1 for k in keys if not stored.get(k)),
            "duplicated": sum(1 for k in keys if stored.get(k, 0) > 1)}


def run_fault(name: str, args: argparse.Namespace) -> dict[str, Any]:
    work = Path(tempfile.mkdtemp(prefix=f"lobbywatch-fault-{name}-"))
    (work / "site.yaml").write_text(yaml.safe_dump(site(args.devices, 0)))
    broker = Mosquitto(work / "broker", persistence=True)
    broker.start()
    victoria: subprocess.Popen[bytes] | None = None
    storage: dict[str, str] = {}
    vm_port = free_port()
    vm_url = f"http://127.0.0.1:{vm_port}"

    def vm_start() -> subprocess.Popen[bytes]:
        # one sample per series and millisecond, as InfluxDB keeps one point per series and time: a batch the
        # server sent again after a kill (idempotent there) is not counted twice
        process = subprocess.Popen(["victoria-metrics", f"-storageDataPath={work}/vm", "-dedup.minScrapeInterval=1ms",
                                    f"-httpListenAddr=127.0.0.1:{vm_port}"], stdout=subprocess.DEVNULL,
                                   stderr=subprocess.DEVNULL)
        wait_for_port(vm_port, 30)
        return process

    if name == "store-down":
        victoria = vm_start()
        storage = {"LOBBYWATCH_STORAGE": "influxdb", "LOBBYWATCH_INFLUX_URL": vm_url}
    server = Server(work, broker.port, storage)
    server.start()
    sent = Sent()
    publisher = threading.Thread(target=publish, args=(broker.port, device_ids(args.devices), args.rate,
                                                       args.seconds, sent, f"fault-pub-{name}"))
    publisher.start()
    time.sleep(args.seconds / 2)
    healed = inject(name, args.down, server, broker, victoria, vm_start)
    publisher.join()
    heal_started = time.monotonic()
    read: Callable[[], dict[tuple[str, int], int]] = (
        (lambda: stored_victoria(vm_url)) if name == "store-down" else (lambda: stored_sqlite(work)))
    counts = count(sent, {})
    while time.monotonic() - heal_started < SETTLE_S:
        counts = count(sent, read())
        if counts["lost"] == 0:
            break
        time.sleep(1.0)
    heal_s = round(time.monotonic() - max(heal_started, healed["at"]), 1)
    server.stop()
    if healed.get("victoria") is not None:
        healed["victoria"].terminate()
        healed["victoria"].wait(30)
    broker.stop()
    return {"name": name, **counts, "dropped_counted": 0, "alerts_missing": None, "alerts_duplicated": None,
            "heal_s": heal_s, "work": str(work)}


def inject(name: str, down_s: float, server: Server, broker: Mosquitto, victoria: subprocess.Popen[bytes] | None,
           vm_start: Callable[[], subprocess.Popen[bytes]]) -> dict[str, Any]:
    """The fault, then its healing; returns when it was healed (monotonic) and any process it started."""
    if name == "server-kill":
        server.kill()
        time.sleep(down_s)
        server.start()
    elif name == "store-down":
        assert victoria is not None
        victoria.terminate()
        victoria.wait(30)
        time.sleep(down_s / 2)
        server.kill()  # while the store is down: what it acknowledged is in its spool on disk
        server.start()
        time.sleep(down_s / 2)
        return {"at": time.monotonic(), "victoria": vm_start()}
    elif name == "broker-restart":
        broker.stop()
        time.sleep(down_s)
        broker.start()
    return {"at": time.monotonic()}


FAULTS = ("server-kill", "store-down", "broker-restart")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", choices=FAULTS, help="run one fault")
    parser.add_argument("--devices", type=int, default=50)
    parser.add_argument("--rate", type=float, default=200.0, help="messages per second, all devices together")
    parser.add_argument("--seconds", type=float, default=20.0, help="length of the burst")
    parser.add_argument("--down", type=float, default=8.0, help="how long the fault lasts")
    args = parser.parse_args(argv)
    results = []
    for name in [args.only] if args.only else FAULTS:
        print(f"{name}: {args.devices} devices, {args.rate:.0f} msg/s for {args.seconds:.0f} s, down {args.down:.0f} s",
              flush=True)
        results.append(run_fault(name, args))
    print(f"{'fault':<16}{'sent':>8}{'stored':>8}{'lost':>6}{'dup':>5}{'heal s':>8}")
    for r in results:
        print(f"{r['name']:<16}{r['sent']:>8}{r['stored']:>8}{r['lost']:>6}{r['duplicated']:>5}{r['heal_s']:>8}")
    print(json.dumps({"faults": results}))
    return 0 if all(r["lost"] == 0 and r["duplicated"] == 0 for r in results) else 1


if __name__ == "__main__":
    raise SystemExit(main())
