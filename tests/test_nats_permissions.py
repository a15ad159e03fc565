"""The scale-out's own NATS identities (deploy/nats/permissions.conf, taken in as it ships) on a real 3-node
cluster: a forwarder and a worker, each with its own user, carry devices' reports from Mosquitto to the store; an
API process, with its own, shows the worker's live state and passes a person's acknowledgement to the worker;
each is refused what is not its job, and a wrong password is refused."""

from __future__ import annotations

import asyncio
import json
import secrets
import threading
import time
from collections.abc import Coroutine, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

import paho.mqtt.client as mqtt
import pytest
from nats.aio.client import Client
from nats.errors import Error as NatsError
from paho.mqtt.enums import CallbackAPIVersion

from bench.ingest import device_ids, site
from bench.nats_cluster import NatsCluster
from bench.processes import Api, Forward, Victoria, Work
from bench.tally import Sent, settle_victoria
from bench.traffic import publish as publish_burst
from lobby_sim.broker import Mosquitto
from server.registry.database import make_engine, make_sessions
from server.registry.site import SiteSpec, import_site
from server.scale import heartbeat, live_bucket, subjects
from server.scale.worker import MEMBERS
from tests.helpers import Device, eventually

T = TypeVar("T")
PERMISSIONS = Path(__file__).parent.parent / "deploy" / "nats" / "permissions.conf"
USERS = ("forwarder", "worker", "api")
PARTITIONS = 4


def run(work: Coroutine[Any, Any, T]) -> T:
    """`work` on an event loop of its own thread (the page tests' Playwright keeps one running on the main
    thread for the rest of the suite)."""
    with ThreadPoolExecutor(1, thread_name_prefix="asyncio_nats") as pool:
        return pool.submit(asyncio.run, work).result()


@pytest.fixture(scope="module")
def passwords() -> dict[str, str]:
    # as deploy/make-secrets.sh makes them: a letter first (nats-server reads a leading digit as a number)
    return {user: "p" + secrets.token_hex(16) for user in USERS}


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory, passwords: dict[str, str]) -> Iterator[NatsCluster]:
    env = {f"LOBBYWATCH_NATS_{user.upper()}_PASSWORD": password for user, password in passwords.items()}
    nats = NatsCluster(tmp_path_factory.mktemp("nats-auth"), include=PERMISSIONS, env=env)
    nats.start()
    yield nats
    nats.stop()


def with_password(process: Forward, password: str) -> Forward:
    """The process's NATS password; its user is its role's (`forwarder`, `worker`) when none is set."""
    process.env |= {"LOBBYWATCH_NATS_PASSWORD": password}
    return process


async def attempt(cluster: NatsCluster, user: str, password: str, act: str) -> list[str]:
    """What the server refused when `user` tried `act`: its permission errors, as nats-py reports them."""
    refused: list[str] = []

    async def error(exc: Exception) -> None:
        refused.append(str(exc))

    nc = Client()
    await nc.connect(servers=cluster.urls, user=user, password=password, error_cb=error, allow_reconnect=False)
    try:
        if act == "delete the stream":
            with pytest.raises((NatsError, TimeoutError)):
                await nc.request(f"$JS.API.STREAM.DELETE.{subjects.STREAM}", b"", timeout=1)
        elif act == "publish a device's report":
            await nc.publish(subjects.subject("b1", "bench-dev-00000", "queue"), b"{}")
            await nc.flush()
        elif act == "publish what people did":
            await nc.publish(subjects.people_subject("b1"), b"{}")
            await nc.flush()
        elif act == "read the reports":
            await nc.subscribe(f"{subjects.PARTITIONED}.>")
            await nc.flush()
        await asyncio.sleep(0.3)  # the server's -ERR comes after the flush
    finally:
        await nc.close()
    return refused


def test_forwarder_and_worker_each_with_only_their_own_rights_carry_reports_to_the_store(
    cluster: NatsCluster, passwords: dict[str, str], mosquitto: Mosquitto, tmp_path: Path
) -> None:
    devices = device_ids(4)
    with make_sessions(make_engine(f"sqlite:///{tmp_path}/registry.sqlite3"))() as session:
        import_site(session, SiteSpec.model_validate(site(len(devices), 0, per_branch=1)))
    victoria = Victoria(tmp_path)
    victoria.start()
    storage = {"LOBBYWATCH_STORAGE": "influxdb", "LOBBYWATCH_INFLUX_URL": victoria.url}
    forward = with_password(Forward(tmp_path, "f1", mosquitto.port, cluster.urls, PARTITIONS), passwords["forwarder"])
    worker = with_password(Work(tmp_path, "w1", mosquitto.port, cluster.urls, PARTITIONS, storage), passwords["worker"])
    sent = Sent()
    try:
        forward.start()  # before any worker: it waits for the stream, which it may not make itself
        time.sleep(2.0)
        worker.start()
        log = tmp_path / "forward-f1.log"
        deadline = time.monotonic() + 30
        while "ingest connected" not in log.read_text() and time.monotonic() < deadline:
            time.sleep(0.2)  # its first subscription: the broker keeps nothing for a group nobody joined yet
        assert "waiting for a worker to make it" in log.read_text()
        burst = threading.Thread(target=publish_burst, args=(mosquitto.port, devices, 50.0, 4.0, sent, "pub"))
        burst.start()
        burst.join()
        counts = settle_victoria(sent, victoria.url, 60)
    finally:
        for process in (forward, worker):
            process.stop()
        victoria.stop()
    assert counts["sent"] >= 150
    assert counts["stored"] == counts["sent"], counts
    assert violations(cluster) == [], violations(cluster)[:5]  # everything they needed was allowed


def violations(cluster: NatsCluster) -> list[str]:
    return [
        line
        for node in cluster.nodes
        for line in (node.folder / "nats.log").read_text().splitlines()
        if "Permissions Violation" in line
    ]


CALL_SITE = {
    "regions": [{"id": "r1", "name": "Region one"}],
    "branches": [
        {
            "id": "b1",
            "name": "阜成门支局",
            "region": "r1",
            "hours": {"opens": "00:00", "closes": "23:59:59.999999"},
            "call_deadlines_s": {"accessibility": 1},
            "devices": [
                {"id": "b1-cam", "zones": [{"key": "queue", "name": "窗口排队区"}]},
                {"id": "b1-btn", "profile": "call-buttons"},
            ],
        }
    ],
}


def test_an_api_process_shows_the_workers_live_state_and_its_acknowledgement_reaches_the_worker(
    cluster: NatsCluster, passwords: dict[str, str], mosquitto: Mosquitto, tmp_path: Path
) -> None:
    with make_sessions(make_engine(f"sqlite:///{tmp_path}/registry.sqlite3"))() as session:
        import_site(session, SiteSpec.model_validate(CALL_SITE))
    forward = with_password(Forward(tmp_path, "f2", mosquitto.port, cluster.urls, PARTITIONS), passwords["forwarder"])
    worker = with_password(Work(tmp_path, "w2", mosquitto.port, cluster.urls, PARTITIONS, {}), passwords["worker"])
    api = with_password(Api(tmp_path, "a1", mosquitto.port, cluster.urls, PARTITIONS), passwords["api"])
    for process in (forward, worker):  # the containers' health check reads it
        process.env["LOBBYWATCH_HEARTBEAT_FILE"] = str(tmp_path / f"{process.command}.alive")
    refused_before = len(violations(cluster))
    commands: list[dict[str, Any]] = []
    listener = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="button-listener", protocol=mqtt.MQTTv5)
    listener.on_message = lambda _c, _u, message: commands.append(json.loads(message.payload))
    listener.connect("127.0.0.1", mosquitto.port)
    listener.subscribe("lobby/v1/b1-btn/cmd", qos=1)
    listener.loop_start()
    camera, button = Device(mosquitto.port, "b1-cam"), Device(mosquitto.port, "b1-btn")
    try:
        for process in (worker, forward, api):
            process.start()
        eventually(lambda: "ingest connected" in (tmp_path / "forward-f2.log").read_text(), 30, "the forwarder")
        eventually(lambda: api.call("GET", "branches/b1"), 60, "the API process")
        camera.queue(7)

        def shown() -> object:
            zones = (api.call("GET", "branches/b1") or {}).get("zones", [])
            return [z["occupancy"] for z in zones] == [7] and zones

        eventually(shown, 30, "the worker's count, in the API process")
        button.send("button", button.envelope(button="ramp-bell", kind="accessibility", action="press"))
        alert = eventually(
            lambda: next((a for a in api.call("GET", "alerts") or [] if a["rule"] == "call_unanswered"), None),
            30,
            "the unanswered call's alert",
        )
        acknowledged = api.call("POST", f"alerts/{alert['id']}/acknowledge", {"by": "王芳"})
        assert acknowledged is not None
        assert acknowledged["state"] == "acknowledged"

        def light() -> object:  # sent by the worker, which alone owns the branch's call
            return [c for c in commands if c.get("action") == "indicate" and c["args"]["state"] == "help_coming"]

        told = eventually(light, 30, "the button's 'help is coming' light, from the worker")
        assert told[0]["args"]["button"] == "ramp-bell"
        for process in (forward, worker):
            alive = tmp_path / f"{process.command}.alive"
            eventually(alive.exists, heartbeat.UNHEALTHY_EVERY_S * 5, f"the {process.command}'s heartbeat")
            assert time.time() - alive.stat().st_mtime < heartbeat.STALE_S

        def counted() -> object:  # the worker's own figures, from its entry in the worker list
            return (h := api.call("GET", "health")) and h["workers_alive"] == 1 and h["received"] >= 2 and h

        health = eventually(counted, 20, "1 worker, with what it received")
        assert (health["status"], health["nats_connected"]) == ("ok", True)
        assert health["stored_points"] >= 1  # the count: stored by the worker, shown by the API process
        assert list(health["workers"]) == ["w2"]  # and the worker's own figures, by its name
        assert health["workers"]["w2"]["received"] >= 2
        assert health["workers"]["w2"]["last_registry_error"] is None
        worker.stop()  # the only worker: the API process ingests nothing itself, and says so

        def degraded() -> object:
            return (h := api.call("GET", "health")) and h["status"] == "degraded" and h

        assert "no worker is alive" in " ".join(eventually(degraded, 20, "the API's health without workers")["reasons"])
    finally:
        listener.loop_stop()
        for device in (camera, button):
            device.close()
        for process in (api, forward, worker):
            process.stop()
    assert "alert event" not in (tmp_path / "api-a1.log").read_text()  # nothing left unsent
    assert violations(cluster)[refused_before:] == []  # the API's user had all it needed


@pytest.mark.parametrize(
    ("user", "act"),
    [
        ("forwarder", "delete the stream"),
        ("forwarder", "read the reports"),
        ("worker", "publish a device's report"),
        ("worker", "delete the stream"),
        ("forwarder", "publish what people did"),
        ("api", "publish a device's report"),
        ("api", "read the reports"),
        ("api", "delete the stream"),
    ],
)
def test_each_identity_is_refused_what_is_not_its_job(
    cluster: NatsCluster, passwords: dict[str, str], user: str, act: str
) -> None:
    refused = run(attempt(cluster, user, passwords[user], act))
    assert any("permissions violation" in why.lower() for why in refused), refused


def test_a_wrong_password_is_refused(cluster: NatsCluster) -> None:
    told: list[str] = []

    async def error(exc: Exception) -> None:
        told.append(str(exc))

    async def connect() -> None:
        nc = Client()
        await nc.connect(servers=cluster.urls, user="worker", password="not-it", allow_reconnect=False, error_cb=error)

    with pytest.raises(NatsError, match=r"[Aa]uthorization"):
        run(connect())
    assert any("authorization" in why.lower() for why in told), told


def test_the_permissions_name_the_stream_and_subjects_the_code_uses() -> None:
    text = PERMISSIONS.read_text()
    assert f"$JS.API.STREAM.INFO.{subjects.STREAM}" in text
    assert f'"{subjects.IN}.>"' in text
    assert f'"{subjects.IN}.*.{subjects.PEOPLE}.alert"' in text
    assert all(f"$KV.{bucket}.>" in text for bucket in (live_bucket.LIVE, live_bucket.SNAPSHOTS))
    assert json.dumps(f"$KV.{MEMBERS}.>") in text
    assert json.dumps(subjects.REGISTRY_CHANGED) in text
