"""`lobbywatch-agent enroll`: from a blank SD card to a device with its own identity, without copying secrets.

The technician gives the enrollment token (typed, or the QR code's text, or a file on the boot partition);
the agent sends it with the board's hardware serial to the server and gets back its identity: the device id,
its MQTT password, the broker's CA certificate and its config. They are written with the right modes (the
password 0600, readable by the agent only); the password is never printed or logged. Standard library only:
the agent carries no HTTP client of the server's.
"""

from __future__ import annotations

import json
import os
import re
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

import yaml

from edge_agent.config import parse_config

BOOT_FILES = (Path("/boot/firmware/lobbywatch-enroll.txt"), Path("/boot/lobbywatch-enroll.txt"))
TIMEOUT_S = 20.0


class EnrollFailed(RuntimeError):
    """The server refused, or could not be reached: `code` says which (the CLI shows it translated)."""

    def __init__(self, code: str, detail: str) -> None:
        super().__init__(detail)
        self.code = code


@dataclass(frozen=True, slots=True)
class Claim:
    server: str
    token: str


def parse_claim(text: str, server: str | None) -> Claim:
    """A bare token (with --server), or the QR code's `lobbywatch-enroll:?server=...&token=...`, or the boot
    file's `server=...` / `token=...` lines."""
    text = text.strip()
    found: dict[str, str] = {}
    if text.startswith("lobbywatch-enroll:"):
        query = parse_qs(urlparse(text).query)
        found = {k: v[0] for k, v in query.items() if v}
    elif "=" in text:
        found = dict(line.split("=", 1) for line in text.splitlines() if "=" in line)
        found = {k.strip(): v.strip() for k, v in found.items()}
    else:
        found = {"token": text}
    token, chosen = found.get("token", ""), server or found.get("server")
    if not token:
        raise EnrollFailed("no_token", "no enrollment token given")
    if not chosen:
        raise EnrollFailed("no_server", "no server given (--server, or server= in the enrollment file)")
    return Claim(chosen.rstrip("/"), token)


def read_boot_file() -> str | None:
    for path in BOOT_FILES:
        if path.exists():
            return path.read_text(encoding="utf-8")
    return None


def hardware_serial(cpuinfo: Path = Path("/proc/cpuinfo"), machine_id: Path = Path("/etc/machine-id")) -> str:
    """The Raspberry Pi's board serial; on other machines, the systemd machine id."""
    try:
        match = re.search(r"^Serial\s*:\s*([0-9a-fA-F]+)\s*$", cpuinfo.read_text(), re.MULTILINE)
        if match:
            return match.group(1).lower()
    except OSError:
        pass
    try:
        return machine_id.read_text().strip()
    except OSError:
        raise EnrollFailed("no_serial", "cannot read a hardware serial (/proc/cpuinfo or /etc/machine-id)") from None


def request_identity(claim: Claim, serial: str, agent_version: str) -> dict[str, Any]:
    body = json.dumps({"token": claim.token, "serial": serial, "agent_version": agent_version}).encode()
    url = f"{claim.server}/api/v1/enroll"
    headers = {"Content-Type": "application/json"}
    request = urllib.request.Request(url, data=body, method="POST", headers=headers)  # noqa: S310
    try:
        with urllib.request.urlopen(request, timeout=TIMEOUT_S) as response:  # noqa: S310 - http(s) of our server
            answer: dict[str, Any] = json.loads(response.read())
            return answer
    except urllib.error.HTTPError as exc:
        try:
            refused = json.loads(exc.read())
        except ValueError:
            refused = {}
        raise EnrollFailed(
            str(refused.get("code") or f"http_{exc.code}"), str(refused.get("detail") or exc.reason)
        ) from None
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise EnrollFailed("server_unreachable", f"cannot reach {claim.server}: {reason}") from None


def write_file(path: Path, text: str, mode: int) -> None:
    """Atomically, with its mode from the start (a password file is never readable by others, not even briefly)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(text)
        handle.flush()
        os.fsync(handle.fileno())
    os.chmod(tmp, mode)
    tmp.replace(path)


def install(identity: dict[str, Any], config_path: Path) -> dict[str, Any]:
    """Write the password, the CA and the config (the config's paths are kept beside the config file)."""
    config = dict(identity["config"])
    folder = config_path.parent
    broker = dict(config["broker"])
    password_file = folder / "mqtt.password"
    write_file(password_file, identity["password"], 0o600)
    broker["password_file"] = str(password_file)
    broker["username"] = identity["username"]
    if identity.get("ca_pem"):
        ca_file = folder / "ca.crt"
        write_file(ca_file, identity["ca_pem"], 0o644)
        broker["ca_file"] = str(ca_file)
    config["broker"] = broker
    parse_config(config, "the config the server sent")  # refuse before writing a config the agent cannot run
    write_file(config_path, yaml.safe_dump(config, allow_unicode=True, sort_keys=False), 0o644)
    return config
