"""A worker's ingest: the one-process pipeline, run over the partitions this worker owns now.

The ingest thread follows ownership itself, between batches, so that state and messages never cross: a message
under a pin new to us first claims its partition (the fencing epoch in the registry) and loads the state of the
partition's branches as last saved; a pin lost drops those branches unsaved, and the messages still queued or
held under it are not processed but given back (`give_back`: a NAK, so that JetStream delivers them to the new
owner at once, not after the ack wait; the new owner is often this worker again, under a new pin, when a NATS
node was lost and a consumer's leader moved). Every save checks the claims in its own transaction; a save refused
(a former owner that stalled past the priority timeout) drops the partitions it names and goes once more over the
rest of the batch from their saved state.
"""

from __future__ import annotations

import json
import logging
from collections import deque
from collections.abc import Callable, Collection, Sequence
from datetime import UTC, datetime
from typing import Any

from sqlalchemy.orm import Session

from server.ingest import saved_state
from server.ingest.mqtt_source import Received
from server.ingest.pipeline import Pipeline
from server.processing.branches import Branches
from server.registry import fence
from server.scale import subjects
from server.scale.in_order import InOrder, sender_of
from server.scale.pinned import Delivery
from server.scale.subjects import branch_partition

log = logging.getLogger(__name__)


class Ownership:
    """The partitions this worker owns, as the ingest thread has taken them on; losses are told from the event
    loop (`lost`) and acted on by the ingest thread."""

    def __init__(self, partitions: int) -> None:
        self.partitions = partitions
        self.pins: dict[int, str] = {}  # partition: the pin we hold it under (ingest thread)
        self.branches: set[str] = set()  # the branches of those partitions (the pipeline's `owned`)
        # partitions another live worker prefers: ours only until we hand them on (the event loop keeps this)
        self.standing_in: set[int] = set()
        self._lost: deque[tuple[int, str]] = deque()
        # every pin lost, for good: a message still queued under one must not take its partition on again (it
        # would claim the partition back from its new owner, and refuse the new pin's messages for ever)
        self.gone: set[tuple[int, str]] = set()

    def lost(self, partition: int, pin: str) -> None:
        """From the event loop: the pin is gone (423, a release, a newer pin of ours)."""
        self.gone.add((partition, pin))
        self._lost.append((partition, pin))

    def take_losses(self) -> list[int]:
        gone = []
        while self._lost:
            partition, pin = self._lost.popleft()
            if self.pins.get(partition) == pin:
                gone.append(partition)
        return gone

    def current(self, delivery: Delivery) -> bool:
        return self.pins.get(delivery.partition) == delivery.pin


class OwnedPipeline(Pipeline):
    def __init__(self, *, ownership: Ownership, worker: str, hold_s: float, **kwargs: Any) -> None:
        """`hold_s`: how long a device's message that comes after a gap in its numbering is held for the gap to
        fill (what a former owner had in hand comes again after the consumer's ack wait), and how long a
        partition we only stand in for is held before any of it is processed."""
        self.ownership = ownership
        self.worker_name = worker
        self.claims = 0
        self.fenced = 0
        # the deliveries processed and saved, for JetStream (set by the worker; on the ingest thread)
        self.acknowledge: Callable[[list[Delivery]], None] = lambda _deliveries: None
        # the deliveries under a pin lost, not processed: for JetStream to deliver again now (set by the worker)
        self.give_back: Callable[[list[Delivery]], None] = lambda _deliveries: None
        self._hold_s = hold_s
        self._held: dict[int, tuple[float, list[Received]]] = {}  # partition: (held until, messages)
        self.in_order: InOrder[Received] = InOrder(hold_s)
        # what people did to alerts in an API process: to the rules and the call button (set by the worker)
        self.on_people: Callable[[dict[str, object]], None] = self.alert_event
        self._from_api: list[Delivery] = []  # their messages, acknowledged once a tick has saved their effect
        super().__init__(owned=ownership.branches, fence=self._check, **kwargs)

    def process(self, batch: Sequence[Received]) -> None:
        self._follow_losses()
        ready = []
        others = []
        for received in batch:
            if not self._wanted(received.origin):
                if received.origin.pin:  # under a pin, not ours now (without one it would come back the same)
                    others.append(received.origin)
                continue
            if subjects.from_people(received.origin.subject):
                self._from_people(received)
                continue
            held = self._held.get(received.origin.partition)
            if held is None:
                ready.append(received)
            else:
                held[1].append(received)
        self.give_back(others)
        self._run(self._in_order(ready + self._released()))

    def tick(self) -> None:
        self._follow_losses()
        people, self._from_api = self._from_api, []
        released = self._in_order(self._released())
        if released:
            self._run(released)
        try:
            super().tick()
        except fence.Fenced as refused:
            self.fenced += 1
            log.warning("%s; dropping them", refused)
            self._drop(refused.partitions)
        self.acknowledge([d for d in people if self.ownership.current(d)])

    def _from_people(self, received: Received) -> None:
        """An alert acknowledged or resolved in an API process. Its message is acknowledged after the next tick
        has saved what the rules made of it (a call's response time), so a worker dying first loses nothing."""
        try:
            event = json.loads(received.payload)
            if not isinstance(event, dict):
                raise ValueError("not a JSON object")
        except ValueError as exc:  # only an API process can publish here: a bug of ours, not a person's input
            log.error("an alert event from an API process not understood (%s); dropped", exc)
            self.acknowledge([received.origin])
            return
        self.on_people(event)
        self._from_api.append(received.origin)

    def _run(self, batch: list[Received]) -> None:
        while batch:
            try:
                super().process(batch)
                break
            except fence.Fenced as refused:  # each time a partition fewer: this ends
                self.fenced += 1
                log.warning("%s; dropping them and going over the rest of the batch again", refused)
                self._drop(refused.partitions)
                self.give_back([r.origin for r in batch if r.origin.partition in refused.partitions])
                batch = [r for r in batch if r.origin.partition not in refused.partitions]
                self.take(self._branches_of({r.origin.partition for r in batch}))  # back to their saved state
        # the rest belong to the new owner now, which gets them again
        self.acknowledge([r.origin for r in batch if self.ownership.current(r.origin)])

    def _released(self) -> list[Received]:
        """The messages of partitions held long enough, in the order the broker received them."""
        now = self._clock.monotonic()
        due = [p for p, (until, _) in self._held.items() if until <= now]
        released = [r for p in due for r in self._held.pop(p)[1]]
        return sorted(released, key=lambda r: r.received_at)

    def _in_order(self, batch: list[Received]) -> list[Received]:
        """The batch with each device's messages in their order, those after a gap kept back for it to fill."""
        now = self._clock.monotonic()
        ready = []
        for received in batch:
            sender = sender_of(received.origin.headers.get(subjects.ID_HEADER, ""))
            if sender is None:
                ready.append(received)
            else:
                ready += self.in_order.offer((received.origin.partition, sender[0]), sender[1], received, now)
        given_up = self.in_order.given_up
        ready += self.in_order.due(now)
        if self.in_order.given_up > given_up:
            log.warning(
                "gaps in %d devices' numbering not filled in %.0f s; their newer messages go on (%d such gaps so far)",
                self.in_order.given_up - given_up,
                self._hold_s,
                self.in_order.given_up,
            )
        return ready

    def take(self, branches: Collection[str]) -> Branches:
        """Own these branches from now on, their state as last saved (by whichever worker owned them)."""
        self.drop(branches)
        with self._sessions() as session:
            loaded = saved_state.load(session, self._clock.now().timestamp(), branches)
        for processor in loaded:
            self.branches.add(processor)
        self.live.set_devices({device: runtime.now() for device, runtime in loaded.devices.items()})
        return loaded

    def drop(self, branches: Collection[str]) -> None:
        """Forget these branches at once, unsaved: another worker owns them now and has them as saved."""
        self.branches.drop(branches)
        self.saver.drop(branches)

    # -- ownership, on the ingest thread ----------------------------------------------------------
    def _wanted(self, delivery: Delivery) -> bool:
        """Ours to process: under the pin we hold its partition by, or under a new one (taken on now)."""
        held = self.ownership.pins.get(delivery.partition)
        if held == delivery.pin:
            return True
        if held is not None or not delivery.pin or (delivery.partition, delivery.pin) in self.ownership.gone:
            return False  # under a pin we have lost since (or no pin at all): the new owner's
        self._gain(delivery.partition, delivery.pin)
        return True

    def _gain(self, partition: int, pin: str) -> None:
        with self._sessions() as session:
            fence.claim(session, partition, pin, self.worker_name, datetime.now(UTC))
        self.claims += 1
        self.ownership.pins[partition] = pin
        if self._hold_s > 0 and partition in self.ownership.standing_in:
            # a pin won while another live worker prefers the partition (it joined as we pulled): it is handed
            # on within seconds, and what is processed meanwhile its owner would process (and write) again
            self._held[partition] = (self._clock.monotonic() + self._hold_s, [])
        branches = self._branches_of({partition})
        self.ownership.branches.update(branches)
        # each device goes on from its number as last saved: what the former owner had in hand and not saved
        # comes again after the ack wait, and the device's newer messages wait for it (only those devices wait)
        for device, runtime in self.take(branches).devices.items():
            if runtime.sequence.stream is not None:
                key = (partition, f"{device}/{runtime.sequence.stream}")
                self.in_order.expect(key, runtime.sequence.highest + 1)
        log.info("partition %d taken on (%d branches)", partition, len(branches))

    def _follow_losses(self) -> None:
        gone = self.ownership.take_losses()
        if gone:
            self._drop(frozenset(gone))

    def _drop(self, partitions: Collection[int]) -> None:
        branches = self._branches_of(set(partitions)) | {
            b for b in self.ownership.branches if self._partition(b) in partitions
        }
        held = []
        for partition in partitions:
            self.ownership.pins.pop(partition, None)
            held += self._held.pop(partition, (0.0, []))[1]
        held += self.in_order.forget(lambda key: key[0] in partitions)
        self.give_back([r.origin for r in held])
        self.ownership.branches.difference_update(branches)
        self.drop(branches)
        log.info("partitions %s handed on (%d branches)", sorted(partitions), len(branches))

    def _branches_of(self, partitions: set[int]) -> set[str]:
        return {b for b in self.directory.branches if self._partition(b) in partitions}

    def _partition(self, branch: str) -> int:
        return branch_partition(branch, self.ownership.partitions)

    def _check(self, session: Session, branches: Collection[str]) -> None:
        partitions = {self._partition(b) for b in branches}
        fence.check(session, {p: self.ownership.pins.get(p, "") for p in partitions})
