"""From a received MQTT message to stored points, live state and rule transitions.

Runs on one worker thread, batch by batch: validate each message, drop duplicates by sequence number, build
points, store the batch, then apply rule transitions and acknowledge. Bad input is refused, counted and set
aside as a dead letter (raw payload and reason), never raised. A storage failure that may pass (disk full,
database down) holds the batch unacknowledged and retries, so nothing is lost; a store that refuses points for
their content gets the batch again message by message, and only the messages it refuses are set aside: one
device's bad message never stalls the others.
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from lobbywatch.clock import Clock
from lobbywatch.protocol import (
    ButtonEvent,
    Calibration,
    CommandReply,
    DeviceMessage,
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
from server.ingest.dead_letters import DeadLetters
from server.ingest.decode import MAX_AGE_S, MAX_AHEAD_S, Decoder, device_of
from server.ingest.device_state import DeviceRuntime
from server.ingest.handlers import Batch, Context, Handlers
from server.ingest.mqtt_source import Received
from server.ingest.rejects import Rejects
from server.ingest.repair import GapRepair, ResendRequest
from server.ingest.sequence import Verdict
from server.ingest.stats import Reservoir
from server.live import LiveState
from server.registry import models
from server.registry.directory import DeviceEntry, Directory
from server.rules.engine import RuleEngine
from server.rules.transitions import Transition
from server.storage import points as schema
from server.storage.base import RefusedPoints, TimeSeriesStore
from server.storage.points import Point, epoch_ns

log = logging.getLogger(__name__)

DEVICE_FLUSH_S = 5.0  # device state (last seen, sequence) is written at least this often (production: every batch)
LAG_SAMPLES = 20_000  # device-to-stored delays kept (a uniform sample of all messages) for percentiles
STORE_RETRY_S = (0.5, 1.0, 2.0, 5.0, 10.0)
# Reminders and escalation steps are minutes apart; looking at the stored alerts every 10 s is enough.
ALERT_TICK_S = 10.0
LEARNT_FLUSH_S = 300.0  # what is learnt of service times is written to the registry this often
BROKER_DOWN_TELL_S = 30.0  # the server's broker connection lost this long: the administrators are told


@dataclass(slots=True)
class IngestStats:
    received: int = 0
    stored_points: int = 0
    duplicates: int = 0
    late: int = 0
    internal_errors: int = 0
    store_failures: int = 0
    store_refused: int = 0  # messages the store refused for their content, set aside
    last_store_error: str | None = None  # while storage fails; None once a write went through


class Pipeline:
    def __init__(
        self,
        *,
        directory: Directory,
        store: TimeSeriesStore,
        rules: RuleEngine,
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
    ) -> None:
        """`hearing`: whether the server hears the broker now (None: always, as in a replay without outages)."""
        self.directory = directory
        self.store = store
        self.rules = rules
        self.alerts = alerts
        self.live = live
        self.rejects = rejects
        self.dead_letters = dead_letters or DeadLetters(sessions, clock)
        self.decoder = Decoder(directory, rejects, self.dead_letters, max_age_s, max_ahead_s)
        self._sessions = sessions
        self._clock = clock
        self.stats = IngestStats()
        self.devices: dict[str, DeviceRuntime] = {}
        self._dirty: set[str] = set()
        self._last_flush = clock.monotonic()
        self.lag = Reservoir(LAG_SAMPLES)
        self.stopping = threading.Event()
        self.repair = repair or GapRepair()
        self._alert_slot = -1
        self._learnt_flush = clock.monotonic()
        self._people: deque[dict[str, object]] = deque()  # what people did to alerts, for the rules
        self._moved: set[str] = set()  # branches whose rule state changed since it was last saved
        # a replay, with no crash to survive, saves only when its scenario kills the server: the same state
        self.save_every_batch = True
        self._hearing = hearing or (lambda: True)
        self._heard: bool | None = None
        self._deaf_since: float | None = None
        self.broker_down_told = False
        self.on_system: Callable[[dict[str, object]], None] | None = None  # the broker lost and back
        self.on_call: Callable[[dict[str, object]], None] | None = None  # every call answered (the replay's lines)
        self.handlers = Handlers(
            directory, rules, live, self.decoder, clock, self._keep_calibration, self._call_answered
        )
        self._load_devices()

    def _load_devices(self) -> None:
        with self._sessions() as session:
            saved_state.load(session, self.devices, self.rules, self._clock.now().timestamp())

    def save_rules(self) -> None:
        """The rule state of the branches that moved, saved before the batch is acknowledged: a restart
        goes on from it (pending calls, thresholds on their way to firing, devices offline)."""
        with self._sessions() as session:
            if self._save_rules_in(session):
                session.commit()

    def _save_rules_in(self, session: Session) -> bool:
        moved, self._moved = self._moved, set()
        return saved_state.save_rules(session, self.rules, moved, self._clock.now())

    def save_state(self) -> None:
        """The batch's device state (sequence windows: a crash makes no false gaps) and rule state, in one
        transaction of the registry, before the batch is acknowledged."""
        with self._sessions() as session:
            wrote = self._flush_devices_in(session)
            if self._save_rules_in(session) or wrote:
                session.commit()

    def _apply(self, transitions: Sequence[Transition]) -> None:
        for change in transitions:
            branch = self.directory.branches.get(change.branch)
            if branch is None:
                continue
            self.alerts.apply(change, branch, self.directory.subject_name(change.branch, change.subject))

    def _alert_points(self, transitions: Sequence[Transition]) -> list[Point]:
        """Alerts firing and resolving, for the dashboards' annotations and the reports."""
        branches = self.directory.branches
        return [
            Point.make(
                schema.ALERT,
                self.handlers.tags(t.branch, rule=t.rule, severity=severity(t, branches[t.branch])),
                {"change": t.change.value, "subject": t.subject, "value": t.value},
                int(t.at * 1_000_000) * 1000,
            )
            for t in transitions
            if t.branch in branches
        ]

    def _timed(self, transitions: list[Transition]) -> None:
        if transitions:
            self._store(self._alert_points(transitions))
            self._moved.update(t.branch for t in transitions)
        self._apply(transitions)

    def _listen(self, now: float) -> None:
        """Follow the server's own connection to the broker: while it is lost nobody is judged offline (one
        outage is one matter for the technicians, not one alert per device); told once when it lasts."""
        hearing = self._hearing()
        if hearing != self._heard:
            self.rules.presence(hearing, now)
            self._moved.update(self.rules.branches())
            if not hearing:
                self._deaf_since = now
            elif self._deaf_since is not None:
                if self.broker_down_told and self.on_system is not None:
                    self.on_system({"event": "broker_back", "down_s": round(now - self._deaf_since)})
                self._deaf_since, self.broker_down_told = None, False
            self._heard = hearing
        if (
            not hearing
            and self._deaf_since is not None
            and not self.broker_down_told
            and now - self._deaf_since >= BROKER_DOWN_TELL_S
        ):
            self.broker_down_told = True
            if self.on_system is not None:
                self.on_system({"event": "broker_down", "down_s": round(now - self._deaf_since)})

    def alert_event(self, event: dict[str, object]) -> None:
        """What happened to an alert (from any thread); the rules hear of what people did at the next tick."""
        if event.get("rule") == "call_unanswered" and event.get("event") in ("acknowledged", "resolved"):
            self._people.append(event)

    def _calls_handled_by_people(self) -> None:
        """An acknowledged call's alert answers the call: its response time is the acknowledgement's; a call
        whose alert a person resolved is over."""
        points = []
        while self._people:
            event = self._people.popleft()
            branch, button = str(event["branch"]), str(event["subject"])
            self._moved.add(branch)
            if event["event"] == "resolved":
                if event.get("by") is not None:  # resolved by hand, not by the button
                    self.rules.call_closed(branch, button)
                continue
            at = datetime.fromisoformat(str(event["at"]))
            done = self.rules.call_acknowledged(branch, button, at.timestamp())
            if done is None:
                continue
            device = str(event.get("device") or "")
            points.append(
                Point.make(
                    schema.CALL,
                    self.handlers.tags(branch, device=device, button=button, kind=done.kind),
                    {"action": "answered", "count": 1, "response_s": round(done.response_s, 1)},
                    epoch_ns(at),
                )
            )
            if self.on_call is not None:
                self.on_call(
                    {
                        "event": "call",
                        "branch": branch,
                        "subject": button,
                        "kind": done.kind,
                        "device": device,
                        "response_s": round(done.response_s, 1),
                        "answered_by": "acknowledgement",
                        "by": event.get("by"),
                    }
                )
        if points:
            self._store(points)

    def tick(self) -> None:
        """Time-driven rules (call deadlines, silent devices): call about once a second."""
        self._listen(self._clock.now().timestamp())
        self._calls_handled_by_people()
        self._timed(self.rules.tick(self._clock.now().timestamp()))
        slot = int(self._clock.monotonic() // ALERT_TICK_S)  # on whole multiples of the interval
        if slot != self._alert_slot:
            self._alert_slot = slot
            now = self._clock.now().timestamp()
            for branch in self.directory.branches.values():
                self._timed(self.rules.hours(branch.id, branch.hours, now))
            self.alerts.tick(self.directory.branches, self._held())
        if self._clock.monotonic() - self._learnt_flush >= LEARNT_FLUSH_S:
            self.flush_learnt()
        if self.save_every_batch:
            self.save_rules()

    def _held(self) -> Held:
        """What holds alerts back now, as a snapshot for the alerts thread."""
        unknown = frozenset(
            (branch, zone)
            for branch in self.directory.branches
            for zone, now in self.live.zones(branch).items()
            if now.occupancy is None
        )
        return Held(self.rules.offline_devices(), unknown)

    def request_stop(self) -> None:
        """Stop waiting for storage to come back: a batch still unstored stays unacknowledged."""
        self.stopping.set()

    # -- one batch -----------------------------------------------------------------------------------
    def process(self, batch: Sequence[Received]) -> None:
        work = Batch()
        for received in batch:
            self.stats.received += 1
            start = len(work.points)
            try:
                self._one(received, work)
            except Exception:  # a bug of ours must not stop the ingest: count it, log it, go on
                self.stats.internal_errors += 1
                log.exception("internal error on message from %s", received.topic)
                self.dead_letters.add(
                    "internal_error", None, received.topic, "internal error (see the log)", received.payload
                )
                del work.points[start:]
                continue
            if len(work.points) > start:
                work.origins.append((received, start, len(work.points)))
        self._store_batch(work)
        if self.save_every_batch:
            self.save_state()
        self.dead_letters.flush()
        now = self._clock.now().timestamp()
        for ts in work.stamps:
            self.lag.add((now - ts) * 1000)
        self._apply(work.transitions)
        if self._clock.monotonic() - self._last_flush >= DEVICE_FLUSH_S:
            self.flush_devices()

    def _store(self, points: list[Point]) -> None:
        """Store, retrying for as long as storage is down: the broker holds what arrives meanwhile. Raises
        RefusedPoints at once: no retry makes a store take what it refuses for its content."""
        attempt = 0
        while True:
            try:
                self.store.write(points)
            except RefusedPoints:
                raise
            except Exception as exc:  # disk full, database locked, InfluxDB down: hold the batch and retry
                self.stats.store_failures += 1
                self.stats.last_store_error = f"{type(exc).__name__}: {exc}"[:300]
                wait = STORE_RETRY_S[min(attempt, len(STORE_RETRY_S) - 1)]
                attempt += 1
                log.error(
                    "storing %d points failed (attempt %d), retrying in %s s: %s", len(points), attempt, wait, exc
                )
                if self.stopping.wait(wait):
                    raise
                continue
            self.stats.stored_points += len(points)
            self.stats.last_store_error = None
            return

    def _store_batch(self, work: Batch) -> None:
        alerts = self._alert_points(work.transitions)
        try:
            self._store(work.points + alerts)
            return
        except RefusedPoints as exc:
            log.warning(
                "the store refused a batch of %d messages (%s); storing them one by one", len(work.origins), exc
            )
        for received, start, end in work.origins:  # find the messages it refuses; store the rest
            try:
                self._store(work.points[start:end])
            except RefusedPoints as exc:
                self.stats.store_refused += 1
                self.decoder.refuse("storage_refused", device_of(received.topic), str(exc), received)
        try:
            self._store(alerts)
        except RefusedPoints:  # our own points: a bug, not a device's doing
            self.stats.internal_errors += 1
            log.exception("the store refused %d alert points", len(alerts))

    def _one(self, received: Received, batch: Batch) -> None:
        decoded = self.decoder.decode(received)
        if decoded is None:
            return
        device, message = decoded
        runtime = self.devices.setdefault(device.id, DeviceRuntime())
        runtime.last_seen = received.received_at
        self._moved.add(device.branch_id)
        self._dirty.add(device.id)
        if isinstance(message, Snapshot):
            self.handlers.snapshot(device, message)
            return
        if isinstance(message, Status):
            if self.handlers.status(device, runtime, message, batch.points):
                presence = self.rules.device_gone if not runtime.online else self.rules.device_seen
                batch.transitions.extend(presence(device.branch_id, device.id, received.received_at))
            return
        assert isinstance(message, QueueReport | ButtonEvent | FacilityReport | Health | CommandReply)
        if not self._in_window(device, runtime, message, received):
            return
        batch.transitions.extend(self.rules.device_seen(device.branch_id, device.id, received.received_at))
        verdict = runtime.sequence.accept(message.stream, message.seq)
        if verdict is Verdict.DUPLICATE:
            self.stats.duplicates += 1
            if isinstance(message, Health):  # sent straight, past a full card: its counters still count
                batch.transitions.extend(self.handlers.losses(device, runtime, message, received.received_at))
            return
        if verdict is Verdict.LATE:
            self.stats.late += 1
        batch.stamps.append(message.ts.timestamp())
        self.handlers.handle(Context(device, runtime, received, verdict, epoch_ns(message.ts)), message, batch)

    def _in_window(
        self, device: DeviceEntry, runtime: DeviceRuntime, message: DeviceMessage, received: Received
    ) -> bool:
        """A device timestamp far from the server's clock is refused, and its skew recorded for the technician:
        its clock, not the message, is what is broken."""
        skew_s = self.decoder.refused_skew(device, message, received)
        if skew_s is None:
            return True
        runtime.clock_skew_ms = round(skew_s * 1000, 1)
        return False

    @property
    def replies(self) -> int:
        return self.handlers.replies

    def _call_answered(self, event: dict[str, object]) -> None:
        if self.on_call is not None:
            self.on_call(event)

    def _keep_calibration(self, device: str, calibration: Calibration) -> None:
        """With the zone, so that it moves to a replacement camera. Rare (a technician labelling), so at once,
        before the reply is acknowledged."""
        with self._sessions() as session:
            zone = session.scalars(
                select(models.Zone).where(models.Zone.device_id == device, models.Zone.key == calibration.zone)
            ).first()
            if zone is None:
                log.warning(
                    "device %s calibrated zone %s, which the registry does not have for it: not kept",
                    device,
                    calibration.zone,
                )
                return
            zone.calibration = calibration.model_dump(mode="json")
            session.commit()
        log.info(
            "device %s calibrated zone %s (residual %.2f people): kept for a replacement",
            device,
            calibration.zone,
            calibration.model.residual_sd,
        )

    def resend_requests(self) -> list[ResendRequest]:
        """Devices to ask for the messages they sent that never arrived."""
        return list(
            self.repair.plan(
                self._clock.monotonic(), {d: rt.sequence for d, rt in self.devices.items() if rt.sequence.gaps}
            )
        )

    # -- state kept in the registry ------------------------------------------------------------------
    def flush_learnt(self) -> None:
        self._learnt_flush = self._clock.monotonic()
        evidence = self.rules.service_evidence()
        if not evidence:
            return
        with self._sessions() as session:
            saved_state.save_learnt(session, evidence, set(self.directory.branches), self._clock.now())

    def flush_devices(self) -> None:
        with self._sessions() as session:
            if self._flush_devices_in(session):
                session.commit()

    def _flush_devices_in(self, session: Session) -> bool:
        self._last_flush = self._clock.monotonic()
        dirty, self._dirty = self._dirty, set()
        return saved_state.save_devices(session, self.devices, dirty)
