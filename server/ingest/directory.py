"""What the ingest needs from the registry, held in memory: which device is in which branch, with which zones."""

from __future__ import annotations

import threading
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from server.registry import models
from server.rules.queue_length import QueueRule


@dataclass(frozen=True, slots=True)
class BranchEntry:
    id: str
    name: str
    region_id: str
    timezone: str
    locale: str


@dataclass(frozen=True, slots=True)
class ZoneEntry:
    branch_id: str
    key: str
    name: str
    rule: QueueRule


@dataclass(frozen=True, slots=True)
class DeviceEntry:
    id: str
    branch_id: str
    zones: dict[str, ZoneEntry]


class Directory:
    def __init__(self, sessions: sessionmaker[Session]) -> None:
        self._sessions = sessions
        self._lock = threading.Lock()
        self.devices: dict[str, DeviceEntry] = {}
        self.branches: dict[str, BranchEntry] = {}
        self.reload()

    def reload(self) -> None:
        with self._sessions() as session:
            branches = {
                b.id: BranchEntry(b.id, b.name, b.region_id, b.timezone, b.locale)
                for b in session.scalars(select(models.Branch))
            }
            zones: dict[str, dict[str, ZoneEntry]] = {}
            for z in session.scalars(select(models.Zone)):
                rule = QueueRule(z.queue_threshold, z.queue_for_s, z.queue_clear_below, z.queue_clear_for_s)
                zones.setdefault(z.device_id, {})[z.key] = ZoneEntry(z.branch_id, z.key, z.name, rule)
            devices = {
                d.id: DeviceEntry(d.id, d.branch_id, zones.get(d.id, {}))
                for d in session.scalars(select(models.Device))
            }
        with self._lock:
            self.branches, self.devices = branches, devices
