"""Shared fixtures: real brokers and servers, and guards against leaked threads and swallowed exceptions."""

from __future__ import annotations

import json
import logging
import threading
import time
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import psycopg
import pytest
from playwright.sync_api import Browser, sync_playwright
from sqlalchemy.orm import Session, sessionmaker

from bench.nats_cluster import NatsCluster
from lobby_sim.broker import Mosquitto
from server.registry.database import make_engine, make_sessions
from tests.helpers import Device, serving
from tests.lobby_day import Day, replay_day
from tests.services import Influx1, VictoriaMetrics

# Threads of libraries that live as long as the process by design (thread pools that are reused).
_LONG_LIVED = ("ThreadPoolExecutor", "asyncio_", "AnyIO worker thread")


@pytest.fixture(autouse=True)
def no_leaked_threads() -> Iterator[None]:
    before = set(threading.enumerate())
    yield
    deadline = time.monotonic() + 5
    while True:
        leaked = [
            t for t in threading.enumerate() if t not in before and t.is_alive() and not t.name.startswith(_LONG_LIVED)
        ]
        if not leaked or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert not leaked, f"threads left running: {[t.name for t in leaked]}"


@pytest.fixture(autouse=True)
def no_logged_exceptions(caplog: pytest.LogCaptureFixture) -> Iterator[None]:
    """An exception logged with a traceback (a callback that caught a bug of ours) fails the test."""
    caplog.set_level(logging.INFO)
    yield
    broken = [r for r in caplog.get_records("call") if r.exc_info and r.levelno >= logging.ERROR]
    assert not broken, "exceptions were logged: " + "; ".join(r.getMessage() for r in broken)


@pytest.fixture
def mosquitto(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Mosquitto]:
    """A Mosquitto of the test's own; persistent (as in production) unless the test asks otherwise."""
    if not Mosquitto.available():
        raise RuntimeError("mosquitto is not installed: `make test` installs it (apt-get install mosquitto)")
    broker = Mosquitto(tmp_path / "mosquitto", persistence=getattr(request, "param", True))
    broker.start()
    yield broker
    broker.stop()


@pytest.fixture
def device(mosquitto: Mosquitto) -> Iterator[Device]:
    """A raw publisher for the site's first camera (tests.helpers.site), speaking the contract by hand."""
    dev = Device(mosquitto.port, "dev-b1-cam")
    yield dev
    dev.close()


@pytest.fixture
def victoria(tmp_path: Path) -> Iterator[VictoriaMetrics]:
    server = VictoriaMetrics(tmp_path / "vm-data")
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NatsCluster]:
    """A real 3-node NATS cluster (the pinned server), open to anyone: the permissions have tests of their own."""
    nats = NatsCluster(tmp_path_factory.mktemp("nats"))
    nats.start()
    yield nats
    nats.stop()


@pytest.fixture(scope="session")
def influx1(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Influx1]:
    server = Influx1(tmp_path_factory.mktemp("influxdb1"))
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def browser() -> Iterator[Browser]:
    """Debian's chromium, driven by Playwright (never a downloaded browser)."""
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(
            executable_path="/usr/bin/chromium",
            args=[
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
            ],
        )
        yield launched
        launched.close()


@pytest.fixture(scope="session")
def day(tmp_path_factory: pytest.TempPathFactory, influx1: Influx1) -> Iterator[Day]:
    """A working day of three branches, replayed through the real ingest into SQLite and InfluxDB 1.6."""
    replayed = replay_day(tmp_path_factory.mktemp("day"), influx1)
    yield replayed
    replayed.sqlite.close()


class _Inbox(BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        self.server.messages.setdefault(self.path, []).append(body)  # type: ignore[attr-defined]
        self.send_response(self.server.status)  # type: ignore[attr-defined]
        self.end_headers()

    def log_message(self, *args: object) -> None:
        return None


@pytest.fixture
def inbox() -> Iterator[ThreadingHTTPServer]:
    """A real HTTP server that keeps every JSON body POSTed to it, by path; `status` is what it answers."""
    with serving(_Inbox, messages={}, status=200) as server:
        yield server


PG_ADMIN = "postgresql://postgres@127.0.0.1:5432/postgres"


@pytest.fixture(params=["sqlite", "postgresql"])
def sessions(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[sessionmaker[Session]]:
    """A fresh registry on SQLite, then on a PostgreSQL database of its own (dropped after)."""
    if request.param == "sqlite":
        engine = make_engine(f"sqlite:///{tmp_path / 'registry.sqlite3'}")
        yield make_sessions(engine)
        engine.dispose()
        return
    name = f"lw_test_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(PG_ADMIN, autocommit=True) as admin:
        admin.execute(f"CREATE DATABASE {name}")
    engine = make_engine(f"postgresql+psycopg://postgres@127.0.0.1:5432/{name}")
    yield make_sessions(engine)
    engine.dispose()
    with psycopg.connect(PG_ADMIN, autocommit=True) as admin:
        admin.execute(f"DROP DATABASE {name}")
