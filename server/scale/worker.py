"""`lobbywatch worker`: owns partitions of the stream and runs their branches' processors, alerts and timers.

Partitions are spread over the live workers by rendezvous hashing of their names (`placement`); the workers
find each other in a key-value bucket whose entries expire when a worker stops renewing its own. A worker pulls
the partitions it prefers among the live workers, and no others: a standby pulling beside the owner won the pin
whenever a consumer's leader moved (a NATS node lost), and the partition went back and forth between the
workers (notices 9-15 s late in `bench.scale`'s `node_kill`). A worker holding a partition that another live
worker prefers hands it over (releasing only its own pin) once that worker has been seen for `SETTLE_S`. On
SIGTERM it hands every partition on at once.

A worker killed with -9 cannot hand anything on, and the server would wait out the consumers' priority timeout
before pinning another. So each worker lists its pins in its entry and answers probes (`liveness`); when a
listed worker's connection is gone, the others leave it out of the live workers, so that each pulls what it now
prefers of the gone worker's partitions, and the first of them by name unpins those partitions (the pins the gone
worker listed, and any pin no live worker holds on the partitions it was preferred for: one it had not listed yet)
and deletes its entry, so that the server pins the new pulls at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import signal
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar

from nats.aio.client import Client
from nats.errors import Error as NatsError
from nats.js.api import KeyValueConfig, StorageType
from nats.js.errors import BucketNotFoundError, KeyNotFoundError, NoKeysError
from nats.js.kv import KeyValue

from server import collector
from server.ingest.mqtt_source import Received
from server.ingest.worker import IngestWorker
from server.runtime import Runtime
from server.scale import heartbeat, jetstream, live_bucket, liveness, subjects
from server.scale.owned import OwnedPipeline, Ownership
from server.scale.pinned import Delivery, PinnedPull, take_back
from server.scale.placement import preferred, preferred_partitions
from server.settings import Settings
from server.status import worker_figures

log = logging.getLogger(__name__)
T = TypeVar("T")

MEMBERS = "lobbywatch-workers"  # the key-value bucket of live workers
HEARTBEAT_S = 1.0  # a worker renews its entry, and looks at the others', this often
MEMBER_TTL_S = 5.0  # an entry not renewed this long is gone: that worker is taken for dead
SETUP_TRIES = 10  # about a minute of a cluster that does not answer before a worker gives up starting
SETTLE_S = 3.0  # a worker seen this long gets the partitions it prefers handed to it


class WorkerRuntime(Runtime):
    """The server's wiring with messages from JetStream instead of the MQTT broker (the MQTT connection stays,
    publishing commands and resend requests to devices), over the partitions this worker owns."""

    pipeline_type = OwnedPipeline
    shares_live = True
    # acknowledged only once InfluxDB has the points: a spool on this worker's disk dies with it when the worker
    # is lost for good, and JetStream keeps what InfluxDB has not taken meanwhile, replicated, for the next owner
    spools_points = False

    def __init__(self, settings: Settings, ownership: Ownership, name: str, hold_s: float, **kwargs: Any) -> None:
        self.ownership = ownership
        self.name = name
        self._hold_s = hold_s
        super().__init__(settings, receive=False, **kwargs)
        # unbounded here: what a worker holds is bounded by each partition's max_ack_pending at the server, and
        # the event loop handing messages on must never wait
        self.worker = IngestWorker(self.pipeline, self._ack, max_backlog=0, ask_resend=self._ask_resend)
        self.owned.on_people = self.people_acted  # what people did in an API process

    def pipeline_options(self) -> dict[str, Any]:
        return {"ownership": self.ownership, "worker": self.name, "hold_s": self._hold_s}

    @property
    def owned(self) -> OwnedPipeline:
        assert isinstance(self.pipeline, OwnedPipeline)
        return self.pipeline

    def _ack(self, batch: Sequence[Received]) -> None:
        """Nothing: the pipeline acknowledges to JetStream what it processed (it holds some back a while)."""


class Worker:
    def __init__(
        self,
        runtime: WorkerRuntime,
        nc: Client,
        name: str,
        layout: jetstream.Layout,
        publisher: live_bucket.Publisher,
    ) -> None:
        self.runtime = runtime
        self.publisher = publisher
        self.name = name
        self._nc = nc
        self._layout = layout
        self._pulls: dict[int, PinnedPull] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._released: dict[int, str] = {}  # partition: the worker we handed it to (not pulled while it lives)
        self._seen: dict[str, float] = {}  # worker: when first seen alive
        # by partition, the stream sequence numbers we hold unacknowledged: the server delivers them again after
        # its ack wait while a batch is slow (storage down), and a second copy in our queue helps nobody
        self._in_flight: dict[int, set[int]] = {}
        self._suspects = liveness.Suspects()
        self._stopping = asyncio.Event()

    def stop(self) -> None:
        self._stopping.set()

    async def run(self) -> None:
        loop = asyncio.get_running_loop()

        def acknowledge(done: list[Delivery]) -> None:  # on the ingest thread
            loop.call_soon_threadsafe(self._acknowledge, done, b"+ACK")

        def give_back(others: list[Delivery]) -> None:  # on the ingest thread
            if others:
                loop.call_soon_threadsafe(self._acknowledge, others, b"-NAK")

        self.runtime.owned.acknowledge = acknowledge
        self.runtime.owned.give_back = give_back
        members = await self._members()
        await self._nc.subscribe(subjects.REGISTRY_CHANGED, cb=self._registry_changed)
        await self._nc.subscribe(liveness.subject(self.name), cb=liveness.answer)
        self.runtime.start()
        self._spawn(self.publisher.run(self._stopping))
        listed = time.monotonic()

        def healthy() -> bool:  # connected, and in the worker list (a member the others can place partitions on)
            return self._nc.is_connected and time.monotonic() - listed < MEMBER_TTL_S

        self._spawn(heartbeat.beat(self.runtime.settings.heartbeat_file, healthy, self._stopping))
        try:
            alive = {self.name}
            while not self._stopping.is_set():
                try:
                    await members.put(self.name, self._entry())
                    listed = time.monotonic()
                    alive = await self._alive(members)
                    alive -= await self._gone(members, alive)
                except (NatsError, TimeoutError) as exc:  # a bucket just made, a node lost: as last seen
                    log.warning("worker list not readable now (%s); placing partitions as last seen", exc)
                self._place(alive)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stopping.wait(), HEARTBEAT_S)
        finally:
            await asyncio.gather(*(pull.release() for pull in self._pulls.values()), return_exceptions=True)
            with contextlib.suppress(NatsError, TimeoutError):
                await members.delete(self.name)
            await asyncio.to_thread(self.runtime.stop)
            await self.publisher.publish_once(everything=True)  # what its last batches changed

    # -- placement ---------------------------------------------------------------------------------
    def _place(self, alive: set[str]) -> None:
        now = time.monotonic()
        self._note_standing_in(alive)
        for partition in range(self._layout.partitions):
            owner = preferred(partition, alive)
            pull = self._pulls.get(partition)
            if pull is None:
                handed = self._released.get(partition)
                if handed is not None and handed in alive:
                    continue
                self._released.pop(partition, None)
                if owner == self.name:
                    self._pull(partition)
            elif owner not in (None, self.name) and now - self._seen.get(owner, now) >= SETTLE_S:
                # pinned or not: a pull beside the owner's wins the pin whenever a consumer's leader moves (one
                # never pinned is one made while this worker saw no other, at its start)
                assert owner is not None
                del self._pulls[partition]
                self._released[partition] = owner
                self._spawn(pull.release())

    def _note_standing_in(self, alive: set[str]) -> None:
        """Tell the ingest thread which partitions another of these live workers prefers."""
        theirs = {p for p in range(self._layout.partitions) if preferred(p, alive) not in (None, self.name)}
        standing_in = self.runtime.ownership.standing_in
        standing_in.intersection_update(theirs)
        standing_in.update(theirs)

    def _pull(self, partition: int) -> None:
        pull = PinnedPull(self._nc, partition, self._deliver, self._lost)
        self._pulls[partition] = pull
        self._spawn(pull.run())

    def _spawn(self, work: Any) -> None:
        task = asyncio.create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _members(self) -> KeyValue:
        """The worker list's bucket, made by whichever worker comes first (two making it at once agree)."""
        js = self._nc.jetstream()

        async def bucket() -> KeyValue:
            try:
                return await js.key_value(MEMBERS)
            except BucketNotFoundError:
                return await js.create_key_value(
                    KeyValueConfig(
                        bucket=MEMBERS,
                        ttl=MEMBER_TTL_S,
                        history=1,
                        storage=StorageType.MEMORY,
                        replicas=self._layout.replicas,
                    )
                )

        return await asked_again("the worker list's bucket", bucket)

    def _entry(self) -> bytes:
        """This worker's entry in the worker list: its figures (an API process shows them) and its pins."""
        pins = {str(partition): pull.pin for partition, pull in self._pulls.items() if pull.pin}
        return json.dumps({**worker_figures(self.runtime.status()), "pins": pins}).encode()

    async def _gone(self, members: KeyValue, alive: set[str]) -> set[str]:
        """The listed workers whose connection has been gone for `liveness.GONE_AFTER_S`. The first live worker
        by name unpins what each had pinned and deletes its entry (the others only leave it out meanwhile)."""
        others = sorted(alive - {self.name})
        heard = await asyncio.gather(*(liveness.probe(self._nc, worker) for worker in others))
        now = time.monotonic()
        self._suspects.keep_only(others)
        for worker, listens in zip(others, heard, strict=True):
            self._suspects.heard(worker, listens, now)
        gone = self._suspects.gone(now)
        self._note_standing_in(alive - gone)  # before their pins go: what we win of theirs is ours to keep
        if gone and min(alive - gone) == self.name:
            for worker in sorted(gone):
                await self._take_back(members, worker, alive, gone)
        return gone

    async def _take_back(self, members: KeyValue, worker: str, alive: set[str], gone: set[str]) -> None:
        try:
            entry = await members.get(worker)
        except KeyNotFoundError:
            return  # deleted meanwhile: it stopped, or another worker took its partitions back
        live = {pull.pin for pull in self._pulls.values() if pull.pin}
        for other in alive - gone - {self.name}:
            with contextlib.suppress(KeyNotFoundError):
                live.update(liveness.pins_of((await members.get(other)).value).values())
        theirs = preferred_partitions(worker, self._layout.partitions, alive)
        unpinned = await take_back(self._nc, liveness.pins_of(entry.value), theirs, live)
        await members.delete(worker)
        log.warning(
            "worker %s is gone (its connection closed): its partitions %s unpinned for the workers now preferred",
            worker,
            unpinned,
        )

    async def _alive(self, members: KeyValue) -> set[str]:
        try:
            alive = set(await members.keys())
        except NoKeysError:
            alive = set()
        alive.add(self.name)
        now = time.monotonic()
        for worker in alive:
            self._seen.setdefault(worker, now)
        for worker in set(self._seen) - alive:
            del self._seen[worker]
        return alive

    # -- messages ----------------------------------------------------------------------------------
    def _lost(self, partition: int, pin: str) -> None:
        self._in_flight.pop(partition, None)
        self.runtime.ownership.lost(partition, pin)

    def _deliver(self, delivery: Delivery) -> None:
        held = self._in_flight.setdefault(delivery.partition, set())
        if delivery.stream_seq in held:
            return
        held.add(delivery.stream_seq)
        topic = delivery.headers.get(subjects.TOPIC_HEADER, "")
        try:
            received_at = float(delivery.headers.get(subjects.RECEIVED_HEADER, ""))
        except ValueError:
            received_at = time.time()
        self.runtime.worker.put(Received(topic, delivery.data, received_at, 0, 0, origin=delivery))

    def _acknowledge(self, deliveries: list[Delivery], answer: bytes) -> None:
        self._spawn(self._send_acks(deliveries, answer))

    async def _send_acks(self, deliveries: list[Delivery], answer: bytes) -> None:
        """`+ACK`: done; `-NAK`: to be delivered again at once (to whoever holds the pin now)."""
        for delivery in deliveries:
            self._in_flight.get(delivery.partition, set()).discard(delivery.stream_seq)
            await self._nc.publish(delivery.ack_subject, answer)

    async def _registry_changed(self, _msg: object) -> None:
        await asyncio.to_thread(self.runtime.directory.reload)


# How often a thread holding the GIL is made to let others run (Python's default: 5 ms). The event loop (pulls,
# acknowledgements) would otherwise wait up to that long for each of its many small steps while the ingest thread
# computes: it fell seconds behind in a flood and the pins lapsed.
SWITCH_INTERVAL_S = 0.0005


async def work(settings: Settings, name: str) -> dict[str, int]:
    sys.setswitchinterval(SWITCH_INTERVAL_S)
    layout = jetstream.layout(settings)
    nc = await jetstream.connect(settings, f"lobbywatch-worker-{name}", "worker")
    await prepare(nc, layout)
    ownership = Ownership(layout.partitions)
    runtime = WorkerRuntime(replace_client_id(settings, name), ownership, name, hold_s=layout.ack_wait_s + 1.0)
    worker = Worker(runtime, nc, name, layout, live_bucket.Publisher(runtime.live, nc, time.monotonic))
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, worker.stop)
    log.info("worker %s: %d partitions, NATS %s", name, layout.partitions, settings.nats_url)
    with collector.serving():
        try:
            await worker.run()
        finally:
            await nc.drain()
    owned = runtime.owned
    return {
        "received": owned.stats.received,
        "claims": owned.claims,
        "fenced": owned.fenced,
        "waited_for_order": owned.in_order.waited,
        "gaps_given_up": owned.in_order.given_up,
    }


async def prepare(nc: Client, layout: jetstream.Layout) -> None:
    """The stream, its consumers and the live state's buckets, made or checked (a refusal, such as a stream
    partitioned otherwise, is not asked again)."""

    async def made() -> None:
        await jetstream.ensure(nc, layout)
        await live_bucket.ensure(nc, layout)

    await asked_again("the stream and the live state's buckets", made)


async def asked_again(what: str, ask: Callable[[], Awaitable[T]]) -> T:
    """`ask()`, again while the cluster does not answer in time: just started, electing leaders, or busy (a
    worker that gave up on the first timeout died at start, in CI and in a bench run)."""
    for attempt in range(1, SETUP_TRIES + 1):
        try:
            return await ask()
        except (NatsError, TimeoutError) as exc:
            if attempt == SETUP_TRIES:
                raise
            log.warning("%s: NATS did not answer in time (%s; try %d of %d)", what, exc, attempt, SETUP_TRIES)
            await asyncio.sleep(min(attempt, 5))
    raise AssertionError("unreachable")  # the last try returns or raises


def replace_client_id(settings: Settings, name: str) -> Settings:
    """Each worker its own MQTT client id (its persistent session for commands to devices)."""
    return settings.model_copy(update={"mqtt_client_id": f"lobbywatch-worker-{name}"})
