"""The web side attacked as an outsider, a technician and a manager would, against the real server in prod mode
(uvicorn on a real port, a real Mosquitto, chromium for the page): no stored script runs, bodies are bounded,
headers are set, guessing passwords is slowed, sessions and tokens end when they should, and one-tap tokens
never reach the access log."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Browser, Route, expect

from lobby_sim.broker import Mosquitto, free_port, wait_for_port
from server.delivery.links import sign
from server.registry import models
from server.registry.users import add_user
from tests.helpers import PASSWORD, PHONE, Web, eventually, site, start_runtime, write_site

API_TOKEN = "api-token-for-the-tests-0123456789"
SECRET = "link-secret-for-the-tests-0123456789"
EVIL = "</script><script>window.pwned=1;alert(1)</script>"


@pytest.fixture
def web(tmp_path: Path, mosquitto: Mosquitto) -> Iterator[Web]:
    runtime = start_runtime(
        tmp_path,
        mosquitto.port,
        site_spec=site(),
        mode="prod",
        api_token=API_TOKEN,
        link_secret=SECRET,
        public_url="https://lobby.example.cn",
    )
    with runtime.sessions() as session:
        now = datetime.now(UTC)
        add_user(session, "li", "李工", "technician", PASSWORD, now)
        add_user(session, "wang", "王芳", "duty_supervisor", PASSWORD, now, branches=["b1"])
    served = Web(runtime)
    yield served
    served.stop()
    runtime.stop()


def admin() -> dict[str, str]:
    return {"Authorization": f"Bearer {API_TOKEN}"}


def sign_in(web: Web, login: str, password: str = PASSWORD) -> httpx.Response:
    return httpx.post(f"{web.url}/login", data={"login": login, "password": password, "next": "/lobby"})


def test_a_script_in_a_zone_key_is_refused_and_never_runs(web: Web, browser: Browser) -> None:
    pushed = httpx.post(
        f"{web.url}/api/v1/devices/dev-b1-cam/config",
        headers=admin(),
        json={
            "sections": {"camera": {"source": "0", "zones": [{"key": EVIL, "polygon": [[0, 0], [10, 0], [10, 10]]}]}}
        },
    )
    assert pushed.status_code == 422
    assert "camera.zones.0.key" in pushed.json()["detail"]
    # a config stored before pushes were checked still renders as data, never as a script
    with web.runtime.sessions() as session:
        session.merge(
            models.DeviceConfig(
                device_id="dev-b1-cam",
                version=3,
                updated_at=datetime.now(UTC),
                updated_by="old",
                sections={"camera": {"source": "0", "zones": [{"key": EVIL, "polygon": [[0, 0], [10, 0], [10, 10]]}]}},
            )
        )
        session.commit()
    web.runtime.live.set_snapshot("dev-b1-cam", _snapshot(web))
    page = browser.new_page(viewport=PHONE)
    dialogs: list[str] = []
    page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    page.goto(f"{web.url}/login?next=/lobby/fleet/dev-b1-cam")
    page.fill("#login", "li")
    page.fill("#password", PASSWORD)
    page.click("button[type=submit]")
    expect(page.locator("canvas#zones")).to_be_visible()
    assert page.evaluate("window.pwned") is None
    assert dialogs == []
    page.close()


def _snapshot(web: Web) -> object:
    from server.live import SnapshotNow

    jpeg = b"\xff\xd8\xff\xe0" + b"\0" * 64
    return SnapshotNow("snap-1", jpeg, 640, 480, datetime.now(UTC), web.runtime.clock.monotonic())


def test_the_api_docs_work_with_no_internet(web: Web, browser: Browser) -> None:
    page = browser.new_page()
    outside: list[str] = []

    def offline(route: Route) -> None:  # as on a branch network or in mainland China without the CDN
        if route.request.url.startswith(web.url):
            route.continue_()
        else:
            outside.append(route.request.url)
            route.abort()

    page.route("**/*", offline)
    page.goto(f"{web.url}/docs")
    expect(page.locator(".swagger-ui .info .title")).to_contain_text("LobbyWatch")
    expect(page.locator(".opblock").first).to_be_visible()
    assert outside == []


def test_bodies_are_bounded_and_headers_set(web: Web) -> None:
    huge = b'{"token": "' + b"x" * (2 * 1024 * 1024) + b'"}'
    said = httpx.post(f"{web.url}/api/v1/enroll", content=huge, headers={"Content-Type": "application/json"})
    assert said.status_code == 413
    assert "larger than" in said.json()["detail"]

    def chunks() -> Iterator[bytes]:  # no Content-Length: counted while read
        for _ in range(40):
            yield b"x" * 65536

    unsaid = httpx.post(f"{web.url}/api/v1/enroll", content=chunks(), headers={"Content-Type": "application/json"})
    assert unsaid.status_code == 413
    page = httpx.get(f"{web.url}/login")
    assert "frame-ancestors 'none'" in page.headers["content-security-policy"]
    assert "script-src 'self' 'nonce-" in page.headers["content-security-policy"]
    assert page.headers["x-frame-options"] == "DENY"
    assert page.headers["x-content-type-options"] == "nosniff"
    assert page.headers["referrer-policy"] == "no-referrer"
    assert page.headers["strict-transport-security"].startswith("max-age=")
    assert httpx.get(f"{web.url}/api/v1/health").headers["x-content-type-options"] == "nosniff"
    signed = sign_in(web, "wang")
    assert signed.status_code == 303
    cookie = signed.headers["set-cookie"]
    assert "Secure" in cookie
    assert "HttpOnly" in cookie
    old = httpx.get(f"{web.url}/api/v1/reports/branches/b1", params={"date": "0001-01-01"}, headers=admin())
    assert old.status_code == 422
    assert "no data of that day" in old.text


def test_guessing_passwords_is_slowed_down(web: Web) -> None:
    for _ in range(5):
        assert sign_in(web, "wang", "wrong-password-1").status_code == 401
    right = sign_in(web, "wang")
    assert right.status_code == 429  # even the right password waits now
    assert int(right.headers["retry-after"]) >= 30
    assert "密码错误次数过多" in right.text
    # from another address the account is still limited; other accounts are not
    assert sign_in(web, "li").status_code == 303


def test_a_guesser_spread_over_api_processes_meets_one_limit(web: Web) -> None:
    other = Web(web.runtime)  # a second app on the same registry, as a second `lobbywatch api` process is
    try:
        for served in (web, other, web, other, web):  # five wrong passwords, spread over the two
            assert sign_in(served, "wang", "wrong-password-1").status_code == 401
        for served in (web, other):
            assert sign_in(served, "wang").status_code == 429  # each knows of all five
        tries = [
            httpx.post(f"{served.url}/api/v1/enroll", json={"token": "x" * 20, "serial": "s"})
            for served in (web, other) * 6
        ]
        codes = [r.status_code for r in tries]
        assert 429 not in codes[:10]
        assert codes[10:] == [429, 429]  # ten enrollment attempts a minute from one address, over both
    finally:
        other.stop()
    with web.runtime.sessions() as session:
        keys = {row.key for row in session.query(models.RateLimit)}
    assert {"sign_in:account:wang", "sign_in:address:127.0.0.1", "enroll:address:127.0.0.1"} <= keys


def test_logout_and_deactivation_end_sessions_and_tokens_at_once(web: Web) -> None:
    signed = sign_in(web, "wang")
    cookies = dict(signed.cookies)
    assert httpx.get(f"{web.url}/lobby", cookies=cookies).status_code == 200
    page = httpx.get(f"{web.url}/lobby", cookies=cookies).text
    csrf = page.split('name="csrf" value="')[1].split('"')[0]
    assert httpx.post(f"{web.url}/logout", data={"csrf": csrf}, cookies=cookies).status_code == 303
    again = httpx.get(f"{web.url}/lobby", cookies=cookies)  # the same cookie, replayed after signing out
    assert again.status_code == 303
    assert again.headers["location"].startswith("/login")

    cookies = dict(sign_in(web, "wang").cookies)
    made = httpx.post(
        f"{web.url}/api/v1/tokens", headers=admin(), json={"name": "wallboard", "login": "wang", "days": 30}
    )
    assert made.status_code == 200, made.text
    token = {"Authorization": f"Bearer {made.json()['token']}"}
    assert httpx.get(f"{web.url}/api/v1/branches", headers=token).status_code == 200
    listed = httpx.get(f"{web.url}/api/v1/tokens", headers=token).json()
    assert [t["name"] for t in listed] == ["wallboard"]
    assert listed[0]["expires_at"] is not None
    off = httpx.post(f"{web.url}/api/v1/users/wang/deactivate", headers=admin())
    assert off.status_code == 200
    assert httpx.get(f"{web.url}/api/v1/branches", headers=token).status_code == 401
    assert httpx.get(f"{web.url}/lobby", cookies=cookies).status_code == 303
    with web.runtime.sessions() as session:
        actions = [a.action for a in session.query(models.AuditEntry).filter_by(target="wang")]
    assert {"api_token.create", "user.deactivate"} <= set(actions)


def test_tokens_expire_and_can_be_revoked(web: Web) -> None:
    made = httpx.post(f"{web.url}/api/v1/tokens", headers=admin(), json={"name": "script", "login": "li"}).json()
    token = {"Authorization": f"Bearer {made['token']}"}
    assert httpx.get(f"{web.url}/api/v1/fleet", headers=token).status_code == 200
    (listed,) = httpx.get(f"{web.url}/api/v1/tokens", headers=admin(), params={"login": "li"}).json()
    revoked = httpx.delete(f"{web.url}/api/v1/tokens/{listed['id']}", headers=token)  # one's own
    assert revoked.status_code == 200
    assert revoked.json()["revoked_at"] is not None
    assert httpx.get(f"{web.url}/api/v1/fleet", headers=token).status_code == 401

    second = httpx.post(f"{web.url}/api/v1/tokens", headers=admin(), json={"name": "old", "login": "li"}).json()
    with web.runtime.sessions() as session:
        for row in session.query(models.ApiToken).filter(models.ApiToken.revoked_at.is_(None)):
            row.expires_at = datetime.now(UTC) - timedelta(minutes=1)
        session.commit()
    assert (
        httpx.get(f"{web.url}/api/v1/fleet", headers={"Authorization": f"Bearer {second['token']}"}).status_code == 401
    )


@pytest.mark.parametrize("log_format", ["text", "json"])
def test_one_tap_tokens_never_reach_the_access_log(tmp_path: Path, mosquitto: Mosquitto, log_format: str) -> None:
    port = free_port()
    env = {
        **os.environ,
        "LOBBYWATCH_MODE": "prod",
        "LOBBYWATCH_API_TOKEN": API_TOKEN,
        "LOBBYWATCH_LINK_SECRET": SECRET,
        "LOBBYWATCH_MQTT_PORT": str(mosquitto.port),
        "LOBBYWATCH_MQTT_PASSWORD": "mqtt-password-for-tests-0123",
        "LOBBYWATCH_DATABASE_URL": f"sqlite:///{tmp_path / 'registry.sqlite3'}",
        "LOBBYWATCH_TIMESERIES_PATH": str(tmp_path / "ts.sqlite3"),
        "LOBBYWATCH_SITE_FILE": str(write_site(tmp_path)),
        "LOBBYWATCH_HTTP_PORT": str(port),
        "LOBBYWATCH_REPORTS_BY_MAIL": "false",
        "LOBBYWATCH_LOG_FORMAT": log_format,
    }
    log = tmp_path / "server.log"
    with log.open("wb") as out:
        server = subprocess.Popen(
            [sys.executable, "-m", "server.cli", "serve"], env=env, stdout=out, stderr=subprocess.STDOUT
        )
    try:
        wait_for_port(port, 30)
        token = sign(7, "王芳", time.time() + 3600, SECRET.encode())
        httpx.get(f"http://127.0.0.1:{port}/ack/{token}")
        httpx.post(f"http://127.0.0.1:{port}/ack/{token}")
        time.sleep(0.5)
    finally:
        server.terminate()
        server.wait(15)
    text = log.read_text()
    assert "/ack/<redacted>" in text  # the request is logged ...
    assert token not in text  # ... without the token
    assert token.split(".")[1] not in text
    if log_format == "json":  # one object per line, for a log collector; uvicorn's lines too
        records = [json.loads(line) for line in text.splitlines() if line.startswith("{")]
        access = [r for r in records if r["logger"] == "uvicorn.access"]
        assert any("/ack/<redacted>" in r["message"] for r in access)
        assert {"time", "level", "logger", "message"} <= set(records[0])


def cli(tmp_path: Path, *argv: str) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "LOBBYWATCH_MODE": "dev",
        "LANG": "zh_CN.UTF-8",
        "LOBBYWATCH_DATABASE_URL": f"sqlite:///{tmp_path / 'registry.sqlite3'}",
    }
    return subprocess.run(
        [sys.executable, "-m", "server.cli", *argv], env=env, capture_output=True, text=True, check=False, timeout=60
    )


def test_tokens_and_people_from_the_command_line(web: Web, tmp_path: Path) -> None:
    made = cli(tmp_path, "token", "wang", "--name", "wallboard", "--days", "7", "--by", "管理员")
    assert made.returncode == 0, made.stderr
    token = made.stdout.strip().splitlines()[-1]
    assert httpx.get(f"{web.url}/api/v1/branches", headers={"Authorization": f"Bearer {token}"}).status_code == 200
    listed = cli(tmp_path, "tokens", "wang")
    assert "wallboard" in listed.stdout
    assert "到期" in listed.stdout
    assert token not in listed.stdout  # ids only, never the token
    ident = listed.stdout.split()[0]
    revoked = cli(tmp_path, "revoke-token", ident, "--by", "管理员")
    assert revoked.returncode == 0, revoked.stderr
    assert "已吊销" in revoked.stdout
    assert httpx.get(f"{web.url}/api/v1/branches", headers={"Authorization": f"Bearer {token}"}).status_code == 401
    cookies = dict(sign_in(web, "wang").cookies)
    off = cli(tmp_path, "deactivate", "wang", "--by", "管理员")
    assert off.returncode == 0, off.stderr
    assert "已停用 wang" in off.stdout
    assert httpx.get(f"{web.url}/lobby", cookies=cookies).status_code == 303
    unknown = cli(tmp_path, "deactivate", "nobody", "--by", "管理员")
    assert unknown.returncode == 2
    assert "nobody" in unknown.stderr


def test_the_fleet_page_lists_what_was_set_aside(web: Web, mosquitto: Mosquitto) -> None:
    from tests.helpers import Device

    device = Device(mosquitto.port, "dev-b1-cam")
    try:
        device.send("queue", device.envelope(ts="2300-01-01T00:00:00+00:00", zones=[{"zone": "queue", "occupancy": 1}]))
        device.queue(2)
    finally:
        device.close()
    cookies = dict(sign_in(web, "li").cookies)
    page = eventually(
        lambda: "已搁置的消息" in (text := httpx.get(f"{web.url}/lobby/fleet", cookies=cookies).text) and text,
        what="the fleet page lists the dead letter",
    )
    assert "内容无效" in page  # the cause, translated
    assert "2300-01-01" in page  # and what was sent
    device_page = httpx.get(f"{web.url}/lobby/fleet/dev-b1-cam", cookies=cookies).text
    assert "已搁置的消息" in device_page


def test_prometheus_scrapes_the_metrics_with_a_token(web: Web, mosquitto: Mosquitto, tmp_path: Path) -> None:
    from tests.helpers import Device
    from tests.services import Prometheus

    assert httpx.get(f"{web.url}/metrics").status_code == 401  # not for anyone who asks
    device = Device(mosquitto.port, "dev-b1-cam")
    try:
        device.queue(9)  # above the threshold: an alert opens
        device.send("queue", b"{not json")  # refused, and counted by cause
    finally:
        device.close()
    prometheus = Prometheus(tmp_path / "prometheus", f"127.0.0.1:{web.port}", API_TOKEN)
    prometheus.start()
    try:
        eventually(
            lambda: [t for t in prometheus.targets() if t["health"] == "up"],
            what="Prometheus scraping /metrics",
            timeout=30,
        )

        def value(expression: str) -> float | None:
            found = prometheus.query(expression)
            return float(found[0]["value"][1]) if found else None  # type: ignore[index]

        eventually(lambda: value("lobbywatch_messages_received_total") == 2, what="both messages counted", timeout=30)
        refused = prometheus.query("lobbywatch_messages_refused_total")
        assert [r["metric"]["cause"] for r in refused] == ["not_json"]  # type: ignore[index]
        assert value('lobbywatch_alerts_open{state="firing",severity="warning"}') == 1
        assert value("lobbywatch_store_write_seconds_count") is not None
        assert value("lobbywatch_broker_connected") == 1
        assert value("lobbywatch_ingest_backlog") == 0
    finally:
        prometheus.stop()
