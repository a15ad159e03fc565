"""The ingest pipeline's own cost per message: no broker, no HTTP, one thread.

    python -m bench.pipeline_cost [--batch 10000] [--batches 4] [--devices 1000] [--repeat 5]
                                  [--young-threshold 700]

Builds the server's runtime as `lobbywatch serve` does (SQLite storage and registry in a temporary folder, the
site of `bench.ingest`: branches of 10 devices, 10 of them alerting), then hands `Pipeline.process` batches of
valid queue reports, as the ingest thread does under a flood. Prints the CPU time per message of each repeat and,
on the last line, JSON. The repeats grow dearer as the SQLite file grows (each batch rewrites a page of every series
it adds to). What `bench.ingest` adds to this (MQTT, the acknowledgements, the other processes on the
machine) is measured there; this is the part that is the server's own code.
"""

from __future__ import annotations

import argparse
import gc
import json
import statistics
import tempfile
import time
from pathlib import Path

import yaml
from pydantic import SecretStr

from bench.ingest import device_ids, queue_report, site
from server import collector
from server.ingest.mqtt_source import Received
from server.ingest.worker import MAX_BATCH
from server.runtime import Runtime
from server.settings import Settings


class Reports:
    """Queue reports of `devices` in turn, each device's sequence counting up, its count ramping 0..19."""

    def __init__(self, devices: int) -> None:
        self.devices = device_ids(devices)
        self.seq = dict.fromkeys(self.devices, 0)
        self.n = 0

    def batch(self, size: int) -> list[Received]:
        out = []
        for _ in range(size):
            device = self.devices[self.n % len(self.devices)]
            self.seq[device] += 1
            payload = queue_report(device, "0000000000000010", self.seq[device], 1.0, self.n // len(self.devices))
            out.append(Received(f"lobby/v1/{device}/queue", payload, time.time(), self.n, 1))
            self.n += 1
        return out


def runtime(folder: Path, devices: int) -> Runtime:
    (folder / "site.yaml").write_text(yaml.safe_dump(site(devices, 10)))
    settings = Settings.model_construct(
        mode="dev",
        database_url=f"sqlite:///{folder / 'registry.sqlite3'}",
        site_file=folder / "site.yaml",
        timeseries_path=folder / "ts.sqlite3",
        public_url="http://bench",
        link_secret=SecretStr("bench"),
        reports_by_mail=False,
    )
    return Runtime(settings, hearing=lambda: True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batch", type=int, default=MAX_BATCH, help="messages per batch (the ingest's largest)")
    parser.add_argument("--batches", type=int, default=4, help="timed batches per repeat")
    parser.add_argument("--devices", type=int, default=1000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument(
        "--young-threshold",
        type=int,
        default=collector.YOUNG_THRESHOLD,
        help="the collector's young-generation threshold while serving (Python's default: 700)",
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="lobbywatch-pipeline-") as folder:
        pipeline = runtime(Path(folder), args.devices).pipeline
        reports = Reports(args.devices)
        pipeline.process(reports.batch(args.batch))  # the series and rows made once
        figures = []
        with collector.serving():
            gc.set_threshold(args.young_threshold)
            for _ in range(args.repeat):
                batches = [reports.batch(args.batch) for _ in range(args.batches)]
                started = time.process_time()
                for batch in batches:
                    pipeline.process(batch)
                us = (time.process_time() - started) / (args.batch * args.batches) * 1e6
                figures.append(round(us, 1))
                print(f"  {us:.1f} µs of CPU a message", flush=True)
        result = {
            "cpu_us_per_msg_min": min(figures),
            "cpu_us_per_msg_median": statistics.median(figures),
            "runs": figures,
            "batch": args.batch,
            "messages_per_run": args.batch * args.batches,
            "young_threshold": args.young_threshold,
            "received": pipeline.stats.received,
            "stored_points": pipeline.stats.stored_points,
            "refused": pipeline.stats.store_refused + sum(pipeline.rejects.by_cause.values()),
        }
        print(json.dumps(result), flush=True)
        return 0


if __name__ == "__main__":
    raise SystemExit(main())
