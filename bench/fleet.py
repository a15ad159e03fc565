"""Real edge agents without cameras, for the fault suite: each is the production `Agent` (its outbox, uplink,
health reports and resend handling), fed queue reports by a driver instead of a camera.

    python -m bench.fleet --port 1883 --work DIR --first 0 --devices 50 --rate 200 --seconds 20

Runs `--devices` agents (ids from `bench.ingest.device_ids`, starting at `--first`), each with its own data
folder under `DIR/agents/`, connected to the broker on 127.0.0.1:`--port` without TLS (a bench broker on this
machine). For `--seconds` a driver makes queue reports round-robin over the agents at `--rate` per second in all;
each device's zone breaks a rule firing at 5 and clearing at 2 once every 50 reports (`occupancy`). Then the
agents keep running (sending what they hold, answering resend requests) until SIGTERM. `DIR/fleet-FIRST.ready`
is written once every agent has started, `DIR/fleet-FIRST.done` when the driver has made its last report. A
kill -9 at any moment is a fault this is built to take: what an agent stored is in its outbox, and the next run
goes on from there.
"""

from __future__ import annotations

import argparse
import json
import logging
import signal
import threading
import time
from collections.abc import Callable
from pathlib import Path

from bench.ingest import device_ids, zone_of
from edge_agent.agent import Agent
from edge_agent.config import outbox_options
from edge_agent.transport.outbox import Outbox
from lobbywatch.clock import SystemClock
from lobbywatch.device_config import BrokerConfig, DeviceConfig, OutboxConfig, ReportingConfig
from lobbywatch.protocol.messages import ZoneCount

CYCLE = 50  # reports per device between two breaches of its zone's rule


def occupancy(k: int) -> int:
    """The k-th report of a device: 1 most of the time, 6 for the last 5 reports of every cycle of 50, so that
    a zone rule firing at 5 and clearing at 2 fires and clears once a cycle."""
    return 6 if k % CYCLE >= CYCLE - 5 else 1


class JournaledOutbox(Outbox):
    """The agent's outbox, noting each message it takes (sequence number, topic, payload) in a journal beside
    the card: the fault suite's record of everything made, even what the outbox later dropped or pruned."""

    def __init__(self, config: DeviceConfig, journal: Path) -> None:
        super().__init__(**outbox_options(config))
        journal.parent.mkdir(parents=True, exist_ok=True)
        self._journal = journal.open("a", buffering=1)  # a line at a time: a kill -9 loses at most the last

    def append(self, topic: str, build: Callable[[int, str], bytes], now: float) -> int:
        made: list[bytes] = []

        def keep(seq: int, stream: str) -> bytes:
            made.append(build(seq, stream))
            return made[-1]

        seq = super().append(topic, keep, now)
        self._journal.write(json.dumps([seq, topic, made[-1].decode()]) + "\n")
        return seq

    def close(self) -> None:
        super().close()
        self._journal.close()


def build_agents(args: argparse.Namespace) -> list[Agent]:
    agents = []
    for device in device_ids(args.first + args.devices)[args.first :]:
        config = DeviceConfig(
            device_id=device,
            data_dir=args.work / "agents" / device,
            broker=BrokerConfig(
                host="127.0.0.1",
                port=args.port,
                tls=False,
                keepalive_s=args.keepalive_s,
                reconnect_max_s=args.reconnect_max_s,
            ),
            reporting=ReportingConfig(health_interval_s=args.health_s),
            outbox=OutboxConfig(max_mb=args.outbox_mb, history_rows=args.history_rows),
        )
        outbox = JournaledOutbox(config, args.work / "journal" / f"{device}.jsonl")
        agents.append(Agent(config, clock=SystemClock(), outbox=outbox))
    return agents


def drive(agents: list[Agent], rate: float, seconds: float, stop: threading.Event) -> int:
    """Queue reports round-robin at `rate` per second for `seconds`; returns how many were made."""
    made = [0] * len(agents)
    started = time.monotonic()
    n = 0
    while not stop.is_set() and (elapsed := time.monotonic() - started) < seconds:
        if n > elapsed * rate:
            stop.wait(min(0.01, n / rate - elapsed))
            continue
        i = n % len(agents)
        agent = agents[i]
        agent.report_queue([ZoneCount(zone=zone_of(agent.config.device_id), occupancy=occupancy(made[i]))])
        made[i] += 1
        n += 1
    return n


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, required=True, help="the broker's port on 127.0.0.1")
    parser.add_argument("--work", type=Path, required=True, help="folder for the agents' data")
    parser.add_argument("--first", type=int, default=0, help="index of the first device id")
    parser.add_argument("--devices", type=int, default=50)
    parser.add_argument("--rate", type=float, default=200.0, help="queue reports per second, all agents together")
    parser.add_argument("--seconds", type=float, default=20.0, help="how long the driver makes reports")
    parser.add_argument("--health-s", type=float, default=5.0, help="each agent's health report interval")
    parser.add_argument("--outbox-mb", type=float, default=256.0, help="each agent's outbox bound")
    parser.add_argument("--history-rows", type=int, default=1_000_000, help="delivered messages each agent keeps")
    parser.add_argument("--keepalive-s", type=int, default=30)
    parser.add_argument("--reconnect-max-s", type=float, default=120.0)
    args = parser.parse_args(argv)
    args.work.mkdir(parents=True, exist_ok=True)
    logging.basicConfig(
        filename=args.work / f"fleet-{args.first}.log",
        level=logging.WARNING,
        format="%(asctime)s %(levelname)s %(threadName)s %(name)s: %(message)s",
    )
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    agents = build_agents(args)
    threads = [threading.Thread(target=a.run, args=(stop,), name=a.config.device_id, daemon=True) for a in agents]
    for thread in threads:
        thread.start()
    (args.work / f"fleet-{args.first}.ready").touch()
    made = drive(agents, args.rate, args.seconds, stop)
    (args.work / f"fleet-{args.first}.done").write_text(str(made))
    stop.wait()
    for thread in threads:
        thread.join(15)
    # what each card did not take, for the fault suite's count (the agents say it in their health reports too)
    stats = {a.config.device_id: {"not_stored": a.stats.not_stored} for a in agents}
    (args.work / f"fleet-{args.first}.stats.json").write_text(json.dumps(stats))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
