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
import zlib
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
PUBLISH_EVERY_S = 0.5  # a worker shares what changed this often: the API lags its worker by about this much
# and what only moves on (a device's last message time) after between half and all of this, a fraction fixed for
# each entry: entries first shared in one round (a worker's start, a partition taken on) would otherwise all come
# due together in a later round, every device of the worker's partitions at once, replicated three ways
REFRESH_S = 15.0
# an entry larger than this is not shared, and logged: a snapshot's image is at most 96 KiB of base64 (the
# protocol's MAX_SNAPSHOT_BYTES), and NATS refuses a message over its max_payload (1 MiB by default)
MAX_ENTRY_BYTES = 256 * 1024


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
            max_value_size=MAX_ENTRY_BYTES,
        ),
    ]


async def ensure(nc: Client, layout: Layout) -> None:
    """The two buckets, made if missing (by the workers, idempotently; two workers making one at once agree)."""
    js = nc.jetstream()
    for config in configs(layout):
        try:
            await js.key_value(config.bucket)
        except BucketNotFoundError:
            await js.create_key_value(config)


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
    """A worker's side: what its live state changed, written every `PUBLISH_EVERY_S`.

    Written as plain publishes to the buckets' subjects, not acknowledged puts: a put waits for the stream's
    acknowledgement, and cost the worker about 80 us of CPU per report in `bench.scale` (a third more per
    message), where a publish costs a few. A publish lost (a NATS node dying as it is sent) leaves an entry a
    change behind until its next change, or its next refresh (`REFRESH_S`) while its branch or device still
    reports; the live state is a view, the stream and the database hold the facts."""

    def __init__(self, live: LiveState, nc: Client, monotonic: Callable[[], float]) -> None:
        self._live = live
        self._nc = nc
        self._monotonic = monotonic
        # (kind, name): its newest value not shared yet, and what a person reads of it
        self._waiting: dict[tuple[str, str], tuple[Shared, object]] = {}
        self._shared: dict[tuple[str, str], tuple[object, float]] = {}  # (kind, name): (what it said, when)
        self.written = 0
        self.failed = 0

    async def run(self, stopping: asyncio.Event) -> None:
        while not stopping.is_set():
            try:
                await self.publish_once()
            except Exception:  # a bug of ours must not end the sharing (nor let the changes pile up unshared)
                self.failed += 1
                log.exception("live state round failed; the next round goes on")
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
                self._waiting[(kind, name)] = (value, live_codec.signature(value))
        now = self._monotonic()
        for key, (value, signature) in list(self._waiting.items()):
            shared = self._shared.get(key)
            if not (everything or shared is None or shared[0] != signature or now - shared[1] >= refresh_after(key)):
                continue
            try:
                await self._publish(key, value)
            except NatsError as exc:  # the client's buffer full while it reconnects: the next round tries again
                self.failed += 1
                log.warning("live state not shared now (%s); %d values wait", exc, len(self._waiting))
                break
            self.written += 1
            self._shared[key] = (signature, now)
            del self._waiting[key]
        with contextlib.suppress(NatsError, TimeoutError):
            await self._nc.flush(timeout=5)

    async def _publish(self, key: tuple[str, str], value: Shared) -> None:
        kind, name = key
        encoded = live_codec.encode(value)
        if len(encoded) > MAX_ENTRY_BYTES:
            log.warning("%s of %s not shared: %d bytes, over %d", kind, name, len(encoded), MAX_ENTRY_BYTES)
            return
        bucket = SNAPSHOTS if kind == live_codec.SNAPSHOT else LIVE
        await self._nc.publish(f"$KV.{bucket}.{live_codec.key(kind, name)}", encoded)  # buffered: a flush sends


def refresh_after(key: tuple[str, str]) -> float:
    """Seconds after which an entry that only moved on is shared again: between half and all of `REFRESH_S`, the
    same for a key every time, so that entries shared together drift apart instead of coming due together."""
    kind, name = key
    return REFRESH_S * (0.5 + (zlib.crc32(f"{kind}/{name}".encode()) % 1024) / 2048)


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
