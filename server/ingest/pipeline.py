"""From a received MQTT message to stored points, live state and rule transitions: the I/O around the branch
processors.

Runs on one worker thread, batch by batch: decode each message, hand it to its branch's processor, store the
points the batch made, save the processors' state, then act on the rule transitions and acknowledge. Bad input
is refused, counted and set aside as a dead letter (raw payload and reason), never raised; storage failures are
`StoreWriter`'s to outlast.
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from collections.abc import Callable, Collection, Mapping, Sequence

from sqlalchemy.orm import Session, sessionmaker

from lobbywatch.clock import Clock
from lobbywatch.protocol import (
    ButtonEvent,
    Calibration,
    CommandReply,
    FacilityReport,
    Health,
    QueueReport,
    Snapshot,
    Status,
)
from server.alerts.catalog import severity
from server.alerts.service import Held
from server.alerts.worker import AlertSink
from server.ingest import saved_state
from server.ingest.broker_watch import BrokerWatch
from server.ingest.dead_letters import DeadLetters
from server.ingest.decode import MAX_AGE_S, MAX_AHEAD_S, Decoder, device_of
from server.ingest.mqtt_source import Received
from server.ingest.rejects import Rejects
from server.ingest.repair import GapRepair, ResendRequest
from server.ingest.snapshots import take_snapshot
from server.ingest.state_saver import StateSaver
from server.ingest.stats import Reservoir
from server.ingest.store_writer import IngestStats, StoreWriter
from server.live import LiveState
from server.processing import messages
from server.processing.branch import BranchProcessor
from server.processing.branches import Branches
from server.processing.output import Output
from server.registry.directory import BranchEntry, Directory
from server.rules.calls import RULE as CALL_RULE
from server.rules.transitions import Transition
from server.storage import points as schema
from server.storage.base import TimeSeriesStore
from server.storage.points import Point

log = logging.getLogger(__name__)

DEVICE_FLUSH_S = 5.0  # device state (last seen, sequence) is written at least this often (production: every batch)
LAG_SAMPLES = 20_000  # device-to-stored delays kept (a uniform sample of all messages) for percentiles
# Reminders and escalation steps are minutes apart; looking at the stored alerts every 10 s is enough.
ALERT_TICK_S = 10.0
LEARNT_FLUSH_S = 300.0  # what is learnt of service times is written to the registry this often

__all__ = ["IngestStats", "Pipeline"]


class Pipeline:
    def __init__(
        self,
        *,
        directory: Directory,
        store: TimeSeriesStore,
        alerts: AlertSink,
        live: LiveState,
        rejects: Rejects,
        sessions: sessionmaker[Session],
        clock: Clock,
        repair: GapRepair | None = None,
        dead_letters: DeadLetters | None = None,
        max_age_s: float = MAX_AGE_S,
        max_ahead_s: float = MAX_AHEAD_S,
        hearing: Callable[[], bool] | None = None,
        owned: Collection[str] | None = None,
        fence: Callable[[Session, Collection[str]], None] | None = None,
    ) -> None:
        """`hearing`: whether the server hears the broker now (None: always, as in a replay without outages);
        `owned`: the branches this pipeline owns, a live set (None: all, one process); `fence`: checks, in the
        transaction that saves their state, that these branches are still ours (raises if not)."""
        self.directory = directory
        self.alerts = alerts
        self.live = live
        self.rejects = rejects
        self.dead_letters = dead_letters or DeadLetters(sessions, clock)
        self.decoder = Decoder(directory, rejects, self.dead_letters, max_age_s, max_ahead_s)
        self._sessions = sessions
        self._clock = clock
        self.stats = IngestStats()
        self.stopping = threading.Event()
        self.writer = StoreWriter(store, self.stats, self.stopping)
        self.lag = Reservoir(LAG_SAMPLES)
        self.repair = repair or GapRepair()
        self.replies = 0
        self._alert_slot = -1
        self._learnt_flush = clock.monotonic()
        self._people: deque[dict[str, object]] = deque()  # what people did to alerts, for the rules
        self.saver = StateSaver(sessions, clock, self.stats, self.stopping, fence or (lambda _session, _branches: None))
        # a replay, with no crash to survive, saves only when its scenario kills the server: the same state
        self.save_every_batch = True
        self._hearing = hearing or (lambda: True)
        self.broker = BrokerWatch()
        self.on_call: Callable[[dict[str, object]], None] | None = None  # every call answered (the replay's lines)
        self._owned = owned
        with sessions() as session:
            self.branches = saved_state.load(session, clock.now().timestamp(), owned)
        self.devices = self.branches.devices
        self.live.set_devices({device: runtime.now() for device, runtime in self.devices.items()})

    @property
    def store(self) -> TimeSeriesStore:
        return self.writer.store

    # -- one batch -----------------------------------------------------------------------------------
    def process(self, batch: Sequence[Received]) -> None:
        out = Output()
        heard: dict[str, BranchProcessor] = {}  # device: its processor, for the live state
        spans: list[tuple[int, int]] = []
        origins: list[Received] = []
        for received in batch:
            self.stats.received += 1
            start = len(out.points)
            try:
                self._one(received, out, heard)
            except Exception:  # a bug of ours must not stop the ingest: count it, log it, go on
                self.stats.internal_errors += 1
                log.exception("internal error on message from %s", received.topic)
                self.dead_letters.add(
                    "internal_error", None, received.topic, "internal error (see the log)", received.payload
                )
                del out.points[start:]
                continue
            if len(out.points) > start:
                spans.append((start, len(out.points)))
                origins.append(received)

        def refused(i: int, why: str) -> None:
            self.decoder.refuse("storage_refused", device_of(origins[i].topic), why, origins[i])

        self.writer.write_batch(out.points, spans, alert_points(self.directory.branches, out.transitions), refused)
        self.live.set_devices({device: processor.device(device).now() for device, processor in heard.items()})
        self.stats.duplicates += out.duplicates
        self.stats.late += out.late
        self.replies += out.replies
        if self.save_every_batch:
            self.save_state()
        self.dead_letters.flush()
        now = self._clock.now().timestamp()
        for ts in out.stamps:
            self.lag.add((now - ts) * 1000)
        self._apply(out.transitions)
        if self._clock.monotonic() - self.saver.last_flush >= DEVICE_FLUSH_S:
            self.flush_devices()

    def _one(self, received: Received, out: Output, heard: dict[str, BranchProcessor]) -> None:
        decoded = self.decoder.decode(received)
        if decoded is None:
            return
        device, message = decoded
        processor = self.branches.of_device(device.id, device.branch_id)
        self.saver.touched[processor.branch] = heard[device.id] = processor
        if isinstance(message, Snapshot):
            processor.seen(device.id, received.received_at)
            take_snapshot(self.rejects, self.live, device.id, message, self._clock.monotonic())
            return
        assert isinstance(message, QueueReport | ButtonEvent | FacilityReport | Health | CommandReply | Status)
        skew_s = None if isinstance(message, Status) else self.decoder.refused_skew(device, message, received)
        refusals, calls, live = len(out.refusals), len(out.calls), len(out.live)
        processor.message(self.directory.branches[device.branch_id], device, message, received.received_at, out, skew_s)
        for refusal in out.refusals[refusals:]:
            self.decoder.refuse(refusal.cause, refusal.device, refusal.detail, received)
        for call in out.calls[calls:]:
            if self.on_call is not None:
                self.on_call(call)
        self.live.apply(out.live[live:])
        while out.calibrations:
            self._keep_calibration(*out.calibrations.pop())

    def _apply(self, transitions: Sequence[Transition]) -> None:
        for change in transitions:
            branch = self.directory.branches.get(change.branch)
            if branch is None:
                continue
            self.alerts.apply(change, branch, self.directory.subject_name(change.branch, change.subject))

    # -- the clock -----------------------------------------------------------------------------------
    def tick(self) -> None:
        """Time-driven rules (call deadlines, silent devices): call about once a second."""
        self._listen(self._clock.now().timestamp())
        out = Output()
        self._calls_handled_by_people(out)
        now = self._clock.now().timestamp()
        for processor in self.branches:
            processor.tick(now, out)
            if processor.moved:
                self.saver.touched[processor.branch] = processor
        slot = int(self._clock.monotonic() // ALERT_TICK_S)  # on whole multiples of the interval
        hours = slot != self._alert_slot
        if hours:
            for branch in self._branch_entries():
                processor = self.branches.get(branch.id)
                processor.hours(branch, now, out)
                if processor.moved:
                    self.saver.touched[processor.branch] = processor
        if out.points or out.transitions:
            self.writer.write(out.points + alert_points(self.directory.branches, out.transitions))
        if self.save_every_batch:  # before acting on it: a former owner fenced off acts on nothing
            self.save_rules()
        self._apply(out.transitions)
        if hours:
            self._alert_slot = slot
            entries = {branch.id: branch for branch in self._branch_entries()}
            self.alerts.tick(entries, held(self.directory, self.live, self.branches))
        if self._clock.monotonic() - self._learnt_flush >= LEARNT_FLUSH_S:
            self.flush_learnt()

    def _branch_entries(self) -> list[BranchEntry]:
        if self._owned is None:
            return list(self.directory.branches.values())
        return [entry for branch, entry in self.directory.branches.items() if branch in self._owned]

    def _listen(self, now: float) -> None:
        """Follow the server's own connection to the broker: while it is lost nobody is judged offline (one
        outage is one matter for the technicians, not one alert per device)."""
        hearing = self._hearing()
        if self.broker.hears(hearing, now):
            self.branches.presence(hearing, now)
            self.saver.touched.update(self.branches.processors)

    def alert_event(self, event: dict[str, object]) -> None:
        """What happened to an alert (from any thread); the rules hear of what people did at the next tick."""
        if event.get("rule") == CALL_RULE and event.get("event") in ("acknowledged", "resolved"):
            self._people.append(event)

    def _calls_handled_by_people(self, out: Output) -> None:
        """An acknowledged call's alert answers the call: its response time is the acknowledgement's; a call
        whose alert a person resolved is over."""
        while self._people:
            event = self._people.popleft()
            branch = self.directory.branches.get(str(event["branch"]))
            if branch is None:
                continue
            processor = self.branches.get(branch.id)
            self.saver.touched[branch.id] = processor
            if event["event"] == "acknowledged":
                calls = len(out.calls)
                processor.call_acknowledged(branch, event, out)
                for call in out.calls[calls:]:
                    if self.on_call is not None:
                        self.on_call(call)
            elif event.get("by") is not None:  # resolved by hand, not by the button
                processor.call_closed(str(event["subject"]))

    def request_stop(self) -> None:
        """Stop waiting for storage to come back: a batch still unstored stays unacknowledged."""
        self.stopping.set()

    def resend_requests(self) -> list[ResendRequest]:
        """Devices to ask for the messages they sent that never arrived."""
        gaps = {d: rt.sequence for p in self.branches for d, rt in p.devices.items() if rt.sequence.gaps}
        return list(self.repair.plan(self._clock.monotonic(), gaps))

    # -- state kept in the registry ------------------------------------------------------------------
    def save_rules(self) -> None:
        """The rule state of the branches that moved, saved before the batch is acknowledged: a restart
        goes on from it (pending calls, thresholds on their way to firing, devices offline)."""
        self.saver.rules()

    def save_state(self) -> None:
        """The batch's device state (sequence windows: a crash makes no false gaps) and rule state, in one
        transaction of the registry, before the batch is acknowledged."""
        self.saver.everything()

    def flush_devices(self) -> None:
        self.saver.devices()

    def flush_learnt(self) -> None:
        self._learnt_flush = self._clock.monotonic()
        evidence = self.branches.service_evidence()
        if not evidence:
            return
        try:
            with self._sessions() as session:
                saved_state.save_learnt(session, evidence, set(self.directory.branches), self._clock.now())
        except Exception as exc:  # what is learnt is kept in memory and in the rule state: the next flush has it
            log.error("saving what was learnt of service times failed, trying again later: %s", exc)

    def _keep_calibration(self, device: str, calibration: Calibration) -> None:
        """Rare (a technician labelling), so at once, before the reply is acknowledged."""
        with self._sessions() as session:
            saved_state.keep_calibration(session, device, calibration)


def alert_points(branches: Mapping[str, BranchEntry], transitions: Sequence[Transition]) -> list[Point]:
    """Alerts firing and resolving, for the dashboards' annotations and the reports."""
    return [
        Point.make(
            schema.ALERT,
            messages.tags(branches[t.branch], rule=t.rule, severity=severity(t, branches[t.branch])),
            {"change": t.change.value, "subject": t.subject, "value": t.value},
            int(t.at * 1_000_000) * 1000,
        )
        for t in transitions
        if t.branch in branches
    ]


def held(directory: Directory, live: LiveState, branches: Branches) -> Held:
    """What holds alerts back now (devices offline, zones whose count is unknown), as a snapshot for the alerts
    thread."""
    unknown = frozenset(
        (branch, zone)
        for branch in directory.branches
        for zone, now in live.zones(branch).items()
        if now.occupancy is None
    )
    return Held(branches.offline_devices(), unknown)
