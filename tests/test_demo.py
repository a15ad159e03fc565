"""`lobbywatch demo` as a newcomer runs it: within 60 s every branch is live and an alert has fired."""

import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from threading import Thread
from typing import Any

import httpx
import pytest

from lobby_sim.broker import free_port
from tests.helpers import eventually

LIMIT_S = 60
BROKERS = ("mosquitto", "amqtt")  # amqtt is what a machine without Mosquitto gets


@dataclass
class Demo:
    """One `lobbywatch demo` as a newcomer starts it, watched from its start on a thread of its own: what its API
    showed when every branch was live and both alerts had fired, or when the minute ran out."""

    broker: str
    workdir: Path
    port: int = field(default_factory=free_port)
    live: set[str] = field(default_factory=set)
    branches: list[dict[str, Any]] = field(default_factory=list)
    alerts: list[dict[str, Any]] = field(default_factory=list)
    elapsed: float = 0.0

    def start(self) -> subprocess.Popen[str]:
        command = [
            str(Path(sys.executable).parent / "lobbywatch"),
            *("--lang", "en", "demo", "--port", str(self.port), "--workdir", str(self.workdir)),
            *("--broker", self.broker),
        ]
        env = {**os.environ, "DEMO_SECONDS": str(LIMIT_S + 30), "COLUMNS": "120"}
        return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env, text=True)

    def done(self) -> bool:
        return len(self.live) == 3 and {"queue_too_long", "call_unanswered"} <= {a["rule"] for a in self.alerts}

    def watch(self) -> None:
        started = time.monotonic()
        while time.monotonic() - started < LIMIT_S and not self.done():
            time.sleep(1)
            try:
                self.branches = httpx.get(f"http://127.0.0.1:{self.port}/api/v1/branches", timeout=2).json()
                self.alerts = httpx.get(f"http://127.0.0.1:{self.port}/api/v1/alerts", timeout=2).json()
            except httpx.HTTPError:
                continue
            self.live = {
                b["id"]
                for b in self.branches
                if b["devices_online"] == b["devices_total"] >= 1
                and all(z["occupancy"] is not None for z in b["zones"])
            }
        self.elapsed = time.monotonic() - started


@pytest.fixture(scope="module")
def demos(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, tuple[Demo, subprocess.Popen[str], Thread]]]:
    """Both demos at once, each its own ports and folder: most of their minute is waiting for the bell's
    deadline, so side by side they take the time of one."""
    running: dict[str, tuple[Demo, subprocess.Popen[str], Thread]] = {}
    try:
        for broker in BROKERS:
            demo = Demo(broker, tmp_path_factory.mktemp(broker) / "demo")
            watcher = Thread(target=demo.watch, name=f"watch-{broker}")
            running[broker] = (demo, demo.start(), watcher)
            watcher.start()
        yield running
    finally:
        for _demo, process, watcher in running.values():
            if process.poll() is None:
                process.kill()
                process.wait()
            watcher.join()


@pytest.mark.parametrize("broker", BROKERS)
def test_demo_shows_live_branches_and_fires_an_alert_within_a_minute(
    demos: dict[str, tuple[Demo, subprocess.Popen[str], Thread]], broker: str
) -> None:
    demo, process, watcher = demos[broker]
    watcher.join()
    # the contacts' phones: notices landed there, with one-tap acknowledgement links
    log = (demo.workdir / "demo.log").read_text(encoding="utf-8")
    found = re.search(r"the contacts' phones: (http://127\.0\.0\.1:\d+)", log)
    assert found, log[-2000:]
    phones = eventually(
        lambda: "/ack/" in (page := httpx.get(found.group(1), timeout=2).text) and page,
        what="a notice with a one-tap link on the demo's phones",
        timeout=60,
    )
    assert "王芳" in phones
    process.send_signal(signal.SIGINT)  # Ctrl-C, as a user stops it
    output, _ = process.communicate(timeout=60)
    assert len(demo.live) == 3, f"live branches after {demo.elapsed:.0f} s: {demo.live}\n{output[-3000:]}"
    rules = {a["rule"] for a in demo.alerts}
    assert {"queue_too_long", "call_unanswered"} <= rules, f"alerts within {LIMIT_S} s: {rules}\n{output[-3000:]}"
    assert process.returncode == 0, output[-3000:]
    assert "Demo ran" in output
    assert f"http://127.0.0.1:{demo.port}/api/v1/branches" in output
    assert "0 refused" in output
    assert "second sign-in: wang /" in output  # a second person, to pass an alert on to
    assert f"Broker: {broker}" in output
    if broker == "mosquitto":  # a device enrolled through the real flow, online with the identity it was given
        assert sum(b["devices_total"] for b in demo.branches) == 4
        assert "joined through enrollment" in output
        assert re.search(r"enrolled \S+-env1 through the enrollment API", log), log[-2000:]


def test_a_second_demo_on_a_taken_port_stops_before_starting_anything_and_wipes_nothing(tmp_path: Path) -> None:
    import socket

    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen(1)
    port = taken.getsockname()[1]
    workdir = tmp_path / "demo"
    workdir.mkdir()
    (workdir / "registry.sqlite3").write_text("the first demo's data")
    command = [str(Path(sys.executable).parent / "lobbywatch"), "--lang", "en", "demo", "--port", str(port)]
    try:
        done = subprocess.run(
            [*command, "--workdir", str(workdir)], capture_output=True, text=True, timeout=60, check=False
        )
    finally:
        taken.close()
    assert done.returncode == 2
    assert f"Port {port} is already in use" in done.stdout
    assert "password" not in done.stdout.lower()  # no sign-in for a server that is not there
    assert (workdir / "registry.sqlite3").read_text() == "the first demo's data"
