"""A working day of three branches in two regions, as a replay scenario: queues with a morning and an afternoon
peak (one branch clearly worse), call bells (one call left unanswered), lobby sensors, a kiosk down for half an
hour, device health, and a device that goes offline. The dashboards' and the reports' tests replay it through
the real ingest and rules, and check what they show against what was written."""

from __future__ import annotations

import json
import math
import random
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import yaml

from server.replay import Replayer, load_scenario
from server.storage.points import Point
from server.storage.sqlite_store import SqliteStore
from tests.services import Influx1

START = "2026-11-16T08:00:00+08:00"  # a Monday (gone by), opening time of a grade-1 branch
HOURS = 9
BRANCHES = {"e1": ("east", 1.0), "e2": ("east", 2.2), "w1": ("west", 0.6)}  # branch: (region, how busy)
KIOSK_DOWN = (4 * 3600, 4 * 3600 + 1800)  # e2's kiosk, seconds from the start
OFFLINE_AT = 6 * 3600  # w1's sensor box stops reporting
NAMES = {"queue": {"en": "Counter windows"}, "lobby-temp": {"en": "Lobby temperature"}}
DB = "lobbywatch"  # the InfluxDB 1.6 database the day is written into


def site() -> dict[str, Any]:
    branches = []
    for branch, (region, _busy) in BRANCHES.items():
        branches.append(
            {
                "id": branch,
                "name": f"Branch {branch}",
                "region": region,
                "grade": 1,
                "locale": "en",
                # e2 names its things; w1 sets its own "too long"
                "names": NAMES if branch == "e2" else {},
                **({"queue_too_long": {"threshold": 12, "clear_below": 9}} if branch == "w1" else {}),
                "hours": {"opens": "08:00", "closes": "20:00"},
                "wait_target_min": 15,
                "windows_open": 2,
                "service_minutes": 4,
                "call_deadlines_s": {"accessibility": 60},
                "devices": [
                    {"id": f"{branch}-cam", "zones": [{"key": "queue", "name": "Windows"}]},
                    {"id": f"{branch}-btn", "profile": "call-buttons"},
                    {"id": f"{branch}-env", "profile": "facility-sensors"},
                ],
            }
        )
    return {
        "defaults": {"threshold": 8, "for_s": 300, "clear_below": 5, "clear_for_s": 120},
        "regions": [{"id": "east", "name": "East"}, {"id": "west", "name": "West"}],
        "branches": branches,
    }


def events(seed: int = 7) -> list[dict[str, Any]]:
    rng = random.Random(seed)
    seconds = HOURS * 3600
    lines: list[dict[str, Any]] = []
    for branch, (_region, busy) in BRANCHES.items():
        devices = [f"{branch}-cam", f"{branch}-btn", f"{branch}-env"]
        for device in devices:
            lines.append(
                {"t": 0, "topic": f"lobby/v1/{device}/status", "payload": {"state": "online", "agent_version": "1.4.0"}}
            )
        for t in range(5, seconds, 10):
            hour = t / 3600
            peak = busy * 6 * (math.exp(-((hour - 2.5) ** 2)) + math.exp(-((hour - 7) ** 2) / 0.5))
            n = max(0, round(peak + rng.gauss(1, 1)))
            lines.append(
                {
                    "t": t,
                    "topic": f"lobby/v1/{branch}-cam/queue",
                    "payload": {"zones": [{"zone": "queue", "occupancy": n}]},
                }
            )
        env_until = OFFLINE_AT if branch == "w1" else seconds
        for t in range(10, env_until, 60):
            kiosk_up = not (branch == "e2" and KIOSK_DOWN[0] <= t < KIOSK_DOWN[1])
            lines.append(
                {
                    "t": t,
                    "topic": f"lobby/v1/{branch}-env/facility",
                    "payload": {
                        "readings": [
                            {
                                "sensor": "lobby-temp",
                                "kind": "temperature",
                                "value": round(21 + 2 * math.sin(t / 7200), 2),
                                "unit": "C",
                                "ok": True,
                            },
                            {"sensor": "lobby-humidity", "kind": "humidity", "value": 45.0, "unit": "%", "ok": True},
                            {"sensor": "lobby-light", "kind": "light", "value": 520.0, "unit": "lx", "ok": True},
                            {
                                "sensor": "kiosk",
                                "kind": "equipment",
                                "value": 1.0 if kiosk_up else 0.0,
                                "ok": kiosk_up,
                                **({} if kiosk_up else {"detail": "no answer on port 443"}),
                            },
                        ]
                    },
                }
            )
        for t in range(20, seconds, 60):  # the agent's own camera check
            lines.append(
                {
                    "t": t,
                    "topic": f"lobby/v1/{branch}-cam/facility",
                    "payload": {"readings": [{"sensor": "camera", "kind": "camera", "value": 1.0, "ok": True}]},
                }
            )
        for device in devices:
            until = OFFLINE_AT if device == "w1-env" else seconds
            for t in range(15, until, 30):
                lines.append(
                    {
                        "t": t,
                        "topic": f"lobby/v1/{device}/health",
                        "payload": {
                            "cpu_pct": 6.5,
                            "mem_rss_mb": 96.0,
                            "outbox_depth": 0,
                            "clock_synced": True,
                            "agent_version": "1.4.0",
                            "config_version": 3,
                        },
                    }
                )
        if branch == "w1":
            lines.append(
                {
                    "t": OFFLINE_AT + 5,
                    "topic": "lobby/v1/w1-env/status",
                    "payload": {"state": "offline", "agent_version": "1.4.0"},
                }
            )
        for i, answer_after in enumerate((25, 40, 70 if branch != "e2" else 400)):
            t = 3600 * (1 + 2 * i) + 600
            lines.append(
                {
                    "t": t,
                    "topic": f"lobby/v1/{branch}-btn/button",
                    "payload": {"button": "ramp", "kind": "accessibility", "action": "press"},
                }
            )
            lines.append(
                {
                    "t": t + answer_after,
                    "topic": f"lobby/v1/{branch}-btn/button",
                    "payload": {"button": "ramp", "kind": "accessibility", "action": "answered"},
                }
            )
    return lines


def write(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "site.yaml").write_text(yaml.safe_dump(site(), allow_unicode=True), encoding="utf-8")
    with (folder / "events.jsonl").open("w", encoding="utf-8") as handle:
        for line in events():
            handle.write(json.dumps(line) + "\n")
    (folder / "scenario.yaml").write_text(f"start: {START}\ntick_s: 5\n", encoding="utf-8")
    return folder


class Tee:
    """The embedded store, keeping a copy of every point written (what the writer would send to InfluxDB)."""

    def __init__(self, store: SqliteStore) -> None:
        self.store = store
        self.points: list[Point] = []

    def write(self, points: Sequence[Point]) -> None:
        self.store.write(points)
        self.points.extend(points)

    def query(self, measurement: str, branch: str, since_ns: int, until_ns: int | None = None) -> list[Point]:
        return self.store.query(measurement, branch, since_ns, until_ns)

    def health(self) -> dict[str, object]:
        return self.store.health()

    def close(self) -> None:
        self.store.close()


@dataclass
class Day:
    points: list[Point]
    start_ns: int
    end_ns: int
    sqlite: SqliteStore
    replayer: Replayer


def replay_day(folder: Path, influx1: Influx1) -> Day:
    write(folder)
    scenario = load_scenario(folder)
    tee = Tee(SqliteStore(folder / "timeseries.sqlite3"))
    replayer = Replayer(scenario, lambda _event: None, store=tee)
    replayer.run()
    influx1.query(f"DROP DATABASE {DB}")
    influx1.query(f"CREATE DATABASE {DB}")
    lines = [p.line() for p in tee.points]
    for i in range(0, len(lines), 5000):  # the writer's batch size
        httpx.post(
            f"{influx1.url}/write",
            params={"db": DB, "precision": "ns"},
            content="\n".join(lines[i : i + 5000]),
            timeout=30,
        ).raise_for_status()
    start = int(scenario.start.timestamp() * 1e9)
    return Day(tee.points, start, start + HOURS * 3600 * 10**9, tee.store, replayer)
