"""The live state of every branch and device: written by the ingest after each batch, read by the API and the
pages. Everything here is a frozen snapshot, so that a reader never touches the ingest's own objects; with the
ingest scaled out over workers, this is what moves to a store they share."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from datetime import datetime


@dataclass(frozen=True, slots=True)
class ZoneNow:
    occupancy: int | None
    error: float | None
    at: datetime
    device: str


@dataclass(frozen=True, slots=True)
class CallNow:
    button: str
    kind: str
    device: str
    at: datetime


@dataclass(frozen=True, slots=True)
class ReadingNow:
    kind: str
    value: float | None
    ok: bool
    device: str
    at: datetime


@dataclass(frozen=True, slots=True)
class SnapshotNow:
    """A camera image a technician asked for: in memory only, for a few minutes, never written anywhere."""

    id: str
    jpeg: bytes
    width: int
    height: int
    at: datetime
    received: float  # monotonic


@dataclass(frozen=True, slots=True)
class LastReply:
    """A device's answer to the last command it was sent (or to a pushed config: command "config")."""

    command: str  # the command's id, which starts with its action
    ok: bool
    detail: str  # in English, for the technician's log
    at: datetime
    code: str | None = None  # the outcome, which a page translates; None from an older agent
    params: dict[str, str | int | float] = field(default_factory=dict)

    @property
    def action(self) -> str:
        return self.command.rsplit("-", 1)[0] if "-" in self.command else self.command


@dataclass(frozen=True, slots=True)
class DeviceNow:
    """What the ingest knows of a device now: connected or not, what it last said of itself, what is missing."""

    online: bool = False
    last_seen: float | None = None  # epoch seconds, server time
    clock_skew_ms: float | None = None
    agent_version: str | None = None
    config_version: int | None = None
    outbox_depth: int | None = None
    outbox_dropped: int | None = None
    not_stored: int | None = None
    last_reply: LastReply | None = None
    counting: dict[str, str] = field(default_factory=dict)  # zone -> how the device counts it
    fitting: tuple[str, ...] = ()  # zones whose head counter is being fitted on the device
    stream: str = ""
    received_seq: int = 0
    missing: int = 0
    duplicates: int = 0
    gaps: tuple[tuple[int, int], ...] = ()


SNAPSHOT_KEEP_S = 600.0


@dataclass(frozen=True, slots=True)
class LiveUpdate:
    """One live value set: a zone's count, a sensor's reading (key: device/sensor) or a branch's last call."""

    branch: str
    key: str
    value: ZoneNow | ReadingNow | CallNow


@dataclass(frozen=True, slots=True)
class BranchNow:
    """All a branch's live values: the unit the scale-out's workers share with the API (`server.scale.live_bucket`)."""

    zones: dict[str, ZoneNow] = field(default_factory=dict)
    readings: dict[str, ReadingNow] = field(default_factory=dict)
    call: CallNow | None = None


@dataclass(frozen=True, slots=True)
class LiveChanges:
    branches: dict[str, BranchNow]
    devices: dict[str, DeviceNow]
    snapshots: dict[str, SnapshotNow]


class LiveState:
    def __init__(self, track: bool = False) -> None:
        """`track`: note what changes, for `take_changes` (a scale-out worker, which shares its live state)."""
        self._lock = threading.Lock()
        self._snapshots: dict[str, SnapshotNow] = {}
        self._zones: dict[str, dict[str, ZoneNow]] = {}
        self._calls: dict[str, CallNow] = {}
        self._readings: dict[str, dict[str, ReadingNow]] = {}
        self._devices: dict[str, DeviceNow] = {}
        self._track = track
        self._changed: tuple[set[str], set[str], set[str]] = (set(), set(), set())  # branches, devices, snapshots

    def take_changes(self) -> LiveChanges:
        """What changed since the last call, as it is now."""
        with self._lock:
            branches, devices, snapshots = self._changed
            self._changed = (set(), set(), set())
            return LiveChanges(
                {b: self._branch(b) for b in branches},
                {d: self._devices[d] for d in devices if d in self._devices},
                {d: self._snapshots[d] for d in snapshots if d in self._snapshots},
            )

    def _branch(self, branch: str) -> BranchNow:
        return BranchNow(
            dict(self._zones.get(branch, {})), dict(self._readings.get(branch, {})), self._calls.get(branch)
        )

    def put_branch(self, branch: str, now: BranchNow) -> None:
        """A branch's values as another process has them (the API's copy of the workers' state)."""
        with self._lock:
            self._zones[branch], self._readings[branch] = dict(now.zones), dict(now.readings)
            if now.call is None:
                self._calls.pop(branch, None)
            else:
                self._calls[branch] = now.call
            self._note(0, branch)

    def _note(self, kind: int, name: str) -> None:
        if self._track:
            self._changed[kind].add(name)

    def set_devices(self, devices: dict[str, DeviceNow]) -> None:
        with self._lock:
            self._devices.update(devices)
            if self._track:
                self._changed[1].update(devices)

    def device(self, device: str) -> DeviceNow | None:
        with self._lock:
            return self._devices.get(device)

    def devices(self) -> dict[str, DeviceNow]:
        with self._lock:
            return dict(self._devices)

    def device_counts(self) -> tuple[int, int, int]:
        """Devices online, devices known, and the messages missing from all of them."""
        with self._lock:
            devices = list(self._devices.values())
        return sum(d.online for d in devices), len(devices), sum(d.missing for d in devices)

    def set_zone(self, branch: str, zone: str, now: ZoneNow) -> None:
        with self._lock:
            self._zones.setdefault(branch, {})[zone] = now
            self._note(0, branch)

    def set_call(self, branch: str, call: CallNow) -> None:
        with self._lock:
            self._calls[branch] = call
            self._note(0, branch)

    def set_reading(self, branch: str, sensor: str, reading: ReadingNow) -> None:
        with self._lock:
            self._readings.setdefault(branch, {})[sensor] = reading
            self._note(0, branch)

    def apply(self, updates: list[LiveUpdate]) -> None:
        with self._lock:
            for update in updates:
                value = update.value
                if isinstance(value, ZoneNow):
                    self._zones.setdefault(update.branch, {})[update.key] = value
                elif isinstance(value, ReadingNow):
                    self._readings.setdefault(update.branch, {})[update.key] = value
                else:
                    self._calls[update.branch] = value
                self._note(0, update.branch)

    def readings(self, branch: str) -> dict[str, ReadingNow]:
        with self._lock:
            return dict(self._readings.get(branch, {}))

    def zones(self, branch: str) -> dict[str, ZoneNow]:
        with self._lock:
            return dict(self._zones.get(branch, {}))

    def last_call(self, branch: str) -> CallNow | None:
        with self._lock:
            return self._calls.get(branch)

    def set_snapshot(self, device: str, snapshot: SnapshotNow) -> None:
        with self._lock:
            self._snapshots[device] = snapshot
            self._note(2, device)

    def snapshot(self, device: str, now: float) -> SnapshotNow | None:
        with self._lock:
            for key in [k for k, v in self._snapshots.items() if now - v.received > SNAPSHOT_KEEP_S]:
                del self._snapshots[key]  # forgotten: images are not kept
            return self._snapshots.get(device)
