"""MQTT topics of the v1 contract: `lobby/v1/<device>/<channel>`.

The device id in the topic is the device's MQTT username; the broker's ACL lets a device publish only under
its own id, so the topic is the identity the server trusts.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum

from lobbywatch.validation import refuse

ROOT = "lobby"
MAJOR = "v1"

# Lower-case so that ids survive case-insensitive systems (file names, DNS-like labels on the fleet page);
# 3-64 characters so an id fits in an MQTT client id and a Grafana tag comfortably.
_DEVICE_ID = re.compile(r"^[a-z0-9][a-z0-9_-]{2,63}$")
# Names the system itself uses at the broker (its server and administrator identities and client ids start with
# `lobbywatch`), never a device's: a device enrolled under one would take that identity's place.
RESERVED_PREFIX = "lobbywatch"
RESERVED_IDS = frozenset({"admin", "administrator", "root", "mosquitto", "broker", "server", "ingest", "system"})


class InvalidTopic(ValueError):
    """A topic outside the contract."""


class Channel(StrEnum):
    # device -> server; these go through the device's outbox and carry a sequence number
    QUEUE = "queue"
    BUTTON = "button"
    FACILITY = "facility"
    HEALTH = "health"
    REPLY = "reply"  # the answer to a command or a pushed config (added in v1 revision 1: additive)
    # device -> server, retained connection state (also the last will); not sequenced
    STATUS = "status"
    # device -> server, only when a technician asks: a camera image for drawing zones. Not sequenced, never
    # stored by the server (added within v1: additive; agents that do not know the command never send it)
    SNAPSHOT = "snapshot"
    # server -> device
    CONFIG = "config"
    CMD = "cmd"

    @property
    def sequenced(self) -> bool:
        return self in _SEQUENCED

    @property
    def from_device(self) -> bool:
        return self not in (Channel.CONFIG, Channel.CMD)


_SEQUENCED = frozenset({Channel.QUEUE, Channel.BUTTON, Channel.FACILITY, Channel.HEALTH, Channel.REPLY})


def check_device_id(value: str) -> str:
    if not _DEVICE_ID.match(value):
        raise refuse("device_id_format", value=value)
    if value.startswith(RESERVED_PREFIX) or value in RESERVED_IDS:
        raise refuse("device_id_reserved", value=value, prefix=RESERVED_PREFIX, ids=sorted(RESERVED_IDS))
    return value


@dataclass(frozen=True, slots=True)
class Topic:
    device: str
    channel: Channel

    def __post_init__(self) -> None:
        check_device_id(self.device)

    def __str__(self) -> str:
        return f"{ROOT}/{MAJOR}/{self.device}/{self.channel.value}"

    @classmethod
    def parse(cls, topic: str) -> Topic:
        parts = topic.split("/")
        if len(parts) != 4 or parts[0] != ROOT or parts[1] != MAJOR:
            raise InvalidTopic(f"topic {topic!r} is not of the form {ROOT}/{MAJOR}/<device>/<channel>")
        try:
            channel = Channel(parts[3])
        except ValueError:
            raise InvalidTopic(f"topic {topic!r} has unknown channel {parts[3]!r}") from None
        try:
            return cls(parts[2], channel)
        except ValueError as exc:
            raise InvalidTopic(str(exc)) from None


def device_filter(channel: Channel | None = None) -> str:
    """Subscription filter for every device's messages on one channel (or all channels)."""
    return f"{ROOT}/{MAJOR}/+/{channel.value if channel else '+'}"
