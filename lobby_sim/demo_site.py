"""The demo's site: three branches in two languages, their lobbies' plans, and the config of each one's agent."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from lobby_sim.lobby import LobbyPlan
from lobby_sim.render import QUEUE_ZONE, STAFF_AREA

BELL_PIN = 17


@dataclass(frozen=True)
class DemoBranch:
    id: str
    name: str
    region: str
    locale: str
    plan: LobbyPlan


BRANCHES = (
    DemoBranch(
        "bj-xicheng-001",
        "西城阜成门邮政支局",
        "bj-xicheng",
        "zh-CN",
        LobbyPlan(windows=2, max_windows=4, base_per_min=0.4, peak_per_min=1.1, peak_from_min=1, cycle_min=150),
    ),
    DemoBranch(
        "sh-huangpu-002",
        "黄浦南京东路邮政所",
        "sh-huangpu",
        "zh-CN",
        LobbyPlan(windows=2, max_windows=3, base_per_min=0.3, peak_per_min=0.6, peak_from_min=5, cycle_min=180),
    ),
    DemoBranch(
        "gz-tianhe-003",
        "Tianhe Sports Centre Post Office",
        "gz-tianhe",
        "en",
        LobbyPlan(windows=3, max_windows=4, base_per_min=0.3, peak_per_min=0.5, peak_from_min=10, cycle_min=210),
    ),
)
REGION_NAMES = {"bj-xicheng": "北京西城", "sh-huangpu": "上海黄浦", "gz-tianhe": "广州天河"}
# what people call each branch's things, in both languages: every page, notice and dashboard legend reads these
NAMES = {
    "ramp-bell": {"zh-CN": "无障碍坡道呼叫铃", "en": "ramp bell"},
    "lobby-temp": {"zh-CN": "大厅温度", "en": "lobby temperature"},
    "lobby-humidity": {"zh-CN": "大厅湿度", "en": "lobby humidity"},
    "board": {"zh-CN": "主板温度", "en": "board temperature"},
}
# The demo's queue rule fires fast so something happens within a minute; real branches use minutes.
DEMO_RULE = {"threshold": 6, "for_s": 10, "clear_below": 3, "clear_for_s": 10}


def site_config(contacts: list[dict[str, object]] | None = None) -> dict[str, object]:
    """`contacts`: who is told of every branch's alerts (the demo's phones)."""
    regions = {b.region: b for b in BRANCHES}
    return {
        "defaults": DEMO_RULE,
        "regions": [{"id": r, "name": REGION_NAMES[r]} for r in regions],
        "branches": [
            {
                "id": b.id,
                "name": b.name,
                "region": b.region,
                "locale": b.locale,
                "timezone": "Asia/Shanghai",
                "grade": 2,
                "windows_open": b.plan.windows,
                "wait_target_min": 20,
                # the bell at the ramp goes unanswered in the demo: its alert comes within the first minute
                "call_deadlines_s": {"accessibility": 25, "help": 120, "priority": 120},
                # the simulated lobbies run around the clock, so the demo works at any hour
                "hours": {"opens": "00:00", "closes": "23:59:59.999999"},
                "contacts": contacts or [],
                "names": {**NAMES, f"{b.id}-cam1": {"zh-CN": "大厅终端", "en": "lobby unit"}},
                "devices": [
                    {
                        "id": f"{b.id}-cam1",
                        "profile": "combined",
                        "zones": [{"key": "queue", "name": "窗口排队区" if b.locale == "zh-CN" else "window queue"}],
                    }
                ],
            }
            for b in BRANCHES
        ],
    }


def device_config(
    branch: DemoBranch, port: int, mqtt5: bool, data_dir: Path, password_file: Path | None = None
) -> dict[str, object]:
    """`password_file`: the device's broker identity, where the broker has identities (Mosquitto's plugin)."""
    secret = {"password_file": str(password_file)} if password_file else {}
    return {
        "device_id": f"{branch.id}-cam1",
        "data_dir": str(data_dir),
        "locale": branch.locale,
        "broker": {"host": "127.0.0.1", "port": port, "tls": False, "protocol": "5" if mqtt5 else "3.1.1", **secret},
        "camera": {
            "source": "simulated",
            "fps": 2,
            "zones": [{"key": "queue", "polygon": [list(p) for p in QUEUE_ZONE]}],
            "ignore": [[list(p) for p in STAFF_AREA]],
        },
        "buttons": [{"key": "ramp-bell", "kind": "accessibility", "pin": BELL_PIN}],
        "sensors": [
            {"type": "board_temperature"},
            {
                "type": "simulated",
                "key": "lobby-temp",
                "kind": "temperature",
                "mean": 23,
                "spread": 0.8,
                "unit": "°C",
                "low": 16,
                "high": 30,
            },
            {
                "type": "simulated",
                "key": "lobby-humidity",
                "kind": "humidity",
                "mean": 50,
                "spread": 3,
                "unit": "%",
                "low": 20,
                "high": 80,
            },
        ],
        "reporting": {"queue_keepalive_s": 10, "facility_interval_s": 15, "health_interval_s": 15},
        "gpio_factory": "mock",
    }
