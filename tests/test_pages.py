"""The lobby pages in a real browser (Debian's chromium driven by Playwright), against the real server: a real
Mosquitto, the ingest, the rules, the registry on SQLite, uvicorn on a real port."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from playwright.sync_api import Browser, expect

from lobby_sim.broker import Mosquitto
from server.delivery.links import sign
from server.registry import models
from server.registry.users import add_user
from tests.helpers import PASSWORD, PHONE, Device, Web, eventually, fits_the_screen, sign_in, site, start_runtime


@pytest.fixture
def web(tmp_path: Path, mosquitto: Mosquitto) -> Iterator[Web]:
    runtime = start_runtime(tmp_path, mosquitto.port, site_spec=site())
    with runtime.sessions() as session:
        now = datetime.now(UTC)
        add_user(session, "wang", "王芳", "duty_supervisor", PASSWORD, now, branches=["b1"])
        add_user(session, "li", "李强", "duty_supervisor", PASSWORD, now, regions=["r1"])
        add_user(session, "zhao", "Zhao Lei", "branch_manager", PASSWORD, now, locale="en", branches=["b2"])
    web = Web(runtime)
    yield web
    web.stop()
    runtime.stop()


def fire_queue_alert(web: Web, mosquitto: Mosquitto, device_id: str = "dev-b1-cam") -> models.Alert:
    device = Device(mosquitto.port, device_id)
    try:
        device.queue(9)
        (alert,) = eventually(web.runtime.alerts.open_alerts, what="the queue alert")
    finally:
        device.close()
    return alert


def test_a_supervisor_acknowledges_and_resolves_on_a_phone(browser: Browser, web: Web, mosquitto: Mosquitto) -> None:
    alert = fire_queue_alert(web, mosquitto)
    page = sign_in(browser, web, "wang")
    card = page.locator(f"article[data-alert='{alert.id}']")
    expect(card).to_contain_text("窗口排队区排队过长")
    expect(card).to_contain_text("正在通知：值班主任")
    assert fits_the_screen(page)

    card.get_by_role("button", name="确认接手").click()
    expect(page.get_by_role("status")).to_contain_text("此告警由您负责")
    expect(page.locator(".owner")).to_contain_text("王芳")
    assert web.runtime.alerts.open_alerts()[0].owner == "王芳"

    page.get_by_role("button", name="解决").click()  # without a note: refused, and said why
    expect(page.get_by_role("alert")).to_contain_text("请填写处理说明")
    page.fill("input[name=note]", "开启了 3 号弹性窗口")
    page.get_by_role("button", name="解决").click()
    expect(page.get_by_role("status")).to_contain_text("已解决")
    timeline = page.locator("ol.timeline")
    for kind in ("触发", "已确认", "已解决"):
        expect(timeline).to_contain_text(kind)
    expect(timeline).to_contain_text("王芳: 开启了 3 号弹性窗口")
    assert fits_the_screen(page)
    assert web.runtime.alerts.open_alerts() == []
    page.goto(f"{web.url}/lobby")
    expect(page.locator(".empty")).to_contain_text("没有未结束的告警")


def test_the_owner_passes_an_alert_on(browser: Browser, web: Web, mosquitto: Mosquitto) -> None:
    alert = fire_queue_alert(web, mosquitto)
    page = sign_in(browser, web, "wang")
    page.get_by_role("button", name="确认接手").click()
    page.select_option("select[name=to]", "李强")
    page.get_by_role("button", name="转交", exact=True).click()
    expect(page.get_by_role("status")).to_contain_text("已转交")
    expect(page.locator(".owner")).to_contain_text("李强")
    expect(page.locator("ol.timeline")).to_contain_text("王芳 转交给 李强")  # in the reader's words
    (still,) = web.runtime.alerts.open_alerts()
    assert (still.id, still.owner) == (alert.id, "李强")


def test_a_manager_sees_only_their_branches(browser: Browser, web: Web, mosquitto: Mosquitto) -> None:
    alert = fire_queue_alert(web, mosquitto)  # in b1
    page = sign_in(browser, web, "zhao")  # b2's manager, reads English
    expect(page.locator(".empty")).to_contain_text("No open alerts")
    response = page.goto(f"{web.url}/lobby/alerts/{alert.id}")
    assert response is not None
    assert response.status == 404
    page.goto(f"{web.url}/lobby?lang=zh-CN")  # the language can be switched, and stays switched
    page.goto(f"{web.url}/lobby")
    expect(page.locator("h1")).to_have_text("未结束的告警")


def test_a_technician_silences_a_branch_for_maintenance(browser: Browser, web: Web) -> None:
    page = sign_in(browser, web, "li")
    page.get_by_role("link", name="静默").click()
    page.select_option("#branch", "b1")
    page.fill("#minutes", "30")
    page.get_by_role("button", name="静默", exact=True).click()
    expect(page.get_by_role("alert")).to_contain_text("请说明原因")  # a silence needs a reason
    page.fill("#reason", "更换摄像头")
    page.get_by_role("button", name="静默", exact=True).click()
    expect(page.get_by_role("status")).to_contain_text("已静默")
    expect(page.locator("article")).to_contain_text("更换摄像头")
    (silence,) = web.runtime.alerts.silences.active()
    assert (silence.branch_id, silence.by) == ("b1", "李强")
    page.get_by_role("button", name="立即结束").click()
    expect(page.locator(".empty")).to_contain_text("当前没有静默")
    assert web.runtime.alerts.silences.active() == []


def test_an_open_lobby_page_shows_a_new_alert_without_a_reload_and_rings_for_a_critical_one(
    browser: Browser, tmp_path: Path, mosquitto: Mosquitto
) -> None:
    spec = site()
    spec["branches"][0]["routing"] = {"queue_too_long": {"severity": "critical"}}  # type: ignore[index]
    runtime = start_runtime(tmp_path, mosquitto.port, site_spec=spec)
    web = Web(runtime)
    try:
        with runtime.sessions() as session:
            add_user(session, "wang", "王芳", "duty_supervisor", PASSWORD, datetime.now(UTC), branches=["b1"])
        page = browser.new_page(viewport=PHONE, locale="zh-CN")
        # the phone's vibration, recorded: the thinnest seam to see that the page asked for it
        page.add_init_script("window.rings = []; navigator.vibrate = (p) => { window.rings.push(p); return true; };")
        page.goto(f"{web.url}/login")
        page.fill("#login", "wang")
        page.fill("#password", PASSWORD)
        page.click("button[type=submit]")
        expect(page.locator(".empty")).to_be_visible()
        first_update = page.locator("#updated").get_attribute("data-at")
        page.get_by_label("新的紧急告警时响铃并振动（本机）").check()
        assert page.evaluate("window.rings.length") == 1  # switching it on rings once, to show it works
        alert = fire_queue_alert(web, mosquitto)  # the page is not reloaded from here on
        card = page.locator(f"article[data-alert='{alert.id}']")
        expect(card).to_contain_text("窗口排队区排队过长", timeout=15_000)
        expect(card).to_contain_text("紧急")
        expect(card.locator(".lasted")).to_have_text("已持续 0 分钟")
        expect(card.locator(".now")).to_have_text("现在 9 人，峰值 9 人")
        assert page.locator("#updated").get_attribute("data-at") != first_update
        page.wait_for_function("window.rings.length === 2")  # the new critical alert rang
        assert fits_the_screen(page)
        checkbox = page.get_by_label("新的紧急告警时响铃并振动（本机）")
        page.reload()
        expect(checkbox).to_be_checked()  # the choice stays on this phone
        web.stop()  # the server goes away: the page says so and keeps the last list
        expect(page.locator("#stale")).to_be_visible(timeout=15_000)
        expect(card).to_be_visible()
    finally:
        web.stop()
        runtime.stop()


def test_past_alerts_by_branch_kind_and_day(browser: Browser, web: Web, mosquitto: Mosquitto) -> None:
    alert = fire_queue_alert(web, mosquitto)
    web.runtime.alerts.resolve(alert.id, "王芳", "开了弹性窗口")
    page = sign_in(browser, web, "wang")
    page.get_by_role("link", name="历史").click()
    card = page.locator(f"article[data-alert='{alert.id}']")
    expect(card).to_contain_text("窗口排队区排队已恢复正常")  # a resolved alert reads as resolved
    expect(card).to_contain_text("已解决")
    expect(card).to_contain_text("峰值 9 人")  # and keeps its peak
    assert fits_the_screen(page)
    page.select_option("select[name=rule]", "call_unanswered")
    page.get_by_role("button", name="查看").click()
    expect(page.locator(".empty")).to_have_text("这一天没有告警。")
    page.select_option("select[name=rule]", "queue_too_long")
    page.fill("input[name=date]", "2020-01-01")
    page.get_by_role("button", name="查看").click()
    expect(page.locator(".empty")).to_be_visible()
    page.fill("input[name=date]", datetime.now(UTC).astimezone(ZoneInfo("Asia/Shanghai")).date().isoformat())
    page.get_by_role("button", name="查看").click()
    expect(card).to_be_visible()


def test_people_read_names_in_their_language_not_ids(browser: Browser, tmp_path: Path, mosquitto: Mosquitto) -> None:
    spec = site()
    b1 = spec["branches"][0]  # type: ignore[index]
    b1["devices"].append({"id": "dev-b1-btn", "profile": "call-buttons"})
    b1["names"] = {"ramp-bell": {"zh-CN": "无障碍坡道呼叫铃", "en": "ramp bell"}}
    runtime = start_runtime(tmp_path, mosquitto.port, site_spec=spec)
    web = Web(runtime)
    device = Device(mosquitto.port, "dev-b1-btn")
    try:
        with runtime.sessions() as session:
            add_user(session, "wang", "王芳", "duty_supervisor", PASSWORD, datetime.now(UTC), branches=["b1"])
        device.send("button", device.envelope(button="ramp-bell", kind="accessibility", action="press"))
        (alert,) = eventually(runtime.alerts.open_alerts, what="the unanswered ramp-bell call", timeout=20)
        runtime.alerts.acknowledge(alert.id, "王芳", "web")
        page = sign_in(browser, web, "wang")
        card = page.locator(f"article[data-alert='{alert.id}']")
        expect(card).to_contain_text("无障碍坡道呼叫铃")
        expect(card).not_to_contain_text("ramp-bell")
        card.get_by_role("link").first.click()
        timeline = page.locator("ol.timeline")
        expect(timeline).to_contain_text("王芳，通过网页")
        expect(timeline).not_to_contain_text("kind=")  # the rules' facts are said by the card, in a sentence
        expect(timeline).not_to_contain_text(" via ")
        english = page.request.get(f"{web.url}/api/v1/alerts/{alert.id}?lang=en").json()
        assert "ramp bell" in english["title"]
    finally:
        device.close()
        web.stop()
        runtime.stop()


def test_a_silenced_alert_says_nobody_is_told_on_its_card_timeline_and_api(
    browser: Browser, web: Web, mosquitto: Mosquitto
) -> None:
    web.runtime.alerts.silences.add("b1", 30, "李强", "更换摄像头")
    alert = fire_queue_alert(web, mosquitto)
    page = sign_in(browser, web, "wang")
    card = page.locator(f"article[data-alert='{alert.id}']")
    expect(card.get_by_role("note")).to_contain_text("已静默至")
    expect(card.get_by_role("note")).to_contain_text("李强：更换摄像头")
    expect(card).not_to_contain_text("正在通知")  # nobody is being asked: the card must not say so
    expect(card).to_contain_text("警告")  # the severity in words, not by colour alone
    card.get_by_role("link").first.click()
    expect(page.locator("main")).to_contain_text("已静默，未通知")
    response = page.request.get(f"{web.url}/api/v1/alerts?state=open")
    assert response.status == 200, response.text()
    (shown,) = response.json()
    assert (shown["silenced"]["by"], shown["silenced"]["reason"]) == ("李强", "更换摄像头")
    assert shown["started_at"].endswith("Z")


def test_the_one_tap_link_acknowledges_in_the_browser(browser: Browser, web: Web, mosquitto: Mosquitto) -> None:
    alert = fire_queue_alert(web, mosquitto)
    token = sign(alert.id, "王芳", datetime.now(UTC).timestamp() + 3600, web.runtime.link_secret)
    page = browser.new_page(viewport=PHONE, locale="zh-CN")  # not signed in: the signed link is the permission
    page.goto(f"{web.url}/ack/{token}")
    expect(page.get_by_role("status")).to_contain_text("谢谢，王芳")  # the page sent its own POST
    assert fits_the_screen(page)
    (acknowledged,) = web.runtime.alerts.open_alerts()
    assert (acknowledged.state, acknowledged.owner) == ("acknowledged", "王芳")
    page.goto(f"{web.url}/ack/{token[:-2]}xx")
    expect(page.locator("main")).to_contain_text("此链接无效")  # in the phone's language: no branch to go by


def test_forms_from_elsewhere_are_refused(browser: Browser, web: Web, mosquitto: Mosquitto) -> None:
    alert = fire_queue_alert(web, mosquitto)
    page = sign_in(browser, web, "wang")
    response = page.request.post(f"{web.url}/lobby/alerts/{alert.id}/acknowledge", form={"csrf": "forged"})
    assert response.status == 403
    assert web.runtime.alerts.open_alerts()[0].state == "firing"
    wrong = browser.new_page(locale="zh-CN")
    wrong.goto(f"{web.url}/login")
    wrong.fill("#login", "wang")
    wrong.fill("#password", "not-the-password")
    wrong.click("button[type=submit]")
    expect(wrong.get_by_role("alert")).to_contain_text("用户名或密码错误")


def test_the_user_command_fails_in_one_clear_line(tmp_path: Path) -> None:
    import os
    import subprocess
    import sys

    env = {**os.environ, "LOBBYWATCH_MODE": "dev", "LANG": "zh_CN.UTF-8"}
    env["LOBBYWATCH_DATABASE_URL"] = f"sqlite:///{tmp_path / 'registry.sqlite3'}"
    env.pop("LOBBYWATCH_DEBUG", None)
    command = [sys.executable, "-m", "server.cli", "user", "li", "--role", "technician"]
    # no terminal and no --password-stdin: said, not a traceback from getpass
    blind = subprocess.run(command, stdin=subprocess.DEVNULL, env=env, capture_output=True, text=True, check=False)
    assert blind.returncode == 2
    assert blind.stderr.splitlines() == ["没有可输入密码的终端：请用 --password-stdin 从标准输入提供密码。"]
    # a failure nobody foresaw (the database cannot be opened): one line, the traceback only when asked for
    env["LOBBYWATCH_DATABASE_URL"] = f"sqlite:///{tmp_path / 'no-such-folder' / 'registry.sqlite3'}"
    broken = subprocess.run(
        [*command, "--password-stdin"], input="long-enough-pw\n", env=env, capture_output=True, text=True, check=False
    )
    assert broken.returncode == 1
    (line,) = broken.stderr.splitlines()
    assert line.startswith("失败：")
    assert "unable to open database file" in line
    assert "LOBBYWATCH_DEBUG=1" in line
    env["LOBBYWATCH_DEBUG"] = "1"
    debug = subprocess.run(
        [*command, "--password-stdin"], input="long-enough-pw\n", env=env, capture_output=True, text=True, check=False
    )
    assert "Traceback" in debug.stderr


def test_an_administrator_adds_a_user_from_the_command_line(tmp_path: Path) -> None:
    import os
    import subprocess
    import sys

    from server.registry.database import make_engine, make_sessions
    from server.registry.users import authenticate

    database = f"sqlite:///{tmp_path / 'registry.sqlite3'}"
    env = {**os.environ, "LOBBYWATCH_MODE": "dev", "LOBBYWATCH_DATABASE_URL": database, "LANG": "zh_CN.UTF-8"}
    command = [sys.executable, "-m", "server.cli", "user", "add-me", "--role", "duty_supervisor", "--password-stdin"]
    refused = subprocess.run(command, input="long-enough-pw\n", env=env, capture_output=True, text=True, check=False)
    assert refused.returncode == 2
    assert "用户未保存" in refused.stderr
    assert "duty_supervisor 需要 --branch 或 --region" in refused.stderr
    short = subprocess.run(
        [*command[:-1], "--role", "technician", "--password-stdin"],
        input="short\n",
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert "密码至少需要 10 个字符" in short.stderr
    made = subprocess.run(
        [*command[:-1], "--role", "technician", "--password-stdin"],
        input="long-enough-pw\n",
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert made.returncode == 0, made.stderr
    assert "用户 add-me 已保存" in made.stdout
    engine = make_engine(database)
    with make_sessions(engine)() as session:
        person = authenticate(session, "add-me", "long-enough-pw")
        assert person is not None
        assert person.role == "technician"
        assert authenticate(session, "add-me", "wrong-password") is None
        stored = session.get(models.User, "add-me")
        assert stored is not None
        assert stored.password_hash.startswith("$argon2id$")
    engine.dispose()
