"""Agent budget: the real `lobbywatch-agent run` process counting real footage, measured from outside.

    python -m bench.agent_budget [DATASET_DIR] [--seconds 60] [--fps 2] [--learn-background-s S]

Plays the dataset's frames in a loop as the camera (zone = its roi.json), with a local Mosquitto, and samples
the agent process's CPU and resident memory. Prints progress, then JSON on the last line.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import paho.mqtt.client as mqtt
import psutil
import yaml
from paho.mqtt.enums import CallbackAPIVersion

from lobby_sim.broker import Mosquitto
from lobbywatch.protocol import Channel, device_filter

DEFAULT_DATASET = Path(__file__).resolve().parent.parent.parent / "shared" / "datasets" / "pets09-s2l1"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("dataset", type=Path, nargs="?", default=DEFAULT_DATASET)
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--fps", type=float, default=2, help="frames counted per second (the product uses 1-2)")
    parser.add_argument(
        "--learn-background-s",
        type=float,
        default=3600,
        help="camera.learn_background_s: shorter than --seconds to measure the agent with the empty lobby learnt "
        "(a crowd the detector misses is then counted by its foreground's area)",
    )
    args = parser.parse_args()
    roi = json.loads((args.dataset / "roi.json").read_text())
    work = Path(tempfile.mkdtemp(prefix="lobbywatch-budget-"))
    broker = Mosquitto(work / "broker")
    broker.start()
    config = {
        "device_id": "budget-dev",
        "data_dir": str(work / "data"),
        "broker": {"host": "127.0.0.1", "port": broker.port, "tls": False},
        "camera": {
            "source": str(args.dataset / "frames"),
            "fps": args.fps,
            "loop": True,
            "learn_background_s": args.learn_background_s,
            "zones": [{"key": "queue", "polygon": roi["polygon"], "anchor": roi.get("anchor", "feet")}],
        },
        "sensors": [{"type": "board_temperature"}, {"type": "clock"}],
        "reporting": {"health_interval_s": 10, "facility_interval_s": 30},
    }
    (work / "device.yaml").write_text(yaml.safe_dump(config))
    methods = counting_methods(broker.port)
    agent = subprocess.Popen(
        [
            str(Path(sys.executable).parent / "lobbywatch-agent"),
            "--lang",
            "en",
            "run",
            "--config",
            str(work / "device.yaml"),
            "--log-level",
            "warning",
        ],
        stdout=subprocess.DEVNULL,
        stderr=(work / "agent.log").open("w"),
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    process = psutil.Process(agent.pid)
    try:
        time.sleep(5)  # start-up: imports, first frames, the detector learning the perspective
        cpu0, t0 = process.cpu_times(), time.monotonic()
        rss_peak, samples = 0, []
        while time.monotonic() - t0 < args.seconds:
            time.sleep(1)
            rss = process.memory_info().rss
            rss_peak = max(rss_peak, rss)
            samples.append(rss)
            if len(samples) % 10 == 0:
                used = process.cpu_times()
                cpu = (used.user + used.system - cpu0.user - cpu0.system) / (time.monotonic() - t0)
                print(f"  {len(samples)} s: CPU {100 * cpu:.0f}% of one core, RSS {rss / 2**20:.0f} MB", flush=True)
        used, elapsed = process.cpu_times(), time.monotonic() - t0
        cpu_share = (used.user + used.system - cpu0.user - cpu0.system) / elapsed
        threads = process.num_threads()
    finally:
        agent.terminate()
        agent.wait(30)
        broker.stop()
    result = {
        "dataset": args.dataset.name,
        "fps": args.fps,
        "learn_background_s": args.learn_background_s,
        "seconds": round(elapsed, 1),
        "cpu_share_of_one_core": round(cpu_share, 3),
        "cpu_ms_per_frame": round(1000 * cpu_share / args.fps, 1),
        "rss_mb_peak": round(rss_peak / 2**20, 1),
        "rss_mb_median": round(sorted(samples)[len(samples) // 2] / 2**20, 1),
        "threads": threads,
        "counting_methods_reported": sorted(methods),  # what the agent's health reports said, in the run
    }
    print(json.dumps(result))
    return 0


def counting_methods(port: int) -> set[str]:
    """The counting methods the agent's health reports name, filled in as they arrive."""
    seen: set[str] = set()

    def on_message(_c: mqtt.Client, _u: object, message: mqtt.MQTTMessage) -> None:
        seen.update(zone["method"] for zone in json.loads(message.payload).get("counting", []))

    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="budget-watch")
    client.on_message = on_message
    client.on_connect = lambda c, *_: c.subscribe(device_filter(Channel.HEALTH), qos=0)
    client.connect("127.0.0.1", port)
    client.loop_start()
    return seen


if __name__ == "__main__":
    raise SystemExit(main())
