"""The technicians' fleet page in Debian's chromium, with a real agent (simulated camera and pins) on a real
Mosquitto: identify, a snapshot, drawing a zone on it, labelling, the push the device confirms, a restart."""

from __future__ import annotations

import json
import random
import threading
import time
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from unittest.mock import create_autospec

import httpx
import pytest
from gpiozero.pins.mock import MockFactory
from playwright.sync_api import Browser, expect
from sqlalchemy import select

from edge_agent.agent import Agent
from edge_agent.commands import Device, identify
from edge_agent.config import parse_config
from edge_agent.counting.zones import Zone
from edge_agent.sensors import SensorEnv
from lobby_sim.broker import Mosquitto
from lobby_sim.camera import SimulatedCamera, calibrate_simulated
from lobby_sim.lobby import Lobby, LobbyPlan
from lobby_sim.render import QUEUE_ZONE, STAFF_AREA, LobbyRenderer
from lobbywatch.clock import SystemClock
from lobbywatch.protocol import REMOTE_SECTIONS, Command
from server.fleet import FleetRow
from server.live import LastReply
from server.registry import models
from server.registry.users import add_user
from server.web.fleet_pages import counting_view, reply_view
from tests.helpers import PASSWORD, PHONE, Web, eventually, sign_in, start_runtime
from tests.test_agent import LED, agent_config


class World:
    def __init__(self, tmp_path: Path, port: int) -> None:
        (tmp_path / "server").mkdir()
        self.runtime = start_runtime(tmp_path / "server", port)
        raw = agent_config(port, tmp_path / "device")
        config = parse_config(raw)
        with self.runtime.sessions() as session:
            add_user(session, "li", "李工", "technician", PASSWORD, datetime.now(UTC))
            add_user(session, "wang", "王芳", "duty_supervisor", PASSWORD, datetime.now(UTC), branches=["b1"])
            # what enrollment keeps: the sections a technician may change and push
            session.add(
                models.DeviceConfig(
                    device_id="dev-b1-cam",
                    version=0,
                    updated_at=datetime.now(UTC),
                    updated_by="enrollment",
                    sections={k: v for k, v in raw.items() if k in REMOTE_SECTIONS},
                )
            )
            session.commit()
        self.web = Web(self.runtime)
        lock, self.pins = threading.Lock(), MockFactory()
        self.lobby = lobby = Lobby(LobbyPlan(windows=0, base_per_min=0, peak_per_min=0), random.Random(0))
        calibrate_simulated(config.data_dir, LobbyRenderer(0), Zone("queue", list(QUEUE_ZONE)))
        self.agent = Agent(
            config,
            clock=SystemClock(),
            frame_source=SimulatedCamera(lobby, LobbyRenderer(0), lock),
            pin_factory=self.pins,
            sensor_env=SensorEnv(seed=0),
        )
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.agent.run, args=(self.stop,), name="agent-under-test")
        self.thread.start()
        eventually(lambda: self.agent.stats.occupancy.get("queue") is not None, what="the agent counting")
        eventually(
            lambda: (
                self.runtime.pipeline.devices.get("dev-b1-cam") and self.runtime.pipeline.devices["dev-b1-cam"].online
            ),
            what="the device online",
        )

    def close(self) -> None:
        self.stop.set()
        self.thread.join(15)
        self.web.stop()
        self.runtime.stop()


@pytest.fixture
def world(tmp_path: Path, mosquitto: Mosquitto) -> Iterator[World]:
    made = World(tmp_path, mosquitto.port)
    yield made
    made.close()


def test_a_technician_draws_a_zone_on_a_snapshot_and_the_device_runs_it(
    browser: Browser, world: World, tmp_path: Path
) -> None:
    # its health reports say how it counts (by the calibration made before it started)
    eventually(lambda: world.runtime.pipeline.devices["dev-b1-cam"].counting, what="how the device counts")
    listed = {d["id"]: d for d in httpx.get(f"{world.web.url}/api/v1/devices").json()}
    assert (listed["dev-b1-cam"]["counting"], listed["dev-b1-cam"]["fitting"]) == ({"queue": "regression"}, [])
    page = sign_in(browser, world.web, "li")
    page.get_by_role("link", name="设备", exact=True).click()
    expect(page.locator("article[data-device='dev-b1-cam']")).to_contain_text("在线")
    page.get_by_role("link", name="dev-b1-cam").click()
    expect(page.locator("td[data-field=counting]")).to_have_text("区域 queue：按人数标定")

    page.get_by_role("button", name="识别（闪灯）").click()
    expect(page.locator("#reply")).to_contain_text("设备对“识别”的回复：1 个指示灯正在闪烁 30 秒", timeout=15_000)
    eventually(lambda: world.pins.pin(LED).state, what="the LED blinking")
    expect(page.locator("td[data-field=reply]")).to_contain_text("识别 · 成功")

    page.get_by_role("button", name="拍摄快照").click()
    canvas = page.locator("canvas#zones")
    expect(canvas).to_be_visible(timeout=15_000)  # the page waits for the device's image
    width, height = int(canvas.get_attribute("width") or 0), int(canvas.get_attribute("height") or 0)
    assert (width, height) == (640, 360)  # the simulated camera's frame
    box = canvas.bounding_box()
    assert box is not None
    assert box["width"] <= PHONE["width"]  # drawn on a phone screen: the canvas is scaled down
    errors: list[str] = []
    page.on("console", lambda m: errors.append(m.text))
    page.on("pageerror", lambda e: errors.append(str(e)))

    def tap(fx: float, fy: float) -> None:  # where a finger taps, in the canvas as shown
        canvas.click(position={"x": fx * box["width"], "y": fy * box["height"]})

    def polygon() -> list[list[int]]:
        return list(json.loads(page.locator("#polygon").input_value()))

    assert page.locator("#shape").input_value() == "0"  # the zone the device runs, chosen to edit
    page.get_by_role("button", name="删除所选形状").click()
    page.get_by_role("button", name="新建区域").click()
    page.fill("#zone-key", "queue")
    corners = [(0.1, 0.5), (0.9, 0.5), (0.9, 0.95), (0.1, 0.95)]
    for fx, fy in corners:
        tap(fx, fy)
    drawn = polygon()
    assert len(drawn) == 4, (errors, page.content()[-3000:])
    # where it was tapped, in the image's own pixels (the canvas is shown smaller than the image)
    for (x, y), (fx, fy) in zip(drawn, corners, strict=True):
        assert abs(x - fx * width) <= 2
        assert abs(y - fy * height) <= 2

    # a corner dragged elsewhere, then the drag undone
    shown = canvas.bounding_box()  # where it is now, the page scrolled
    assert shown is not None
    page.mouse.move(shown["x"] + 0.9 * shown["width"], shown["y"] + 0.5 * shown["height"])
    page.mouse.down()
    page.mouse.move(shown["x"] + 0.8 * shown["width"], shown["y"] + 0.4 * shown["height"], steps=5)
    page.mouse.up()
    moved = polygon()
    assert abs(moved[1][0] - 0.8 * width) <= 2, moved
    assert abs(moved[1][1] - 0.4 * height) <= 2, moved
    assert moved[0] == drawn[0]
    assert moved[2:] == drawn[2:]
    page.get_by_role("button", name="撤销", exact=True).click()
    assert polygon() == drawn

    # a corner of the zone the staff use, never counted
    page.get_by_role("button", name="新建忽略区").click()
    for fx, fy in [(0.02, 0.4), (0.25, 0.4), (0.25, 0.99), (0.02, 0.99)]:
        tap(fx, fy)
    ignored = polygon()
    assert len(ignored) == 4
    shapes = json.loads(page.locator("#shapes").input_value())
    staff = [list(p) for p in STAFF_AREA]  # the area the device's config had already
    assert shapes == {"zones": [{"key": "queue", "polygon": drawn}], "ignore": [staff, ignored]}
    assert not errors, errors
    page.get_by_role("button", name="保存并下发区域").click()
    expect(page.get_by_role("status")).to_contain_text("区域已下发")

    eventually(lambda: world.agent.config_version == 1, timeout=20, what="the device applying version 1")
    (zone,) = world.agent.config.camera.zones  # type: ignore[union-attr]
    assert [list(p) for p in zone.polygon] == drawn
    assert [[list(p) for p in area] for area in world.agent.config.camera.ignore] == [staff, ignored]  # type: ignore[union-attr]
    eventually(lambda: world.runtime.pipeline.devices["dev-b1-cam"].config_version == 1, what="the device's answer")
    page.reload()
    expect(page.locator("td[data-field=config]")).to_contain_text("运行配置 1，已下发 1")

    page.get_by_role("button", name="拍摄快照").click()
    expect(page.locator("canvas#zones")).to_be_visible(timeout=15_000)
    # the people counted by tapping their heads: a tap on a dot takes it away, undo brings it back
    heads = page.locator("canvas#heads-canvas")
    heads.scroll_into_view_if_needed()
    spot = heads.bounding_box()
    assert spot is not None
    taps = [(0.3, 0.6), (0.5, 0.7), (0.7, 0.8)]
    for fx, fy in [*taps, taps[1]]:
        heads.click(position={"x": fx * spot["width"], "y": fy * spot["height"]})
    assert page.locator("#heads-count").input_value() == "2"
    page.get_by_role("button", name="撤销上一次点选").click()
    assert page.locator("#heads-count").input_value() == "3"
    clicked = json.loads(page.locator("#heads").input_value())
    for (x, y), (fx, fy) in zip(clicked, taps, strict=True):  # in image pixels, give or take the rounding
        assert abs(x - fx * width) <= 3
        assert abs(y - fy * height) <= 3
    page.get_by_role("button", name="标注用于校准").click()
    expect(page.locator("#reply")).to_contain_text("已有 1 个标注，需要 5 个才能校准", timeout=15_000)
    kept = world.agent.config.data_dir / "labels" / "queue" / "points.csv"
    rows = kept.read_text(encoding="utf-8").splitlines()
    assert rows[0] == "frame,x,y"
    assert [[int(v) for v in row.split(",")[1:]] for row in rows[1:]] == clicked  # the dataset format's points
    reply = world.runtime.pipeline.devices["dev-b1-cam"].last_reply
    assert reply is not None
    assert (reply.action, reply.ok, reply.code) == ("label", True, "labelled")

    def answer() -> str:
        last = world.runtime.pipeline.devices["dev-b1-cam"].last_reply
        return last.detail if last else ""

    for labels, waiting in enumerate((3, 6, 10, 15), start=2):  # more moments of the lobby, through the API
        world.lobby.waiting = waiting
        time.sleep(0.5)  # a frame of the new moment
        snap = httpx.post(f"{world.web.url}/api/v1/devices/dev-b1-cam/commands", json={"action": "snapshot"})
        httpx.post(
            f"{world.web.url}/api/v1/devices/dev-b1-cam/commands",
            json={"action": "label", "args": {"zone": "queue", "snapshot": snap.json()["command"], "count": waiting}},
        ).raise_for_status()
        eventually(lambda n=labels: answer().startswith(f"{n} labels"), what=f"the answer to label {labels}")
    assert "calibrated" in answer()

    def kept() -> dict[str, Any] | None:  # with the zone, for a camera that may one day replace this one
        with world.runtime.sessions() as session:
            return session.scalars(select(models.Zone).filter_by(device_id="dev-b1-cam", key="queue")).one().calibration

    calibration = eventually(kept, what="the calibration kept with the zone")
    assert (calibration["polygon"], calibration["frames"], calibration["ignore"]) == (drawn, 5, [ignored])

    # the image was shown, never written: not in any file of the server's
    image = httpx.get(f"{world.web.url}/api/v1/devices/dev-b1-cam/snapshot.jpg")
    assert image.headers["cache-control"] == "no-store"
    for path in (tmp_path / "server").rglob("*"):
        if path.is_file():
            assert image.content[100:400] not in path.read_bytes(), path

    page.get_by_role("button", name="重启代理").click()
    eventually(lambda: world.agent.restart_requested and not world.thread.is_alive(), what="the agent stopping")


def test_the_first_snapshot_of_a_camera_with_no_zones_shows_without_a_reload(browser: Browser, world: World) -> None:
    with world.runtime.sessions() as session:  # enrolled with no camera section: nothing drawn yet
        session.delete(session.get(models.DeviceConfig, "dev-b1-cam"))
        session.commit()
    page = sign_in(browser, world.web, "li")
    page.goto(f"{world.web.url}/lobby/fleet/dev-b1-cam")
    expect(page.get_by_text("先拍摄快照，再在画面上画出区域")).to_be_visible()
    page.get_by_role("button", name="拍摄快照").click()
    expect(page.locator("canvas#zones")).to_be_visible(timeout=15_000)
    expect(page.locator("#reply")).to_contain_text("已发送 640×360 的快照")
    assert page.locator("#shapes").input_value() == '{"zones":[{"key":"queue","polygon":[]}],"ignore":[]}'


def test_a_device_without_leds_says_so_in_the_readers_words() -> None:
    no_leds = create_autospec(Device, instance=True, spec_set=True)  # the one seam identify touches
    no_leds.blink_all.return_value = 0
    done = identify(no_leds, Command(id="identify-1", action="identify"))
    assert (done.ok, done.code) == (False, "no_led")
    at = datetime(2026, 12, 5, tzinfo=UTC)
    view = reply_view(LastReply("identify-1", done.ok, done.detail or "", at, done.code, done.params), "zh-CN", "")
    assert (view.ok, view.action_label, view.text) == (False, "识别", "此设备没有指示灯，无法闪灯识别。")
    newer = LastReply("tune-1", False, "not yet", at, "something_new", {"x": 1})  # a newer agent's answer
    assert (reply_view(newer, "en", "").action_label, reply_view(newer, "en", "").text) == ("tune", "not yet")


def test_how_a_zone_is_counted_reads_in_the_readers_words() -> None:
    base = FleetRow("dev", "b1", "camera", True, None, None, None, None, None, None, None, None, True, 0)
    row = replace(base, counting={"queue": "heads", "door": "density-v9"}, fitting=("queue",))
    assert counting_view(row, "en") == [
        "zone door: density-v9",  # a newer agent's method: by its name, never a refused page
        "zone queue: head counter learnt from clicked heads, a head counter is being fitted from the labels",
    ]
    assert counting_view(replace(base, counting={"queue": "detector"}), "zh-CN") == ["区域 queue：行人检测（未标定）"]
    assert counting_view(replace(base, counting={"queue": "area"}), "zh-CN") == [
        "区域 queue：前景面积估算（行人检测漏人时使用，未标定）"
    ]


def test_supervisors_do_not_get_the_technicians_actions(browser: Browser, world: World) -> None:
    page = sign_in(browser, world.web, "wang")
    assert page.get_by_role("link", name="设备", exact=True).count() == 0
    page.goto(f"{world.web.url}/lobby/fleet/dev-b1-cam")
    assert page.get_by_role("button", name="重启代理").count() == 0
    refused = page.request.post(
        f"{world.web.url}/lobby/fleet/dev-b1-cam/action", form={"csrf": "x", "action": "restart"}
    )
    assert refused.status == 403
    assert not world.agent.restart_requested
    first, *_ = world.runtime.fleet.rows()
    assert (first.device, first.attention) == ("dev-b2-cam", ["offline"])  # never seen: it comes first


def test_the_fleet_from_the_command_line(world: World) -> None:
    import os
    import subprocess
    import sys

    env = {**os.environ, "LANG": "zh_CN.UTF-8"}
    env.pop("LOBBYWATCH_API_TOKEN", None)
    done = subprocess.run(
        [sys.executable, "-m", "server.cli", "fleet", "--url", world.web.url],
        env=env,
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    lines = [line for line in done.stdout.splitlines() if "dev-b" in line]
    assert "dev-b2-cam" in lines[0]  # offline: first
    assert "离线" in lines[0]
    assert "dev-b1-cam" in lines[1]
    assert "在线" in lines[1]
    only = subprocess.run(
        [sys.executable, "-m", "server.cli", "fleet", "--url", world.web.url, "--attention"],
        env=env,
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert "dev-b1-cam" not in only.stdout
    assert "dev-b2-cam" in only.stdout
