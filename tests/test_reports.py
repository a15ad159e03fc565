"""Service-level reports from a replayed day: the same report from SQLite and from InfluxDB (a real InfluxQL
engine holding the same lines), values checked against what was written, and the API, CSV and page."""

from __future__ import annotations

import csv
import io
import statistics
from collections.abc import Iterator
from datetime import UTC, date, datetime, time
from http.server import ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Browser, expect

from lobby_sim.broker import Mosquitto, free_port
from lobbywatch.clock import FakeClock
from server.delivery.apprise_channel import AppriseChannel
from server.registry.directory import Contact
from server.registry.users import add_user
from server.reports.build import Period, make_report, region_reports
from server.reports.mailer import ReportMailer
from server.reports.service_level import percentile
from server.storage.influx_store import InfluxStore
from tests import lobby_day
from tests.helpers import PASSWORD, Web, fits_the_screen, sign_in, start_runtime
from tests.lobby_day import DB, Day
from tests.services import Influx1

DAY = Period.of("day", date(2026, 11, 16))


@pytest.fixture
def influx_store(influx1: Influx1, tmp_path: Path, day: Day) -> InfluxStore:
    store = InfluxStore(influx1.url, "unused", "lobbywatch", DB, tmp_path / "spool.sqlite3")
    yield store  # type: ignore[misc]
    store.close()


def test_sqlite_and_influxdb_give_the_same_reports(day: Day, influx_store: InfluxStore) -> None:
    directory, sessions = day.replayer.pipeline.directory, day.replayer.sessions
    for branch in directory.branches.values():
        for period in (DAY, Period.of("week", date(2026, 11, 18))):
            embedded = make_report(day.sqlite, sessions, branch, period)
            production = make_report(influx_store, sessions, branch, period)
            assert embedded == production, branch.id
            assert embedded.figures.calls == 3  # not a report of nothing


def test_a_day_still_going_on_counts_only_the_hours_so_far(day: Day) -> None:
    from datetime import datetime
    from zoneinfo import ZoneInfo

    directory, sessions = day.replayer.pipeline.directory, day.replayer.sessions
    five_pm = datetime(2026, 11, 16, 17, 0, tzinfo=ZoneInfo("Asia/Shanghai"))
    report = make_report(day.sqlite, sessions, directory.branches["e2"], DAY, now=five_pm)
    assert report.figures.open_minutes == 9 * 60  # 08:00-17:00: the evening is not closed time, it is to come
    assert report.figures.device_uptime_pct == pytest.approx(100, abs=0.5)  # online all day so far
    # every opening hour has its bar, with or without data yet
    assert report.chart.labels == [f"{h:02d}:00" for h in range(8, 20)]
    assert report.chart.longest_queue[-1] is None  # 19:00 has not come


def test_the_report_says_what_happened(day: Day) -> None:
    directory, sessions = day.replayer.pipeline.directory, day.replayer.sessions
    report = make_report(day.sqlite, sessions, directory.branches["e2"], DAY).figures
    assert report.open_minutes == 12 * 60  # 08:00-20:00
    waits = [p.fields["wait_min"] for p in day.points if p.measurement == "wait" and p.tag("branch") == "e2"]
    assert report.wait_avg_min == pytest.approx(statistics.mean(waits), abs=0.01)
    assert report.wait_p90_min == pytest.approx(percentile(waits, 90), abs=0.01)
    under = [p.fields["under_target"] for p in day.points if p.measurement == "wait" and p.tag("branch") == "e2"]
    assert report.over_target_pct == pytest.approx(100 * under.count(0) / len(under), abs=0.01)
    assert report.over_target_pct is not None
    assert report.over_target_pct > 0
    assert report.longest_queue == max(
        p.fields["occupancy"] for p in day.points if p.measurement == "occupancy" and p.tag("branch") == "e2"
    )
    assert (report.calls, report.calls_answered, report.calls_unanswered) == (3, 3, 1)
    assert report.response_p50_s == 40.0
    assert report.response_p90_s is not None
    assert report.response_p90_s > 300  # the call left for almost seven minutes
    # the kiosk was down 30 of the 540 minutes reported, one of four lobby sensors
    assert report.facility_uptime_pct == pytest.approx(100 * (1 - 30 / 540 / 4), abs=0.3)
    # three devices reporting 9 of the 12 opening hours
    assert report.device_uptime_pct == pytest.approx(100 * 9 / 12, abs=0.5)
    assert report.alerts["call_unanswered"] == 1
    assert report.alerts["facility"] == 1


def test_the_region_ranks_its_branches(day: Day) -> None:
    directory, sessions = day.replayer.pipeline.directory, day.replayer.sessions
    east = [b for b in directory.branches.values() if b.region_id == "east"]
    ranked = region_reports(day.sqlite, sessions, east, DAY)
    assert [r.branch for r in ranked] == ["e1", "e2"]  # the busier branch is over target longer
    assert ranked[0].over_target_pct is not None
    assert ranked[1].over_target_pct is not None
    assert ranked[0].over_target_pct < ranked[1].over_target_pct
    csv_row = ranked[0].row()
    assert "alerts_call_unanswered" in csv_row
    assert lobby_day.BRANCHES["e1"][0] == csv_row["region"]


def test_a_csv_row_per_branch(day: Day) -> None:
    directory, sessions = day.replayer.pipeline.directory, day.replayer.sessions
    reports = region_reports(day.sqlite, sessions, directory.branches.values(), DAY)
    text = io.StringIO()
    writer = csv.DictWriter(text, fieldnames=sorted({k for r in reports for k in r.row()}))
    writer.writeheader()
    writer.writerows(r.row() for r in reports)
    rows = list(csv.DictReader(io.StringIO(text.getvalue())))
    assert [row["branch"] for row in rows] == [r.branch for r in reports]


@pytest.fixture
def served(tmp_path: Path, mosquitto: Mosquitto, day: Day) -> Iterator[Web]:
    """A server on the day's site whose store holds the day's points, as it would after living through it."""
    runtime = start_runtime(tmp_path, mosquitto.port, site_spec=lobby_day.site())
    runtime.store.write(day.points)
    with runtime.sessions() as session:
        add_user(session, "east", "东区经理", "branch_manager", PASSWORD, datetime.now(UTC), regions=["east"])
    web = Web(runtime)
    yield web
    web.stop()
    runtime.stop()


def test_reports_from_the_api_as_json_and_csv(served: Web) -> None:
    base = f"{served.url}/api/v1/reports"
    e2 = httpx.get(f"{base}/branches/e2", params={"date": "2026-11-16"}).json()
    assert (e2["calls"], e2["calls_unanswered"], e2["period"]) == (3, 1, "day")
    assert len(e2["chart"]["labels"]) == len(e2["chart"]["wait_avg_min"]) >= 9  # the hours with data
    week = httpx.get(f"{base}/branches/e2", params={"date": "2026-11-19", "period": "week"}).json()
    assert (week["start"], week["calls"]) == ("2026-11-16", 3)  # the week from Monday
    east = httpx.get(f"{base}/regions/east", params={"date": "2026-11-16"}).json()
    assert [b["branch"] for b in east["branches"]] == ["e1", "e2"]
    table = httpx.get(f"{base}/regions/east", params={"date": "2026-11-16", "format": "csv"})
    assert table.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(table.text)))
    assert [(r["branch"], r["calls"]) for r in rows] == [("e1", "3"), ("e2", "3")]
    assert httpx.get(f"{base}/branches/nowhere").status_code == 404
    future = httpx.get(f"{base}/branches/e2", params={"date": "2099-01-01"})
    assert future.status_code == 422
    assert "in the future" in future.json()["detail"]


def test_the_report_page_with_its_charts(browser: Browser, served: Web) -> None:
    page = sign_in(browser, served, "east")
    page.get_by_role("link", name="报表").click()
    page.select_option("select[name=branch]", "e2")
    page.fill("input[name=date]", "2026-11-16")
    page.get_by_role("button", name="查看").click()
    expect(page.locator("td[data-figure=calls]")).to_have_text("共 3 次，已响应 3 次，超时 1 次")
    assert page.locator("svg[data-chart=wait] rect").count() >= 9
    assert page.locator("svg[data-chart=queue] rect").count() >= 9
    assert [o.get_attribute("value") for o in page.locator("select[name=branch] option").all()] == ["e1", "e2"]
    ranked = page.locator("table[data-table=ranking] tr[data-branch]")  # the region view: both branches, ranked
    expect(ranked).to_have_count(2)
    assert fits_the_screen(page)
    with page.expect_download() as download:
        page.get_by_role("link", name="下载 CSV").click()
    rows = list(csv.DictReader(io.StringIO(Path(download.value.path()).read_text(encoding="utf-8"))))
    assert [(r["branch"], r["calls_unanswered"]) for r in rows] == [("e2", "1")]
    page.goto(f"{served.url}/lobby/reports?branch=e2&period=day&day=2026-11-16")  # a link mailed before the rename
    expect(page.locator("td[data-figure=calls]")).to_have_text("共 3 次，已响应 3 次，超时 1 次")


def test_managers_get_the_reports_each_morning(day: Day, inbox: ThreadingHTTPServer) -> None:
    port = inbox.server_address[1]
    manager = Contact("经理", "branch_manager", (f"json://127.0.0.1:{port}/manager",))
    supervisor = Contact("主任", "duty_supervisor", (f"json://127.0.0.1:{port}/supervisor",))
    channel = AppriseChannel(lambda _b: (), lambda _n, _c: None, lambda key, _b, **p: key)
    clock = FakeClock(datetime(2026, 11, 16, 23, 0, tzinfo=UTC))  # Tuesday 07:00 in Beijing
    e2 = day.replayer.pipeline.directory.branches["e2"]
    mailer = ReportMailer(
        store=day.sqlite,
        sessions=day.replayer.sessions,
        branches=lambda: [e2],
        contacts=lambda _b: (manager, supervisor),
        send=channel.send,
        clock=clock,
        public_url="http://lobby.example",
        send_at=time(7, 30),
    )
    assert mailer.check() == 0  # not before half past seven
    clock.advance(30 * 60)
    assert mailer.check() == 1  # Monday's report
    assert mailer.check() == 0  # once
    (monday,) = inbox.messages["/manager"]  # type: ignore[attr-defined]
    assert monday["title"] == "Branch e2: Day report 2026-11-16"  # e2 reads English
    assert "3 calls, 3 answered, 1 not in time" in monday["message"]
    assert "http://lobby.example/lobby/reports?branch=e2&period=day&date=2026-11-16" in monday["message"]
    assert "/supervisor" not in inbox.messages  # type: ignore[attr-defined]  # reports are for the managers

    clock.advance(6 * 86400)  # the next Monday: Sunday's report and last week's
    assert mailer.check() == 2
    titles = [m["title"] for m in inbox.messages["/manager"][1:]]  # type: ignore[attr-defined]
    assert sorted(titles) == ["Branch e2: Day report 2026-11-22", "Branch e2: Week report 2026-11-16"]
    week = next(m for m in inbox.messages["/manager"] if "Week" in m["title"])  # type: ignore[attr-defined]
    assert "3 calls" in week["message"]


def test_a_report_nobody_received_is_tried_again(day: Day) -> None:
    clock = FakeClock(datetime(2026, 11, 17, 0, 0, tzinfo=UTC))  # Tuesday 08:00 in Beijing
    w1 = day.replayer.pipeline.directory.branches["w1"]
    manager = Contact("经理", "branch_manager", (f"json://127.0.0.1:{free_port()}/nobody",))
    channel = AppriseChannel(lambda _b: (), lambda _n, _c: None, lambda key, _b, **p: key)
    mailer = ReportMailer(
        store=day.sqlite,
        sessions=day.replayer.sessions,
        branches=lambda: [w1],
        contacts=lambda _b: (manager,),
        send=channel.send,
        clock=clock,
        public_url="http://x",
    )
    assert mailer.check() == 0
    assert mailer.check() == 0  # still due: tried again, not recorded as sent
