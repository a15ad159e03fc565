"""Publishing to JetStream many messages at a time, each acknowledged on its own.

nats-py's `JetStreamContext.publish` is a request: a future, a timer and a random token per message, and one
awaited round trip each; a forwarder spent a quarter of its time there (py-spy of `bench.scale`). Here every
message goes out with a reply subject under one inbox of ours, a single subscription takes the PubAcks as they
come, and one timer looks for messages JetStream has not answered. A message is done only when JetStream's
PubAck says it is stored; refused (no stream, no leader, the stream full) or unanswered, it is published again
with the same headers, so with the same `Nats-Msg-Id`, which JetStream stores once. What was out when the
connection was lost (a NATS node gone) is published again as soon as the connection is back, not after the
timeout: it may have gone with the connection, and then nobody would ever answer it.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Generic, TypeVar

from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.errors import Error as NatsError

log = logging.getLogger(__name__)

RETRY_FIRST_S = 0.2  # a message JetStream refused is published again after this, doubling
RETRY_MAX_S = 5.0
PUBLISH_TIMEOUT_S = 5.0  # no PubAck in this long (a stream leader moving): publish again, same id
TICK_S = 0.1  # how often unanswered and refused messages are looked at

Item = TypeVar("Item")


@dataclass(slots=True)
class _Out(Generic[Item]):
    subject: str
    payload: bytes
    headers: dict[str, str]
    item: Item
    at: float  # sent (in flight) or due again (waiting)
    delay: float = RETRY_FIRST_S


class Publisher(Generic[Item]):
    """`done(item, duplicate)` when JetStream has stored a message (`duplicate`: it had it already);
    `retried(why)` each time one is published again."""

    def __init__(
        self,
        nc: Client,
        done: Callable[[Item, bool], None],
        retried: Callable[[str], None],
        clock: Callable[[], float] = time.monotonic,
        timeout_s: float = PUBLISH_TIMEOUT_S,
    ) -> None:
        self._nc = nc
        self._done = done
        self._retried = retried
        self._clock = clock
        self._timeout_s = timeout_s
        self._inbox = ""
        self._next = 0
        self._sent: OrderedDict[str, _Out[Item]] = OrderedDict()  # reply token -> message, oldest first
        self._waiting: list[_Out[Item]] = []  # refused, to publish again at their `at`
        self._ticks: asyncio.Task[None] | None = None
        self._reconnects = 0  # the connection's count, as last seen

    async def start(self) -> None:
        self._inbox = self._nc.new_inbox() + "."
        await self._nc.subscribe(self._inbox + "*", cb=self._answered)
        self._ticks = asyncio.create_task(self._tick())

    def in_flight(self) -> int:
        return len(self._sent) + len(self._waiting)

    async def publish(self, subject: str, payload: bytes, headers: dict[str, str], item: Item) -> None:
        await self._send(_Out(subject, payload, headers, item, 0.0))

    async def drained(self) -> None:
        """Until every message published is stored."""
        while self.in_flight():
            await asyncio.sleep(TICK_S)

    async def close(self) -> None:
        if self._ticks is not None:
            self._ticks.cancel()

    async def _send(self, out: _Out[Item]) -> None:
        self._next += 1
        token = str(self._next)
        out.at = self._clock()
        self._sent[token] = out
        try:
            await self._nc.publish(out.subject, out.payload, reply=self._inbox + token, headers=out.headers)
        except (NatsError, OSError) as exc:  # the connection lost or its buffer full while it comes back
            del self._sent[token]
            self._again(out, str(exc) or type(exc).__name__)

    async def _answered(self, msg: Msg) -> None:
        out = self._sent.pop(msg.subject[len(self._inbox) :], None)
        if out is None:
            return  # answered after we gave up on it: it went out again, and that answer counts
        status = msg.headers.get("Status") if msg.headers else None
        if status:  # 503: nobody took it (no stream yet, or no leader for a moment)
            self._again(out, f"status {status}")
            return
        try:
            ack = json.loads(msg.data)
        except ValueError:
            ack = {"error": {"description": f"an answer that is not JSON: {msg.data[:100]!r}"}}
        if "error" in ack:  # the stream full (discard new), a leader moving: not stored
            self._again(out, str(ack["error"].get("description", ack["error"])))
            return
        self._done(out.item, bool(ack.get("duplicate")))

    def _again(self, out: _Out[Item], why: str) -> None:
        self._retried(why)
        out.at = self._clock() + out.delay
        out.delay = min(out.delay * 2, RETRY_MAX_S)
        self._waiting.append(out)

    async def _tick(self) -> None:
        while True:
            await asyncio.sleep(TICK_S)
            try:
                await self._due(self._clock())
            except Exception:  # a bug of ours must not stop every retry for good
                log.exception("looking at unanswered messages failed; going on")

    async def _due(self, now: float) -> None:
        """Publish again what has waited for an answer too long, what was out when the connection was lost, and
        what is due again after a refusal."""
        reconnects = self._nc.stats["reconnects"]
        if reconnects != self._reconnects:
            self._reconnects = reconnects
            lost, self._sent = self._sent, OrderedDict()
            for out in lost.values():
                self._again(out, "the connection to NATS was lost")
        while self._sent:
            token, out = next(iter(self._sent.items()))
            if now - out.at < self._timeout_s:
                break
            del self._sent[token]
            self._again(out, f"no answer in {self._timeout_s:g} s")
        due = [out for out in self._waiting if out.at <= now]
        if due:
            self._waiting = [out for out in self._waiting if out.at > now]
            for out in due:
                await self._send(out)
