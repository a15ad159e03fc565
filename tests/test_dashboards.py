"""The dashboards without a Grafana: every query runs on a real InfluxQL engine (InfluxDB 1.6) filled with what
the product's own writer wrote for a replayed day, with Grafana's macros substituted as Grafana does, and the
values shown are checked against the data. Plus: the files are what the code builds, the names are the
writer's, and push/pull speak Grafana's HTTP API through grafana-client."""

from __future__ import annotations

import difflib
import json
import os
import re
import statistics
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from grafana_foundation_sdk.models import dashboard as model

from lobby_sim.broker import free_port
from server.dashboards import build
from server.dashboards import queries as q
from server.storage.points import SCHEMA, Point
from tests import lobby_day
from tests.grafana_api import GrafanaApi
from tests.lobby_day import DB, Day
from tests.services import Influx1

ROOT = Path(__file__).resolve().parents[1]


def grafana(query: str, day: Day, region: str = "(east|west)", branch: str = "e2", interval: str = "5m") -> str:
    """Substitute what Grafana substitutes before it sends a raw InfluxQL query."""
    time_filter = f"time >= {day.start_ns // 10**6}ms and time <= {day.end_ns // 10**6}ms"
    return (
        query.replace("$timeFilter", time_filter)
        .replace("$__interval", interval)
        .replace("$region", region)
        .replace("$branch", branch)
    )


def run(influx1: Influx1, query: str) -> list[dict[str, Any]]:
    result = influx1.query(query, DB)
    (statement,) = result["results"]  # type: ignore[index]
    assert "error" not in statement, f"{statement['error']}\n{query}"
    series: list[dict[str, Any]] = statement.get("series", [])
    return series


def column(series: dict[str, Any], name: str) -> list[Any]:
    index = series["columns"].index(name)
    return [row[index] for row in series["values"]]


def targets(board: dict[str, Any]) -> list[str]:
    found = [target["query"] for panel in board["panels"] for target in panel.get("targets", [])]
    found += [a["target"]["query"] for a in board.get("annotations", {}).get("list", [])]
    found += [v["query"] for v in board["templating"]["list"] if v["type"] == "query"]
    return found


def test_every_query_of_every_dashboard_returns_data(day: Day, influx1: Influx1) -> None:
    boards = build.dashboards()
    for name, board in boards.items():
        for query in targets(board):
            series = run(influx1, grafana(query, day))
            values = [v for s in series for row in s["values"] for v in row[1:] if v is not None]
            assert values, f"{name}: no data for\n{query}"
    # the languages differ in words only
    assert targets(boards["lobbywatch-branch"]) == targets(boards["lobbywatch-branch-en"])


def points(day: Day, measurement: str, **tags: str) -> list[Point]:
    return [p for p in day.points if p.measurement == measurement and all(p.tag(k) == v for k, v in tags.items())]


def test_the_branch_dashboard_shows_what_was_written(day: Day, influx1: Influx1) -> None:
    (waiting,) = run(influx1, grafana(q.WAITING_NOW, day))
    last = max(points(day, "occupancy", branch="e2"), key=lambda p: p.time_ns)
    assert waiting["tags"] == {"zone": "queue", "name": "Counter windows"}  # the legend ($tag_name) is its name
    assert column(waiting, "waiting") == [last.fields["occupancy"]]
    temperature = run(influx1, grafana(q.TEMPERATURE, day))
    assert {s["tags"]["name"] for s in temperature} == {"Lobby temperature"}

    (level,) = run(influx1, grafana(q.SERVICE_LEVEL, day))
    under = [p.fields["under_target"] for p in points(day, "wait", branch="e2")]
    assert column(level, "service_level")[0] == pytest.approx(100 * statistics.mean(under))
    assert 0 < column(level, "service_level")[0] < 100  # e2 is busy enough to miss the target some of the day

    (response,) = run(influx1, grafana(q.CALL_RESPONSE, day))
    answered = sorted(
        p.fields["response_s"]
        for p in points(day, "call", branch="e2", kind="accessibility")
        if p.fields["action"] == "answered"
    )
    assert len(answered) == 3
    assert column(response, "longest") == [answered[-1]]
    assert answered[-1] >= 400  # the call left for almost seven minutes

    (unanswered,) = run(influx1, grafana(q.CALLS_UNANSWERED, day))
    assert column(unanswered, "unanswered") == [1]

    kiosk = run(influx1, grafana(q.EQUIPMENT, day))
    (down,) = [s for s in kiosk if s["tags"]["sensor"] == "kiosk"]
    assert 0 in column(down, "up")
    assert column(down, "up").count(0) == 30 // 5  # the half hour it was down, in 5-minute steps

    annotations = run(influx1, grafana(q.ALERT_ANNOTATIONS, day))
    rules = {rule for s in annotations for rule in column(s, "rule")}
    assert {"call_unanswered", "queue_too_long", "facility"} <= rules


def test_each_branch_is_coloured_by_its_own_limits(day: Day, influx1: Influx1) -> None:
    """w1 set 12 people as too long, the others keep the default 8: each stat turns red at its own."""
    for branch, people in (("w1", 12), ("e2", 8)):
        (limit,) = run(influx1, grafana(q.QUEUE_THRESHOLD, day, branch=branch))
        assert column(limit, "threshold") == [people]
        (target,) = run(influx1, grafana(q.WAIT_TARGET, day, branch=branch))
        assert column(target, "target") == [15]
    board = build.dashboards()["lobbywatch-branch"]
    (waiting_now,) = [p for p in board["panels"] if p["title"] == "排队人数"]
    assert [t["refId"] for t in waiting_now["targets"]] == ["A", "LIMIT"]
    (config,) = [t for t in waiting_now["transformations"] if t["id"] == "configFromData"]
    assert config["options"]["configRefId"] == "LIMIT"
    assert config["options"]["mappings"][0] == {
        "fieldName": "threshold",
        "handlerKey": "threshold1",
        "handlerArguments": {"threshold": {"color": "red"}},
    }


def test_branches_are_picked_and_shown_by_name(day: Day, influx1: Influx1) -> None:
    """The variable lists labels; its regex (as Grafana applies it, named groups) shows the name, keeps the id."""
    (regions,) = run(influx1, grafana(q.VAR_REGION, day))
    assert column(regions, "value") == ["East (east)", "West (west)"]
    (listed,) = run(influx1, grafana(q.VAR_BRANCH, day, region="east"))
    labels = column(listed, "value")
    assert labels == ["Branch e1 (e1)", "Branch e2 (e2)"]
    regex = re.compile(q.LABEL_REGEX.strip("/").replace("(?<", "(?P<"))
    picked = [regex.match(label) for label in [*labels, "西城 (分局) (bj-xicheng-001)"]]
    assert [(m["text"], m["value"]) for m in picked if m] == [
        ("Branch e1", "e1"),
        ("Branch e2", "e2"),
        ("西城 (分局)", "bj-xicheng-001"),
    ]
    board = build.dashboards()["lobbywatch-region"]
    (ranking,) = [p for p in board["panels"] if p["type"] == "table"]
    label = next(o for o in ranking["fieldConfig"]["overrides"] if o["matcher"]["options"] == "branch_label")
    link = next(p["value"] for p in label["properties"] if p["id"] == "links")
    assert "var-branch=${__data.fields.branch}" in link[0]["url"]


def test_the_region_table_ranks_the_branches(day: Day, influx1: Influx1) -> None:
    by_branch = {
        s["tags"]["branch"]: column(s, "service_level")[0]
        for s in run(influx1, grafana(q.RANK_SERVICE_LEVEL, day, region="east"))
    }
    assert set(by_branch) == {"e1", "e2"}  # the west branch is not in the east
    for branch, level in by_branch.items():
        expected = 100 * statistics.mean(p.fields["under_target"] for p in points(day, "wait", branch=branch))
        assert level == pytest.approx(expected)
    assert by_branch["e1"] > by_branch["e2"]  # the busier branch ranks lower

    longest = {
        s["tags"]["branch"]: column(s, "longest_queue")[0] for s in run(influx1, grafana(q.RANK_LONGEST_QUEUE, day))
    }
    assert longest == {
        b: max(p.fields["occupancy"] for p in points(day, "occupancy", branch=b)) for b in lobby_day.BRANCHES
    }
    uptime = {
        s["tags"]["branch"]: column(s, "facility_uptime")[0] for s in run(influx1, grafana(q.RANK_FACILITY_UPTIME, day))
    }
    assert uptime["e1"] == 100
    assert uptime["e2"] < 100


def test_the_fleet_dashboard_shows_the_device_that_went_offline(day: Day, influx1: Influx1) -> None:
    status = {s["tags"]["device"]: column(s, "online")[0] for s in run(influx1, grafana(q.FLEET_STATUS, day))}
    assert status["w1-env"] == 0
    assert sum(status.values()) == 8
    (online,) = run(influx1, grafana(q.FLEET_ONLINE, day))
    assert column(online, "online") == [8]
    health = {s["tags"]["device"]: s for s in run(influx1, grafana(q.FLEET_HEALTH, day))}
    assert column(health["e1-cam"], "agent_version") == ["1.4.0"]
    last_seen = column(health["w1-env"], "time")[0] / 1e9
    assert last_seen < day.start_ns / 1e9 + lobby_day.OFFLINE_AT  # it stopped reporting

    # the zh table names every column it gets, in words, and says online and offline rather than 1 and 0
    (listing,) = [p for p in build.dashboards()["lobbywatch-fleet"]["panels"] if p["type"] == "table"]
    named = {
        o["matcher"]["options"]: {x["id"]: x["value"] for x in o["properties"]}
        for o in listing["fieldConfig"]["overrides"]
    }
    columns = {
        c
        for query in (q.FLEET_STATUS, q.FLEET_HEALTH, q.FLEET_CAMERAS)
        for r in run(influx1, grafana(query, day))
        for c in r["columns"]
        if c != "time"
    }
    columns |= {tag for query in (q.FLEET_STATUS,) for r in run(influx1, grafana(query, day)) for tag in r["tags"]}
    assert columns <= set(named), columns - set(named)
    assert all(re.search(r"[\u4e00-\u9fff]", named[c]["displayName"]) for c in columns)
    (mapping,) = named["online"]["mappings"]
    assert (mapping["options"]["0"]["text"], mapping["options"]["1"]["text"]) == ("离线", "在线")


NAMES = re.compile(r'"([a-z_]+)"')


def test_dashboards_use_the_writers_names() -> None:
    for query in targets(build.dashboards()["lobbywatch-branch"]) + [
        getattr(q, n) for n in dir(q) if n.isupper() and isinstance(getattr(q, n), str)
    ]:
        if not query.startswith("SELECT"):
            continue
        for measurement in re.findall(r'FROM "([a-z_]+)"', query):
            assert measurement in SCHEMA, f"unknown measurement {measurement!r} in {query}"
        measurements = re.findall(r'FROM "([a-z_]+)"', query)
        known: set[str] = set()
        for measurement in measurements:
            tags, fields = SCHEMA[measurement]
            known |= set(tags) | set(fields)
        aliases = set(re.findall(r'AS "([a-z_0-9]+)"', query))
        unknown = set(NAMES.findall(query)) - known - aliases - set(measurements)
        assert not unknown, f"names not in the writer's schema: {unknown} in {query}"


def test_the_files_are_what_the_code_builds_and_follow_grafanas_model() -> None:
    assert build.stale(ROOT / "dashboards") == []
    for path in sorted((ROOT / "dashboards").glob("*.json")):
        data = json.loads(path.read_text(encoding="utf-8"))
        board = model.Dashboard.from_json(data)
        assert board.uid == path.stem
        assert board.title
        assert board.panels
        assert board.timezone == "browser"
        for panel in data["panels"]:
            if panel["type"] in ("stat", "timeseries"):
                defaults = panel["fieldConfig"]["defaults"]
                assert defaults.get("unit"), f"{path.name}: {panel['title']} has no unit"
                assert defaults.get("thresholds"), f"{path.name}: {panel['title']} has no thresholds"
    zh = json.loads((ROOT / "dashboards" / "lobbywatch-branch.json").read_text(encoding="utf-8"))
    assert zh["title"] == "LobbyWatch · 支局营业厅"


GRAFANA_TOKEN = "glsa_test_token_never_printed_0123456789"
INFLUX_TOKEN = "influx-secret-never-printed-0123456789"


@pytest.fixture
def grafana_api() -> Iterator[GrafanaApi]:
    api = GrafanaApi(GRAFANA_TOKEN)
    yield api
    api.stop()


def cli(*args: str, token: str = GRAFANA_TOKEN) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "GRAFANA_TOKEN": token, "LOBBYWATCH_INFLUX_TOKEN": INFLUX_TOKEN, "LANG": "en_US.UTF-8"}
    env.pop("GRAFANA_USER", None)
    done = subprocess.run(
        [sys.executable, "-m", "server.cli", "dashboards", *args],
        env=env,
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert GRAFANA_TOKEN not in done.stdout + done.stderr
    assert INFLUX_TOKEN not in done.stdout + done.stderr
    return done


def test_push_is_idempotent_and_a_dry_run_changes_nothing(grafana_api: GrafanaApi, tmp_path: Path) -> None:
    push = ("push", "--url", grafana_api.url, "--influx-url", "http://influxdb:8086", "--influx-db", "lobbywatch",
            "--lobby-url", "https://lobby.example.cn/")  # fmt: skip
    dry = cli(*push, "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert "would create dashboard lobbywatch-branch" in dry.stdout
    assert grafana_api.writes() == []  # a dry run only reads

    first = cli(*push)
    assert first.returncode == 0, first.stderr
    assert json.loads(first.stdout.splitlines()[-1]) == {"changed": 8, "unchanged": 0}  # source, folder, 6 boards
    assert set(grafana_api.dashboards) == set(build.dashboards())
    assert grafana_api.datasources["lobbywatch-influxdb"]["jsonData"]["dbName"] == "lobbywatch"
    assert all(d["meta"]["folderUid"] == "lobbywatch" for d in grafana_api.dashboards.values())
    for stored in grafana_api.dashboards.values():  # a link to the alert pages of this deployment
        board = stored["dashboard"]
        (lobby,) = [v for v in board["templating"]["list"] if v["name"] == "lobby"]
        assert (lobby["type"], lobby["query"], lobby["hide"]) == ("constant", "https://lobby.example.cn", 2)
        assert "${lobby}/lobby" in [link.get("url") for link in board["links"]]
    writes = len(grafana_api.writes())

    again = cli(*push)
    assert json.loads(again.stdout.splitlines()[-1]) == {"changed": 0, "unchanged": 8}
    assert len(grafana_api.writes()) == writes  # nothing written the second time

    # someone edits a dashboard in Grafana: a dry run says so, a push puts the code's version back
    grafana_api.dashboards["lobbywatch-fleet"]["dashboard"]["title"] = "edited by hand"
    assert "would update dashboard lobbywatch-fleet" in cli(*push, "--dry-run").stdout
    assert grafana_api.dashboards["lobbywatch-fleet"]["dashboard"]["title"] == "edited by hand"
    cli(*push)
    assert grafana_api.dashboards["lobbywatch-fleet"]["dashboard"]["title"] == "LobbyWatch · 设备总览"
    assert grafana_api.dashboards["lobbywatch-fleet"]["dashboard"]["version"] == 2


def test_pull_saves_an_edited_dashboard_in_the_stable_form(grafana_api: GrafanaApi, tmp_path: Path) -> None:
    assert cli("push", "--url", grafana_api.url).returncode == 0
    grafana_api.dashboards["lobbywatch-branch"]["dashboard"]["refresh"] = "1m"  # an edit made in Grafana
    pulled = cli("pull", "lobbywatch-branch", "--url", grafana_api.url, "--out", str(tmp_path))
    assert pulled.returncode == 0, pulled.stderr
    text = (tmp_path / "lobbywatch-branch.json").read_text(encoding="utf-8")
    ours = (ROOT / "dashboards" / "lobbywatch-branch.json").read_text(encoding="utf-8")
    changed = [
        line
        for line in difflib.unified_diff(ours.splitlines(), text.splitlines(), lineterm="", n=0)
        if line[:1] in "+-" and not line.startswith(("+++", "---"))
    ]
    assert changed == ['-  "refresh": "30s",', '+  "refresh": "1m",']  # one line: the edit, nothing else


def test_grafana_refusing_is_said_plainly(grafana_api: GrafanaApi) -> None:
    refused = cli("push", "--url", grafana_api.url, token="wrong-token-0123456789")
    assert refused.returncode == 2
    assert "Not done: Grafana answered 401: Unauthorized" in refused.stderr
    missing = cli("pull", "no-such-board", "--url", grafana_api.url)
    assert missing.returncode == 2
    assert "cannot get dashboard 'no-such-board': 404" in missing.stderr
    gone = cli("push", "--url", f"http://127.0.0.1:{free_port()}")  # nothing listens there
    assert gone.returncode == 2
    assert gone.stdout == ""
    assert gone.stderr.splitlines() == [
        f"Grafana does not answer at http://127.0.0.1:{gone.args[-1].rsplit(':', 1)[1]} ([Errno 111] Connection "
        "refused); nothing was changed. Check the address and that Grafana is running."
    ]


def test_every_panel_says_what_it_shows_in_both_languages() -> None:
    for name, board in build.dashboards().items():
        for panel in board["panels"]:
            if panel["type"] != "row":
                assert len(panel.get("description", "")) >= 8, (name, panel["title"])
    (waiting,) = [p for p in build.dashboards()["lobbywatch-branch"]["panels"] if p["title"] == "排队人数"]
    assert waiting["description"].startswith("每个排队区域现在的人数")
