"""The live state the scale-out shares: the workers write their branches' and devices' latest values into a
key-value bucket of the NATS cluster, and every API process keeps a copy of it by watching the bucket.

Why a NATS bucket and not PostgreSQL: the values change many times a second over the whole network and only the
latest counts; a bucket keeps one value per key, replicated like the stream, and pushes each change to the
readers as it is written, where a table would be polled and its rows rewritten (vacuum) for ever. A branch's
entry is written only by the worker that owns the branch, so an entry moves with its partition at no cost: the new
owner's first change overwrites it. Calibration snapshots go into a bucket of their own, held in memory only and
expiring as the single process forgets them (`live.SNAPSHOT_KEEP_S`)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable

from nats.aio.client import Client
from nats.errors import Error as NatsError
from nats.js.api import KeyValueConfig, StorageType
from nats.js.errors import BucketNotFoundError
from nats.js.kv import KeyValue

from server.live import SNAPSHOT_KEEP_S, LiveChanges, LiveState
from server.scale import live_codec
from server.scale.jetstream import Layout

log = logging.getLogger(__name__)

LIVE = "lobbywatch-live"
SNAPSHOTS = "lobbywatch-snapshots"
PUBLISH_EVERY_S = 0.25  # a worker shares what changed this often: the API lags its worker by about this much
SNAPSHOT_MAX_BYTES = 4 * 1024 * 1024  # a camera frame as base64 JSON; a larger one is not shared (and logged)


def configs(layout: Layout) -> list[KeyValueConfig]:
    return [
        KeyValueConfig(bucket=LIVE, history=1, storage=StorageType.FILE, replicas=layout.replicas),
        # images stay off disks: in memory, for minutes, as in the single process
        KeyValueConfig(
            bucket=SNAPSHOTS,
            history=1,
            ttl=SNAPSHOT_KEEP_S,
            storage=StorageType.MEMORY,
            replicas=layout.replicas,
            max_value_size=SNAPSHOT_MAX_BYTES,
        ),
    ]


async def ensure(nc: Client, layout: Layout) -> tuple[KeyValue, KeyValue]:
    """The two buckets, made if missing (by the workers, idempotently; two workers making one at once agree)."""
    js = nc.jetstream()
    made = []
    for config in configs(layout):
        try:
            made.append(await js.key_value(config.bucket))
        except BucketNotFoundError:
            made.append(await js.create_key_value(config))
    return made[0], made[1]


async def await_buckets(nc: Client, every_s: float = 2.0) -> tuple[KeyValue, KeyValue]:
    """The two buckets, once a worker has made them (an API process may not make them)."""
    js = nc.jetstream()
    said = False
    while True:
        try:
            return await js.key_value(LIVE), await js.key_value(SNAPSHOTS)
        except BucketNotFoundError:
            if not said:
                log.warning("live state buckets %s, %s not found: waiting for a worker to make them", LIVE, SNAPSHOTS)
                said = True
        await asyncio.sleep(every_s)


class Publisher:
    """A worker's side: what its live state changed, written every `PUBLISH_EVERY_S`. A write that fails (the
    cluster electing a leader) is tried again with the next round's, newer values."""

    def __init__(self, live: LiveState, values: KeyValue, snapshots: KeyValue) -> None:
        self._live = live
        self._values = values
        self._snapshots = snapshots
        self._pending: dict[tuple[KeyValue, str], bytes] = {}
        self.written = 0
        self.failed = 0

    async def run(self, stopping: asyncio.Event) -> None:
        while not stopping.is_set():
            await self.publish_once()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stopping.wait(), PUBLISH_EVERY_S)
        await self.publish_once()  # what the last batch changed, before the worker hands its branches on

    async def publish_once(self) -> None:
        self._take(self._live.take_changes())
        for (bucket, key), value in list(self._pending.items()):
            try:
                await bucket.put(key, value)
            except (NatsError, TimeoutError) as exc:
                self.failed += 1
                log.warning(
                    "live state not shared now (%s); %d values wait for the next round", exc, len(self._pending)
                )
                return
            self.written += 1
            if self._pending.get((bucket, key)) is value:
                del self._pending[(bucket, key)]

    def _take(self, changes: LiveChanges) -> None:
        for branch, now in changes.branches.items():
            self._pending[(self._values, live_codec.key(live_codec.BRANCH, branch))] = live_codec.encode_branch(now)
        for device, seen in changes.devices.items():
            self._pending[(self._values, live_codec.key(live_codec.DEVICE, device))] = live_codec.encode_device(seen)
        for device, snapshot in changes.snapshots.items():
            encoded = live_codec.encode_snapshot(snapshot)
            if len(encoded) > SNAPSHOT_MAX_BYTES:
                log.warning("snapshot of %s not shared: %d bytes, over %d", device, len(encoded), SNAPSHOT_MAX_BYTES)
                continue
            self._pending[(self._snapshots, live_codec.key(live_codec.SNAPSHOT, device))] = encoded


class Mirror:
    """An API process's side: the buckets' entries, as they are written, into the process's own live state."""

    def __init__(self, live: LiveState, monotonic: Callable[[], float]) -> None:
        """`monotonic`: the clock the live state's snapshots are kept by."""
        self._live = live
        self._monotonic = monotonic
        self.applied = 0
        self.unreadable = 0

    async def follow(self, values: KeyValue, snapshots: KeyValue) -> None:
        await asyncio.gather(self._follow(values), self._follow(snapshots))

    async def _follow(self, bucket: KeyValue) -> None:
        watcher = await bucket.watchall()
        async for entry in watcher:
            if entry is None:  # the end of what the bucket held when the watch began
                continue
            if entry.operation is not None or entry.value is None:
                continue  # deleted or expired: a snapshot's time is up, and the live state forgets it by itself
            self.apply(entry.key, entry.value)

    def apply(self, key: str, value: bytes) -> None:
        try:
            kind, name = live_codec.name_of(key)
            if kind == live_codec.BRANCH:
                self._live.put_branch(name, live_codec.decode_branch(value))
            elif kind == live_codec.DEVICE:
                self._live.set_devices({name: live_codec.decode_device(value)})
            elif kind == live_codec.SNAPSHOT:
                self._live.set_snapshot(name, live_codec.decode_snapshot(value, self._monotonic()))
            else:
                raise ValueError(f"unknown kind {kind!r}")
        except (ValueError, KeyError, TypeError) as exc:  # a newer worker's format, or a bug: named, not fatal
            self.unreadable += 1
            log.error("live state entry %s not understood: %s", key, exc)
            return
        self.applied += 1
