"""Scale-out benchmark: forwarders and workers as real processes on a real 3-node NATS cluster, Mosquitto,
PostgreSQL for the registry and VictoriaMetrics (InfluxDB's write path, every sample kept).

    python -m bench.scale [--workers 1,2,4] [--messages 40000] [--seconds 60] [--rate 200] [--capacity N]
                          [--forward-rate 10000] [--only SECTION ...]

- workers: a backlog of --messages queue reports put in the stream, drained by n workers: messages/s and the
  workers' CPU microseconds per message (what scales on more cores is the flat CPU cost per message);
- forwarder: one forwarder and no workers under --forward-rate reports a second for 10 s: what it moves into the
  stream a second, its CPU microseconds per message, and what Mosquitto dropped if it fell behind;
- failover: a burst of --seconds at --rate through the forwarder, every zone alerting once a cycle, one of two
  workers killed with -9 in its middle: stored, lost, duplicate points, alerts against a single-process replay
  of the same reports, and how long the dead worker's partitions went unowned;
- node_kill: the same burst with one NATS node killed in its middle and started again;
- overload: twice two workers' capacity (`--capacity`, else the workers section's 2-worker drain rate) for
  --seconds through two forwarders: lost, dropped by the MQTT broker, the stream's largest backlog (overload must
  queue in JetStream, on disk), `drain_s` after the last report, and what the whole chain stored a second
  (`end_to_end_rate`);
- notices: a burst at half of the capacity, no fault: `notice_p99_ms`, from the breaching report's device time to
  the webhook's notice. The capacity here is the chain's: the overload's `end_to_end_rate` when this run
  measured it and the chain fell behind there (every process of the chain shares this machine, so the workers'
  drain rate alone is more than the chain takes end to end), else as for overload; `notices_capacity` says
  which.
Every burst also reports its notice latency and `drain_s`. Prints progress, then a JSON object on the last line.
"""

from __future__ import annotations

import argparse
import json
import math
import tempfile
import threading
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.alert_check import compare, expected_fired, fired
from bench.ingest import notice_delays
from bench.scale_rig import (
    HOLD_S,
    PARTITIONS,
    Backlog,
    Rig,
    broker_drop_warnings,
    cpu_s,
    holding,
    preload,
    rig,
    settle_stored,
    wait_empty,
    wait_placed,
)
from bench.tally import Sent
from bench.traffic import publish

# one paho publisher (a thread) keeps up with about this many QoS 1 messages a second here; more are spread
PER_PUBLISHER = 2_500


Fault = Callable[[Rig], dict[str, Any]]  # done to the rig halfway through a burst
# an overload the chain drained this long after its burst fell behind: its end-to-end rate is what the chain takes
SATURATED_DRAIN_S = 5.0


def drain(work: Path, workers: int, messages: int, devices: int, idle_s: float) -> dict[str, Any]:
    with rig(work, devices, alerting=0) as servers:
        for i in range(workers):
            servers.worker(f"w{i + 1}")
        time.sleep(3.0)  # the workers see each other before the first messages: each takes its own partitions
        sent = Sent()
        first = preload(servers, len(servers.devices), sent, 1)  # one message a device: every partition owned
        wait_empty(servers, HOLD_S + 30)
        wait_placed(servers)
        idle_from = cpu_s(servers.workers)
        time.sleep(idle_s)
        idle = (cpu_s(servers.workers) - idle_from) / idle_s  # CPU seconds a second with nothing to do
        before = cpu_s(servers.workers)
        started = time.monotonic()
        preload(servers, messages, sent, 2, after=first)
        wait_empty(servers, 600)
        elapsed = time.monotonic() - started
        cpu = cpu_s(servers.workers) - before
        counts = settle_stored(servers, sent)
    return {
        "n": workers,
        "messages": messages,
        "rate": round(messages / elapsed),
        "cpu_us_per_msg": round(cpu / messages * 1e6),
        # what the workers use with nothing to do (heartbeats, the worker list, pulls waiting, the rules' clock)
        # is more with more workers; the drain's CPU less that, a message
        "idle_cpu_pct": round(idle * 100, 1),
        "busy_cpu_us_per_msg": round((cpu - idle * elapsed) / messages * 1e6),
        "lost": counts["lost"],
        "duplicate_points": counts["duplicated"],
    }


def burst(
    work: Path,
    rate: float,
    seconds: float,
    fault: Fault,
    forwarders: int = 1,
    settle_s: float = 120.0,
    alerting_share: float = 1.0,
) -> dict[str, Any]:
    """Two workers and `forwarders`; `rate` reports a second for `seconds` through Mosquitto, `fault` in the
    middle; then what was stored and notified, against a single-process replay of the same reports, how long
    the store took to have everything after the last was sent (`drain_s`), and the notices' latency.
    `alerting_share`: the devices whose zone fires and resolves once a cycle; the others never alert."""
    devices = max(12, round(rate / 8))  # 8 reports a second a device: a cycle of 50 (one alert) in 6 s
    with rig(work, devices, alerting=max(1, round(devices * alerting_share))) as servers:
        for i in range(forwarders):
            servers.forwarder(f"f{i + 1}")
        for name in ("w1", "w2"):
            servers.worker(name)
        time.sleep(3.0)  # the workers see each other: each pulls its own partitions
        # a report of every device straight into the stream first, so that every partition is taken on before
        # the burst: what follows is the steady state; takeovers are timed apart
        preload(servers, len(servers.devices), Sent(), 1)
        wait_empty(servers, HOLD_S + 60)
        wait_placed(servers)
        time.sleep(1.0)
        sent = Sent()
        publishers = publisher_threads(servers, rate, seconds, sent)
        before = {"forwarder": cpu_s(servers.forwarders), "nats": cpu_s(servers.cluster.nodes)}
        nats_before = servers.cluster.messages()
        workers_before = {w.process.pid: w for w in servers.workers if w.process is not None}
        before["worker"] = cpu_s(servers.workers)
        sequence_before = servers.stream_sequence()
        with Backlog(servers) as backlog:
            for publisher in publishers:
                publisher.start()
            time.sleep(seconds / 2)
            observed = fault(servers)
            for publisher in publishers:
                publisher.join()
            published = time.monotonic()
            counts = settle_stored(servers, sent, settle_s)
            drain_s = time.monotonic() - published
        # per message forwarded; the NATS figure is the three nodes together (R3), and only while all ran
        costs: dict[str, float | None] = {
            f"{part}_cpu_us_per_msg": round((cpu_s(processes) - before[part]) / counts["sent"] * 1e6)
            for part, processes in (("forwarder", servers.forwarders), ("nats", servers.cluster.nodes))
        }
        # what the nodes handled a message sent: publishes, deliveries, pulls, acknowledgements, replication
        # (only where nothing was killed: a node's counters start again, a connection's go with it)
        nats_after = servers.cluster.messages()
        by_part: dict[str, list[float]] | None = None
        if fault is no_fault:
            sent_n = counts["sent"]
            by_part = {
                part: [round((now - nats_before.get(part, [0, 0])[i]) / sent_n, 2) for i, now in enumerate(both)]
                for part, both in nats_after.items()
            }
            costs["nats_msgs_in_per_msg"], costs["nats_msgs_out_per_msg"] = by_part.pop("total")
        # the workers' only when the same ones ran throughout (a killed worker's CPU time is gone with it)
        same = {w.process.pid: w for w in servers.workers if w.process is not None} == workers_before
        worker_s = cpu_s(servers.workers) - before["worker"]
        costs["worker_cpu_us_per_msg"] = round(worker_s / counts["sent"] * 1e6) if same else None
        # every report sent was acknowledged by the broker (the publishers wait for that): what never reached
        # the stream the broker dropped (the forwarders publish nothing else into it)
        reached_stream = servers.stream_sequence() - sequence_before
        drop_warnings = broker_drop_warnings(servers.broker.data_dir / "mosquitto.log")
        time.sleep(HOLD_S + 5.0)  # the last notices
        alerts = compare(expected_fired(servers.site, sent.messages, work / "replay"), fired(servers.notices))
        latency = notice_delays(servers.notices)
    return {
        "offered_rate": rate,
        "sent": counts["sent"],
        "sent_rate": round(counts["sent"] / seconds),
        "stored_unique": counts["stored"],
        "lost": counts["lost"],
        "reached_stream": reached_stream,
        "dropped_by_mqtt_broker": counts["sent"] - reached_stream,
        "broker_drop_warnings": drop_warnings,
        "duplicate_points": counts["duplicated"],
        **{k: alerts[k] for k in ("alerts_expected", "alerts_missing", "alerts_duplicated", "alerts_unexpected")},
        "largest_stream_backlog": backlog.largest,
        "drain_s": round(drain_s, 1),
        # what the whole chain stored a second, from the burst's start to the last message stored: its capacity on
        # this machine when the burst offered more than it takes (overload)
        "end_to_end_rate": round(counts["stored"] / (seconds + drain_s)),
        "notify_latency_ms": latency,
        "notices_per_s": round(latency["notices"] / seconds, 1),
        **observed,
        **costs,
        "nats_msgs_by_part": by_part,  # [in, out] per report, by the clients' roles and the routes
    }


def publisher_threads(servers: Rig, rate: float, seconds: float, sent: Sent) -> list[threading.Thread]:
    """Bench publishers for `rate` reports a second over the rig's devices, as many as that rate needs."""
    shares = math.ceil(rate / PER_PUBLISHER)
    return [
        threading.Thread(
            target=publish,
            args=(servers.broker.port, servers.devices[k::shares], rate / shares, seconds, sent, f"bench-pub-{k}"),
        )
        for k in range(shares)
    ]


def forward_flood(work: Path, rate: float, seconds: float) -> dict[str, Any]:
    """One forwarder and no workers under `rate` reports a second: what it moves from Mosquitto into the stream
    a second (`rate`, to the last message in the stream), its CPU per message, and what Mosquitto dropped when
    it fell behind."""
    with rig(work, max(12, round(rate / 8)), alerting=0) as servers:
        servers.forwarder("f1")
        time.sleep(3.0)  # subscribed
        sent = Sent()
        publishers = publisher_threads(servers, rate, seconds, sent)
        before, started = cpu_s(servers.forwarders), time.monotonic()
        for publisher in publishers:
            publisher.start()
        for publisher in publishers:
            publisher.join()
        in_stream, moved_at = 0, time.monotonic()
        while in_stream < len(sent.times) and time.monotonic() - moved_at < 10.0:  # all in, or nothing more for 10 s
            time.sleep(0.1)
            now = servers.stream_messages()
            if now > in_stream:
                in_stream, moved_at = now, time.monotonic()
        cpu = cpu_s(servers.forwarders) - before
        return {
            "offered_rate": rate,
            "sent": len(sent.times),
            "sent_rate": round(len(sent.times) / seconds),
            "in_stream": in_stream,
            "rate": round(in_stream / (moved_at - started)),
            "cpu_us_per_msg": round(cpu / max(in_stream, 1) * 1e6),
            # every report was acknowledged by the broker (the publishers wait for that); what is not in the stream
            # once nothing more came for 10 s, the broker dropped
            "dropped_by_mqtt_broker": len(sent.times) - in_stream,
            "broker_drop_warnings": broker_drop_warnings(servers.broker.data_dir / "mosquitto.log"),
        }


def chain_capacity(overload: dict[str, Any]) -> float | None:
    """What the whole chain takes a second: its end-to-end rate in an overload it fell behind in (a drain after
    the burst), else None (not measured, or the chain kept up and took only what was offered)."""
    if overload.get("drain_s", 0) >= SATURATED_DRAIN_S and overload.get("end_to_end_rate"):
        return float(overload["end_to_end_rate"])
    return None


def no_fault(_servers: Rig) -> dict[str, Any]:
    return {}


def kill_worker(servers: Rig) -> dict[str, Any]:
    """Kill -9 one worker; `takeover_s`: until the survivor has taken the last of the dead one's partitions on
    and goes on with them (a device whose messages the dead one had in hand, unsaved, waits for them to come
    again after the ack wait: at most `HOLD_S` more; the notices' latency shows it)."""
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
                "takeover_s": round(pinned, 1),
            }
        time.sleep(0.2)
    return {"partitions_moved": len(held), "takeover_s": None}


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
    parser.add_argument(
        "--idle-seconds", type=float, default=10.0, help="the workers' idle CPU is measured this long before a drain"
    )
    parser.add_argument("--seconds", type=float, default=60.0, help="length of the bursts")
    parser.add_argument("--rate", type=float, default=200.0, help="reports a second in the failover and node-kill")
    parser.add_argument(
        "--capacity",
        type=float,
        help="what two workers take, msg/s: overload offers twice it, notices run at half (default: the 2-worker "
        "drain rate of this run's workers section, else 2,000)",
    )
    parser.add_argument("--forward-rate", type=float, default=10_000.0, help="reports a second offered one forwarder")
    parser.add_argument("--only", choices=SECTIONS, action="append")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="lobbywatch-scale-"))
    sections = args.only or list(SECTIONS)
    result: dict[str, Any] = {"partitions": PARTITIONS, "work": str(work)}
    failed = []
    if "workers" in sections:
        result["workers"] = []
        for n in (int(x) for x in args.workers.split(",")):
            print(f"workers: {n} draining {args.messages} messages", flush=True)
            try:
                figures = drain(work / f"drain-{n}", n, args.messages, args.devices, args.idle_seconds)
            except Exception as exc:  # reported, and the rest still runs
                traceback.print_exc()
                figures = {"n": n, "error": f"{type(exc).__name__}: {exc}"}
                failed.append(f"workers-{n}")
            print(f"  {figures}", flush=True)
            result["workers"].append(figures)
    if "forwarder" in sections:
        print(f"forwarder: {args.forward_rate:.0f} reports/s into one forwarder for 10 s, no workers", flush=True)
        try:
            result["forwarder"] = forward_flood(work / "forwarder", args.forward_rate, 10.0)
        except Exception as exc:  # reported, and the rest still runs
            traceback.print_exc()
            result["forwarder"] = {"error": f"{type(exc).__name__}: {exc}"}
            failed.append("forwarder")
        print(f"  {result['forwarder']}", flush=True)
    two = [w["rate"] for w in result.get("workers", []) if w["n"] == 2 and "rate" in w]
    capacity = args.capacity or (two[0] if two else 2_000.0)
    capacity_basis = "--capacity" if args.capacity else "the workers' 2-worker drain rate"

    def notices() -> tuple[float, Fault, int, float, str]:
        chain = chain_capacity(result.get("overload", {}))
        rate, basis = (chain, "the chain's end-to-end rate under overload") if chain else (capacity, capacity_basis)
        result["notices_capacity"] = {"rate": rate, "basis": basis}
        return rate / 2, no_fault, 2, 0.1, f"half of {basis}, a tenth of the zones alerting, 2 forwarders"

    # every device alerting once a cycle (a notice per 25 reports) checks the alerts under each fault; for the
    # notices' latency a tenth of them, still hundreds of times a real network's rate of alerts
    runs: dict[str, Callable[[], tuple[float, Fault, int, float, str]]] = {
        "failover": lambda: (args.rate, kill_worker, 1, 1.0, "a worker killed halfway"),
        "node_kill": lambda: (args.rate, kill_node, 1, 1.0, "a NATS node killed halfway"),
        "overload": lambda: (capacity * 2, no_fault, 2, 1.0, "twice the workers' capacity, 2 forwarders"),
        "notices": notices,
    }
    for section, run in runs.items():
        if section in sections:
            rate, fault, forwarders, share, what = run()
            print(f"{section}: {rate:.0f} reports/s for {args.seconds:.0f} s, {what}", flush=True)
            try:
                result[section] = burst(work / section, rate, args.seconds, fault, forwarders, 900.0, share)
            except Exception as exc:  # a section that breaks is reported and the others still run
                traceback.print_exc()
                result[section] = {"error": f"{type(exc).__name__}: {exc}"}
                failed.append(section)
            print(f"  {result[section]}", flush=True)
    if "notify_latency_ms" in result.get("notices", {}):
        result["notice_p99_ms"] = result["notices"]["notify_latency_ms"].get("p99")
    result["failed_sections"] = failed
    print(json.dumps(result))
    return 1 if failed else 0


SECTIONS = ("workers", "forwarder", "failover", "node_kill", "overload", "notices")


if __name__ == "__main__":
    raise SystemExit(main())
