"""`BranchProcessor`: one branch's state (its devices' sequence windows and what they said of themselves, its
rule state) and what a decoded message, a tick of the clock or a person's action on an alert makes of it. No
I/O, no threads, no clock of its own: times come in with the calls. One owner at a time (the ingest thread, or
the worker holding the branch's partition); `export`/`load` move the whole state as plain data.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from lobbywatch.protocol import ButtonEvent, CommandReply, DeviceMessage, FacilityReport, Health, QueueReport, Status
from server.processing import messages
from server.processing.devices import DeviceRuntime
from server.processing.output import Output
from server.processing.sequence import SequenceTracker, Verdict
from server.registry.directory import BranchEntry, DeviceEntry
from server.rules.branch import BranchRules
from server.rules.service_rate import ServiceLearner
from server.rules.state import BranchState, OpenAlert
from server.storage import points as schema
from server.storage.points import Point, epoch_ns

# how long a branch's presence times and service learners may go unsaved while its counts move only them (a
# crash loses at most this much of the learners' evidence, which spans hours)
REFRESH_S = 60.0

HANDLERS = {
    QueueReport: messages.queue,
    ButtonEvent: messages.button,
    FacilityReport: messages.facility,
    Health: messages.health,
    CommandReply: messages.reply,
}


class BranchProcessor:
    def __init__(self, state: BranchState, hearing: bool = True) -> None:
        self.branch = state.branch
        self.rules = BranchRules(state, hearing)
        self.devices: dict[str, DeviceRuntime] = {}
        self.moved = False  # the rule state changed since it was last saved
        self.dirty: set[str] = set()  # devices whose state changed since it was last saved
        self._settled: dict[str, Any] | None = None  # the settled state as last saved
        self._saved_at = float("-inf")
        self._saving: dict[str, Any] | None = None  # the settled state being saved now

    def device(self, device: str) -> DeviceRuntime:
        runtime = self.devices.get(device)
        if runtime is None:
            runtime = self.devices[device] = DeviceRuntime()
        return runtime

    def seen(self, device: str, at: float) -> DeviceRuntime:
        """A message of the device arrived (whatever becomes of it)."""
        runtime = self.device(device)
        runtime.last_seen = at
        self.moved = True
        self.dirty.add(device)
        return runtime

    def message(
        self,
        branch: BranchEntry,
        device: DeviceEntry,
        message: DeviceMessage | Status,
        received_at: float,
        out: Output,
        skew_s: float | None = None,
    ) -> None:
        """One decoded message of a device of this branch. `skew_s`: the device's clock is this far from the
        server's, past the window taken (the message was refused for it; the technician is shown the skew)."""
        runtime = self.seen(device.id, received_at)
        if isinstance(message, Status):
            if messages.status(branch, device, runtime, message, received_at, out):
                presence = self.rules.device_gone if not runtime.online else self.rules.device_seen
                out.transitions.extend(presence(device.id, received_at))
            return
        if skew_s is not None:
            runtime.clock_skew_ms = round(skew_s * 1000, 1)
            return
        out.transitions.extend(self.rules.device_seen(device.id, received_at))
        verdict = runtime.sequence.accept(message.stream, message.seq)
        if verdict is Verdict.DUPLICATE:
            out.duplicates += 1
            if isinstance(message, Health):  # sent straight, past a full card: its counters still count
                out.transitions.extend(messages.losses(self.rules, device, runtime, message, received_at))
            return
        if verdict is Verdict.LATE:
            out.late += 1
        out.stamps.append(message.ts.timestamp())
        context = messages.Context(branch, device, runtime, self.rules, received_at, verdict, epoch_ns(message.ts))
        HANDLERS[type(message)](context, message, out)  # type: ignore[operator]

    def tick(self, now: float, out: Output) -> None:
        """Time-driven rules (call deadlines, silent devices): about once a second."""
        moved = self.rules.tick(now)
        self.moved = self.moved or bool(moved)
        out.transitions.extend(moved)

    def hours(self, branch: BranchEntry, now: float, out: Output) -> None:
        """The opening hours looked at now (every few seconds is enough)."""
        moved = self.rules.hours(branch.hours, now)
        self.moved = self.moved or bool(moved)
        out.transitions.extend(moved)

    def presence(self, hearing: bool, now: float) -> None:
        self.rules.presence(hearing, now)
        self.moved = True

    def call_acknowledged(self, branch: BranchEntry, event: dict[str, object], out: Output) -> None:
        """A person acknowledged a call's alert: that answers the call; its response time is the acknowledgement's."""
        self.moved = True
        at = datetime.fromisoformat(str(event["at"]))
        button = str(event["subject"])
        done = self.rules.call_acknowledged(button, at.timestamp())
        if done is None:
            return
        device = str(event.get("device") or "")
        out.points.append(
            Point.make(
                schema.CALL,
                messages.tags(branch, device=device, button=button, name=branch.named(button), kind=done.kind),
                {"action": "answered", "count": 1, "response_s": round(done.response_s, 1)},
                epoch_ns(at),
            )
        )
        out.calls.append(
            {
                "event": "call",
                "branch": branch.id,
                "subject": button,
                "kind": done.kind,
                "device": device,
                "response_s": round(done.response_s, 1),
                "answered_by": "acknowledgement",
                "by": event.get("by"),
            }
        )

    def call_closed(self, button: str) -> None:
        """A person resolved a call's alert by hand: the call is over, whatever the button says later."""
        self.moved = True
        self.rules.call_closed(button)

    def offline_devices(self) -> set[str]:
        return set(self.rules.state.devices.offline)

    def service_evidence(self) -> dict[str, ServiceLearner]:
        return dict(self.rules.state.service)

    # -- the state as plain data ---------------------------------------------------------------------
    def rule_state(self) -> dict[str, object]:
        """The rule state, as saved before a batch is acknowledged (the devices are saved with their rows)."""
        return self.rules.state.to_data(self._saving)  # the settled part `save_due` has just made, if it has

    def save_due(self, now: float) -> bool:
        """Whether the rule state is to be saved with this batch: it moved, and either its settled part did (a
        threshold, a call, a device offline: never lost to a crash) or the rest has waited `REFRESH_S`."""
        if not self.moved:
            return False
        settled = self.rules.state.settled()
        if settled == self._settled and now - self._saved_at < REFRESH_S:
            self.moved = False  # the times and the learners alone: at the next save that is due
            return False
        self._saving = settled
        return True

    def rules_saved(self, now: float) -> None:
        """After the commit that saved what `save_due` let through."""
        if self._saving is not None:
            self._settled, self._saved_at, self._saving = self._saving, now, None
        self.moved = False

    def export(self) -> dict[str, object]:
        """The whole state, to move the branch to another owner."""
        return {
            "rules": self.rules.state.to_data(),
            "devices": {device: device_data(runtime) for device, runtime in self.devices.items()},
        }

    @classmethod
    def load(cls, branch: str, data: dict[str, Any], hearing: bool = True) -> BranchProcessor:
        rules = data.get("rules")
        processor = cls(BranchState.from_data(branch, rules) if rules else BranchState(branch), hearing)
        for device, saved in data.get("devices", {}).items():
            processor.devices[device] = load_device(saved)
        return processor

    def reconcile(self, open_alerts: list[OpenAlert], now: float) -> None:
        self.rules.state.reconcile(open_alerts, now)


def device_data(runtime: DeviceRuntime) -> dict[str, Any]:
    """What is kept of a device between owners (and over a restart, in its registry row)."""
    return {
        "online": runtime.online,
        "clock_skew_ms": runtime.clock_skew_ms,
        "agent_version": runtime.agent_version,
        "config_version": runtime.config_version,
        "sequence": runtime.sequence.to_dict(),
    }


def load_device(data: dict[str, Any]) -> DeviceRuntime:
    runtime = DeviceRuntime(
        online=bool(data.get("online")),
        clock_skew_ms=data.get("clock_skew_ms"),
        agent_version=data.get("agent_version"),
        config_version=data.get("config_version"),
    )
    if data.get("sequence"):
        runtime.sequence = SequenceTracker.from_dict(dict(data["sequence"]))
    return runtime
