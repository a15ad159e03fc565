"""The real agent against a real Mosquitto and the real server: counts, presses, sensors; an outage loses nothing."""

import json
import random
import sqlite3
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from gpiozero.pins.mock import MockFactory

from edge_agent.agent import Agent
from edge_agent.config import parse_config
from edge_agent.counting.zones import Zone
from edge_agent.sensors import SensorEnv
from lobby_sim.broker import Mosquitto
from lobby_sim.camera import SimulatedCamera, calibrate_simulated
from lobby_sim.lobby import Lobby, LobbyPlan
from lobby_sim.render import QUEUE_ZONE, STAFF_AREA, LobbyRenderer
from lobbywatch.clock import SystemClock
from server.runtime import Runtime
from server.storage import points as schema
from tests.helpers import eventually, start_runtime

BELL = 17
LED = 22


def agent_config(port: int, data_dir: Path) -> dict[str, object]:
    return {
        "device_id": "dev-b1-cam",
        "data_dir": str(data_dir),
        "broker": {"host": "127.0.0.1", "port": port, "tls": False, "reconnect_max_s": 1},
        "camera": {
            "source": "simulated",
            "fps": 5,
            "zones": [{"key": "queue", "polygon": [list(p) for p in QUEUE_ZONE]}],
            "ignore": [[list(p) for p in STAFF_AREA]],
        },
        "buttons": [
            {
                "key": "ramp-bell",
                "kind": "accessibility",
                "pin": BELL,
                "bounce_ms": 0,
                "repeat_guard_s": 0,
                "led_pin": LED,
            }
        ],
        "sensors": [{"type": "simulated", "key": "lobby-temp", "kind": "temperature", "mean": 22, "unit": "°C"}],
        "reporting": {"queue_keepalive_s": 1, "facility_interval_s": 1, "health_interval_s": 1, "smoothing_frames": 1},
        "gpio_factory": "mock",
    }


class Running:
    def __init__(
        self, agent: Agent, lobby: Lobby, lock: threading.Lock, pins: MockFactory, camera: SimulatedCamera
    ) -> None:
        self.agent, self.lobby, self.lock, self.pins, self.camera = agent, lobby, lock, pins, camera
        self.stop = threading.Event()
        self.thread = threading.Thread(target=agent.run, args=(self.stop,), name="agent-under-test")

    def press(self) -> None:
        pin = self.pins.pin(BELL)
        pin.drive_low()
        time.sleep(0.05)
        pin.drive_high()
        time.sleep(0.05)

    def set_waiting(self, n: int) -> None:
        with self.lock:
            self.lobby.waiting = n


@pytest.fixture
def server(tmp_path: Path, mosquitto: Mosquitto) -> Iterator[Runtime]:
    (tmp_path / "server").mkdir()
    runtime = start_runtime(tmp_path / "server", mosquitto.port)
    yield runtime
    runtime.stop()


@pytest.fixture
def running(tmp_path: Path, mosquitto: Mosquitto, server: Runtime) -> Iterator[Running]:
    config = parse_config(agent_config(mosquitto.port, tmp_path / "device"))
    lobby = Lobby(LobbyPlan(windows=0, base_per_min=0, peak_per_min=0), random.Random(0))
    lock, pins = threading.Lock(), MockFactory()
    calibrate_simulated(config.data_dir, LobbyRenderer(0), Zone("queue", list(QUEUE_ZONE)))
    camera = SimulatedCamera(lobby, LobbyRenderer(0), lock, staff=2)
    agent = Agent(config, clock=SystemClock(), frame_source=camera, pin_factory=pins, sensor_env=SensorEnv(seed=0))
    run = Running(agent, lobby, lock, pins, camera)
    run.thread.start()
    # the counter learns the empty lobby from its first frames, as at installation
    eventually(lambda: agent.stats.occupancy.get("queue") == 0, what="first count of the empty lobby")
    yield run
    run.stop.set()
    run.thread.join(15)


def points(server: Runtime, measurement: str) -> list[object]:
    return server.store.query(measurement, "b1", 0)


def test_agent_reports_counts_presses_sensors_and_health(running: Running, server: Runtime) -> None:
    running.set_waiting(4)
    eventually(
        lambda: any(p.fields.get("occupancy") == 4 for p in points(server, schema.OCCUPANCY)), what="occupancy 4 stored"
    )
    running.press()
    (call,) = eventually(lambda: points(server, schema.CALL), what="call stored")
    assert dict(call.tags)["kind"] == "accessibility"
    eventually(lambda: points(server, schema.FACILITY), what="facility stored")
    (health, *_) = eventually(lambda: points(server, schema.DEVICE_HEALTH), what="health stored")
    assert health.fields["mem_rss_mb"] > 0
    assert abs(health.fields["clock_skew_ms"]) < 5000
    device = server.pipeline.devices["dev-b1-cam"]
    assert device.online
    assert device.sequence.missing == 0


def outage(running: Running, server: Runtime, mosquitto: Mosquitto) -> tuple[int, int]:
    """Stop the broker while the lobby goes on, start it again; return the device's last seq and its call count."""
    eventually(running.agent.link.connected.is_set, what="agent connected")
    running.press()
    eventually(lambda: len(points(server, schema.CALL)) == 1, what="first call stored")
    mosquitto.stop()
    eventually(lambda: not running.agent.link.connected.is_set(), what="agent noticed the outage")
    for n in range(5):  # the lobby goes on while the broker is down
        running.set_waiting(n + 1)
        time.sleep(0.4)
        running.press()
    time.sleep(1.0)
    assert running.agent.outbox.depth() > 10
    mosquitto.start()  # same port
    eventually(lambda: running.agent.outbox.depth() == 0, timeout=30, what="outbox drained")
    last_seq = running.agent.outbox._db.execute("SELECT max(seq) FROM outbox").fetchone()[0]
    tracker = server.pipeline.devices["dev-b1-cam"].sequence
    eventually(lambda: tracker.highest >= last_seq, timeout=30, what="server caught up")
    return last_seq, 6


@pytest.mark.parametrize("mosquitto", [True], indirect=True, ids=["persistent-broker"])
def test_broker_outage_loses_nothing_and_stores_no_duplicates(
    running: Running, server: Runtime, mosquitto: Mosquitto
) -> None:
    _, presses = outage(running, server, mosquitto)
    tracker = server.pipeline.devices["dev-b1-cam"].sequence
    eventually(lambda: len(points(server, schema.CALL)) == presses, what="every call stored")
    assert tracker.missing == 0
    time.sleep(0.5)
    assert len(points(server, schema.CALL)) == presses  # each once
    assert {p.fields["occupancy"] for p in points(server, schema.OCCUPANCY)} >= {1, 2, 3, 4, 5}


@pytest.mark.parametrize("mosquitto", [False], indirect=True, ids=["broker-without-persistence"])
def test_loss_in_a_broker_without_persistence_is_seen_not_silent(
    running: Running, server: Runtime, mosquitto: Mosquitto
) -> None:
    last_seq, _ = outage(running, server, mosquitto)
    tracker = server.pipeline.devices["dev-b1-cam"].sequence
    # the broker acknowledged messages while the server's session was gone; the sequence shows exactly which
    assert tracker.highest >= last_seq
    assert tracker.missing > 0
    received_calls = len(points(server, schema.CALL))
    assert received_calls < 6


@pytest.mark.parametrize("mosquitto", [False], indirect=True, ids=["broker-without-persistence"])
def test_broker_and_server_restart_during_a_burst_and_every_message_arrives_once(
    tmp_path: Path, running: Running, server: Runtime, mosquitto: Mosquitto
) -> None:
    """The broker forgets the server's session; the server sees the gap and asks the device for it."""
    eventually(running.agent.link.connected.is_set, what="agent connected")
    presses = 0
    for _ in range(3):
        running.press()
        presses += 1
    eventually(lambda: len(points(server, schema.CALL)) == presses, what="first calls stored")
    server.stop()
    mosquitto.stop()
    for n in range(6):  # the burst goes on while both are down
        running.set_waiting(n + 2)
        running.press()
        presses += 1
        time.sleep(0.2)
    mosquitto.start()
    # the agent is back first and drains into a broker that has no subscription for the server yet: lost there
    eventually(lambda: running.agent.outbox.depth() == 0, timeout=30, what="outbox drained into the broker")
    for _ in range(2):
        running.press()
        presses += 1
    restarted = start_runtime(tmp_path / "server", mosquitto.port, resend_after_s=1.0, resend_retry_s=5.0)
    try:
        tracker = eventually(lambda: restarted.pipeline.devices.get("dev-b1-cam"), what="device known")
        eventually(lambda: restarted.pipeline.repair.requests >= 1, timeout=30, what="a resend request")
        last_seq = running.agent.outbox._db.execute("SELECT max(seq) FROM outbox").fetchone()[0]
        eventually(
            lambda: tracker.sequence.highest >= last_seq and tracker.sequence.missing == 0,
            timeout=30,
            what="every sequence number received",
        )
        assert tracker.sequence.given_up == 0
        eventually(lambda: len(points(restarted, schema.CALL)) == presses, what="every call stored")
        time.sleep(1.0)
        assert len(points(restarted, schema.CALL)) == presses  # and each once
        assert restarted.pipeline.replies >= 1
    finally:
        restarted.stop()


def push_config(port: int, version: int, config: dict[str, object]) -> None:
    import paho.mqtt.client as mqtt
    from paho.mqtt.enums import CallbackAPIVersion

    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"pusher-{version}", protocol=mqtt.MQTTv5)
    client.connect("127.0.0.1", port)
    client.loop_start()
    body = json.dumps({"v": 1, "version": version, "config": config}).encode()
    client.publish("lobby/v1/dev-b1-cam/config", body, qos=1, retain=True).wait_for_publish(5)
    client.disconnect()
    client.loop_stop()


def test_pushed_config_is_applied_without_restart_and_bad_ones_are_refused(
    tmp_path: Path, running: Running, server: Runtime, mosquitto: Mosquitto, caplog: pytest.LogCaptureFixture
) -> None:
    eventually(running.agent.link.connected.is_set, what="agent connected")
    device = server.pipeline.devices
    # a new zone layout: a second zone over the left half of the queue area
    zones = [
        {"key": "queue", "polygon": [list(p) for p in QUEUE_ZONE]},
        {"key": "left", "polygon": [[0, 150], [320, 150], [320, 360], [0, 360]]},
    ]
    camera = {"source": "simulated", "fps": 5, "zones": zones, "ignore": [[list(p) for p in STAFF_AREA]]}
    push_config(
        mosquitto.port,
        2,
        {
            "camera": camera,
            "reporting": {
                "queue_keepalive_s": 1,
                "facility_interval_s": 1,
                "health_interval_s": 1,
                "smoothing_frames": 1,
            },
        },
    )
    eventually(lambda: running.agent.config_version == 2, what="config 2 applied")
    eventually(lambda: device["dev-b1-cam"].config_version == 2, what="server knows config 2")
    assert running.agent.link.connected.is_set()  # the connection was never dropped
    running.set_waiting(3)
    eventually(lambda: running.agent.stats.occupancy.get("queue") == 3, what="counting in the old zone")
    assert "left" in running.agent.stats.occupancy

    # a broken zone: refused with the field named, the running config stays
    bad = {**camera, "zones": [{"key": "queue", "polygon": [[0, 0], [1, 1]]}]}
    push_config(mosquitto.port, 3, {"camera": bad})
    # a push may not move the device to another broker
    push_config(mosquitto.port, 4, {"broker": {"host": "evil.example"}})
    eventually(lambda: server.pipeline.replies >= 3, what="three replies")
    assert running.agent.config_version == 2
    assert running.agent.config.broker.host == "127.0.0.1"
    assert device["dev-b1-cam"].config_version == 2

    refusals = [r.getMessage() for r in caplog.records if "could not carry out config" in r.getMessage()]
    assert any("camera.zones.0.polygon" in m for m in refusals), refusals
    assert any("broker cannot be changed remotely" in m for m in refusals), refusals

    # the applied config survives a restart of the agent
    assert json.loads((tmp_path / "device" / "remote-config.json").read_text())["version"] == 2
    running.stop.set()
    running.thread.join(15)
    camera_again = SimulatedCamera(running.lobby, LobbyRenderer(0), running.lock)
    again = Agent(
        parse_config(agent_config(mosquitto.port, tmp_path / "device")),
        clock=SystemClock(),
        frame_source=camera_again,
        pin_factory=MockFactory(),
    )
    try:
        assert again.config_version == 2
        assert [z.key for z in again.config.camera.zones] == ["queue", "left"]  # type: ignore[union-attr]
    finally:
        again.close()


def test_a_covered_camera_is_a_fault_and_the_count_unknown_not_zero(running: Running, server: Runtime) -> None:
    running.set_waiting(5)
    eventually(
        lambda: any(p.fields.get("occupancy") == 5 for p in points(server, schema.OCCUPANCY)), what="occupancy 5 stored"
    )
    running.camera.covered = True
    unknown = eventually(
        lambda: [p for p in points(server, schema.OCCUPANCY) if p.fields.get("known") is False],
        what="occupancy stored as unknown",
    )
    assert "occupancy" not in unknown[0].fields  # no number at all, certainly not 0
    faults = eventually(
        lambda: [
            p
            for p in points(server, schema.FACILITY)
            if dict(p.tags)["kind"] == "camera" and p.fields.get("ok") is False
        ],
        what="camera fault stored",
    )
    assert faults
    zone = server.live.zones("b1")["queue"]
    assert zone.occupancy is None
    running.camera.covered = False
    eventually(lambda: server.live.zones("b1")["queue"].occupancy == 5, what="counting again")


def test_agent_tells_systemd_it_is_ready_and_stops_the_watchdog_when_the_camera_hangs(
    tmp_path: Path, mosquitto: Mosquitto, monkeypatch: pytest.MonkeyPatch
) -> None:
    import socket

    import edge_agent.camera_loop

    monkeypatch.setattr(edge_agent.camera_loop, "CAMERA_STALL_S", 1.0)
    from edge_agent.systemd import Notifier

    path = str(tmp_path / "notify.sock")
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    listener.bind(path)
    listener.settimeout(5)
    config = parse_config(agent_config(mosquitto.port, tmp_path / "device"))
    hang, release = threading.Event(), threading.Event()

    class HangingCamera(SimulatedCamera):
        def read(self) -> np.ndarray | None:  # type: ignore[override]
            if hang.is_set():
                release.wait(30)  # a capture that never returns
            return super().read()

    lobby = Lobby(LobbyPlan(windows=0, base_per_min=0, peak_per_min=0), random.Random(0))
    camera = HangingCamera(lobby, LobbyRenderer(0), threading.Lock())
    agent = Agent(config, clock=SystemClock(), frame_source=camera, pin_factory=MockFactory(), notifier=Notifier(path))
    stop = threading.Event()
    thread = threading.Thread(target=agent.run, args=(stop,), name="agent-under-systemd")
    thread.start()
    try:
        assert listener.recv(64) == b"READY=1"
        assert listener.recv(64) == b"WATCHDOG=1"
        for _ in range(15):  # 3 s, three times the stall limit: a turning camera loop stays alive
            assert agent.alive(time.monotonic())
            time.sleep(0.2)
        hang.set()
        eventually(lambda: not agent.alive(time.monotonic()), timeout=5, what="camera loop seen as hung")
    finally:
        stop.set()
        release.set()  # let the hanging read return
        thread.join(40)
        listener.close()


def test_an_acknowledged_call_lights_help_is_coming_at_the_button(running: Running, server: Runtime) -> None:
    from fastapi.testclient import TestClient

    from server.app import create_app

    eventually(running.agent.link.connected.is_set, what="agent connected")
    running.press()  # the ramp bell; nobody comes within the 2 s of this site
    alert = eventually(
        lambda: [a for a in server.alerts.open_alerts() if a.rule == "call_unanswered"], what="call alert"
    )[0]
    assert alert.device_id == "dev-b1-cam"
    led = running.pins.pin(LED)
    assert not led.state
    with TestClient(create_app(runtime=server)) as client:
        body = client.post(f"/api/v1/alerts/{alert.id}/acknowledge", json={"by": "王芳", "channel": "web"}).json()
        assert (body["state"], body["owner"]) == ("acknowledged", "王芳")
        assert client.post(f"/api/v1/alerts/{alert.id}/pass", json={"by": "李强", "to": "x"}).status_code == 409
    seen: set[bool] = set()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and seen != {True, False}:
        seen.add(bool(led.state))
        time.sleep(0.05)
    assert seen == {True, False}  # blinking: help is coming
    running.pins.pin(BELL).drive_low()  # staff arrive and hold the bell to answer it
    time.sleep(3.2)
    running.pins.pin(BELL).drive_high()
    eventually(
        lambda: not [a for a in server.alerts.open_alerts() if a.rule == "call_unanswered"],
        what="call resolved by the answer at the button",
    )
    time.sleep(0.2)
    assert not led.state


def test_a_replacement_camera_counts_by_the_calibration_it_was_handed_once_it_knows_the_lobby(
    tmp_path: Path, mosquitto: Mosquitto
) -> None:
    """The config of a replacement carries its predecessor's calibration (numbers); the camera has no background:
    it counts by the detector while it learns the lobby, then by that calibration."""
    from dataclasses import asdict

    from edge_agent.counting.calibration import CalibrationStore

    calibrate_simulated(tmp_path / "old-camera", LobbyRenderer(0), Zone("queue", list(QUEUE_ZONE)))
    carried = CalibrationStore(tmp_path / "old-camera").load("queue")
    assert carried is not None
    spec = agent_config(mosquitto.port, tmp_path / "device")
    spec["camera"]["zones"][0]["calibration"] = asdict(carried)  # type: ignore[index]
    spec["camera"]["learn_background_s"] = 3  # type: ignore[index]
    config = parse_config(spec)
    lobby = Lobby(LobbyPlan(windows=0, base_per_min=0, peak_per_min=0), random.Random(0))
    lock = threading.Lock()
    agent = Agent(
        config,
        clock=SystemClock(),
        frame_source=SimulatedCamera(lobby, LobbyRenderer(0), lock, staff=2),
        pin_factory=MockFactory(),
        sensor_env=SensorEnv(seed=0),
    )
    run = Running(agent, lobby, lock, MockFactory(), SimulatedCamera(lobby, LobbyRenderer(0), lock))
    run.thread.start()
    try:
        eventually(
            lambda: agent.counting and agent.counting.methods() == {"queue": "detector"},
            what="counting by the detector while the lobby is learnt",
        )
        eventually(
            lambda: agent.counting and agent.counting.methods() == {"queue": "regression"},
            what="counting by the carried calibration",
        )
        assert (config.data_dir / "calibration" / "background.png").exists()
        assert not (config.data_dir / "calibration" / "queue.json").exists()  # the old camera's stays in config
        run.set_waiting(6)
        eventually(lambda: agent.stats.occupancy.get("queue") == 6, what="six people counted")
    finally:
        run.stop.set()
        run.thread.join(15)


def test_the_uplink_survives_storage_errors_and_loses_nothing(running: Running, server: Runtime) -> None:
    """Marking messages delivered failed (a card error): the uplink thread used to die there, for good."""
    from unittest import mock

    box = running.agent.outbox
    real = box.mark_acked
    failures = {"left": 3}

    def flaky(seqs: list[int]) -> None:
        if seqs and failures["left"] > 0:
            failures["left"] -= 1
            raise sqlite3.OperationalError("disk I/O error")
        real(seqs)

    eventually(running.agent.link.connected.is_set, what="agent connected")
    with mock.patch.object(box, "mark_acked", autospec=True, side_effect=flaky):
        for _ in range(3):
            running.press()
        eventually(lambda: failures["left"] == 0, what="three failed writes")
        for _ in range(2):
            running.press()
        eventually(lambda: len(points(server, schema.CALL)) == 5, what="every call stored")
        eventually(lambda: box.depth() == 0, what="every message marked delivered in the end")
    assert running.agent.link.storage_errors == 3
    assert running.agent.alive(time.monotonic())  # the watchdog is still fed
    time.sleep(1.0)
    assert len(points(server, schema.CALL)) == 5  # each once


def test_the_watchdog_starves_when_the_uplink_dies(running: Running) -> None:
    eventually(running.agent.link.connected.is_set, what="agent connected")
    assert running.agent.alive(time.monotonic())
    running.agent.link.stop()  # the uplink's thread gone, as when an error ended it
    assert not running.agent.alive(time.monotonic())  # systemd's watchdog then restarts the agent
