"""The server killed with -9 (not stopped): what it acknowledged is stored, and its state goes on from where the
last batch left it. Real processes: `lobbywatch serve`, a real Mosquitto keeping the server's session."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from lobby_sim.broker import Mosquitto, free_port, wait_for_port
from tests.helpers import Device, eventually, write_site


class Server:
    """`lobbywatch serve` as a process of its own, on the test's files."""

    def __init__(self, folder: Path, broker_port: int) -> None:
        self.port = free_port()
        self.env = {**os.environ, "LOBBYWATCH_MODE": "dev", "LOBBYWATCH_MQTT_USERNAME": "",
                    "LOBBYWATCH_DATABASE_URL": f"sqlite:///{folder / 'registry.sqlite3'}",
                    "LOBBYWATCH_TIMESERIES_PATH": str(folder / "ts.sqlite3"),
                    "LOBBYWATCH_SITE_FILE": str(write_site(folder)), "LOBBYWATCH_MQTT_PORT": str(broker_port),
                    "LOBBYWATCH_MQTT_CLIENT_ID": "ingest-durability", "LOBBYWATCH_HTTP_PORT": str(self.port),
                    "LOBBYWATCH_REPORTS_BY_MAIL": "false", "LOBBYWATCH_RESEND_AFTER_S": "1"}
        self.log = (folder / "server.log").open("ab")
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.process = subprocess.Popen([sys.executable, "-m", "server.cli", "serve", "--log-level", "warning"],
                                        env=self.env, stdout=self.log, stderr=subprocess.STDOUT)
        wait_for_port(self.port, 30)
        eventually(lambda: self.health()["broker_connected"], what="the server subscribed")

    def health(self) -> dict[str, object]:
        body: dict[str, object] = httpx.get(f"http://127.0.0.1:{self.port}/api/v1/health", timeout=5).json()
        return body

    def kill(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(10)
        self.process = None

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(15)
            self.process = None
        self.log.close()


@pytest.fixture
def server(tmp_path: Path, mosquitto: Mosquitto) -> Iterator[Server]:
    running = Server(tmp_path, mosquitto.port)
    yield running
    running.stop()


def stored_rows(folder: Path) -> int:
    """Rows, not keys: a point stored twice would count twice."""
    with sqlite3.connect(folder / "ts.sqlite3") as db:
        return int(db.execute("SELECT count(*) FROM points WHERE measurement = 'occupancy'").fetchone()[0])


def test_a_server_killed_after_a_batch_goes_on_without_false_gaps(
    tmp_path: Path, mosquitto: Mosquitto, server: Server
) -> None:
    """The sequence windows used to be saved every few seconds: a kill right after a batch made the restarted
    server see a gap that was none, and ask the device to resend it."""
    server.start()
    device = Device(mosquitto.port, "dev-b1-cam")
    try:
        for n in range(40):
            device.queue(n % 9)
        eventually(lambda: server.health()["received"] == 40, what="the batch in")
        server.kill()  # at once, before any timer could save anything
        server.start()
        for n in range(10):
            device.queue(n % 9)
        eventually(lambda: stored_rows(tmp_path) == 50, what="every report stored")
        health = server.health()
        assert (health["missing"], health["resend_requests"], health["duplicates"]) == (0, 0, 0)
    finally:
        device.close()
