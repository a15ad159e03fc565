"""The server killed with -9 (not stopped): what it acknowledged is stored, and its state goes on from where the
last batch left it. Real processes: `lobbywatch serve`, a real Mosquitto keeping the server's session."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from bench.processes import Server
from lobby_sim.broker import Mosquitto
from tests.helpers import Device, eventually, write_site


@pytest.fixture
def server(tmp_path: Path, mosquitto: Mosquitto) -> Iterator[Server]:
    """`lobbywatch serve` as a process of its own (the fault suite's), on the test's files."""
    write_site(tmp_path)
    running = Server(tmp_path, mosquitto.port, {})
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
        assert (health["missing"], health["resend_requests"]) == (0, 0)
        # A kill between the batch's commit and its acknowledgements makes the broker hand some of it over again:
        # those are known to the saved windows, counted as duplicates and never stored twice.
        assert health["duplicates"] <= 40
        time.sleep(0.5)
        assert stored_rows(tmp_path) == 50
    finally:
        device.close()


def test_a_server_killed_while_its_store_is_locked_loses_nothing(
    tmp_path: Path, mosquitto: Mosquitto, server: Server
) -> None:
    """Received is not stored: what the server holds while its store cannot write is not acknowledged to the
    broker, which gives it to the next server. (Acknowledging on receipt loses all of it here.)"""
    server.start()
    device = Device(mosquitto.port, "dev-b1-cam")
    try:
        device.queue(1)
        eventually(lambda: stored_rows(tmp_path) == 1, what="the first report stored")
        blocker = sqlite3.connect(tmp_path / "ts.sqlite3", isolation_level=None)
        blocker.execute("BEGIN EXCLUSIVE")  # the store's writes wait, and fail, while this holds
        try:
            for n in range(20):
                device.queue(n % 9)
            eventually(lambda: server.health()["status"] == "degraded", timeout=30, what="the store failing")
            time.sleep(1.0)  # the broker has handed the server everything (each report was acknowledged to us)
            server.kill()
        finally:
            blocker.rollback()
            blocker.close()
        assert stored_rows(tmp_path) == 1
        server.start()
        eventually(lambda: stored_rows(tmp_path) == 21, what="every report stored after the restart")
    finally:
        device.close()
