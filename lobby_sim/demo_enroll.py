"""The demo's extra device, enrolled as a technician would enroll one: a token made for the third branch, claimed
over the server's HTTP API by the agent's own enroll code (the broker makes the device's identity), and the agent
then run with the config and password the server sent, on a fake sysfs."""

from __future__ import annotations

import secrets
import socket
from datetime import UTC, datetime, timedelta
from pathlib import Path

from gpiozero.pins.mock import MockFactory

from edge_agent import __version__ as agent_version
from edge_agent.agent import Agent
from edge_agent.config import parse_config
from edge_agent.enroll import Claim, install, parse_claim, request_identity, write_file
from edge_agent.sensors import SensorEnv
from lobbywatch.clock import SystemClock
from server.provisioning import enrollment as enroll
from server.runtime import Runtime

PROFILE = "facility-sensors"


def enroll_device(runtime: Runtime, server_url: str, branch: str, folder: Path, by: str) -> Agent:
    """The extra device, enrolled through the real flow; returns its agent (not started)."""
    with runtime.sessions() as session:
        token, made = enroll.create(
            session,
            branch=branch,
            profile=PROFILE,
            by=by,
            now=datetime.now(UTC),
            ttl=timedelta(hours=1),
            reserved=runtime.settings.broker_names(),
        )
        link = enroll.uri(server_url, token, made)
    claim: Claim = parse_claim(link, None)
    identity = request_identity(claim, f"demo-{socket.gethostname()}-{made.device_id}"[:64], agent_version)
    config_path = folder / "device.yaml"
    raw = install(identity, config_path)
    config = parse_config({**raw, "data_dir": str(folder / "data")}, str(config_path))
    sysfs = folder / "sys" / "class" / "thermal" / "thermal_zone0"
    sysfs.mkdir(parents=True, exist_ok=True)
    (sysfs / "temp").write_text("51000\n")
    env = SensorEnv(sysfs_root=folder / "sys", seed=7)
    return Agent(config, clock=SystemClock(), pin_factory=MockFactory(), sensor_env=env)


def device_identity(runtime: Runtime | None, device_id: str, folder: Path) -> Path | None:
    """A broker identity of the simulated device's own, as enrollment makes one; None on a broker without
    identities (amqtt), where the demo's devices connect anonymously."""
    admin = runtime.broker_admin if runtime else None
    if admin is None:
        return None
    password, path = secrets.token_urlsafe(18), folder / "mqtt.password"
    admin.create_device(device_id, password)
    write_file(path, password, 0o600)
    return path
