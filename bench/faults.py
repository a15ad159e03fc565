"""Fault suite: real processes, a fault injected and healed, every message counted by device and sequence.

    python -m bench.faults [--only NAME] [--devices 50] [--rate 200] [--seconds 20] [--down 8] [--store-down 600]
                           [--agents 20] [--agent-rate 1000] [--backlog 3600] [--storm-agents 1000]
                           [--overload-rate 6000] [--overload-seconds 60]

Every fault starts Mosquitto and `lobbywatch serve` (SQLite storage, or InfluxDB's write path on VictoriaMetrics
for `store-down`) with a webhook that records every alert notice. The traffic comes from bench publishers
(QoS 1, no outbox: `server-kill`, `store-down`) or from real edge agents with their outboxes (`bench.fleet`,
the rest). Each device's zone breaks its queue rule once every 50 reports. The faults:

- `server-kill`: the server killed with -9 in a burst of --rate from --devices publishers, started again --down
  seconds later (the broker keeps its session meanwhile);
- `store-down`: InfluxDB (VictoriaMetrics) down for --store-down seconds (10 minutes) from the middle of the
  burst, the server killed with -9 halfway through and started again, then the store back: what the server
  acknowledged was in its spool on disk;
- `broker-restart`, `broker-restart-nopersist`, `broker-kill`: Mosquitto stopped gracefully keeping its state,
  stopped without persistence (what it held for the server is gone: the agents resend it on request), or killed
  with -9, in a burst of --agents agents at --agent-rate, and started again --down seconds later;
- `edge-offline`: --agents agents cut off the broker (a TCP proxy drops them) while each makes --backlog reports
  (3,600: an hour of a report a second), then let through: their outboxes drain;
- `agent-kill`: the agents' process killed with -9 five times in a burst, started again a second later;
- `outbox-full`: agents cut off with their outbox bounded to 1 MB until it has dropped its oldest messages;
  `disk-full`: the same on a real 3 MiB filesystem that something else fills (needs root, for the mount);
- `reconnect-storm`: --storm-agents agents (in processes of 100) and the broker killed with -9 under them;
- `overload`: agents offering --overload-rate (about twice what the server keeps up with on two cores) for
  --overload-seconds: what the broker drops past its queue limit comes back from the outboxes on request;
- `worker-kill`, `nats-node-kill`: the scale-out (docs/scale.md): a forwarder, two workers and a 3-node NATS
  cluster, PostgreSQL for the registry; a worker, or a NATS node, killed with -9 in the middle of a burst of the
  bench publishers (at least 100 a second for 12 s, so that every zone fires once); `heal_s` is the takeover.

Counted per fault: `sent` (queue reports, and for agents their health reports too), `stored` (found in the
store), `dropped_counted` (dropped at a documented bound, an outbox's size, and known to the server from the
device's health), `lost` (neither: must be 0), `duplicated` (stored more than once), and the alerts: a replay of
the messages that reached the server, in the order they were made (no fault), says which `queue_too_long` alerts
fire; against the webhook's notices, `alerts_missing`, `alerts_unexpected` and `alerts_duplicated` (notified
twice); `alerts_dropped`, those only the messages dropped at a bound would have fired. `heal_s`: from the fault's end to
the last message stored. Prints a table, then a JSON object on its last line.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from bench.alert_check import compare, expected_fired, fired, without
from bench.ingest import site
from bench.processes import Proxy, Server, Victoria
from bench.scale import burst, kill_node, kill_worker
from bench.tally import count_agents, stored_sqlite
from bench.traffic import Rig, agent_messages, known_devices, not_stored, published_burst, settle
from bench.webhook import Notices
from lobby_sim.broker import Mosquitto


def server_kill(rig: Rig) -> None:
    def fault() -> None:
        rig.server.kill()
        time.sleep(rig.args.down)
        rig.server.start()

    published_burst(rig, fault)


def store_down(rig: Rig) -> None:
    def fault() -> None:
        assert rig.victoria is not None
        rig.victoria.stop()
        time.sleep(rig.args.store_down / 2)
        rig.server.kill()  # while the store is down: what it acknowledged is in its spool on disk
        rig.server.start()
        time.sleep(rig.args.store_down / 2)
        rig.victoria.start()

    published_burst(rig, fault)


def broker_down(how: str) -> Callable[[Rig], None]:
    def run(rig: Rig) -> None:
        args = rig.args
        rig.start_fleets(args.agents, args.agent_rate, args.seconds)
        time.sleep(args.seconds / 2)
        rig.broker.kill() if how == "kill" else rig.broker.stop()
        time.sleep(args.down)
        rig.broker.start()
        rig.healed_at = time.monotonic()
        rig.wait_made()

    return run


def cut_off(rig: Rig, agents: int, reports: int, when_cut: Callable[[], None] = lambda: None, **options: float) -> None:
    """`agents` connect, are cut off the broker (the proxy drops them) while each makes `reports`, and are let
    through again."""
    args = rig.args
    rig.proxy = Proxy(rig.broker.port)
    rig.start_fleets(agents, args.agent_rate, 1 + reports * agents / args.agent_rate, **options)
    time.sleep(1)
    rig.proxy.cut()
    when_cut()
    rig.wait_made()
    rig.proxy.heal()
    rig.healed_at = time.monotonic()


def edge_offline(rig: Rig) -> None:
    cut_off(rig, rig.args.agents, rig.args.backlog)


def agent_kill(rig: Rig) -> None:
    args = rig.args
    kills = 5
    rig.start_fleets(args.agents, args.agent_rate, args.seconds)
    started = time.monotonic()
    for n in range(kills):
        time.sleep(max(0.0, started + (n + 1) * args.seconds / (kills + 1) - time.monotonic()))
        for fleet in rig.fleets:
            fleet.kill()
        time.sleep(1)
        remaining = max(1.0, args.seconds - (time.monotonic() - started))
        for fleet in rig.fleets:
            fleet.start(args.agent_rate * fleet.devices / args.agents, remaining)
    rig.healed_at = time.monotonic()
    rig.wait_made()


def outbox_full(rig: Rig) -> None:
    """Cut off with a 1 MB outbox (about 4,000 messages) while each agent makes twice that."""
    cut_off(rig, rig.args.small_agents, 8000, outbox_mb=1)


def disk_full(rig: Rig) -> None:
    """The agents' card: a 3 MiB filesystem, filled by something else once the agents are cut off; the filler
    stays (the card stays full): what the agents could not store, they say in their health."""
    card = rig.work / "agents"
    card.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=3m", "tmpfs", str(card)], check=True)

    def fill() -> None:
        with (card / "filler").open("wb") as filler:
            filler.write(b"\0" * max(0, shutil.disk_usage(card).free - 64 * 1024))

    try:
        cut_off(rig, rig.args.small_agents, 3000, when_cut=fill)
    except BaseException:
        subprocess.run(["umount", "-l", str(card)], check=False)
        raise


def reconnect_storm(rig: Rig) -> None:
    args = rig.args
    # each agent a report every 10 s: the storm is in the connections, not the messages
    rig.start_fleets(args.storm_agents, args.storm_agents / 10, args.seconds * 2)
    time.sleep(args.seconds)
    rig.broker.kill()
    time.sleep(args.down)
    rig.broker.start()
    rig.healed_at = time.monotonic()
    rig.wait_made()


def overload(rig: Rig) -> None:
    args = rig.args
    rig.start_fleets(args.agents, args.overload_rate, args.overload_seconds)
    started = time.monotonic()
    rig.wait_made()
    rig.offered = round(rig.made() / (time.monotonic() - started))
    rig.healed_at = time.monotonic()


@dataclass(frozen=True)
class Fault:
    run: Callable[[Rig], None]
    agents: bool = True
    persistence: bool = True
    root: bool = False  # needs to mount a filesystem


FAULTS = {
    "server-kill": Fault(server_kill, agents=False),
    "store-down": Fault(store_down, agents=False),
    "broker-restart": Fault(broker_down("stop")),
    "broker-restart-nopersist": Fault(broker_down("stop"), persistence=False),
    "broker-kill": Fault(broker_down("kill")),
    "edge-offline": Fault(edge_offline),
    "agent-kill": Fault(agent_kill),
    "outbox-full": Fault(outbox_full),
    "disk-full": Fault(disk_full, root=True),
    "reconnect-storm": Fault(reconnect_storm),
    "overload": Fault(overload),
}


def run_fault(name: str, args: argparse.Namespace) -> dict[str, Any]:
    spec = FAULTS[name]
    work = Path(tempfile.mkdtemp(prefix=f"lobbywatch-fault-{name}-", dir=args.tmp))
    devices = max(args.devices, args.agents, args.storm_agents, args.small_agents)
    site_config = site(devices, devices)
    (work / "site.yaml").write_text(yaml.safe_dump(site_config))
    broker = Mosquitto(work / "broker", persistence=spec.persistence)
    broker.start()
    notices = Notices()
    storage: dict[str, str] = {"LOBBYWATCH_WEBHOOK_URL": notices.url}
    victoria = None
    if name == "store-down":
        victoria = Victoria(work)
        victoria.start()
        storage |= {"LOBBYWATCH_STORAGE": "influxdb", "LOBBYWATCH_INFLUX_URL": victoria.url}
    server = Server(work, broker.port, storage)
    server.start()
    rig = Rig(name, args, work, broker, server, notices, victoria)
    try:
        spec.run(rig)
        counts, heal_s = settle(rig)
        if spec.agents:
            for fleet in rig.fleets:
                fleet.stop()
            counts, unstored = count_agents(
                work, stored_sqlite(work), known_devices(server), not_stored(work), rig.traffic_ended
            )
            messages = agent_messages(work)
        else:
            messages, unstored = rig.sent.messages, []
        health = server.health()
        # the server is held to the alerts of what reached it; those only the dropped reports would have fired
        # (a breach they began, or, where they held its end, the next breach's) are counted apart
        expected = expected_fired(site_config, messages, work / "replay")
        reached = expected_fired(site_config, without(messages, unstored), work / "replay-reached")
        alerts = {**compare(reached, fired(rig.notices)), "alerts_dropped": sum((expected - reached).values())}
    finally:
        for fleet in rig.fleets:
            fleet.kill()
        server.stop()
        if victoria is not None:
            victoria.stop()
        if rig.proxy is not None:
            rig.proxy.close()
        broker.stop()
        notices.stop()
        if spec.root:
            subprocess.run(["umount", "-l", str(work / "agents")], check=False)
    return {
        "name": name,
        **counts,
        **alerts,
        "heal_s": heal_s,
        "offered_per_s": rig.offered,
        "resend_requests": health.get("resend_requests"),
        "late": health.get("late"),
        "work": str(work),
    }


# Faults of the scale-out (docs/scale.md): forwarder, two workers and a 3-node NATS cluster as real processes,
# the fault in the middle of a burst of the bench publishers (bench/scale.py)
SCALE_FAULTS = {"worker-kill": kill_worker, "nats-node-kill": kill_node}
SCALE_MIN_SECONDS = 12.0  # long enough for every zone to fire once (a cycle of 50 reports at 8 a second)


def run_scale_fault(name: str, args: argparse.Namespace) -> dict[str, Any]:
    work = Path(tempfile.mkdtemp(prefix=f"lobbywatch-fault-{name}-", dir=args.tmp))
    rate = max(args.rate, 100.0)
    figures = burst(work, rate, max(args.seconds, SCALE_MIN_SECONDS), SCALE_FAULTS[name])
    return {
        "name": name,
        "sent": figures["sent"],
        "stored": figures["stored_unique"],
        "dropped_counted": 0,
        "lost": figures["lost"],
        "duplicated": figures["duplicate_points"],
        **{k: v for k, v in figures.items() if k.startswith("alerts_")},
        "alerts_dropped": 0,
        "heal_s": figures.get("takeover_s", figures.get("node_down_s")),
        "offered_per_s": rate,
        "resend_requests": None,
        "late": None,
        "work": str(work),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--only", choices=[*FAULTS, *SCALE_FAULTS], action="append", help="run this fault (may be repeated)"
    )
    parser.add_argument("--devices", type=int, default=50, help="bench publishers' devices")
    parser.add_argument("--rate", type=float, default=200.0, help="publishers' messages per second, in all")
    parser.add_argument("--seconds", type=float, default=20.0, help="length of a burst")
    parser.add_argument("--down", type=float, default=8.0, help="how long a fault lasts")
    parser.add_argument("--store-down", type=float, default=600.0, help="how long InfluxDB is down in store-down")
    parser.add_argument("--agents", type=int, default=20, help="real agents in the agent faults")
    parser.add_argument("--agent-rate", type=float, default=1000.0, help="their queue reports a second, in all")
    parser.add_argument("--backlog", type=int, default=3600, help="reports each agent makes while cut off")
    parser.add_argument("--small-agents", type=int, default=4, help="agents in outbox-full and disk-full")
    parser.add_argument("--storm-agents", type=int, default=1000, help="agents in reconnect-storm")
    parser.add_argument("--overload-rate", type=float, default=6000.0)
    parser.add_argument("--overload-seconds", type=float, default=60.0)
    # in memory where there is /dev/shm: twenty agents on one machine make a thousand messages a second, each
    # fsynced (a Pi makes one or two a second); a kill -9 leaves a tmpfs as it leaves a disk
    shm = Path("/dev/shm")
    parser.add_argument(
        "--tmp",
        type=Path,
        default=shm if shm.is_dir() else None,
        help="where the faults' work folders go (default /dev/shm)",
    )
    args = parser.parse_args(argv)
    results = []
    for name in args.only or [*FAULTS, *SCALE_FAULTS]:
        if name in SCALE_FAULTS:
            print(f"{name}: running", flush=True)
            results.append(run_scale_fault(name, args))
            continue
        if FAULTS[name].root and os.geteuid() != 0:
            print(f"{name}: not run: mounting a small filesystem needs root", flush=True)
            continue
        print(f"{name}: running", flush=True)
        results.append(run_fault(name, args))
    header = ("fault", "sent", "stored", "dropped", "lost", "dup", "alerts", "missing", "alert dup", "heal s")
    print("".join(f"{h:>10}" if i else f"{h:<26}" for i, h in enumerate(header)))
    for r in results:
        cells = (
            r["name"],
            r["sent"],
            r["stored"],
            r["dropped_counted"],
            r["lost"],
            r["duplicated"],
            r["alerts_expected"],
            r["alerts_missing"],
            r["alerts_duplicated"],
            r["heal_s"],
        )
        print("".join(f"{c:>10}" if i else f"{c:<26}" for i, c in enumerate(cells)))
    print(json.dumps({"faults": results}))
    return 0 if all(r["lost"] == 0 and r["duplicated"] == 0 for r in results) else 1


if __name__ == "__main__":
    raise SystemExit(main())
