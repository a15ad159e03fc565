"""Where devices' messages live in JetStream: one stream, subjects that carry the branch, partitions by branch.

A forwarder publishes each MQTT message to `lw.in.<branch>.<device>.<channel>`; the stream rewrites the subject
to `lw.p.<partition>.<branch>.<device>.<channel>` with the server's `partition()` function over the branch token,
so every message of a branch lands in one partition and one worker owns the branch. Pure: no I/O.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
from dataclasses import dataclass

STREAM = "LOBBYWATCH_IN"
IN = "lw.in"
PARTITIONED = "lw.p"
DEFAULT_PARTITIONS = 64  # fixed when the stream is made: more partitions than workers, so they spread evenly
NO_BRANCH = "_"  # a device the registry does not know: its messages still go through, to be refused and kept
TOPIC_HEADER = "Lw-Topic"  # the MQTT topic, as the device published it
RECEIVED_HEADER = "Lw-Received"  # when the broker handed it to a forwarder (epoch seconds)
ID_HEADER = "Nats-Msg-Id"  # JetStream drops a second message with the same id within the duplicate window

REGISTRY_CHANGED = "lw.registry.changed"  # announced by whoever changes devices (the API): read the registry again
# what people did to a branch's alerts, from an API process to the branch's worker, in the branch's partition: a
# device token `token()` never makes (it keeps `~` out), and which a forwarder may not publish (permissions.conf)
PEOPLE = "~people"
PEOPLE_TOPIC = "~people/alert"  # its TOPIC_HEADER

_PLAIN = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


def token(text: str) -> str:
    """`text` as one subject token: kept when it is plain, else `=` and its URL-safe base64 (a branch id from a
    site file may hold dots, spaces or non-ASCII, which a subject cannot)."""
    if _PLAIN.match(text):
        return text
    return "=" + base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


def subject(branch: str | None, device: str, channel: str) -> str:
    return f"{IN}.{NO_BRANCH if branch is None else token(branch)}.{token(device)}.{token(channel)}"


def people_subject(branch: str) -> str:
    return f"{IN}.{token(branch)}.{PEOPLE}.alert"


def from_people(subject_name: str) -> bool:
    """A message an API process published (`lw.p.<partition>.<branch>.~people.alert`), not a device's."""
    parts = subject_name.split(".")
    return len(parts) == 6 and parts[4] == PEOPLE


def partition_transform(partitions: int) -> dict[str, str]:
    """The stream's subject transform: the branch token picks the partition."""
    return {
        "src": f"{IN}.*.*.*",
        "dest": f"{PARTITIONED}.{{{{partition({partitions},1)}}}}.{{{{wildcard(1)}}}}"
        ".{{wildcard(2)}}.{{wildcard(3)}}",
    }


def partition_filter(partition: int) -> str:
    # the consumer's filter must be a subset of the transform's output; `lw.p.<k>.>` is refused as not one
    return f"{PARTITIONED}.{partition}.*.*.*"


def partition_of(subject_name: str) -> int:
    """The partition of a message as the stream delivers it (`lw.p.<partition>.…`)."""
    return int(subject_name.split(".")[2])


def branch_partition(branch: str, partitions: int) -> int:
    """The partition the stream puts a branch in, computed as the NATS server does (`partition()` is FNV-1a,
    32 bits, of the token, modulo the partitions): a worker gaining a partition knows its branches before their
    first message, for the timers (offline by silence, call deadlines, reminders)."""
    h = 0x811C9DC5
    for byte in token(branch).encode():
        h = ((h ^ byte) * 0x01000193) & 0xFFFFFFFF
    return h % partitions


def consumer_name(partition: int) -> str:
    return f"p{partition:03d}"


@dataclass(frozen=True, slots=True)
class MessageId:
    """What makes a republished message the same message: the device's outbox stream and sequence number when it
    has them (a forwarder killed after JetStream stored it, or a device resending), else the bytes themselves."""

    value: str

    @classmethod
    def of(cls, device: str, payload: bytes) -> MessageId:
        try:
            body = json.loads(payload)
            stream, seq = body["stream"], body["seq"]
        except (ValueError, KeyError, TypeError):
            stream = seq = None
        if isinstance(stream, str) and isinstance(seq, int) and not isinstance(seq, bool) and len(stream) <= 64:
            return cls(f"{device}/{stream}/{seq}")
        return cls(f"{device}/#{hashlib.sha256(payload).hexdigest()[:32]}")
