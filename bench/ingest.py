"""Ingest benchmark: many simulated devices publish through Mosquitto into the running server.

    python -m bench.ingest [--rate 5000] [--seconds 60] [--devices 1000] [--publishers 2]

Phase 1 measures the ceiling: a bare paho subscriber (QoS 1, nothing done per message) under a flood.
Phase 2 starts `lobbywatch serve` (SQLite storage) and publishes valid queue reports at --rate for --seconds,
QoS 1, from --devices devices in --publishers processes; then counts what was stored (nothing may be lost).
Phase 3 floods the server as phase 1 did the bare subscriber: its capacity, and the ratio of the two.
Prints progress, then a JSON object on the last line.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import paho.mqtt.client as mqtt
import yaml
from paho.mqtt.enums import CallbackAPIVersion

from bench.webhook import Notices
from lobby_sim.broker import Mosquitto, free_port, wait_for_port

INFLIGHT = 1000  # publisher window of unacknowledged QoS 1 messages
PER_BRANCH = 10  # devices per simulated branch


def device_ids(n: int) -> list[str]:
    return [f"bench-dev-{i:05d}" for i in range(n)]


def zone_of(device: str) -> str:
    """Each device watches its own area: zone keys are unique within a branch."""
    return f"q{int(device.rsplit('-', 1)[1]) % PER_BRANCH}"


def branch_of(index: int, per_branch: int = PER_BRANCH) -> str:
    """The branch of the index-th device."""
    return f"bench-br-{index // per_branch:04d}"


def site(n: int, alerting: int, per_branch: int = PER_BRANCH) -> dict[str, object]:
    """`alerting` devices have a queue rule that fires at 5 and clears at 2 at once: with the occupancy ramp
    below they fire and resolve every few seconds, to time notifications under load. The rest never fire."""
    branches: dict[str, list[dict[str, object]]] = {}
    for i, device in enumerate(device_ids(n)):
        zone: dict[str, object] = {"key": zone_of(device), "name": zone_of(device)}
        if i < alerting:
            zone["queue_too_long"] = {"threshold": 5, "for_s": 0, "clear_below": 2, "clear_for_s": 0}
        branches.setdefault(branch_of(i, per_branch), []).append({"id": device, "zones": [zone]})
    return {
        "defaults": {"threshold": 30, "for_s": 300, "clear_below": 10, "clear_for_s": 60},
        "regions": [{"id": "bench", "name": "bench"}],
        # open around the clock and only the queue rule: the figures must not depend on the hour they ran
        "branches": [
            {
                "id": b,
                "name": b,
                "region": "bench",
                "devices": d,
                "wait_target_min": None,
                "hours": {"opens": "00:00", "closes": "23:59:59.999999"},
            }
            for b, d in branches.items()
        ],
    }


def queue_report(device: str, stream: str, seq: int, uptime_s: float, round_: int) -> bytes:
    """A device's queue report of now; its count ramps 0..19 and over again, a step per round of all devices."""
    return json.dumps(
        {
            "v": 1,
            "stream": stream,
            "seq": seq,
            "ts": datetime.now(UTC).isoformat(),
            "uptime_s": uptime_s,
            "zones": [{"zone": zone_of(device), "occupancy": round_ % 20}],
        }
    ).encode()


def publish(
    port: int, devices: list[str], rate: float, seconds: float | None, count: int | None, stream: str, sent: Any
) -> None:
    """Publish round-robin over `devices`, paced at `rate` (or flat out when rate is 0)."""
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"bench-pub-{os.getpid()}", protocol=mqtt.MQTTv5)
    client.max_inflight_messages_set(INFLIGHT)
    client.max_queued_messages_set(0)
    client.connect("127.0.0.1", port)
    client.loop_start()
    seq = dict.fromkeys(devices, 0)
    started = time.monotonic()
    n = 0
    last: mqtt.MQTTMessageInfo | None = None
    while True:
        elapsed = time.monotonic() - started
        if (seconds is not None and elapsed >= seconds) or (count is not None and n >= count):
            break
        if rate and n > elapsed * rate:
            time.sleep(min(0.01, n / rate - elapsed))
            continue
        device = devices[n % len(devices)]
        seq[device] += 1
        payload = queue_report(device, stream, seq[device], elapsed, n // len(devices))
        last = client.publish(f"lobby/v1/{device}/queue", payload, qos=1)
        # paho refuses a message while its id is still taken by one not yet acknowledged (65,535 waiting, on a
        # machine where the broker is slower than the publishers): wait for room, then send the same one
        while last.rc == mqtt.MQTT_ERR_QUEUE_SIZE:
            time.sleep(0.005)
            last = client.publish(f"lobby/v1/{device}/queue", payload, qos=1)
        n += 1
    if last is not None:
        last.wait_for_publish(120)
    client.disconnect()
    client.loop_stop()
    with sent.get_lock():
        sent.value += n


def notice_delays(notices: Notices) -> dict[str, float | int]:
    """From the rule-breaking message's time (a notice's `at_utc`, that message's device time) to the notice
    arriving at the webhook, for alerts fired and resolved: count and percentiles in ms."""
    ordered = sorted(
        (arrived - datetime.fromisoformat(n["at_utc"]).timestamp()) * 1000
        for arrived, n in list(notices.received)
        if n.get("change") in ("fired", "resolved")
    )
    if not ordered:
        return {"notices": 0}

    def pick(q: float) -> float:
        return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))], 1)

    return {"notices": len(ordered), "p50": pick(0.5), "p99": pick(0.99), "max": round(ordered[-1], 1)}


def server_flood_rate(
    port: int, health_url: str, devices: list[str], messages: int, publishers: int
) -> dict[str, float]:
    """The server's capacity: its ingest rate while a flood keeps it busy (as `bare_subscriber_rate` does the
    bare subscriber), from its first to its last message of the flood. What the broker drops for it under the
    flood (its queue for the server full) is not counted, and the rate is of what it took in."""

    def received() -> int:
        return int(httpx.get(health_url, timeout=10).json()["received"])

    before = received()
    sent = mp.Value("l", 0)
    slices = [devices[i::publishers] for i in range(publishers)]
    procs = [
        mp.Process(target=publish, args=(port, s, 0, None, messages // publishers, f"{i + 16:016x}", sent))
        for i, s in enumerate(slices)
    ]
    for p in procs:
        p.start()
    first = last = 0.0
    count = before
    while True:
        now_count, now = received(), time.monotonic()
        if now_count > count:
            if count == before:
                first = now
            count, last = now_count, now
        elif count > before and now - last > 5 and not any(p.is_alive() for p in procs):
            break
        time.sleep(0.1)
    for p in procs:
        p.join(60)
    took = count - before
    return {"messages": took, "rate": round(took / (last - first), 1) if last > first else 0.0}


def bare_subscriber_rate(port: int, messages: int, publishers: int) -> dict[str, float]:
    """The ceiling: a paho subscriber that only counts, under a flood from `publishers` processes."""
    received = 0
    first = last = 0.0
    done = threading.Event()

    def on_message(_c: object, _u: object, _m: mqtt.MQTTMessage) -> None:
        nonlocal received, first, last
        received += 1
        last = time.monotonic()
        if received == 1:
            first = last
        if received >= messages:
            done.set()

    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="bench-bare", protocol=mqtt.MQTTv5)
    client.on_message = on_message
    client.connect("127.0.0.1", port)
    client.subscribe("lobby/v1/+/queue", qos=1)
    client.loop_start()
    time.sleep(0.5)
    sent = mp.Value("l", 0)
    per = messages // publishers
    procs = [
        mp.Process(target=publish, args=(port, device_ids(100), 0, None, per, "0000000000000bee", sent))
        for _ in range(publishers)
    ]
    for p in procs:
        p.start()
    done.wait(120)
    for p in procs:
        p.join(60)
    client.disconnect()
    client.loop_stop()
    return {"messages": received, "rate": round((received - 1) / (last - first), 1) if last > first else 0.0}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rate", type=float, default=5000, help="messages per second, all publishers together")
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--devices", type=int, default=1000)
    parser.add_argument("--publishers", type=int, default=2)
    parser.add_argument("--ceiling-messages", type=int, default=100_000)
    parser.add_argument("--alerting", type=int, default=10, help="devices whose queue alerts fire and resolve")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="lobbywatch-bench-"))
    broker = Mosquitto(work / "broker")
    broker.start()
    try:
        print(f"phase 1: bare paho subscriber under a flood of {args.ceiling_messages} messages", flush=True)
        ceiling = bare_subscriber_rate(broker.port, args.ceiling_messages, args.publishers)
        print(f"  bare subscriber: {ceiling['rate']:.0f} msg/s ({ceiling['messages']} received)", flush=True)

        (work / "site.yaml").write_text(yaml.safe_dump(site(args.devices, args.alerting)))
        http_port = free_port()
        hook = Notices()
        env = {
            **os.environ,
            "LOBBYWATCH_MODE": "dev",
            "LOBBYWATCH_DATABASE_URL": f"sqlite:///{work}/registry.sqlite3",
            "LOBBYWATCH_SITE_FILE": str(work / "site.yaml"),
            "LOBBYWATCH_TIMESERIES_PATH": str(work / "ts.sqlite3"),
            "LOBBYWATCH_MQTT_PORT": str(broker.port),
            "LOBBYWATCH_MQTT_USERNAME": "",
            "LOBBYWATCH_HTTP_PORT": str(http_port),
            "LOBBYWATCH_WEBHOOK_URL": hook.url,
        }
        server = subprocess.Popen(
            [str(Path(sys.executable).parent / "lobbywatch"), "serve", "--log-level", "warning"],
            env=env,
            stdout=(work / "server.log").open("w"),
            stderr=subprocess.STDOUT,
        )
        try:
            wait_for_port(http_port, 60)
            health_url = f"http://127.0.0.1:{http_port}/api/v1/health"
            while not httpx.get(health_url, timeout=5).json()["broker_connected"]:
                time.sleep(0.2)
            print(
                f"phase 2: {args.rate:.0f} msg/s for {args.seconds:.0f} s from {args.devices} devices into the server",
                flush=True,
            )
            devices = device_ids(args.devices)
            sent = mp.Value("l", 0)
            slices = [devices[i :: args.publishers] for i in range(args.publishers)]
            started = time.monotonic()
            procs = [
                mp.Process(
                    target=publish,
                    args=(broker.port, s, args.rate / args.publishers, args.seconds, None, f"{i:016x}", sent),
                )
                for i, s in enumerate(slices)
            ]
            for p in procs:
                p.start()
            health: dict[str, object] = {}
            while any(p.is_alive() for p in procs):
                time.sleep(5)
                health = httpx.get(health_url, timeout=10).json()
                print(
                    f"  {time.monotonic() - started:5.0f} s: received {health['received']}, "
                    f"backlog {health['ingest_backlog']}",
                    flush=True,
                )
            publish_s = time.monotonic() - started
            total = sent.value
            settle = last_change = time.monotonic()
            received = -1
            while time.monotonic() - settle < 120:
                health = httpx.get(health_url, timeout=10).json()
                now_received = health["received"]
                assert isinstance(now_received, int)
                if now_received != received:
                    received, last_change = now_received, time.monotonic()
                drained = health["ingest_backlog"] == 0
                # all in, or nothing more for 5 s (what the broker dropped never comes)
                if drained and (received >= total or time.monotonic() - last_change > 5):
                    break
                time.sleep(0.5)
            ingest_s = last_change - started  # to the last message in, not to the end of the wait
            time.sleep(2)  # the last notices of the run
            notices = notice_delays(hook)
            with sqlite3.connect(work / "ts.sqlite3") as db:
                stored = db.execute("SELECT count(*) FROM points WHERE measurement = 'occupancy'").fetchone()[0]
            print(f"phase 3: the server under the same flood as the bare subscriber ({args.ceiling_messages})")
            flood = server_flood_rate(broker.port, health_url, devices, args.ceiling_messages, args.publishers)
            print(f"  server: {flood['rate']:.0f} msg/s ({flood['messages']} received)", flush=True)
        finally:
            server.terminate()
            server.wait(60)
            hook.stop()
        rate = stored / ingest_s
        result = {
            "messages": total,
            "stored": stored,
            "seconds": round(ingest_s, 1),
            "publish_seconds": round(publish_s, 1),
            # at the offered rate: it can be no higher than --rate, so the ratio is the flood's
            "ingest_rate": round(rate, 1),
            "flood_rate": flood["rate"],
            "flood_received": flood["messages"],
            "bare_subscriber_rate": ceiling["rate"],
            "ratio": round(flood["rate"] / ceiling["rate"], 3) if ceiling["rate"] else None,
            "lost": total - stored,
            "gaps_seen_by_server": health.get("missing"),
            "duplicates": health.get("duplicates"),
            "refused": health.get("refused"),
            "backlog_peak": health.get("ingest_backlog_peak"),
            "latency_ms": health.get("lag_ms"),
            "devices": args.devices,
            "target_rate": args.rate,
            "qos": 1,
            "notify_latency_ms": notices,
            "alerting_devices": args.alerting,
        }
        print(json.dumps(result), flush=True)
        return 0
    finally:
        broker.stop()


if __name__ == "__main__":
    raise SystemExit(main())
