"""Device offline: its last will arrived, or nothing was heard from it for too long. Technicians' business;
while a device is offline, the alerts about what it measures are held back (it is not the lobby's fault)."""

from __future__ import annotations

from dataclasses import dataclass, field

from server.rules.threshold import Change, Transition

RULE = "device_offline"
# Agents send health every 30 s and occupancy every 10 s; three missed health reports is offline. The issue
# asks for detection within 90 s.
SILENCE_S = 90.0


@dataclass(slots=True)
class DeviceWatch:
    branch: str
    silence_s: float = SILENCE_S
    last_seen: dict[str, float] = field(default_factory=dict)
    offline: set[str] = field(default_factory=set)

    def seen(self, device: str, at: float) -> Transition | None:
        self.last_seen[device] = max(at, self.last_seen.get(device, at))
        if device in self.offline:
            self.offline.discard(device)
            return Transition(RULE, self.branch, device, Change.RESOLVED, at, None)
        return None

    def gone(self, device: str, at: float, why: str) -> Transition | None:
        """The broker delivered the device's last will."""
        if device in self.offline:
            return None
        self.offline.add(device)
        return Transition(RULE, self.branch, device, Change.FIRED, at, None, detail=(("why", why),))

    def tick(self, now: float) -> list[Transition]:
        fired = []
        for device, seen in self.last_seen.items():
            if device not in self.offline and now - seen >= self.silence_s:
                self.offline.add(device)
                fired.append(Transition(RULE, self.branch, device, Change.FIRED, now, None,
                                        detail=(("why", "silent"), ("silent_s", round(now - seen)))))
        return fired

    def is_offline(self, device: str) -> bool:
        return device in self.offline
