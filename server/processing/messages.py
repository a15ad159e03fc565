"""What each kind of device message means for its branch: the points it makes, the live values it sets, and
what the rules say of it. Pure functions over the branch's state; the processor calls them, the ingest stores
and acts on what they put in the `Output`.

A message that is not new (late, filling a gap) is stored and shown but moves no rule: rules only move
forward in time.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from lobbywatch.protocol import (
    ButtonAction,
    ButtonEvent,
    CommandReply,
    ConnectionState,
    FacilityReport,
    Health,
    QueueReport,
    Status,
)
from server.live import CallNow, LastReply, LiveUpdate, ReadingNow, ZoneNow
from server.processing.devices import DeviceRuntime
from server.processing.output import Output, Refusal
from server.processing.sequence import Verdict
from server.registry.directory import BranchEntry, DeviceEntry
from server.rules.branch import BranchRules
from server.rules.transitions import Transition
from server.storage import points as schema
from server.storage.points import Point

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Context:
    """One message's place: its branch and device, their state, when it arrived and whether it is new."""

    branch: BranchEntry
    device: DeviceEntry
    runtime: DeviceRuntime
    rules: BranchRules
    received_at: float
    verdict: Verdict
    t_ns: int

    def tags(self, **more: str) -> dict[str, str]:
        return tags(self.branch, **more)


def tags(branch: BranchEntry, **more: str) -> dict[str, str]:
    return {
        "region": branch.region_id,
        "region_label": branch.region_label,
        "branch": branch.id,
        "branch_label": branch.label,
        **more,
    }


def sensor_name(branch: BranchEntry, device: str, sensor: str) -> str:
    """A sensor's own name where the site gives one; else its device's and its key ("大厅环境 / temp")."""
    if sensor in branch.names:
        return branch.named(sensor)
    return f"{branch.named(device)} / {sensor}"


def queue(ctx: Context, message: QueueReport, out: Output) -> None:
    device = ctx.device
    for count in message.zones:
        zone = device.zones.get(count.zone)
        if zone is None:
            out.refusals.append(Refusal("unknown_zone", device.id, f"zone {count.zone!r} is not registered"))
            continue
        out.points.append(
            Point.make(
                schema.OCCUPANCY,
                ctx.tags(zone=zone.key, name=ctx.branch.named(zone.key, zone.name), device=device.id),
                {
                    "occupancy": count.occupancy,
                    "error": count.error,
                    "known": count.occupancy is not None,
                    "threshold": zone.rules.queue.fire_at,  # the zone's own "too long": the dashboards' colours
                },
                ctx.t_ns,
            )
        )
        out.live.append(
            LiveUpdate(ctx.branch.id, zone.key, ZoneNow(count.occupancy, count.error, message.ts, device.id))
        )
        # a late message is history: rules only move forward in time
        if ctx.verdict is Verdict.NEW and count.occupancy:
            out.transitions.extend(ctx.rules.activity(ctx.received_at))
        if ctx.verdict is not Verdict.NEW:
            continue
        open_now = ctx.branch.hours.is_open(message.ts)
        out.transitions.extend(
            ctx.rules.occupancy(
                zone.key,
                zone.rules,
                count.occupancy,
                message.ts.timestamp(),
                open_now,
                device.id,
            )
        )
        if open_now and count.occupancy is not None:
            seen = ctx.rules.projection(zone.key, zone.rules, count.occupancy)
            out.points.append(
                Point.make(
                    schema.WAIT,
                    ctx.tags(zone=zone.key, name=ctx.branch.named(zone.key, zone.name)),
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


def button(ctx: Context, message: ButtonEvent, out: Output) -> None:
    branch, device = ctx.branch.id, ctx.device.id
    answered = message.action is ButtonAction.ANSWERED
    # timed when it happened, on the server's clock: a press that arrives late (after an outage) has waited
    # all that time, and its deadline is judged on it
    offset = ctx.runtime.clock_offset_s() or 0.0
    at = min(message.ts.timestamp() - offset, ctx.received_at)
    response_s = None
    if ctx.verdict is Verdict.NEW:
        entry = ctx.branch
        changes, done = ctx.rules.call(
            message.button,
            message.kind.value,
            answered,
            at,
            entry.hours.is_open(message.ts),
            device,
            entry.call_deadlines_s,
        )
        out.transitions.extend(changes)
        out.transitions.extend(ctx.rules.activity(at))
        response_s = round(done.response_s, 1) if done else None
        if done is not None:
            out.calls.append(
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
    out.points.append(
        Point.make(
            schema.CALL,
            ctx.tags(
                device=device, button=message.button, name=ctx.branch.named(message.button), kind=message.kind.value
            ),
            {"action": message.action.value, "count": 1, "response_s": response_s},
            ctx.t_ns,
        )
    )
    if not answered:
        out.live.append(
            LiveUpdate(branch, message.button, CallNow(message.button, message.kind.value, device, message.ts))
        )


def facility(ctx: Context, message: FacilityReport, out: Output) -> None:
    branch, device = ctx.branch.id, ctx.device.id
    for reading in message.readings:
        out.points.append(
            Point.make(
                schema.FACILITY,
                ctx.tags(
                    device=device,
                    sensor=reading.sensor,
                    name=sensor_name(ctx.branch, device, reading.sensor),
                    kind=reading.kind.value,
                ),
                {"value": reading.value, "ok": reading.ok, "up": int(reading.ok)},
                ctx.t_ns,
            )
        )
        out.live.append(
            LiveUpdate(
                branch,
                f"{device}/{reading.sensor}",
                ReadingNow(reading.kind.value, reading.value, reading.ok, device, message.ts),
            )
        )
        if ctx.verdict is Verdict.NEW and reading.kind.value == "door" and reading.value == 1.0:
            out.transitions.extend(ctx.rules.activity(ctx.received_at))
        if ctx.verdict is Verdict.NEW:
            out.transitions.extend(
                ctx.rules.facility(
                    device,
                    reading.sensor,
                    reading.kind.value,
                    reading.value,
                    reading.ok,
                    reading.detail,
                    ctx.received_at,
                    ctx.branch.hours.is_open(message.ts),
                )
            )


def health(ctx: Context, message: Health, out: Output) -> None:
    runtime = ctx.runtime
    sample = message.ts.timestamp() - ctx.received_at  # the offset, less this message's delay
    if ctx.verdict is Verdict.NEW and message.outbox_depth == 0:
        # made with nothing queued on the device: sent at once, so its delay is the network's. One made
        # during an outage (a backlog) says nothing of the clock, only of the outage.
        runtime.offsets.append((ctx.received_at, sample))
    offset = runtime.clock_offset_s()
    if offset is not None or message.outbox_depth == 0:  # the estimate; until there is one, this sample
        runtime.clock_skew_ms = round((offset if offset is not None else sample) * 1000, 1)
    if ctx.verdict is Verdict.NEW and offset is not None:
        out.transitions.extend(ctx.rules.clock_skew(ctx.device.id, runtime.clock_skew_ms, ctx.received_at))
    runtime.agent_version = message.agent_version
    runtime.config_version = message.config_version
    runtime.outbox_depth = message.outbox_depth
    if runtime.health_ts is None or message.ts.timestamp() > runtime.health_ts:  # not from a backlog
        runtime.counting = {z.zone: z.method for z in message.counting}
        runtime.fitting = tuple(z.zone for z in message.counting if z.fitting)
    out.transitions.extend(losses(ctx.rules, ctx.device, runtime, message, ctx.received_at))
    out.points.append(
        Point.make(
            schema.DEVICE_HEALTH,
            ctx.tags(device=ctx.device.id, name=ctx.branch.named(ctx.device.id)),
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


def losses(
    rules: BranchRules, device: DeviceEntry, runtime: DeviceRuntime, message: Health, at: float
) -> list[Transition]:
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
    return rules.facility(device.id, "outbox", "outbox", float(lost), not grew, detail, at, True)


def reply(ctx: Context, message: CommandReply, out: Output) -> None:
    out.replies += 1
    ctx.runtime.last_reply = LastReply(
        message.command, message.ok, message.detail or "", message.ts, message.code, dict(message.params)
    )
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
        out.calibrations.append((ctx.device.id, message.calibration))


def status(
    branch: BranchEntry, device: DeviceEntry, runtime: DeviceRuntime, message: Status, at: float, out: Output
) -> bool:
    """Apply a connection status; False when it was an old connection's and was ignored."""
    # a will from an older connection must not mark a device offline that has since reconnected
    if runtime.online_since is not None and message.since < runtime.online_since:
        return False
    runtime.online = message.state is ConnectionState.ONLINE
    runtime.online_since = message.since
    runtime.agent_version = message.agent_version
    out.points.append(
        Point.make(
            schema.DEVICE_STATUS,
            tags(branch, device=device.id, name=branch.named(device.id)),
            {"online": runtime.online, "up": int(runtime.online)},
            int(at * 1_000_000) * 1000,
        )
    )
    return True
