"""Each device's messages in the order it numbered them, as far as waiting a few seconds can put them.

JetStream keeps the order in which messages reached the stream, and that is not always the device's: a
forwarder whose publish timed out while a NATS node died publishes it again seconds later, after newer ones,
and a message delivered but never acknowledged comes back after the consumer's ack wait. The rules move on new
messages only (a late one is history), so an out-of-order breach would fire on a later report, or not at all.
Here a message that comes after a gap in its device's numbering waits until the gap fills, or until `wait_s`
has passed (a message the device never sent, or lost for good, must not stop its device for longer).

Pure: the sender's key and number are given, the time is passed in.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Generic, TypeVar

T = TypeVar("T")
Key = tuple[int, str]  # (partition, "device/stream"): dropped with the partition


@dataclass
class _Waiting(Generic[T]):
    until: float
    items: dict[int, list[T]] = field(default_factory=dict)  # sequence number: the deliveries of it


class InOrder(Generic[T]):
    def __init__(self, wait_s: float) -> None:
        self._wait_s = wait_s
        self._next: dict[Key, int] = {}  # the number each sender's next message should have
        self._waiting: dict[Key, _Waiting[T]] = {}
        self.waited = 0  # messages that came after a gap and waited for it
        self.given_up = 0  # gaps still open when their wait ran out

    def offer(self, key: Key, seq: int, item: T, now: float) -> list[T]:
        """The messages ready now, in order: `item` itself at once unless it comes after a gap."""
        expected = self._next.get(key)
        waiting = self._waiting.get(key)
        if expected is None or (seq < expected) or (seq == expected and waiting is None):
            # the first we see of this sender (the rules know its history, not us), a duplicate, a message
            # given up on and come at last (the sequence window calls it late), or simply the next one
            if expected is None or seq == expected:
                self._next[key] = seq + 1
            return [item]
        if waiting is None:
            waiting = self._waiting[key] = _Waiting(now + self._wait_s)
        waiting.items.setdefault(seq, []).append(item)
        if seq != expected:
            self.waited += 1
        return self._release(key, waiting, give_up=False)

    def expect(self, key: Key, seq: int) -> None:
        """The number this sender's next message should have, known from elsewhere (the device's saved state, when
        its partition is taken on): a newer one that comes first waits for the ones before it."""
        self._next.setdefault(key, seq)

    def due(self, now: float) -> list[T]:
        """The messages whose wait has run out, with whatever came after them."""
        ready: list[T] = []
        for key, waiting in list(self._waiting.items()):
            if waiting.until <= now:
                self.given_up += 1
                ready += self._release(key, waiting, give_up=True)
        return ready

    def forget(self, dropped: Callable[[Key], bool]) -> list[T]:
        """Drop what is known and waiting of these senders (their partition has another owner now: JetStream
        gives it their unacknowledged messages); returns the messages that were waiting."""
        waiting = [
            item for key, w in self._waiting.items() if dropped(key) for items in w.items.values() for item in items
        ]
        for table in (self._next, self._waiting):
            for key in [k for k in table if dropped(k)]:
                del table[key]
        return waiting

    def __len__(self) -> int:
        return sum(len(items) for w in self._waiting.values() for items in w.items.values())

    def _release(self, key: Key, waiting: _Waiting[T], give_up: bool) -> list[T]:
        """The run that follows on from the last released; all of it, in order, once the wait has run out (the
        first of them waited long enough, and the rest are newer)."""
        ready: list[T] = []
        expected = self._next[key]
        for seq in sorted(waiting.items):
            if seq != expected and not give_up:
                break
            ready += waiting.items.pop(seq)
            expected = seq + 1
        self._next[key] = expected
        if not waiting.items:
            del self._waiting[key]
        return ready


def sender_of(message_id: str) -> tuple[str, int] | None:
    """The sender and number in a message id `device/stream/seq` (`subjects.MessageId`), or None when the
    message has no number (an id made from its bytes)."""
    sender, _, seq = message_id.rpartition("/")
    if not sender or not seq.isdigit():
        return None
    return sender, int(seq)
