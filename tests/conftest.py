"""Shared fixtures: real brokers and servers, and guards against leaked threads and swallowed exceptions."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from lobby_sim.broker import Mosquitto
from tests.services import Influx1, VictoriaMetrics

# Threads of libraries that live as long as the process by design (thread pools that are reused).
_LONG_LIVED = ("ThreadPoolExecutor", "asyncio_", "AnyIO worker thread")


@pytest.fixture(autouse=True)
def no_leaked_threads() -> Iterator[None]:
    before = set(threading.enumerate())
    yield
    deadline = time.monotonic() + 5
    while True:
        leaked = [t for t in threading.enumerate() if t not in before and t.is_alive()
                  and not t.name.startswith(_LONG_LIVED)]
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
def victoria(tmp_path: Path) -> Iterator[VictoriaMetrics]:
    server = VictoriaMetrics(tmp_path / "vm-data")
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def influx1(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Influx1]:
    server = Influx1(tmp_path_factory.mktemp("influxdb1"))
    server.start()
    yield server
    server.stop()
