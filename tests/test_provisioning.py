"""Zero-touch provisioning against a real Mosquitto with the dynamic security plugin: a token becomes a device
with its own identity, that identity cannot speak for another, a revoked device is cut off, and every refusal
says why."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import paho.mqtt.client as mqtt
import pytest
import yaml
from paho.mqtt.enums import CallbackAPIVersion
from sqlalchemy import select

from edge_agent.config import load_config
from lobby_sim.broker import Mosquitto
from server.registry import models
from tests.helpers import Device, Web, eventually, site, start_runtime

ADMIN = ("lobbywatch-admin", "admin-password-for-tests-0123")
SERVER = ("lobbywatch-server", "server-password-for-tests-0123")


class Secured:
    def __init__(self, tmp_path: Path) -> None:
        self.tmp_path = tmp_path
        self.broker = Mosquitto(tmp_path / "broker", dynsec_admin=ADMIN)
        self.broker.start()  # only its administrator exists: the server makes its own identity when it starts
        self.runtime = start_runtime(
            tmp_path,
            self.broker.port,
            site_spec=site(),
            mqtt_username=SERVER[0],
            mqtt_password=SERVER[1],
            mqtt_admin_username=ADMIN[0],
            mqtt_admin_password=ADMIN[1],
            broker_public_host="127.0.0.1",
            broker_public_port=self.broker.port,
            broker_public_tls=False,
        )
        self.web = Web(self.runtime)

    def enrollment(self, **body: Any) -> dict[str, Any]:
        response = httpx.post(f"{self.web.url}/api/v1/enrollments", json={"branch": "b1", "by": "技术员小李", **body})
        assert response.status_code == 200, response.text
        data: dict[str, Any] = response.json()
        return data

    def enroll(self, text: str, serial: str, folder: str = "etc", *extra: str) -> subprocess.CompletedProcess[str]:
        env = {**os.environ, "LANG": "zh_CN.UTF-8", "LOBBYWATCH_SERVER_URL": self.web.url}
        config = self.tmp_path / folder / "device.yaml"
        done = subprocess.run(
            [
                sys.executable,
                "-m",
                "edge_agent.cli",
                "enroll",
                text,
                "--serial",
                serial,
                "--config",
                str(config),
                *extra,
            ],
            env=env,
            capture_output=True,
            text=True,
            check=False,
            timeout=60,
        )
        return done

    def stop(self) -> None:
        self.web.stop()
        self.runtime.stop()
        self.broker.stop()


@pytest.fixture
def secured(tmp_path: Path) -> Iterator[Secured]:
    world = Secured(tmp_path)
    yield world
    world.stop()


class DeviceClient:
    """A device connecting with the identity it was given."""

    def __init__(self, port: int, username: str, password: str) -> None:
        self.acks: list[str] = []
        self.granted: list[str] = []
        self.events: list[str] = []
        self.connected = threading.Event()
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=username, protocol=mqtt.MQTTv5)
        self.client.username_pw_set(username, password)
        self.client.on_connect = lambda c, u, f, rc, p: (self.events.append(f"connect {rc}"), self.connected.set())
        self.client.on_disconnect = lambda c, u, f, rc, p: self.events.append(f"disconnect {rc}")
        self.client.on_publish = lambda c, u, mid, rc, p: self.acks.append(str(rc))
        self.client.on_subscribe = lambda c, u, mid, codes, p: self.granted.extend(str(code) for code in codes)
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()
        assert self.connected.wait(10)

    def publish(self, topic: str, payload: dict[str, Any]) -> str:
        before = len(self.acks)
        self.client.publish(topic, json.dumps(payload), qos=1)
        eventually(lambda: len(self.acks) > before, what="PUBACK")
        return self.acks[-1]

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def queue_report(seq: int, zone: str = "queue") -> dict[str, Any]:
    return {
        "v": 1,
        "stream": "00000000cafebabe",
        "seq": seq,
        "ts": datetime.now(UTC).isoformat(),
        "uptime_s": 5.0,
        "zones": [{"zone": zone, "occupancy": 4}],
    }


def identity(config_path: Path) -> tuple[str, str]:
    config = load_config(config_path)
    assert config.broker.password_file is not None
    return config.device_id, config.broker.password_file.read_text()


def test_a_blank_device_enrolls_and_reports(secured: Secured) -> None:
    made = secured.enrollment(profile="lobby-camera")
    assert made["device_id"] == "b1-cam1"
    assert made["uri"].startswith("lobbywatch-enroll:?server=")
    done = secured.enroll(made["uri"], "10000000abcd1234")  # the QR code's text, as the technician scans it
    assert done.returncode == 0, done.stderr
    assert "已登记为 b1-cam1" in done.stdout
    config_path = secured.tmp_path / "etc" / "device.yaml"
    device_id, password = identity(config_path)
    assert password not in done.stdout + done.stderr  # never shown
    assert stat.S_IMODE((config_path.parent / "mqtt.password").stat().st_mode) == 0o600
    # b1's `queue` is another camera's: the new one counts `queue2` until its zones are drawn
    assert yaml.safe_load(config_path.read_text())["camera"]["zones"][0]["key"] == "queue2"

    device = DeviceClient(secured.broker.port, device_id, password)
    try:
        assert device.publish(f"lobby/v1/{device_id}/queue", queue_report(1, "queue2")) == "Success"
        stored = eventually(lambda: secured.runtime.store.query("occupancy", "b1", 0), what="the count stored")
        assert stored[0].tag("device") == device_id
    finally:
        device.close()
    with secured.runtime.sessions() as session:
        actions = [(e.action, e.who) for e in session.query(models.AuditEntry).order_by(models.AuditEntry.id)]
    assert actions == [("enrollment.create", "技术员小李"), ("enrollment.claim", "device b1-cam1")]


def test_a_device_cannot_speak_for_another_or_read_its_config(secured: Secured) -> None:
    for serial, folder in (("serial-a-0001", "a"), ("serial-b-0002", "b")):
        assert secured.enroll(secured.enrollment(profile="call-buttons")["token"], serial, folder).returncode == 0
    a_id, a_password = identity(secured.tmp_path / "a" / "device.yaml")
    b_id, _ = identity(secured.tmp_path / "b" / "device.yaml")
    device = DeviceClient(secured.broker.port, a_id, a_password)
    try:
        assert device.publish(f"lobby/v1/{b_id}/queue", queue_report(1)) == "Not authorized"
        device.client.subscribe(f"lobby/v1/{b_id}/config", qos=1)
        device.client.subscribe(f"lobby/v1/{a_id}/config", qos=1)
        eventually(lambda: len(device.granted) == 2, what="SUBACKs")
        assert device.granted == ["Not authorized", "Granted QoS 1"]
    finally:
        device.close()
    assert secured.runtime.store.query("occupancy", "b1", 0) == []  # nothing arrived in b's name


def test_refusals_say_why(secured: Secured) -> None:
    token = secured.enrollment()["token"]
    assert secured.enroll(token, "serial-0001").returncode == 0
    again = secured.enroll(token, "serial-0002", "other")
    assert again.returncode == 2
    assert "令牌已被使用，请申请新令牌" in again.stderr

    second = secured.enrollment()
    same_serial = secured.enroll(second["token"], "serial-0001", "third")
    assert "本设备已登记" in same_serial.stderr
    assert "as b1-cam1" in same_serial.stderr  # names the device it is enrolled as

    with secured.runtime.sessions() as session:
        pending = session.query(models.Enrollment).filter_by(device_id=second["device_id"]).one()
        pending.expires_at = datetime.now(UTC) - timedelta(minutes=1)
        session.commit()
    expired = secured.enroll(second["token"], "serial-0003", "fourth")
    assert "令牌已过期" in expired.stderr

    unknown = secured.enroll("LW1-AAAA-BBBB-CCCC-DDDD", "serial-0004", "fifth")
    assert "令牌无效" in unknown.stderr
    nowhere = httpx.post(f"{secured.web.url}/api/v1/enrollments", json={"branch": "nowhere", "by": "x"})
    assert (nowhere.status_code, nowhere.json()["code"]) == (404, "branch_unknown")


def test_system_names_cannot_be_enrolled_or_revoked(secured: Secured) -> None:
    settings = secured.runtime.settings
    for name in ("lobbywatch-server", "lobbywatch-admin", "admin", settings.mqtt_client_id):
        refused = httpx.post(
            f"{secured.web.url}/api/v1/enrollments", json={"branch": "b1", "by": "x", "device_id": name}
        )
        assert (refused.status_code, refused.json()["code"]) == (400, "device_id_invalid"), name
        assert "reserved for the system" in refused.json()["detail"]
    gone = httpx.post(f"{secured.web.url}/api/v1/devices/lobbywatch-server/revoke", json={"by": "x", "reason": "y"})
    assert (gone.status_code, gone.json()["code"]) == (404, "device_unknown")
    # the server's identity is intact: a device enrolled now still reaches it
    made = secured.enrollment(profile="lobby-camera")
    assert secured.enroll(made["uri"], "10000000feed0001").returncode == 0
    device_id, password = identity(secured.tmp_path / "etc" / "device.yaml")
    device = DeviceClient(secured.broker.port, device_id, password)
    try:
        assert device.publish(f"lobby/v1/{device_id}/queue", queue_report(1, "queue2")) == "Success"
        eventually(lambda: secured.runtime.store.query("occupancy", "b1", 0), what="stored by the server")
    finally:
        device.close()


def test_a_broker_that_cannot_be_reached_does_not_use_up_the_token(secured: Secured) -> None:
    token = secured.enrollment()["token"]
    secured.broker.stop()
    down = secured.enroll(token, "serial-0009")
    assert down.returncode == 2
    assert "服务器无法连接 MQTT 代理，令牌仍然有效" in down.stderr
    secured.broker.start()  # the same port, the same dynamic-security state
    assert secured.enroll(token, "serial-0009").returncode == 0


def test_a_revoked_device_is_cut_off_at_once(secured: Secured) -> None:
    assert secured.enroll(secured.enrollment()["token"], "serial-0100").returncode == 0
    device_id, password = identity(secured.tmp_path / "etc" / "device.yaml")
    device = DeviceClient(secured.broker.port, device_id, password)
    try:
        revoked = httpx.post(
            f"{secured.web.url}/api/v1/devices/{device_id}/revoke",
            json={"by": "技术员小李", "reason": "stolen from the branch"},
        )
        assert revoked.status_code == 200, revoked.text
        eventually(lambda: any("Administrative action" in e for e in device.events), what="the broker's kick")
        eventually(lambda: any("Not authorized" in e for e in device.events), what="reconnect refused")
    finally:
        device.close()
    assert device_id not in secured.runtime.directory.devices
    with secured.runtime.sessions() as session:
        assert session.get(models.Device, device_id).revoked_at is not None  # type: ignore[union-attr]


def test_a_replacement_takes_over_zones_and_config_and_the_old_one_is_revoked(secured: Secured) -> None:
    assert secured.enroll(secured.enrollment()["token"], "serial-old-1").returncode == 0
    old_id, old_password = identity(secured.tmp_path / "etc" / "device.yaml")
    with secured.runtime.sessions() as session:
        session.add(
            models.Zone(
                device_id=old_id,
                branch_id="b1",
                key="hall",
                name="大厅",
                queue_threshold=6,
                queue_for_s=60,
                queue_clear_below=2,
                queue_clear_for_s=60,
            )
        )
        drawn = [[10, 20], [300, 20], [300, 400], [10, 400]]
        # enrollment gave it version 0; a technician has since pushed version 4
        session.merge(
            models.DeviceConfig(
                device_id=old_id,
                version=4,
                updated_at=datetime.now(UTC),
                updated_by="x",
                sections={"camera": {"source": "0", "zones": [{"key": "hall", "polygon": drawn}]}},
            )
        )
        session.commit()
    secured.runtime.directory.reload()
    # a technician's labels completed a fit on the old camera: it reports the calibration, numbers only
    calibration = {
        "zone": "hall",
        "polygon": drawn,
        "frame_shape": [480, 640],
        "method": "bands-ridge-v1",
        "model": {"mean": [0.1] * 48, "scale": [1.0] * 48, "weights": [0.5] * 48, "intercept": 0.2, "residual_sd": 0.8},
        "frames": 12,
        "created": "2026-11-22T09:00:00+00:00",
    }
    old = Device(secured.broker.port, old_id, old_password)
    try:
        old.send("reply", old.envelope(command="label-1", ok=True, detail="12 labels", calibration=calibration))
    finally:
        old.close()

    def kept() -> object:
        with secured.runtime.sessions() as session:
            zone = session.scalars(select(models.Zone).filter_by(device_id=old_id, key="hall")).one()
            return zone.calibration

    assert eventually(kept, what="the calibration kept with the zone") == calibration
    made = secured.enrollment(replaces=old_id)
    done = secured.enroll(made["token"], "serial-new-2", "new")
    assert done.returncode == 0, done.stderr
    config = yaml.safe_load((secured.tmp_path / "new" / "device.yaml").read_text())
    assert config["camera"]["zones"] == [{"key": "hall", "polygon": drawn, "calibration": calibration}]
    assert load_config(secured.tmp_path / "new" / "device.yaml").camera.zones[0].calibration.frames == 12  # type: ignore[union-attr]
    assert secured.runtime.directory.devices[made["device_id"]].zones["hall"].name == "大厅"
    assert old_id not in secured.runtime.directory.devices
    refused = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="old", protocol=mqtt.MQTTv5)
    refused.username_pw_set(old_id, old_password)
    result: list[str] = []
    refused.on_connect = lambda c, u, f, rc, p: result.append(str(rc))
    refused.connect("127.0.0.1", secured.broker.port)
    refused.loop_start()
    try:
        eventually(lambda: result, what="the old identity's answer")
    finally:
        refused.loop_stop()
    assert result == ["Not authorized"]
    with secured.runtime.sessions() as session:
        assert session.get(models.Device, old_id).replaced_by == made["device_id"]  # type: ignore[union-attr]


def test_guessing_tokens_is_slowed_down(secured: Secured) -> None:
    codes = [
        httpx.post(
            f"{secured.web.url}/api/v1/enroll", json={"token": f"LW1-GUESS-{i:04d}", "serial": "s-0001"}
        ).status_code
        for i in range(12)
    ]
    assert codes[:10] == [404] * 10
    assert codes[10:] == [429, 429]


def test_enrollments_in_bulk_from_a_csv_with_qr_codes(tmp_path: Path) -> None:
    import csv

    registry = tmp_path / "registry.sqlite3"
    site_file = tmp_path / "site.yaml"
    site_file.write_text(yaml.safe_dump(site(), allow_unicode=True), encoding="utf-8")
    env = {
        **os.environ,
        "LOBBYWATCH_MODE": "dev",
        "LOBBYWATCH_DATABASE_URL": f"sqlite:///{registry}",
        "LANG": "zh_CN.UTF-8",
        "LOBBYWATCH_PUBLIC_URL": "https://lobby.example.cn",
    }
    from server.registry.database import make_engine, make_sessions
    from server.registry.site import import_site, load_site

    engine = make_engine(f"sqlite:///{registry}")
    with make_sessions(engine)() as session:
        import_site(session, load_site(site_file))
    engine.dispose()
    (tmp_path / "devices.csv").write_text(
        "branch,profile,device_id\nb1,lobby-camera,\nb2,call-buttons,b2-bell\nnowhere,lobby-camera,\n", encoding="utf-8"
    )
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "server.cli",
            "enroll",
            "bulk",
            str(tmp_path / "devices.csv"),
            "--by",
            "管理员",
            "--out",
            str(tmp_path / "qr"),
        ],
        env=env,
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert done.returncode == 1  # one line refused
    assert "第 3 行未创建：没有支局 nowhere" in done.stdout
    assert "已创建 2 个登记令牌，1 个被拒绝" in done.stdout
    rows = list(csv.DictReader((tmp_path / "qr" / "enrollments.csv").open(encoding="utf-8")))
    assert [r["device_id"] for r in rows] == ["b1-cam1", "b2-bell"]
    assert (tmp_path / "qr" / "enrollments.csv").stat().st_mode & 0o077 == 0  # tokens: the owner's eyes only
    assert (tmp_path / "qr").stat().st_mode & 0o077 == 0
    for row in rows:
        assert Path(row["qr_png"]).stat().st_mode & 0o077 == 0
        assert Path(row["qr_png"]).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert row["uri"] == (
            f"lobbywatch-enroll:?server=https://lobby.example.cn&token={row['token']}"
            f"&device={row['device_id']}&branch={row['branch']}&profile={row['profile']}"
        )
    single = subprocess.run(
        [
            sys.executable,
            "-m",
            "server.cli",
            "enroll",
            "create",
            "--branch",
            "b1",
            "--by",
            "x",
            "--out",
            str(tmp_path / "qr"),
        ],
        env=env,
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert single.returncode == 0, single.stderr
    assert "b1-cam2 的登记令牌" in single.stdout
    assert "█" in single.stdout or "▀" in single.stdout  # the QR code, in the terminal


def test_a_kept_calibration_goes_only_to_the_zone_it_was_fitted_on() -> None:
    from server.provisioning.profiles import with_calibrations

    square = [[0, 0], [10, 0], [10, 10], [0, 10]]
    kept = {"hall": {"zone": "hall", "polygon": square, "frames": 7}}
    config = {
        "device_id": "d",
        "camera": {"source": "0", "zones": [{"key": "hall", "polygon": square}, {"key": "door", "polygon": square}]},
    }
    assert with_calibrations(config, kept)["camera"]["zones"] == [
        {"key": "hall", "polygon": square, "calibration": kept["hall"]},
        {"key": "door", "polygon": square},
    ]
    redrawn = {"camera": {"source": "0", "zones": [{"key": "hall", "polygon": square[:3]}]}}
    assert with_calibrations(redrawn, kept) == redrawn  # calibrated again on the camera, not carried
    assert with_calibrations({"device_id": "bell"}, kept) == {"device_id": "bell"}
    assert config["camera"]["zones"][0] == {"key": "hall", "polygon": square}  # type: ignore[index]


def test_a_forwarder_has_an_identity_that_only_takes_its_share(secured: Secured) -> None:
    """`lobbywatch forward` makes its own broker identity: bound to its client id, a member of the forwarders'
    shared subscription, and nothing more: no subscription of its own to every device, no command to a device."""
    admin = secured.runtime.broker_admin
    assert admin is not None
    name, password = "lobbywatch-forward-f1", "forwarder-password-for-tests"
    assert admin.ensure_forwarder(name, password, name) is True
    assert admin.ensure_forwarder(name, password, name) is False  # there already: left as it is
    admin.create_device("dev-b1-cam", "device-password-for-tests")

    received: list[str] = []
    granted: list[list[int]] = []
    forwarder = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=name, protocol=mqtt.MQTTv5)
    forwarder.username_pw_set(name, password)
    forwarder.on_message = lambda _c, _u, message: received.append(message.topic)
    forwarder.on_subscribe = lambda _c, _u, _mid, codes, _p: granted.append([c.value for c in codes])
    forwarder.connect("127.0.0.1", secured.broker.port)
    forwarder.loop_start()
    device = Device(secured.broker.port, "dev-b1-cam", "device-password-for-tests")
    try:
        forwarder.subscribe("$share/lobbywatch-forward/lobby/v1/#", qos=1)
        forwarder.subscribe("lobby/v1/#", qos=1)  # everything, outside the forwarders' share
        eventually(lambda: len(granted) == 2, what="both subscriptions answered")
        assert granted[0] == [1]  # granted, QoS 1
        assert granted[1][0] >= 0x80  # refused
        device.queue(3)
        eventually(lambda: received == ["lobby/v1/dev-b1-cam/queue"], what="the device's report through the share")
    finally:
        device.close()
        forwarder.disconnect()
        forwarder.loop_stop()
    # a command from the forwarder never reached the device's topic: the broker dropped it as not allowed
    listener = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="dev-b1-cam", protocol=mqtt.MQTTv5)
    listener.username_pw_set("dev-b1-cam", "device-password-for-tests")
    commands: list[bytes] = []
    listener.on_message = lambda _c, _u, message: commands.append(message.payload)
    listener.connect("127.0.0.1", secured.broker.port)
    listener.loop_start()
    try:
        listener.subscribe("lobby/v1/dev-b1-cam/cmd", qos=1)
        thief = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=name, protocol=mqtt.MQTTv5)
        thief.username_pw_set(name, password)
        thief.connect("127.0.0.1", secured.broker.port)
        thief.loop_start()
        sent = thief.publish("lobby/v1/dev-b1-cam/cmd", b'{"action": "restart"}', qos=1)
        sent.wait_for_publish(5)
        thief.disconnect()
        thief.loop_stop()
        time.sleep(0.5)
        assert commands == []
        secured.runtime.commands.send("dev-b1-cam", "identify", {})  # the server's identity may: the check can fail
        eventually(lambda: len(commands) == 1, what="the server's command at the device")
    finally:
        listener.disconnect()
        listener.loop_stop()
