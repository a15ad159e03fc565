"""The device config file (YAML): the shared model (`lobbywatch.device_config`), loaded strictly. Every error
names the file and the field; a file that is not UTF-8, not YAML, nested too deeply or too large is refused with
a message, never a traceback. Also what follows from a config: the outbox it asks for, and whether its data
folder can be written."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from edge_agent.counting.zones import Zone
from lobbywatch.device_config import (
    BrokerConfig,
    ButtonConfig,
    CameraConfig,
    DeviceConfig,
    OutboxConfig,
    ReportingConfig,
    ZoneConfig,
)
from lobbywatch.validation import Refused, problems

__all__ = [
    "BrokerConfig",
    "ButtonConfig",
    "CameraConfig",
    "ConfigError",
    "DeviceConfig",
    "OutboxConfig",
    "ReportingConfig",
    "ZoneConfig",
    "counting_zone",
    "load_config",
    "parse_config",
]

MAX_FILE_BYTES = 1024 * 1024  # a device config is a few KiB


def counting_zone(config: ZoneConfig, ignore: Sequence[Sequence[tuple[int, int]]] = ()) -> Zone:
    """The zone as the counter takes it, with the camera's areas to ignore."""
    return Zone(config.key, list(config.polygon), config.anchor, [list(area) for area in ignore])


class ConfigError(Refused):
    """A config file that cannot be used; the message names the file and the field."""


def parse_config(data: object, origin: str = "config") -> DeviceConfig:
    try:
        return DeviceConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError("config.problems", problems(exc), origin=origin, count=exc.error_count()) from None
    except RecursionError:
        raise ConfigError("config.too_deep", origin=origin) from None


def load_config(path: Path) -> DeviceConfig:
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ConfigError("config.unreadable", origin=path, why=exc.strerror) from None
    if len(raw) > MAX_FILE_BYTES:
        raise ConfigError("config.too_large", origin=path, size=len(raw), limit=MAX_FILE_BYTES)
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError("config.not_utf8", origin=path, at=exc.start) from None
    try:
        data = yaml.safe_load(text)
    except RecursionError:
        raise ConfigError("config.too_deep", origin=path) from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        why = getattr(exc, "problem", None) or exc
        if mark is None:
            raise ConfigError("config.not_yaml", origin=path, why=why) from None
        raise ConfigError(
            "config.not_yaml_at", origin=path, why=why, line=mark.line + 1, column=mark.column + 1
        ) from None
    if not isinstance(data, dict):
        raise ConfigError("config.not_mapping", origin=path)
    return parse_config(data, str(path))


def outbox_options(config: DeviceConfig) -> dict[str, Any]:
    """The outbox a device config asks for, as `Outbox`'s arguments."""
    return {
        "path": config.data_dir / "outbox.sqlite3",
        "history_rows": config.outbox.history_rows,
        "max_bytes": int(config.outbox.max_mb * 2**20),
        "max_age_s": config.outbox.max_age_days * 86400,
    }


def data_dir_writable(path: Path) -> bool:
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = path / ".write-test"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError:
        return False
    return True
