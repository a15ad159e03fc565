"""The technicians' view of the devices, and what they can do to them from afar: identify, restart, resend,
a snapshot to draw zones on, labels for calibration, a config push. Devices that need attention come first."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy.orm import Session, sessionmaker

from lobbywatch.clock import Clock
from lobbywatch.device_config import check_sections
from lobbywatch.protocol import REMOTE_SECTIONS, ConfigPush
from lobbywatch.validation import Refused
from server.commands import DeviceCommands
from server.live import LastReply, LiveState, SnapshotNow
from server.provisioning.enrollment import calibrations
from server.provisioning.profiles import with_calibrations
from server.registry import audit, models
from server.registry.directory import Directory
from server.rules.facility import CLOCK_SKEW_LIMIT_MS

OUTBOX_BACKLOG = 1000  # messages waiting on a device: it cannot reach the broker, or sends too slowly
ACTIONS = ("identify", "restart", "resend", "snapshot", "label")
__all__ = [
    "ACTIONS",
    "REMOTE_SECTIONS",
    "ConfigRefused",
    "Fleet",
    "FleetError",
    "FleetRow",
]


@dataclass(frozen=True, slots=True)
class FleetRow:
    device: str
    branch: str
    profile: str
    online: bool
    last_seen: datetime | None
    agent_version: str | None
    config_version: int | None
    config_pushed: int | None
    clock_offset_ms: float | None
    outbox_depth: int | None
    outbox_dropped: int | None  # messages the device dropped at its outbox's bounds, ever
    not_stored: int | None  # messages it could not store since its agent started
    camera_ok: bool | None
    missing: int
    attention: list[str] = field(default_factory=list)  # why it needs a technician, worst first
    last_reply: LastReply | None = None
    counting: dict[str, str] = field(default_factory=dict)  # zone -> how the device counts it
    fitting: tuple[str, ...] = ()  # zones whose head counter the device is fitting now


def attention(row: FleetRow) -> list[str]:
    """Codes (translated on the page): what a technician should look at on this device."""
    found = []
    if not row.online:
        found.append("offline")
    if row.camera_ok is False:
        found.append("camera")
    if row.clock_offset_ms is not None and abs(row.clock_offset_ms) > CLOCK_SKEW_LIMIT_MS:
        found.append("clock")
    if row.outbox_depth is not None and row.outbox_depth > OUTBOX_BACKLOG:
        found.append("outbox")
    if row.outbox_dropped or row.not_stored:
        found.append("data_lost")
    if row.config_pushed and row.config_version != row.config_pushed:  # 0: the enrollment's, never pushed
        found.append("config_pending")
    if row.missing:
        found.append("missing")
    return found


class FleetError(Refused):
    """An action that cannot be done as asked; the message says why."""


class ConfigRefused(FleetError):
    """Config sections the device's own model refuses; the message names each field."""


class Fleet:
    """The devices as the technicians see them, and what they do to them (each action audited)."""

    def __init__(
        self,
        sessions: sessionmaker[Session],
        directory: Directory,
        live: LiveState,
        commands: DeviceCommands,
        clock: Clock,
    ) -> None:
        self._sessions = sessions
        self._directory = directory
        self._live = live
        self._commands = commands
        self._clock = clock

    def snapshot(self, device: str) -> SnapshotNow | None:
        """The snapshot the device sent last, while it is kept (minutes; never stored)."""
        return self._live.snapshot(device, self._clock.monotonic())

    def rows(self, branches: set[str] | None = None) -> list[FleetRow]:
        """Every device (of these branches), those that need attention first."""
        with self._sessions() as session:
            pushed = {c.device_id: c.version for c in session.query(models.DeviceConfig)}
        rows = []
        for device in self._directory.devices.values():
            if branches is not None and device.branch_id not in branches:
                continue
            state = self._live.device(device.id)
            camera = self._live.readings(device.branch_id).get(f"{device.id}/camera")
            row = FleetRow(
                device=device.id,
                branch=device.branch_id,
                profile=device.profile,
                online=bool(state and state.online),
                last_seen=datetime.fromtimestamp(state.last_seen, UTC) if state and state.last_seen else None,
                agent_version=state.agent_version if state else None,
                config_version=state.config_version if state else None,
                config_pushed=pushed.get(device.id),
                clock_offset_ms=state.clock_skew_ms if state else None,
                outbox_depth=state.outbox_depth if state else None,
                outbox_dropped=state.outbox_dropped if state else None,
                not_stored=state.not_stored if state else None,
                camera_ok=camera.ok if camera else None,
                missing=state.missing if state else 0,
                last_reply=state.last_reply if state else None,
                counting=dict(state.counting) if state else {},
                fitting=state.fitting if state else (),
            )
            row.attention.extend(attention(row))
            rows.append(row)
        return sorted(rows, key=lambda r: (not r.attention, r.branch, r.device))

    def send_command(self, device: str, action: str, by: str, args: dict[str, object] | None = None) -> str:
        """Publish a command on the device's command topic; returns its id (the device's reply names it)."""
        if action not in ACTIONS:
            raise FleetError("fleet.error.unknown_action", action=action, actions=", ".join(ACTIONS))
        if device not in self._directory.devices:
            raise FleetError("fleet.error.no_device", device=device)
        if action == "resend":
            return self._resend(device, by)
        sent = self._commands.send(device, action, args)
        self._audit(by, f"device.{action}", device, str(args or ""))
        return sent

    def _resend(self, device: str, by: str) -> str:
        """Ask for every message the server is missing from the device, now (the ingest also asks by itself)."""
        state = self._live.device(device)
        gaps = state.gaps if state else ()
        if not gaps:
            raise FleetError("fleet.error.nothing_missing", device=device)
        args = {"stream": state.stream if state else "", "ranges": [list(g) for g in gaps]}
        sent = self._commands.send(device, "resend", args)
        self._audit(by, "device.resend", device, f"{len(gaps)} ranges")
        return sent

    def push_config(self, device: str, sections: dict[str, Any], by: str) -> int:
        """Store the sections and push them, retained: the device applies them now or when it next connects,
        and says which version it runs. Returns the version."""
        if device not in self._directory.devices:
            raise FleetError("fleet.error.no_device", device=device)
        try:  # as the device will: nothing it would refuse is stored, pushed or shown on a page
            check_sections(sections)
        except Refused as exc:
            raise ConfigRefused(exc.key, exc.problems, **exc.params) from None
        now = self._clock.now()
        with self._sessions() as session:
            row = session.get(models.DeviceConfig, device)
            merged = {**(dict(row.sections) if row else {}), **sections}
            version = (row.version + 1) if row else 1
            session.merge(
                models.DeviceConfig(device_id=device, version=version, sections=merged, updated_at=now, updated_by=by)
            )
            audit.record(session, now, by, "device.config", device, f"version {version}: {', '.join(sorted(sections))}")
            session.commit()
            published = with_calibrations(merged, calibrations(session, device))
        self._commands.push_config(device, ConfigPush(version=version, config=published))
        return version

    def pushed_config(self, device: str) -> tuple[int | None, dict[str, Any]]:
        with self._sessions() as session:
            row = session.get(models.DeviceConfig, device)
            return (row.version, dict(row.sections)) if row else (None, {})

    def _audit(self, by: str, action: str, target: str, detail: str) -> None:
        with self._sessions() as session:
            audit.record(session, self._clock.now(), by, action, target, detail)
            session.commit()
