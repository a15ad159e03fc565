"""Delivery through apprise to real HTTP endpoints, routed by role, severity and quiet hours; one-tap links."""

import re
from datetime import time
from http.server import ThreadingHTTPServer
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from lobby_sim.broker import Mosquitto, free_port
from server.app import create_app
from server.delivery.apprise_channel import AppriseChannel, DeliveryError
from server.delivery.links import sign
from server.delivery.notify import Notice
from server.delivery.routing import in_quiet_hours, recipients
from server.registry.directory import Contact
from server.web.cards import event_detail
from tests.helpers import ALWAYS_OPEN, Device, eventually, site, start_runtime


def url(server: ThreadingHTTPServer, person: str) -> str:
    return f"json://127.0.0.1:{server.server_address[1]}/{person}"


def test_routing_by_role_severity_and_quiet_hours() -> None:
    day, night = time(10), time(23)
    quiet = (time(22), time(7))
    wang = Contact("王芳", "duty_supervisor", ("json://x/w",), quiet=quiet)
    li = Contact("李强", "duty_supervisor", ("json://x/l",), min_severity="critical")
    zhang = Contact("小张", "counter_staff", ("json://x/z",))
    everyone = (wang, li, zhang)
    assert recipients(everyone, "duty_supervisor", "warning", day) == [wang]
    assert recipients(everyone, "duty_supervisor", "warning", night) == []  # 王芳 sleeps, 李强 wants critical only
    assert recipients(everyone, "duty_supervisor", "critical", night) == [wang, li]  # critical goes through
    assert in_quiet_hours(quiet, time(6, 59))
    assert not in_quiet_hours(quiet, time(7))


def notice(alert_id: int = 1, role: str = "duty_supervisor") -> Notice:
    return Notice(
        alert_id,
        "fired",
        "queue_too_long",
        "warning",
        "b1",
        "B",
        "queue",
        "排队过长",
        "9 人",
        "2026-11-23T02:00:00+00:00",
        "2026-11-23T10:00:00+08:00",
        "",
        None,
        role,
    )


def test_a_retry_sends_only_to_whom_it_failed_and_a_dead_channel_reaches_the_admins(
    inbox: ThreadingHTTPServer,
) -> None:
    dead = f"json://127.0.0.1:{free_port()}/nobody"  # nothing listens there
    contacts = (Contact("王芳", "duty_supervisor", (url(inbox, "wang"),)), Contact("李强", "duty_supervisor", (dead,)))
    channel = AppriseChannel(
        lambda _b: contacts, lambda _n, _c: None, lambda key, _b: key, admin_urls=[url(inbox, "admin")], group_wait_s=0
    )
    for _ in range(3):
        with pytest.raises(DeliveryError, match="李强"):
            channel.deliver(notice())
    assert len(inbox.messages["/wang"]) == 1  # type: ignore[attr-defined]
    (warning,) = inbox.messages["/admin"]  # type: ignore[attr-defined]
    assert "failing" in warning["title"]
    assert "/nobody" not in warning["message"]  # no path or credentials of a URL in a message


def test_rate_limit_per_person(inbox: ThreadingHTTPServer) -> None:
    contacts = (Contact("王芳", "duty_supervisor", (url(inbox, "wang"),), max_per_hour=2),)
    channel = AppriseChannel(
        lambda _b: contacts, lambda _n, _c: None, lambda key, _b: key, group_interval_s=0, group_wait_s=0
    )
    for alert_id in range(1, 5):
        channel.deliver(notice(alert_id))
    assert len(inbox.messages["/wang"]) == 2  # type: ignore[attr-defined]
    assert channel.rate_limited == 2


def test_a_bad_morning_is_one_message_per_person_not_twenty(inbox: ThreadingHTTPServer) -> None:
    now = [1000.0]
    contacts = (Contact("王芳", "duty_supervisor", (url(inbox, "wang"),)),)
    labels = {"notice.group.title": "{branch}: {count}", "notice.acknowledge": "ack"}
    channel = AppriseChannel(
        lambda _b: contacts,
        lambda n, _c: f"http://lobby/ack/{n.alert_id}",
        lambda key, _b, **p: labels[key].format(**p),
        clock=lambda: now[0],
        group_interval_s=60,
    )
    reported: list[tuple[int, bool, str]] = []

    def report(n: Notice, _channel: str, ok: bool, detail: str) -> None:
        reported.append((n.alert_id, ok, detail))

    for alert_id in range(1, 6):  # five alerts within ten seconds
        assert channel.deliver(notice(alert_id)) is False  # held for the group wait: nothing handed over yet
        now[0] += 2
    critical = Notice(
        9,
        "fired",
        "call_unanswered",
        "critical",
        "b1",
        "B",
        "ramp",
        "无障碍呼叫",
        "60 s",
        "2026-11-23T02:00:00+00:00",
        "2026-11-23T10:00:00+08:00",
        "",
        None,
        "duty_supervisor",
    )
    assert channel.deliver(critical) is True  # the ramp bell never waits
    channel.flush(report)
    assert len(inbox.messages["/wang"]) == 1  # type: ignore[attr-defined]
    now[0] = 1000.0 + 15  # the group wait is up: the five go as one message
    channel.flush(report)
    bell, group = inbox.messages["/wang"]  # type: ignore[attr-defined]
    assert bell["title"] == "无障碍呼叫"
    assert group["title"] == "B: 5"
    assert [f"http://lobby/ack/{i}" in group["message"] for i in range(1, 6)] == [True] * 5
    assert [r[0] for r in reported] == [1, 2, 3, 4, 5]
    assert all(ok for _, ok, _ in reported)
    assert "grouped with 4 more" in reported[0][2]
    # as the alert's timeline shows it, in the reader's words
    assert event_detail("notified", f"apprise: {reported[0][2]}", "zh-CN").endswith("（与另外 4 条告警合并为一条消息）")
    failed = DeliveryError("not delivered to 王芳, 李强")
    shown = event_detail("notify_failed", f"apprise: {type(failed).__name__}: {failed}", "zh-CN")
    assert shown.endswith(": 未送达：王芳, 李强")
    # the morning goes on: what comes within the interval is an update with only the new alerts
    now[0] += 5
    assert channel.deliver(notice(6)) is False
    now[0] += 30
    channel.flush(report)
    assert len(inbox.messages["/wang"]) == 2  # type: ignore[attr-defined]
    now[0] += 30  # an interval after the group
    channel.flush(report)
    update = inbox.messages["/wang"][2]  # type: ignore[attr-defined]
    assert update["title"] == "排队过长"  # one alert alone goes as itself, not as a group of one
    assert "http://lobby/ack/6" in update["message"]


def test_a_held_group_that_cannot_be_sent_is_retried_then_reported() -> None:
    now = [0.0]
    contacts = (Contact("李强", "duty_supervisor", (f"json://127.0.0.1:{free_port()}/nobody",)),)
    channel = AppriseChannel(
        lambda _b: contacts,
        lambda _n, _c: None,
        lambda key, _b, **p: key,
        clock=lambda: now[0],
        group_interval_s=60,
        group_wait_s=0,
    )
    reported: list[tuple[int, bool]] = []
    with pytest.raises(DeliveryError):
        channel.deliver(notice(1))
    assert channel.deliver(notice(2)) is False
    assert channel.deliver(notice(3)) is False
    for _ in range(3):
        now[0] += 61
        channel.flush(lambda n, _c, ok, _d: reported.append((n.alert_id, ok)))
    assert reported == [(2, False), (3, False)]  # tried three times, then visible as a failed delivery


@pytest.fixture
def runtime_with_contacts(tmp_path: Path, mosquitto: Mosquitto, inbox: ThreadingHTTPServer):  # type: ignore[no-untyped-def]
    spec = site()
    branch = spec["branches"][0]  # type: ignore[index]
    branch["contacts"] = [
        {"name": "王芳", "role": "duty_supervisor", "urls": [url(inbox, "wang")]},
        {"name": "小张", "role": "counter_staff", "urls": [url(inbox, "zhang")]},
    ]
    assert branch["hours"] == ALWAYS_OPEN["hours"]
    runtime = start_runtime(tmp_path, mosquitto.port, site_spec=spec, public_url="http://lobby.example")
    yield runtime
    runtime.stop()


def test_the_supervisor_gets_the_alert_and_acknowledges_it_with_one_tap(
    runtime_with_contacts,
    mosquitto: Mosquitto,
    inbox: ThreadingHTTPServer,  # type: ignore[no-untyped-def]
) -> None:
    runtime = runtime_with_contacts
    device = Device(mosquitto.port, "dev-b1-cam")
    try:
        device.queue(9)
        (message,) = eventually(lambda: inbox.messages.get("/wang"), what="the supervisor's message")  # type: ignore[attr-defined]
    finally:
        device.close()
    assert message["title"] == "阜成门支局：窗口排队区排队过长——请开启弹性窗口"
    assert "/zhang" not in inbox.messages  # type: ignore[attr-defined]  # counter staff are not asked for this rule
    link = re.search(r"一键确认: (\S+)", message["message"])
    assert link is not None
    token = link.group(1).rsplit("/ack/", 1)[1]
    with TestClient(create_app(runtime=runtime)) as client:
        page = client.get(f"/ack/{token}")
        assert page.status_code == 200
        assert "以 王芳 的身份确认" in page.text
        (alert,) = client.get("/api/v1/alerts").json()
        assert alert["state"] == "firing"  # fetching the link (a chat app's preview) acknowledges nothing
        done = client.post(f"/ack/{token}")  # what the page does in a browser (tests/test_pages.py)
        assert "谢谢，王芳" in done.text
        (alert,) = client.get("/api/v1/alerts").json()
        assert (alert["state"], alert["owner"]) == ("acknowledged", "王芳")
        tampered = client.get(f"/ack/{token[:-2]}xx")
        assert (tampered.status_code, "无效" in tampered.text) == (400, True)
        expired = sign(alert["id"], "王芳", 1.0, runtime.link_secret)
        assert "过期" in client.get(f"/ack/{expired}").text
