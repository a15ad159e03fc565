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

from server.live import SNAPSHOT_KEEP_S, LiveState
from server.scale import live_codec
from server.scale.jetstream import Layout
from server.scale.live_codec import Shared

log = logging.getLogger(__name__)

LIVE = "lobbywatch-live"
SNAPSHOTS = "lobbywatch-snapshots"
PUBLISH_EVERY_S = 0.25  # a worker shares what changed this often: the API lags its worker by about this much
REFRESH_S = 15.0  # and what only moves on (a device's last message time) this often
PUT_AT_ONCE = 256  # writes in flight together
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

    def __init__(self, live: LiveState, values: KeyValue, snapshots: KeyValue, monotonic: Callable[[], float]) -> None:
        self._live = live
        self._buckets = {live_codec.BRANCH: values, live_codec.DEVICE: values, live_codec.SNAPSHOT: snapshots}
        self._monotonic = monotonic
        self._waiting: dict[tuple[str, str], Shared] = {}  # (kind, name): its value not shared yet
        self._shared: dict[tuple[str, str], tuple[object, float]] = {}  # (kind, name): (what it said, when)
        self.written = 0
        self.failed = 0

    async def run(self, stopping: asyncio.Event) -> None:
        while not stopping.is_set():
            await self.publish_once()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stopping.wait(), PUBLISH_EVERY_S)
        await self.publish_once(everything=True)  # before the worker hands its branches on

    async def publish_once(self, everything: bool = False) -> None:
        """Share what changed in what a person reads at once, the rest (a device's last message time, its
        sequence number) at most every `REFRESH_S`: per message, the bucket would take as many writes as the
        stream."""
        changes = self._live.take_changes()
        for kind, values in (
            (live_codec.BRANCH, changes.branches),
            (live_codec.DEVICE, changes.devices),
            (live_codec.SNAPSHOT, changes.snapshots),
        ):
            for name, value in values.items():
                self._waiting[(kind, name)] = value
        now = self._monotonic()
        due = [(key, value) for key, value in self._waiting.items() if everything or self._due(key, value, now)]
        for start in range(0, len(due), PUT_AT_ONCE):
            chunk = due[start : start + PUT_AT_ONCE]
            done = await asyncio.gather(*(self._put(key, value) for key, value in chunk), return_exceptions=True)
            failed = [outcome for outcome in done if isinstance(outcome, BaseException)]
            for (key, value), outcome in zip(chunk, done, strict=True):
                if isinstance(outcome, BaseException):
                    continue
                self.written += 1
                self._shared[key] = (live_codec.signature(value), now)
                if self._waiting.get(key) is value:
                    del self._waiting[key]
            if failed:
                self.failed += len(failed)
                log.warning("live state not shared now (%s); %d values wait for the next round", failed[0], len(failed))
                return

    def _due(self, key: tuple[str, str], value: Shared, now: float) -> bool:
        shared = self._shared.get(key)
        return shared is None or shared[0] != live_codec.signature(value) or now - shared[1] >= REFRESH_S

    async def _put(self, key: tuple[str, str], value: Shared) -> None:
        kind, name = key
        encoded = live_codec.encode(value)
        if len(encoded) > SNAPSHOT_MAX_BYTES:
            log.warning("%s of %s not shared: %d bytes, over %d", kind, name, len(encoded), SNAPSHOT_MAX_BYTES)
            return
        try:
            await self._buckets[kind].put(live_codec.key(kind, name), encoded)
        except TimeoutError as exc:  # nats-py's own TimeoutError is a NatsError; asyncio's is not
            raise NatsError(f"timed out: {exc}") from exc


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
