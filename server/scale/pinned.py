"""A partition's consumer pulled as its pinned client (NATS ADR-42, server >= 2.11): the server delivers to one
client of the priority group at a time, names it by the `Nats-Pin-Id` header, and pins another when it stops
pulling for the consumer's `priority_timeout`. nats-py has no API for this yet, so the pull is the raw request
`{"batch", "expires", "group", "id"}` to `$JS.API.CONSUMER.MSG.NEXT.<stream>.<consumer>`; status 423 says the
pin we sent is not the pin any more.

A pull request is always outstanding, busy or not, so that an owner keeps its pin while it works through a
backlog; what it may hold is bounded by the consumer's `max_ack_pending`.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass

from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.errors import ConnectionClosedError
from nats.errors import Error as NatsError

from server.scale import subjects
from server.scale.jetstream import GROUP, NS, JetStreamError, api

log = logging.getLogger(__name__)

PIN_HEADER = "Nats-Pin-Id"
STATUS_HEADER = "Status"
PULL_BATCH = 1000  # messages asked for per pull request
PULL_EXPIRES_S = 2.0  # a pull request lives this long (well under the priority timeout: the pin stays ours)
HEARTBEAT_S = 0.5  # the server's idle heartbeat while a request waits
REQUEST_GRACE_S = 0.5  # a request is given up this long after it expired, 408 or not
RETRY_S = 0.5  # after a refusal (a consumer leader changing, too many waiting requests)


@dataclass(frozen=True, slots=True)
class Delivery:
    partition: int
    pin: str
    subject: str
    data: bytes
    headers: dict[str, str]
    ack_subject: str
    stream_seq: int  # the message's place in the stream: the same for every delivery of it


class PinnedPull:
    """Pulls one partition. `deliver` gets each message (on the event loop: it must only hand it on); `lost` is
    told when the pin we held is no longer ours, before any message under a newer pin of ours."""

    def __init__(
        self,
        nc: Client,
        partition: int,
        deliver: Callable[[Delivery], None],
        lost: Callable[[int, str], None],
        *,
        batch: int = PULL_BATCH,
        expires_s: float = PULL_EXPIRES_S,
    ) -> None:
        self.partition = partition
        self.pin = ""  # ours while the server delivers to us; "" while we only stand by
        self._nc = nc
        self._deliver = deliver
        self._lost = lost
        self._batch = batch
        self._expires_s = expires_s
        self._consumer = subjects.consumer_name(partition)
        self._stopping = asyncio.Event()
        self._done = asyncio.Event()

    async def run(self) -> None:
        inbox = self._nc.new_inbox()
        # our own queue, not `Subscription.next_msg`: that makes a task, a timer and a uuid4 per message, a sixth
        # of a worker's time in a drain (py-spy of `bench.scale`)
        arrived: asyncio.Queue[Msg] = asyncio.Queue()

        async def put(msg: Msg) -> None:
            arrived.put_nowait(msg)

        sub = await self._nc.subscribe(inbox, cb=put, pending_msgs_limit=-1, pending_bytes_limit=-1)
        try:
            while not self._stopping.is_set():
                await self._one_request(arrived, inbox)
            await sub.unsubscribe()
        except ConnectionClosedError:
            pass  # the worker is closing its connection: it has stopped or dies
        finally:
            self._done.set()

    def stop(self) -> None:
        """Ask no more; the request outstanding is seen to its end (what it brings is still ours to take)."""
        self._stopping.set()

    async def release(self) -> None:
        """Stop pulling and hand the partition on at once, if it is still ours: once our last request is over
        (else the server could pin it again), and only the pin we were given (the server does not check who
        asks it to unpin)."""
        self.stop()
        await self._done.wait()
        pin, self.pin = self.pin, ""
        if not pin:
            return
        await unpin(self._nc, self.partition, pin)
        self._lost(self.partition, pin)

    async def _one_request(self, arrived: asyncio.Queue[Msg], inbox: str) -> None:
        request = {
            "batch": self._batch,
            "expires": int(self._expires_s * NS),
            "idle_heartbeat": int(HEARTBEAT_S * NS),
            "group": GROUP,
            "id": self.pin,
        }
        loop = asyncio.get_running_loop()
        # the request's end: the server says nothing when a request expires while the consumer is stalled at its
        # max_ack_pending, and a pin lapses if no request comes for the priority timeout
        ends = loop.time() + self._expires_s + REQUEST_GRACE_S
        await self._nc.publish(
            f"$JS.API.CONSUMER.MSG.NEXT.{subjects.STREAM}.{self._consumer}", json.dumps(request).encode(), inbox
        )
        got = 0
        while got < self._batch:
            if arrived.empty():
                try:
                    msg = await asyncio.wait_for(arrived.get(), timeout=max(0.01, ends - loop.time()))
                except TimeoutError:
                    return  # over, or the connection lost it (a reconnect loses waiting requests): ask again
            else:
                msg = arrived.get_nowait()
            status = (msg.headers or {}).get(STATUS_HEADER)
            if status is None:
                got += 1
                self._take(msg)
            elif status == "100":
                continue  # idle heartbeat
            elif status == "423":
                log.info("partition %d: the server says our pin is not the pin any more", self.partition)
                self._lose()
                return
            elif status in ("404", "408"):
                return  # this request is over
            else:  # 409: the consumer's leader moved, too many waiting requests, ...
                log.info("partition %d: pull refused (%s): retrying", self.partition, status)
                await asyncio.sleep(RETRY_S)
                return

    def _take(self, msg: Msg) -> None:
        headers = dict(msg.headers or {})
        pin = headers.get(PIN_HEADER, "")
        if pin != self.pin:
            if self.pin:  # pinned anew without having heard of the loss (a reconnect): the old pin is gone
                log.info("partition %d: pinned anew", self.partition)
                self._lose()
            self.pin = pin
        self._deliver(
            Delivery(self.partition, pin, msg.subject, msg.data, headers, msg.reply, msg.metadata.sequence.stream)
        )

    def _lose(self) -> None:
        pin, self.pin = self.pin, ""
        if pin:
            self._lost(self.partition, pin)


async def pinned_to(nc: Client, partition: int) -> str:
    """The pin `partition`'s consumer holds now ("" while none: nothing was delivered since the last one went)."""
    consumer = subjects.consumer_name(partition)
    info = await api(nc, f"CONSUMER.INFO.{subjects.STREAM}.{consumer}")
    groups = {g.get("group"): g.get("pinned_client_id") for g in info.get("priority_groups") or []}
    return groups.get(GROUP) or ""


async def unpin(nc: Client, partition: int, pin: str) -> bool:
    """Have the server pin another client of `partition`'s consumer at once, if `pin` is still its pin: the
    server does not check who asks, so the pin is read first (a worker's own on release, a gone worker's last
    listed one on taking it back). True when unpinned."""
    return await pinned_to(nc, partition) == pin and await _unpin_as_read(nc, partition)


async def _unpin_as_read(nc: Client, partition: int) -> bool:
    """Unpin whatever `partition`'s consumer holds: only right after its pin was read and found to be the one."""
    consumer = subjects.consumer_name(partition)
    try:
        await api(nc, f"CONSUMER.UNPIN.{subjects.STREAM}.{consumer}", {"group": GROUP})
    except JetStreamError as exc:  # pinned to another meanwhile: nothing of that pin's to release
        log.info("partition %d: unpin refused: %s", partition, exc)
        return False
    return True


async def take_back(nc: Client, listed: Mapping[int, str], theirs: Collection[int], live: Collection[str]) -> list[int]:
    """Unpin what a gone worker held, so that the server pins the workers now preferred at once instead of after
    the priority timeout: the pins it `listed`, and on the partitions it was preferred for (`theirs`), any pin no
    live worker holds. A worker learns its pin with the first message under it, and lists it at its next
    heartbeat: one killed in between leaves a pin it never listed (most likely what a CI run met: a worker killed
    just after it was handed its partitions, none of them logged as unpinned). The partitions unpinned, by number."""
    unpinned = []
    for partition in sorted({*listed, *theirs}):
        try:
            pin = await pinned_to(nc, partition)
            if not pin or pin in live or (pin != listed.get(partition) and partition not in theirs):
                continue
            if await _unpin_as_read(nc, partition):
                unpinned.append(partition)
        except (JetStreamError, NatsError, TimeoutError) as exc:  # its priority timeout will do it
            log.warning("partition %d of a gone worker not unpinned (%s)", partition, exc)
    return unpinned
