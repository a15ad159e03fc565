"""Config pushed by the server (retained on `lobby/v1/<device>/config`): which parts it may change, and where
the applied one is kept so that a restart runs it again.

A push may replace whole sections that describe the lobby (camera and zones, buttons, sensors, reporting,
outbox, locale). It may not change who the device is or where it connects (`device_id`, `broker`,
`data_dir`, `gpio_factory`): a wrong push must never be able to cut a device off or make it speak for another.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from edge_agent.config import ConfigError, DeviceConfig, parse_config
from lobbywatch.protocol import REMOTE_SECTIONS, Channel, ConfigPush, InvalidPayload, parse_payload

FILE_NAME = "remote-config.json"


@dataclass(frozen=True)
class Applied:
    version: int
    sections: dict[str, object]


@dataclass(frozen=True)
class Push:
    config: DeviceConfig  # the local config with the pushed sections in place
    applied: Applied  # what to keep, so that a restart runs it again


def read_push(local: DeviceConfig, running: int | None, payload: bytes) -> Push | None:
    """A pushed config merged onto the local one; None when there is nothing to do (the server cleared the
    retained config: keep running what we have; or the version running, delivered again after a reconnect).
    ConfigError names every problem."""
    if not payload:
        return None
    try:
        push = parse_payload(Channel.CONFIG, payload)
    except InvalidPayload as exc:
        raise ConfigError("config.bad_push", why=exc) from None
    assert isinstance(push, ConfigPush)
    if push.version == running:
        return None
    return Push(merge(local, push.version, dict(push.config)), Applied(push.version, dict(push.config)))


def merge(local: DeviceConfig, version: int, sections: dict[str, object]) -> DeviceConfig:
    """The local config with the pushed sections in place; ConfigError names every problem."""
    refused = sorted(set(sections) - REMOTE_SECTIONS)
    if refused:
        allowed = ", ".join(sorted(REMOTE_SECTIONS))
        raise ConfigError("config.not_pushable", version=version, names=", ".join(refused), allowed=allowed)
    document = local.model_dump(mode="json", exclude_unset=False)
    document.update(sections)
    return parse_config(document, f"config version {version}")


def load_applied(data_dir: Path) -> Applied | None:
    path = data_dir / FILE_NAME
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        return Applied(int(data["version"]), dict(data["sections"]))
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ConfigError("config.applied_unreadable", origin=path, why=exc) from None


def save_applied(data_dir: Path, applied: Applied) -> None:
    """Write atomically: a power cut leaves the old file or the new one, never half of one."""
    path = data_dir / FILE_NAME
    tmp = path.with_suffix(".tmp")
    with tmp.open("w", encoding="utf-8") as handle:
        json.dump({"version": applied.version, "sections": applied.sections}, handle, ensure_ascii=False)
        handle.flush()
        os.fsync(handle.fileno())
    tmp.replace(path)
