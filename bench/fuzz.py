"""Fuzz benchmark: hostile payloads around valid ones, through a real Mosquitto into `lobbywatch serve`.

    python -m bench.fuzz [--payloads 12000] [--seed 1] [--valid-every 4]

Sends --payloads messages, QoS 1: far-off timestamps (years 1600, 2300, 9999; days ahead, months behind), huge
numbers (seq 10^30, uptime 1e308), NaN and infinities, deep nesting, 1 MB bodies, unknown devices and topics,
garbage bytes, and random mutations of valid messages; after every --valid-every of them a valid queue report
(unique sequence number and time). Then counts, from the server's own store and /health: crashes (the server
process died or logged an internal error), stalls (ingest not done within the settle time, or /health said
"has not advanced"), refusals by cause, valid sent and valid stored (rows, per device and time).
Prints progress, then a JSON object on the last line.
"""

from __future__ import annotations

import argparse
import json
import random
import sqlite3
import tempfile
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import yaml
from paho.mqtt.enums import CallbackAPIVersion

from bench.processes import Server
from lobby_sim.broker import Mosquitto

DEVICES = [f"fuzz-dev-{i}" for i in range(8)]
SETTLE_S = 120.0


def zone_of(device: str) -> str:
    return f"q{device.rsplit('-', 1)[1]}"  # zone keys are unique within a branch


def site() -> dict[str, object]:
    return {
        "defaults": {"threshold": 30, "for_s": 300, "clear_below": 10, "clear_for_s": 60},
        "regions": [{"id": "fz", "name": "fuzz"}],
        "branches": [
            {
                "id": f"fz-{i}",
                "name": f"fuzz {i}",
                "region": "fz",
                "wait_target_min": None,
                "hours": {"opens": "00:00", "closes": "23:59:59.999999"},
                "devices": [{"id": d, "zones": [{"key": zone_of(d), "name": zone_of(d)}]} for d in DEVICES[i::2]],
            }
            for i in range(2)
        ],
    }


class Maker:
    """Payloads: valid ones with unique (device, seq, time), and hostile ones of every kind, by a seeded RNG."""

    def __init__(self, seed: int) -> None:
        self.rnd = random.Random(seed)
        self.seq = dict.fromkeys(DEVICES, 0)
        self.base = datetime.now(UTC) - timedelta(minutes=10)
        self.step = 0

    def envelope(self, device: str) -> dict[str, Any]:
        self.seq[device] += 1
        self.step += 1
        ts = self.base + timedelta(milliseconds=self.step)  # unique per message: no point overwrites another
        return {"v": 1, "stream": "f0f0f0f0f0f0f0f0", "seq": self.seq[device], "ts": ts.isoformat(), "uptime_s": 5.0}

    def valid(self) -> tuple[str, bytes, str]:
        device = self.rnd.choice(DEVICES)
        payload = {**self.envelope(device), "zones": [{"zone": zone_of(device), "occupancy": self.rnd.randint(0, 40)}]}
        return f"lobby/v1/{device}/queue", json.dumps(payload).encode(), payload["ts"]

    def hostile(self) -> tuple[str, str, bytes]:
        """(kind, topic, payload). Hostile messages never use a valid device's sequence: they come from the
        same devices but on a stream of their own, so a valid one is never taken for their duplicate."""
        device = self.rnd.choice(DEVICES)
        base = {
            "v": 1,
            "stream": "0badbadbadbadbad",
            "seq": self.rnd.randint(1, 10**6),
            "ts": datetime.now(UTC).isoformat(),
            "uptime_s": 1.0,
            "zones": [{"zone": zone_of(device), "occupancy": 3}],
        }
        topic = f"lobby/v1/{device}/queue"
        kind = self.rnd.choice(
            ["far_ts", "huge", "nan", "deep", "big", "unknown_device", "bad_topic", "garbage", "mutation", "wrong_type"]
        )
        if kind == "far_ts":
            base["ts"] = self.rnd.choice(
                [
                    "2300-01-01T00:00:00+00:00",
                    "1600-01-01T00:00:00+00:00",
                    "9999-12-31T23:59:59+00:00",
                    "2026-01-01T00:00:00",
                    (datetime.now(UTC) + timedelta(days=3)).isoformat(),
                    (datetime.now(UTC) - timedelta(days=90)).isoformat(),
                ]
            )
        elif kind == "huge":
            field, value = self.rnd.choice([("seq", 10**30), ("uptime_s", 1e308), ("seq", 2**63), ("v", 10**20)])
            base[field] = value
            if self.rnd.random() < 0.5:
                base["zones"] = [{"zone": "queue", "occupancy": 10**20}]
        elif kind == "nan":
            text = json.dumps(base).replace('"uptime_s": 1.0', f'"uptime_s": {self.rnd.choice(["NaN", "Infinity"])}')
            return kind, topic, text.encode()
        elif kind == "deep":
            depth = self.rnd.choice([500, 5000, 100_000])
            return kind, topic, (json.dumps(base)[:-1] + ', "x": ' + "[" * depth + "]" * depth + "}").encode()
        elif kind == "big":
            return kind, topic, json.dumps({**base, "pad": "x" * (1024 * 1024)}).encode()
        elif kind == "unknown_device":
            topic = f"lobby/v1/stranger-{self.rnd.randint(0, 99)}/queue"
        elif kind == "bad_topic":
            topic = self.rnd.choice(
                [
                    f"lobby/v1/{device}/weather",
                    f"lobby/v2/{device}/queue",
                    f"lobby/v1/{device}/queue/extra",
                    "lobby/v1/X Y/queue",
                ]
            )
        elif kind == "garbage":
            return kind, topic, bytes(self.rnd.getrandbits(8) for _ in range(self.rnd.randint(0, 300)))
        elif kind == "mutation":
            key = self.rnd.choice(list(base))
            base[key] = self.rnd.choice([None, -1, "", [], {}, "x" * 100, 1e300, True, [[[]]]])
        else:
            base["zones"] = [{"zone": "queue", "occupancy": "5"}]
        return kind, topic, json.dumps(base).encode()


class Publisher:
    """One MQTT client publishing QoS 1 with a bounded window; reconnects when the broker drops it (a 1 MB
    message past the broker's own limit may)."""

    def __init__(self, port: int, name: str) -> None:
        self.port = port
        self.window = threading.Semaphore(200)
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=name, protocol=mqtt.MQTTv5)
        self.client.on_publish = lambda *_args: self.window.release()
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()

    def send(self, topic: str, payload: bytes) -> None:
        self.window.acquire()
        info = self.client.publish(topic, payload, qos=1)
        if info.rc != mqtt.MQTT_ERR_SUCCESS:
            self.window.release()

    def close(self) -> None:
        deadline = time.monotonic() + 30
        while self.client.want_write() and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(1)
        self.client.disconnect()
        self.client.loop_stop()


def stored_valid(db: Path, expected: dict[tuple[str, str], int]) -> int:
    """Valid messages found in the store, each by its device and time (rows, not keys)."""
    connection = sqlite3.connect(db)
    try:
        found = 0
        for (device, ts), _ in expected.items():
            ns = int(datetime.fromisoformat(ts).timestamp() * 1_000_000) * 1000
            rows = connection.execute(
                "SELECT count(*) FROM points WHERE measurement = 'occupancy' AND time_ns = ? AND tags LIKE ?",
                (ns, f'%"{device}"%'),
            ).fetchone()[0]
            found += min(int(rows), 1)
        return found
    finally:
        connection.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--payloads", type=int, default=12_000, help="hostile payloads to send")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--valid-every", type=int, default=4, help="a valid message after every N hostile ones")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="lobbywatch-fuzz-"))
    broker = Mosquitto(work / "broker")
    broker.start()
    (work / "site.yaml").write_text(yaml.safe_dump(site()))
    server = Server(work, broker.port, {})  # `lobbywatch serve`, as the fault suite runs it
    maker = Maker(args.seed)
    kinds: dict[str, int] = {}
    valid: dict[tuple[str, str], int] = {}
    stalls = 0
    try:
        server.start()
        print(f"sending {args.payloads} hostile payloads, a valid one after every {args.valid_every}", flush=True)
        good, bad = Publisher(broker.port, "fuzz-good"), Publisher(broker.port, "fuzz-bad")
        big = Publisher(broker.port, "fuzz-big")  # apart: a broker with a size limit may drop its connection
        started = time.monotonic()
        for n in range(1, args.payloads + 1):
            kind, topic, payload = maker.hostile()
            kinds[kind] = kinds.get(kind, 0) + 1
            (big if kind == "big" else bad).send(topic, payload)
            if n % args.valid_every == 0:
                topic, payload, ts = maker.valid()
                valid[(topic.split("/")[2], ts)] = 1
                good.send(topic, payload)
            if n % 2000 == 0:
                print(f"  {n} hostile, {len(valid)} valid sent ({time.monotonic() - started:.0f} s)", flush=True)
        for publisher in (good, bad, big):
            publisher.close()
        settle = time.monotonic()
        health: dict[str, Any] = {}
        while time.monotonic() - settle < SETTLE_S:
            health = server.health()
            if "has not advanced" in " ".join(health.get("reasons", [])):
                stalls += 1
            if health.get("ingest_backlog") == 0 and stored_valid(work / "ts.sqlite3", valid) == len(valid):
                break
            time.sleep(1)
        else:
            stalls += 1
        alive = server.process is not None and server.process.poll() is None
    finally:
        server.stop()
        broker.stop()
    stored = stored_valid(work / "ts.sqlite3", valid)
    crashes = (0 if alive else 1) + int(health.get("internal_errors", 0))
    result = {
        "payloads": args.payloads,
        "kinds": dict(sorted(kinds.items())),
        "crashes": crashes,
        "stalls": stalls,
        "refused": health.get("refused", {}),
        "valid_sent": len(valid),
        "valid_stored": stored,
        "dead_letters_not_kept": health.get("dead_letters_not_kept"),
        "status": health.get("status"),
        "seconds": round(time.monotonic() - started, 1),
    }
    print(
        f"crashes {crashes}, stalls {stalls}, valid stored {stored} of {len(valid)}; refused by cause: "
        f"{json.dumps(result['refused'])}; work folder {work}"
    )
    print(json.dumps(result))
    return 0 if crashes == 0 and stalls == 0 and stored == len(valid) else 1


if __name__ == "__main__":
    raise SystemExit(main())
