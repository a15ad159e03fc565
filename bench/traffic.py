"""What a fault runs under: the rig of a fault's processes, the bench publishers, the agent fleets, and the wait
for everything sent to be accounted for."""

from __future__ import annotations

import argparse
import json
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from bench.alert_check import fired
from bench.fleet import occupancy
from bench.ingest import device_ids, zone_of
from bench.processes import Fleet, Proxy, Server, Victoria
from bench.tally import Sent, count_agents, count_published, made_messages, stored_sqlite, stored_victoria
from bench.webhook import Notices
from lobby_sim.broker import Mosquitto
from server.storage.points import epoch_ns

SETTLE_S = 180.0
PER_FLEET = 100  # agents per process


@dataclass
class Rig:
    """One fault's processes and what they sent."""

    name: str
    args: argparse.Namespace
    work: Path
    broker: Mosquitto
    server: Server
    notices: Notices
    victoria: Victoria | None = None
    proxy: Proxy | None = None
    fleets: list[Fleet] = field(default_factory=list)
    sent: Sent = field(default_factory=Sent)
    healed_at: float = 0.0
    offered: float | None = None  # messages a second the sources made, where that is the point
    traffic_ended: datetime | None = None  # agents' messages made after this are not counted (health goes on)

    def start_fleets(self, devices: int, rate: float, seconds: float, **options: float) -> None:
        port = self.proxy.port if self.proxy is not None else self.broker.port
        for first in range(0, devices, PER_FLEET):
            count = min(PER_FLEET, devices - first)
            fleet = Fleet(self.work, port, first, count, **options)
            fleet.start(rate * count / devices, seconds)
            self.fleets.append(fleet)

    def wait_made(self, timeout: float = 3600) -> None:
        deadline = time.monotonic() + timeout
        while not all(f.done for f in self.fleets) and time.monotonic() < deadline:
            time.sleep(0.2)

    def made(self) -> int:
        return sum(int((self.work / f"fleet-{f.first}.done").read_text()) for f in self.fleets if f.done)


def publish(port: int, devices: list[str], rate: float, seconds: float, sent: Sent, name: str) -> None:
    """QoS 1, paced; paho holds what cannot go while the broker is away and sends it when it is back."""
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=name, protocol=mqtt.MQTTv5)
    client.max_inflight_messages_set(200)
    acked = [0]
    client.on_publish = lambda *_args: acked.__setitem__(0, acked[0] + 1)  # PUBACKs, once each
    client.connect("127.0.0.1", port)
    client.loop_start()
    seq = dict.fromkeys(devices, 0)
    last: dict[str, datetime] = {}
    started = time.monotonic()
    n = 0
    while (elapsed := time.monotonic() - started) < seconds:
        if n > elapsed * rate:
            time.sleep(min(0.01, n / rate - elapsed))
            continue
        device = devices[n % len(devices)]
        seq[device] += 1
        # when it was made (the notices' latency is timed from it), in whole milliseconds as VictoriaMetrics
        # keeps them, and later than the device's last: the store keys a device's points by time
        now = datetime.now(UTC)
        ts = now.replace(microsecond=now.microsecond // 1000 * 1000)
        if device in last and ts <= last[device]:
            ts = last[device] + timedelta(milliseconds=1)
        last[device] = ts
        payload = json.dumps(
            {
                "v": 1,
                "stream": "fa0175fa0175fa01",
                "seq": seq[device],
                "ts": ts.isoformat(),
                "uptime_s": elapsed,
                "zones": [{"zone": zone_of(device), "occupancy": occupancy(seq[device])}],
            }
        )
        topic = f"lobby/v1/{device}/queue"
        client.publish(topic, payload, qos=1)  # held by paho while the broker is away
        with sent.lock:
            sent.times[(device, seq[device])] = epoch_ns(ts)
            sent.messages.append((topic, payload.encode()))
        n += 1
    deadline = time.monotonic() + 120
    while acked[0] < n and time.monotonic() < deadline:
        time.sleep(0.1)
    client.disconnect()
    client.loop_stop()


def published_burst(rig: Rig, fault: Callable[[], None]) -> None:
    """The publishers' burst with `fault` in its middle."""
    args = rig.args
    publisher = threading.Thread(
        target=publish,
        args=(rig.broker.port, device_ids(args.devices), args.rate, args.seconds, rig.sent, f"fault-pub-{rig.name}"),
    )
    publisher.start()
    time.sleep(args.seconds / 2)
    fault()
    rig.healed_at = time.monotonic()
    publisher.join()


def settle(rig: Rig) -> tuple[dict[str, Any], float]:
    """Wait until nothing is lost or waiting (or SETTLE_S), then until the notices stop coming."""

    def tally() -> dict[str, Any]:
        if not rig.fleets:
            stored = stored_victoria(rig.victoria.url) if rig.victoria else stored_sqlite(rig.work)
            return count_published(rig.sent, stored)
        known = known_devices(rig.server)
        told = {d: v.get("not_stored") or 0 for d, v in known.items()}  # the agents' own count comes at exit
        return count_agents(rig.work, stored_sqlite(rig.work), known, told, rig.traffic_ended)[0]

    rig.traffic_ended = datetime.now(UTC)
    started = time.monotonic()
    counts = tally()
    while time.monotonic() - started < SETTLE_S and (counts["lost"] or counts.get("unsent")):
        time.sleep(2.0)
        counts = tally()
    heal_s = round(time.monotonic() - rig.healed_at, 1)
    last, quiet_since = -1, time.monotonic()
    while time.monotonic() - quiet_since < 5 and time.monotonic() - started < SETTLE_S + 60:
        count = sum(fired(rig.notices).values())
        if count != last:
            last, quiet_since = count, time.monotonic()
        time.sleep(0.5)
    return counts, heal_s


def known_devices(server: Server) -> dict[str, dict[str, Any]]:
    return {d["id"]: d for d in server.get("devices") or []}


def not_stored(work: Path) -> dict[str, int]:
    counts: Counter[str] = Counter()
    for path in work.glob("fleet-*.stats.json"):
        for device, stats in json.loads(path.read_text()).items():
            counts[device] += stats["not_stored"]
    return dict(counts)


def agent_messages(work: Path) -> list[tuple[str, bytes]]:
    return [
        message
        for path in sorted((work / "agents").glob("*/outbox.sqlite3"))
        for message in made_messages(work, path.parent.name).values()
    ]
