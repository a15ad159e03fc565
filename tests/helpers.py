"""Helpers for integration tests: a running server runtime, a raw device publisher, waiting for conditions."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import uvicorn
import yaml
from paho.mqtt.enums import CallbackAPIVersion
from playwright.sync_api import Browser, Page, expect

from lobby_sim.broker import free_port
from server.app import create_app
from server.runtime import Runtime
from server.settings import Settings


def eventually(condition: Callable[[], Any], timeout: float = 15.0, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = condition()
        if result:
            return result
        time.sleep(0.05)
    raise AssertionError(f"{what} not met within {timeout} s")


# Tests run at any hour: their branches never close, and the wait rule is tested on its own.
ALWAYS_OPEN = {
    "hours": {"opens": "00:00", "closes": "23:59:59.999999"},
    "wait_target_min": None,
    "call_deadlines_s": {"accessibility": 2.0, "help": 120.0, "priority": 120.0},
}


@contextmanager
def serving(handler: type[BaseHTTPRequestHandler], **state: Any) -> Iterator[ThreadingHTTPServer]:
    """A real HTTP server on a free loopback port, `state` set as attributes its handler reads, shut after use."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    for name, value in state.items():
        setattr(server, name, value)
    thread = threading.Thread(target=server.serve_forever, name=handler.__name__)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        thread.join()
        server.server_close()


def site(rule: dict[str, object] | None = None) -> dict[str, object]:
    return {
        "defaults": rule or {"threshold": 5, "for_s": 0, "clear_below": 2, "clear_for_s": 0},
        "regions": [{"id": "r1", "name": "Region one"}],
        "branches": [
            {
                "id": "b1",
                "name": "阜成门支局",
                "region": "r1",
                "locale": "zh-CN",
                **ALWAYS_OPEN,
                "devices": [{"id": "dev-b1-cam", "zones": [{"key": "queue", "name": "窗口排队区"}]}],
            },
            {
                "id": "b2",
                "name": "Tianhe Office",
                "region": "r1",
                "locale": "en",
                **ALWAYS_OPEN,
                "devices": [{"id": "dev-b2-cam", "zones": [{"key": "queue", "name": "window queue"}]}],
            },
        ],
    }


def write_site(tmp_path: Path, site_spec: dict[str, object] | None = None) -> Path:
    site_file = tmp_path / "site.yaml"
    site_file.write_text(yaml.safe_dump(site_spec or site(), allow_unicode=True), encoding="utf-8")
    return site_file


def start_runtime(tmp_path: Path, port: int, site_spec: dict[str, object] | None = None, **overrides: Any) -> Runtime:
    site_file = write_site(tmp_path, site_spec)
    values: dict[str, Any] = {
        "mode": "dev",
        "database_url": f"sqlite:///{tmp_path / 'registry.sqlite3'}",
        "site_file": site_file,
        "timeseries_path": tmp_path / "ts.sqlite3",
        "mqtt_port": port,
        "mqtt_username": None,
        "mqtt_client_id": f"ingest-{tmp_path.name}"[:60],
        "group_wait_s": 0.0,  # notices at once, as the tests of delivery expect; grouping has tests of its own
    }
    settings = Settings(**{**values, **overrides})
    runtime = Runtime(settings)
    runtime.start()
    assert runtime.source.wait_connected(10), "ingest did not connect"
    return runtime


class Device:
    """Publishes raw payloads as a device would (no agent), for testing the ingest's contract checks."""

    def __init__(self, port: int, device: str, password: str | None = None) -> None:
        self.device = device
        self.seq = 0
        if port == 0:  # payloads only (Device.offline)
            return
        # with a password, as the agent does: the broker binds each device to its id as client id
        client_id = device if password is not None else f"raw-{device}"
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5)
        if password is not None:
            self.client.username_pw_set(device, password)
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()

    @classmethod
    def offline(cls, device: str) -> Device:
        """Makes payloads only, for feeding the pipeline without a broker."""
        return cls(0, device)

    def envelope(self, **fields: object) -> dict[str, object]:
        self.seq += 1
        return {
            "v": 1,
            "stream": "00000000deadbeef",
            "seq": self.seq,
            "ts": datetime.now(UTC).isoformat(),
            "uptime_s": 1.0,
            **fields,
        }

    def send(self, channel: str, payload: bytes | dict[str, object], topic_device: str | None = None) -> None:
        body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
        info = self.client.publish(f"lobby/v1/{topic_device or self.device}/{channel}", body, qos=1)
        info.wait_for_publish(5)

    def queue(self, occupancy: int | None, zone: str = "queue") -> dict[str, object]:
        payload = self.envelope(zones=[{"zone": zone, "occupancy": occupancy}])
        self.send("queue", payload)
        return payload

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


PHONE = {"width": 390, "height": 844}  # a common phone screen, CSS pixels
PASSWORD = "lobby-password-1"


class Web:
    """The app of a runtime, served by uvicorn on a free port (for a real browser)."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        self.port = free_port()
        config = uvicorn.Config(create_app(runtime=runtime), host="127.0.0.1", port=self.port, log_level="warning")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        eventually(lambda: self.server.started, what="the web server")
        self.url = f"http://127.0.0.1:{self.port}"

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(10)


def sign_in(browser: Browser, web: Web, login: str) -> Page:

    page = browser.new_page(viewport=PHONE)
    page.goto(f"{web.url}/lobby")
    expect(page).to_have_url(f"{web.url}/login?next=/lobby")  # sign-in first
    page.fill("#login", login)
    page.fill("#password", PASSWORD)
    page.click("button[type=submit]")
    expect(page).to_have_url(f"{web.url}/lobby")
    return page


def fits_the_screen(page: Page) -> bool:
    """Nothing wider than the screen, and every link and button a thumb can hit (44 px high at least)."""
    small = page.evaluate(
        """[...document.querySelectorAll('header a, header button, main button, .actions a')]
            .filter((e) => e.offsetParent !== null && e.getBoundingClientRect().height < 44)
            .map((e) => e.textContent.trim())"""
    )
    assert small == [], f"tap targets under 44 px: {small}"
    return bool(page.evaluate("document.documentElement.scrollWidth <= window.innerWidth"))
