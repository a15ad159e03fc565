"""`lobbywatch forward`: devices' messages from Mosquitto into JetStream, stateless, any number side by side.

Each forwarder is one member of an MQTT 5 shared subscription. It names each message's branch (device -> branch
from the registry) in its subject, publishes the raw payload with an id that makes a republish a duplicate, and
acknowledges the MQTT message only after JetStream's PubAck: a forwarder killed at any point loses nothing (the
broker gives what it had not acknowledged to another member), and one that cannot publish leaves the messages
with the broker. Nothing is decoded beyond the sequence number: refusing bad input is the worker's, which keeps
the dead letters.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from nats.aio.client import Client

from lobbywatch.protocol import InvalidTopic, Topic
from server.ingest.mqtt_source import Received
from server.scale import subjects
from server.scale.publisher import Publisher

log = logging.getLogger(__name__)


@dataclass
class ForwardStats:
    received: int = 0
    forwarded: int = 0  # acknowledged by JetStream, then to the broker
    duplicates: int = 0  # JetStream had it already (a republish)
    retries: int = 0  # publishes tried again
    unknown_device: int = 0  # sent on with no branch: the worker refuses them and keeps them as dead letters


def route(topic: str, branch_of: Callable[[str], str | None]) -> tuple[str, str]:
    """The JetStream subject of an MQTT message, and its device (`_` for a topic outside the contract)."""
    try:
        parsed = Topic.parse(topic)
    except InvalidTopic:
        return subjects.subject(None, "_", "_"), "_"
    return subjects.subject(branch_of(parsed.device), parsed.device, parsed.channel.value), parsed.device


IN_FLIGHT = 4000  # messages taken from the broker and not yet stored by JetStream


class Forwarder:
    def __init__(
        self,
        nc: Client,
        branch_of: Callable[[str], str | None],
        ack: Callable[[Sequence[Received]], None],
        in_flight: int = IN_FLIGHT,
    ) -> None:
        self.stats = ForwardStats()
        self._branch_of = branch_of
        self._ack = ack
        self._publisher: Publisher[Received] = Publisher(nc, self._stored, self._retried)
        self._room = threading.BoundedSemaphore(in_flight)  # paho's thread waits when this many are in flight
        self._arrived: deque[Received] = deque()
        self._stored_now: list[Received] = []  # stored by JetStream, to acknowledge to the broker
        self._loop: asyncio.AbstractEventLoop | None = None
        self._wake = asyncio.Event()
        self._woken = False
        self._stopping = False

    def handoff(self, received: Received) -> None:
        """On paho's thread: hand the message to the event loop, waiting while too many are unacknowledged."""
        while not self._room.acquire(timeout=0.5):
            if self._stopping:
                return  # not acknowledged: the broker gives it to us again, or to another forwarder
        self._arrived.append(received)
        if not self._woken and self._loop is not None:
            self._woken = True
            self._loop.call_soon_threadsafe(self._wake.set)

    async def run(self) -> None:
        self._loop = asyncio.get_running_loop()
        await self._publisher.start()
        self._woken = True
        self._wake.set()  # whatever arrived before the loop ran
        while not self._stopping:
            await self._wake.wait()
            self._wake.clear()
            self._woken = False  # before draining: a message that arrives after this wakes us again
            while self._arrived:
                await self._forward(self._arrived.popleft())
        await self._publisher.drained()
        self._acknowledge()
        await self._publisher.close()

    def stop(self) -> None:
        """Stop taking messages; those in flight are published and acknowledged first."""
        self._stopping = True
        self._wake.set()

    async def _forward(self, received: Received) -> None:
        self.stats.received += 1
        subject, device = route(received.topic, self._branch_of)
        if subject.startswith(f"{subjects.IN}.{subjects.NO_BRANCH}."):
            self.stats.unknown_device += 1
        headers = {
            subjects.ID_HEADER: subjects.MessageId.of(device, received.payload).value,
            subjects.TOPIC_HEADER: received.topic,
            subjects.RECEIVED_HEADER: repr(received.received_at),
        }
        await self._publisher.publish(subject, received.payload, headers, received)

    def _stored(self, received: Received, duplicate: bool) -> None:
        """JetStream has it: acknowledge it to the broker, together with the others stored meanwhile."""
        if duplicate:
            self.stats.duplicates += 1
        self.stats.forwarded += 1
        self._stored_now.append(received)
        if len(self._stored_now) == 1 and self._loop is not None:
            self._loop.call_soon(self._acknowledge)

    def _acknowledge(self) -> None:
        stored, self._stored_now = self._stored_now, []
        if stored:
            self._ack(stored)
        for _ in stored:
            self._room.release()

    def _retried(self, why: str) -> None:
        # no leader for a moment, the stream full (discard new), the connection lost: JetStream has not got it for
        # sure, so the broker keeps it unacknowledged and it goes out again with the same id
        self.stats.retries += 1
        if self.stats.retries % 100 == 1:
            log.warning("JetStream did not take a message (%s); retrying", why)
