"""Replay speed: `lobbywatch replay` over a whole opening day of several branches, generated.

    python -m bench.replay_speed [--branches 10] [--hours 12]

Each branch: a camera reporting occupancy every 10 s (a morning and an afternoon peak over its thresholds),
health every 30 s, and a call-button box with a few calls. Prints JSON on the last line.
"""

from __future__ import annotations

import argparse
import io
import json
import math
import random
import tempfile
from pathlib import Path

import yaml

from server.replay import replay


def write_scenario(folder: Path, branches: int, hours: float, seed: int = 0) -> int:
    rng = random.Random(seed)
    site: dict[str, list[dict[str, object]]] = {"regions": [{"id": "r", "name": "r"}], "branches": []}
    lines = []
    seconds = int(hours * 3600)
    for b in range(branches):
        bid = f"br{b:03d}"
        site["branches"].append(
            {
                "id": bid,
                "name": bid,
                "region": "r",
                "grade": 1,
                "wait_target_min": 15,
                "devices": [
                    {"id": f"{bid}-cam", "zones": [{"key": "queue", "name": "queue"}]},
                    {"id": f"{bid}-btn", "profile": "call-buttons"},
                ],
            }
        )
        for t in range(0, seconds, 10):
            peak = 6 * (math.exp(-((t / 3600 - 2) ** 2)) + math.exp(-((t / 3600 - 7) ** 2)))
            n = max(0, round(peak + rng.gauss(2, 1.5)))
            lines.append(
                {
                    "t": t,
                    "topic": f"lobby/v1/{bid}-cam/queue",
                    "payload": {"zones": [{"zone": "queue", "occupancy": n}]},
                }
            )
        for device in (f"{bid}-cam", f"{bid}-btn"):
            for t in range(0, seconds, 30):
                lines.append(
                    {
                        "t": t,
                        "topic": f"lobby/v1/{device}/health",
                        "payload": {
                            "cpu_pct": 5.0,
                            "mem_rss_mb": 90.0,
                            "outbox_depth": 0,
                            "clock_synced": True,
                            "agent_version": "bench",
                        },
                    }
                )
        for _ in range(int(hours)):
            t = rng.randrange(seconds - 300)
            lines.append(
                {
                    "t": t,
                    "topic": f"lobby/v1/{bid}-btn/button",
                    "payload": {"button": "bell", "kind": "accessibility", "action": "press"},
                }
            )
            lines.append(
                {
                    "t": t + rng.choice([30, 90, 200]),
                    "topic": f"lobby/v1/{bid}-btn/button",
                    "payload": {"button": "bell", "kind": "accessibility", "action": "answered"},
                }
            )
    (folder / "site.yaml").write_text(yaml.safe_dump(site))
    with (folder / "events.jsonl").open("w") as handle:
        for line in lines:
            handle.write(json.dumps(line) + "\n")
    # 08:00 in Beijing, the opening of a grade-1 branch
    (folder / "scenario.yaml").write_text("start: 2026-11-23T08:00:00+08:00\n")
    return len(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--branches", type=int, default=10)
    parser.add_argument("--hours", type=float, default=12)
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="lobbywatch-replay-"))
    messages = write_scenario(folder, args.branches, args.hours)
    print(f"replaying {messages} messages: {args.branches} branches, {args.hours:g} h", flush=True)
    out = io.StringIO()
    summary = replay(folder, out)
    events = [json.loads(line) for line in out.getvalue().splitlines()]
    kinds: dict[str, int] = {}
    for event in events:
        kinds[str(event["event"])] = kinds.get(str(event["event"]), 0) + 1
    print(
        json.dumps(
            {
                **summary,
                "messages": messages,
                "branches": args.branches,
                "messages_per_second": round(messages / summary["wall_seconds"]),
                "alert_events": kinds,
            }
        )
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
