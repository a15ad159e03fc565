"""The live state as the scale-out's workers share it with the API: one key-value entry per branch (its zones,
readings and last call), one per device, one per calibration snapshot, each as JSON. Pure: no I/O.

Keys are `b.<branch>`, `d.<device>` and `s.<device>`, each name as one subject token (`subjects.token`), which
the key-value store accepts as it is."""

from __future__ import annotations

import base64
import json
from dataclasses import fields, replace
from datetime import datetime
from typing import Any

from server.live import BranchNow, CallNow, DeviceNow, LastReply, ReadingNow, SnapshotNow, ZoneNow
from server.scale.subjects import token

BRANCH, DEVICE, SNAPSHOT = "b", "d", "s"
Shared = BranchNow | DeviceNow | SnapshotNow


def encode(value: Shared) -> bytes:
    if isinstance(value, BranchNow):
        return encode_branch(value)
    if isinstance(value, DeviceNow):
        return encode_device(value)
    return encode_snapshot(value)


def signature(value: Shared) -> object:
    """What a person reads of `value`: when it changes, the API must hear of it at once; what only moves on
    with every message (the time of a count, a device's last message and sequence number) may wait a while."""
    if isinstance(value, BranchNow):
        return (
            {zone: (now.occupancy, now.error is None) for zone, now in value.zones.items()},
            {sensor: (now.value, now.ok) for sensor, now in value.readings.items()},
            value.call,
        )
    if isinstance(value, DeviceNow):
        return replace(value, last_seen=None, received_seq=0, clock_skew_ms=None)
    return value.id


def key(kind: str, name: str) -> str:
    return f"{kind}.{token(name)}"


def name_of(entry_key: str) -> tuple[str, str]:
    """The kind and the name of a key."""
    kind, _, encoded = entry_key.partition(".")
    if encoded.startswith("="):
        padded = encoded[1:] + "=" * (-len(encoded[1:]) % 4)
        return kind, base64.urlsafe_b64decode(padded).decode()
    return kind, encoded


def _at(text: str) -> datetime:
    return datetime.fromisoformat(text)


# -- branches ----------------------------------------------------------------------------------------------
def encode_branch(now: BranchNow) -> bytes:
    return json.dumps(
        {
            "zones": {z: [v.occupancy, v.error, v.at.isoformat(), v.device] for z, v in now.zones.items()},
            "readings": {s: [v.kind, v.value, v.ok, v.device, v.at.isoformat()] for s, v in now.readings.items()},
            "call": None
            if now.call is None
            else [now.call.button, now.call.kind, now.call.device, now.call.at.isoformat()],
        },
        separators=(",", ":"),
    ).encode()


def decode_branch(data: bytes) -> BranchNow:
    body = json.loads(data)
    call = body["call"]
    return BranchNow(
        {z: ZoneNow(occupancy, error, _at(at), device) for z, (occupancy, error, at, device) in body["zones"].items()},
        {
            s: ReadingNow(kind, value, ok, device, _at(at))
            for s, (kind, value, ok, device, at) in body["readings"].items()
        },
        None if call is None else CallNow(call[0], call[1], call[2], _at(call[3])),
    )


# -- devices -----------------------------------------------------------------------------------------------
def encode_device(now: DeviceNow) -> bytes:
    # every field, so that one added to DeviceNow is shared without a change here (a test decodes all of them)
    body: dict[str, Any] = {f.name: getattr(now, f.name) for f in fields(DeviceNow)}
    body["gaps"] = [list(gap) for gap in now.gaps]
    reply = now.last_reply
    if reply is not None:
        body["last_reply"] = {f.name: getattr(reply, f.name) for f in fields(LastReply)} | {"at": reply.at.isoformat()}
    return json.dumps(body, separators=(",", ":")).encode()


def decode_device(data: bytes) -> DeviceNow:
    body = json.loads(data)
    reply = body.pop("last_reply")
    gaps = tuple((int(first), int(last)) for first, last in body.pop("gaps"))
    body["fitting"] = tuple(body.get("fitting", ()))
    last_reply = None
    if reply is not None:
        last_reply = LastReply(**{**reply, "at": _at(reply["at"])})
    return DeviceNow(**body, gaps=gaps, last_reply=last_reply)


# -- calibration snapshots -----------------------------------------------------------------------------------
def encode_snapshot(now: SnapshotNow) -> bytes:
    return json.dumps(
        {
            "id": now.id,
            "jpeg": base64.b64encode(now.jpeg).decode(),
            "width": now.width,
            "height": now.height,
            "at": now.at.isoformat(),
        },
        separators=(",", ":"),
    ).encode()


def decode_snapshot(data: bytes, received: float) -> SnapshotNow:
    """`received`: this process's monotonic clock when the entry came (the snapshot is kept minutes from then)."""
    body = json.loads(data)
    jpeg = base64.b64decode(body["jpeg"])
    return SnapshotNow(body["id"], jpeg, body["width"], body["height"], _at(body["at"]), received)
