"""`lobbywatch demo` as a newcomer runs it: within 60 s every branch is live and an alert has fired."""

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from lobby_sim.broker import free_port
from tests.helpers import eventually

LIMIT_S = 60


@pytest.mark.parametrize("broker", ["mosquitto", "amqtt"])
def test_demo_shows_live_branches_and_fires_an_alert_within_a_minute(tmp_path: Path, broker: str) -> None:
    """amqtt is what a machine without Mosquitto gets."""
    port = free_port()
    command = [
        str(Path(sys.executable).parent / "lobbywatch"),
        "--lang",
        "en",
        "demo",
        "--port",
        str(port),
        "--workdir",
        str(tmp_path / "demo"),
        "--broker",
        broker,
    ]
    env = {**os.environ, "DEMO_SECONDS": str(LIMIT_S + 30), "COLUMNS": "120"}
    started = time.monotonic()
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env, text=True)
    live: set[str] = set()
    alerts: list[dict[str, object]] = []
    try:
        while time.monotonic() - started < LIMIT_S and not (
            len(live) == 3 and {"queue_too_long", "call_unanswered"} <= {a["rule"] for a in alerts}
        ):
            time.sleep(1)
            try:
                branches = httpx.get(f"http://127.0.0.1:{port}/api/v1/branches", timeout=2).json()
                alerts = httpx.get(f"http://127.0.0.1:{port}/api/v1/alerts", timeout=2).json()
            except httpx.HTTPError:
                continue
            live = {
                b["id"]
                for b in branches
                if b["devices_online"] == b["devices_total"] >= 1
                and all(z["occupancy"] is not None for z in b["zones"])
            }
        elapsed = time.monotonic() - started
        # the contacts' phones: notices landed there, with one-tap acknowledgement links
        log = (tmp_path / "demo" / "demo.log").read_text(encoding="utf-8")
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
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert len(live) == 3, f"live branches after {elapsed:.0f} s: {live}\n{output[-3000:]}"
    rules = {a["rule"] for a in alerts}
    assert {"queue_too_long", "call_unanswered"} <= rules, f"alerts within {LIMIT_S} s: {rules}\n{output[-3000:]}"
    assert process.returncode == 0, output[-3000:]
    assert "Demo ran" in output
    assert f"http://127.0.0.1:{port}/api/v1/branches" in output
    assert "0 refused" in output
    assert "second sign-in: wang /" in output  # a second person, to pass an alert on to
    assert f"Broker: {broker}" in output
    if broker == "mosquitto":  # a device enrolled through the real flow, online with the identity it was given
        assert sum(b["devices_total"] for b in branches) == 4
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
