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

from nats.errors import Error as NatsError
from nats.js.client import JetStreamContext

from lobbywatch.protocol import InvalidTopic, Topic
from server.ingest.mqtt_source import RECEIVE_MAXIMUM, Received
from server.scale import subjects

log = logging.getLogger(__name__)

RETRY_FIRST_S = 0.2  # a publish JetStream did not acknowledge is tried again after this, doubling
RETRY_MAX_S = 5.0
PUBLISH_TIMEOUT_S = 5.0  # no PubAck in this long (a stream leader moving): publish again, same id


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


class Forwarder:
    def __init__(
        self,
        js: JetStreamContext,
        branch_of: Callable[[str], str | None],
        ack: Callable[[Sequence[Received]], None],
        in_flight: int = RECEIVE_MAXIMUM,
    ) -> None:
        self.stats = ForwardStats()
        self._js = js
        self._branch_of = branch_of
        self._ack = ack
        self._room = threading.BoundedSemaphore(in_flight)  # paho's thread waits when this many are in flight
        self._arrived: deque[Received] = deque()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._wake = asyncio.Event()
        self._woken = False
        self._stopping = False
        self._publishes: set[asyncio.Task[None]] = set()

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
        self._woken = True
        self._wake.set()  # whatever arrived before the loop ran
        while not self._stopping:
            await self._wake.wait()
            self._wake.clear()
            self._woken = False  # before draining: a message that arrives after this wakes us again
            while self._arrived:
                received = self._arrived.popleft()
                self.stats.received += 1
                task = asyncio.create_task(self._forward(received))
                self._publishes.add(task)
                task.add_done_callback(self._publishes.discard)
        if self._publishes:
            await asyncio.wait(self._publishes)

    def stop(self) -> None:
        """Stop taking messages; those in flight are published and acknowledged first."""
        self._stopping = True
        self._wake.set()

    async def _forward(self, received: Received) -> None:
        subject, device = route(received.topic, self._branch_of)
        if subject.startswith(f"{subjects.IN}.{subjects.NO_BRANCH}."):
            self.stats.unknown_device += 1
        headers = {
            subjects.ID_HEADER: subjects.MessageId.of(device, received.payload).value,
            subjects.TOPIC_HEADER: received.topic,
            subjects.RECEIVED_HEADER: repr(received.received_at),
        }
        delay = RETRY_FIRST_S
        while True:
            try:
                ack = await self._js.publish(subject, received.payload, timeout=PUBLISH_TIMEOUT_S, headers=headers)
                break
            except (NatsError, TimeoutError, OSError) as exc:
                # no leader for a moment, the stream full (discard new), the connection lost: JetStream has not
                # got it for sure, so the broker keeps it unacknowledged and we try again with the same id
                self.stats.retries += 1
                if self.stats.retries % 100 == 1:
                    log.warning("JetStream did not take a message (%s); retrying", exc or type(exc).__name__)
                await asyncio.sleep(delay)
                delay = min(delay * 2, RETRY_MAX_S)
        if ack.duplicate:
            self.stats.duplicates += 1
        self.stats.forwarded += 1
        self._ack([received])
        self._room.release()
