"""What each kind of device message means: the points it makes, the live values it sets, and what the rules
say of it. No storage, no threads: the pipeline stores the points and acts on the transitions it is handed.

A message that is not new (late, filling a gap) is stored and shown but moves no rule: rules only move
forward in time.
"""

from __future__ import annotations

import base64
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from lobbywatch.clock import Clock
from lobbywatch.protocol import (
    ButtonAction,
    ButtonEvent,
    Calibration,
    CommandReply,
    ConnectionState,
    FacilityReport,
    Health,
    QueueReport,
    Snapshot,
    Status,
)
from server.ingest.decode import Decoder
from server.ingest.device_state import DeviceRuntime
from server.ingest.mqtt_source import Received
from server.ingest.sequence import Verdict
from server.live import CallNow, LiveState, ReadingNow, SnapshotNow, ZoneNow
from server.registry.directory import DeviceEntry, Directory
from server.rules.engine import RuleEngine
from server.rules.transitions import Transition
from server.storage import points as schema
from server.storage.points import Point, epoch_ns

log = logging.getLogger(__name__)


@dataclass(slots=True)
class Batch:
    """What one batch of messages makes: points to store, rule transitions, device timestamps."""

    points: list[Point] = field(default_factory=list)
    transitions: list[Transition] = field(default_factory=list)
    stamps: list[float] = field(default_factory=list)
    origins: list[tuple[Received, int, int]] = field(default_factory=list)  # a message's points: [start, end)


@dataclass(frozen=True, slots=True)
class Context:
    device: DeviceEntry
    runtime: DeviceRuntime
    received: Received
    verdict: Verdict
    t_ns: int


class Handlers:
    def __init__(
        self,
        directory: Directory,
        rules: RuleEngine,
        live: LiveState,
        decoder: Decoder,
        clock: Clock,
        keep_calibration: Callable[[str, Calibration], None],
        on_call: Callable[[dict[str, object]], None],
    ) -> None:
        """`keep_calibration`: store a zone's calibration a technician made (rare: at once); `on_call`: a call
        answered at its button."""
        self.directory = directory
        self.rules = rules
        self.live = live
        self.decoder = decoder
        self._clock = clock
        self._keep_calibration = keep_calibration
        self._on_call = on_call
        self.replies = 0
        self._table: dict[type, Callable[[Context, Any, Batch], None]] = {
            QueueReport: self.queue,
            ButtonEvent: self.button,
            FacilityReport: self.facility,
            Health: self.health,
            CommandReply: self.reply,
        }

    def handle(
        self, ctx: Context, message: QueueReport | ButtonEvent | FacilityReport | Health | CommandReply, batch: Batch
    ) -> None:
        self._table[type(message)](ctx, message, batch)

    def queue(self, ctx: Context, message: QueueReport, batch: Batch) -> None:
        device, branch = ctx.device, ctx.device.branch_id
        for count in message.zones:
            zone = device.zones.get(count.zone)
            if zone is None:
                self.decoder.refuse("unknown_zone", device.id, f"zone {count.zone!r} is not registered", ctx.received)
                continue
            batch.points.append(
                Point.make(
                    schema.OCCUPANCY,
                    self.tags(branch, zone=zone.key, device=device.id),
                    {"occupancy": count.occupancy, "error": count.error, "known": count.occupancy is not None},
                    ctx.t_ns,
                )
            )
            self.live.set_zone(branch, zone.key, ZoneNow(count.occupancy, count.error, message.ts, device.id))
            # a late message is history: rules only move forward in time
            if ctx.verdict is Verdict.NEW and count.occupancy:
                batch.transitions.extend(self.rules.activity(branch, ctx.received.received_at))
            if ctx.verdict is not Verdict.NEW:
                continue
            open_now = self.directory.branches[branch].hours.is_open(message.ts)
            batch.transitions.extend(
                self.rules.occupancy(
                    branch,
                    zone.key,
                    zone.rules,
                    count.occupancy,
                    message.ts.timestamp(),
                    open_now,
                    device.id,
                )
            )
            if open_now and count.occupancy is not None:
                seen = self.rules.projection(branch, zone.key, zone.rules, count.occupancy)
                batch.points.append(
                    Point.make(
                        schema.WAIT,
                        self.tags(branch, zone=zone.key),
                        {
                            "wait_min": round(seen.wait_min, 2),
                            "target_min": seen.target_min,
                            "under_target": None if seen.target_min is None else int(seen.wait_min <= seen.target_min),
                            "windows_open": zone.rules.windows_open,
                            "windows_needed": seen.windows_needed,
                            "service_min": round(seen.service_min, 2),
                        },
                        ctx.t_ns,
                    )
                )

    def snapshot(self, device: DeviceEntry, message: Snapshot) -> None:
        try:
            jpeg = base64.b64decode(message.jpeg_b64, validate=True)
        except ValueError:
            self.decoder.rejects.refuse("invalid", device.id, "snapshot is not base64")
            return
        if not jpeg.startswith(b"\xff\xd8"):
            self.decoder.rejects.refuse("invalid", device.id, "snapshot is not a JPEG image")
            return
        self.live.set_snapshot(
            device.id, SnapshotNow(message.id, jpeg, message.width, message.height, message.ts, self._clock.monotonic())
        )

    def tags(self, branch: str, **more: str) -> dict[str, str]:
        entry = self.directory.branches.get(branch)
        return {"region": entry.region_id if entry else "", "branch": branch, **more}

    def button(self, ctx: Context, message: ButtonEvent, batch: Batch) -> None:
        branch, device = ctx.device.branch_id, ctx.device.id
        answered = message.action is ButtonAction.ANSWERED
        # timed when it happened, on the server's clock: a press that arrives late (after an outage) has waited
        # all that time, and its deadline is judged on it
        offset = ctx.runtime.clock_offset_s() or 0.0
        at = min(message.ts.timestamp() - offset, ctx.received.received_at)
        response_s = None
        if ctx.verdict is Verdict.NEW:
            entry = self.directory.branches[branch]
            changes, done = self.rules.call(
                branch,
                message.button,
                message.kind.value,
                answered,
                at,
                entry.hours.is_open(message.ts),
                device,
                entry.call_deadlines_s,
            )
            batch.transitions.extend(changes)
            batch.transitions.extend(self.rules.activity(branch, at))
            response_s = round(done.response_s, 1) if done else None
            if done is not None:
                self._on_call(
                    {
                        "event": "call",
                        "branch": branch,
                        "subject": done.button,
                        "kind": done.kind,
                        "device": device,
                        "response_s": response_s,
                        "answered_by": "button",
                    }
                )
        batch.points.append(
            Point.make(
                schema.CALL,
                self.tags(branch, device=device, button=message.button, kind=message.kind.value),
                {"action": message.action.value, "count": 1, "response_s": response_s},
                ctx.t_ns,
            )
        )
        if not answered:
            self.live.set_call(branch, CallNow(message.button, message.kind.value, device, message.ts))

    def facility(self, ctx: Context, message: FacilityReport, batch: Batch) -> None:
        branch, device = ctx.device.branch_id, ctx.device.id
        for reading in message.readings:
            batch.points.append(
                Point.make(
                    schema.FACILITY,
                    self.tags(branch, device=device, sensor=reading.sensor, kind=reading.kind.value),
                    {"value": reading.value, "ok": reading.ok, "up": int(reading.ok)},
                    ctx.t_ns,
                )
            )
            self.live.set_reading(
                branch,
                f"{device}/{reading.sensor}",
                ReadingNow(reading.kind.value, reading.value, reading.ok, device, message.ts),
            )
            if ctx.verdict is Verdict.NEW and reading.kind.value == "door" and reading.value == 1.0:
                batch.transitions.extend(self.rules.activity(branch, ctx.received.received_at))
            if ctx.verdict is Verdict.NEW:
                batch.transitions.extend(
                    self.rules.facility(
                        branch,
                        device,
                        reading.sensor,
                        reading.kind.value,
                        reading.value,
                        reading.ok,
                        reading.detail,
                        ctx.received.received_at,
                        self.directory.branches[branch].hours.is_open(message.ts),
                    )
                )

    def health(self, ctx: Context, message: Health, batch: Batch) -> None:
        runtime = ctx.runtime
        sample = message.ts.timestamp() - ctx.received.received_at  # the offset, less this message's delay
        if ctx.verdict is Verdict.NEW and message.outbox_depth == 0:
            # made with nothing queued on the device: sent at once, so its delay is the network's. One made
            # during an outage (a backlog) says nothing of the clock, only of the outage.
            runtime.offsets.append((ctx.received.received_at, sample))
        offset = runtime.clock_offset_s()
        if offset is not None or message.outbox_depth == 0:  # the estimate; until there is one, this sample
            runtime.clock_skew_ms = round((offset if offset is not None else sample) * 1000, 1)
        if ctx.verdict is Verdict.NEW and offset is not None:
            batch.transitions.extend(
                self.rules.clock_skew(
                    ctx.device.branch_id, ctx.device.id, runtime.clock_skew_ms, ctx.received.received_at
                )
            )
        runtime.agent_version = message.agent_version
        runtime.config_version = message.config_version
        runtime.outbox_depth = message.outbox_depth
        batch.transitions.extend(self.losses(ctx.device, runtime, message, ctx.received.received_at))
        batch.points.append(
            Point.make(
                schema.DEVICE_HEALTH,
                self.tags(ctx.device.branch_id, device=ctx.device.id),
                {
                    "cpu_pct": message.cpu_pct,
                    "mem_rss_mb": message.mem_rss_mb,
                    "outbox_depth": message.outbox_depth,
                    "clock_skew_ms": round(sample * 1000, 1),
                    "clock_synced": message.clock_synced,
                    "uptime_s": message.uptime_s,
                    "agent_version": message.agent_version,
                    "config_version": message.config_version,
                },
                ctx.t_ns,
            )
        )

    def losses(self, device: DeviceEntry, runtime: DeviceRuntime, message: Health, at: float) -> list[Transition]:
        """What a device lost (dropped at its outbox's bounds, or never stored): kept for the fleet view, and
        an alert for the technicians when it grows (or, since the agent started, it could not store)."""
        made = message.ts.timestamp()
        if runtime.health_ts is not None and made <= runtime.health_ts:
            return []  # an older report than one taken already (a backlog)
        before = None if runtime.outbox_dropped is None else runtime.outbox_dropped + (runtime.not_stored or 0)
        runtime.health_ts, runtime.outbox_dropped, runtime.not_stored = made, message.outbox_dropped, message.not_stored
        lost = message.outbox_dropped + message.not_stored
        grew = lost > before if before is not None else message.not_stored > 0
        detail = f"{message.outbox_dropped} dropped at the outbox's bounds, {message.not_stored} not stored"
        return self.rules.facility(
            device.branch_id, device.id, "outbox", "outbox", float(lost), not grew, detail, at, True
        )

    def reply(self, ctx: Context, message: CommandReply, batch: Batch) -> None:
        self.replies += 1
        ctx.runtime.last_reply = (message.command, message.ok, message.detail or "", message.ts)
        if message.config_version is not None:
            ctx.runtime.config_version = message.config_version
        tracker = ctx.runtime.sequence
        for first, last in message.unavailable:
            gone = tracker.give_up(first, last)
            if gone:
                log.warning(
                    "device %s no longer has messages %d-%d (%d still missing): given up",
                    ctx.device.id,
                    first,
                    last,
                    gone,
                )
        if not message.ok:
            log.warning("device %s could not carry out %s: %s", ctx.device.id, message.command, message.detail)
        if message.calibration is not None:
            self._keep_calibration(ctx.device.id, message.calibration)

    def status(self, device: DeviceEntry, runtime: DeviceRuntime, message: Status, points: list[Point]) -> bool:
        """Apply a connection status; False when it was an old connection's and was ignored."""
        # a will from an older connection must not mark a device offline that has since reconnected
        if runtime.online_since is not None and message.since < runtime.online_since:
            return False
        runtime.online = message.state is ConnectionState.ONLINE
        runtime.online_since = message.since
        runtime.agent_version = message.agent_version
        points.append(
            Point.make(
                schema.DEVICE_STATUS,
                self.tags(device.branch_id, device=device.id),
                {"online": runtime.online, "up": int(runtime.online)},
                epoch_ns(self._clock.now()),
            )
        )
        return True
