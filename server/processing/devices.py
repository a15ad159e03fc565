"""What the ingest knows of each device between messages: its sequence window, its clock offset, whether it is
online, and what it last said of itself (versions, outbox depth and losses, its last command reply)."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from datetime import datetime

from server.live import DeviceNow, LastReply
from server.processing.sequence import SequenceTracker

OFFSET_WINDOW_S = 600.0  # clock-offset samples older than this no longer count
OFFSET_SAMPLES = 3  # an estimate needs this many samples, received over at least a minute
OFFSET_SPAN_S = 60.0


@dataclass(slots=True)
class DeviceRuntime:
    sequence: SequenceTracker = field(default_factory=SequenceTracker)
    # (received at, device time minus receive time) of fresh health messages: each is the clock offset minus
    # that message's delay, so the largest in a window is the best estimate of the offset (as in NTP)
    offsets: deque[tuple[float, float]] = field(default_factory=lambda: deque(maxlen=32))
    online: bool = False
    online_since: datetime | None = None
    last_seen: float | None = None
    clock_skew_ms: float | None = None
    agent_version: str | None = None
    config_version: int | None = None
    outbox_depth: int | None = None
    outbox_dropped: int | None = None  # dropped at the outbox's bounds, ever (the device's count)
    not_stored: int | None = None  # made but never stored, since the agent started
    health_ts: float | None = None  # the device time of the newest health report taken
    last_reply: LastReply | None = None
    counting: dict[str, str] = field(default_factory=dict)  # zone -> method, from the newest health report
    fitting: tuple[str, ...] = ()  # zones whose head counter the device is fitting

    def clock_offset_s(self) -> float | None:
        """The device clock minus the server's, from its freshest messages; None until they span a minute
        (a burst that arrives at once, as after a server restart, may all be late: it proves nothing)."""
        if not self.offsets:
            return None
        newest = self.offsets[-1][0]
        recent = [(at, sample) for at, sample in self.offsets if newest - at <= OFFSET_WINDOW_S]
        if len(recent) < OFFSET_SAMPLES or newest - recent[0][0] < OFFSET_SPAN_S:
            return None
        return max(sample for _, sample in recent)

    def now(self) -> DeviceNow:
        """A frozen copy for the live state's readers."""
        tracker = self.sequence
        return DeviceNow(
            online=self.online,
            last_seen=self.last_seen,
            clock_skew_ms=self.clock_skew_ms,
            agent_version=self.agent_version,
            config_version=self.config_version,
            outbox_depth=self.outbox_depth,
            outbox_dropped=self.outbox_dropped,
            not_stored=self.not_stored,
            last_reply=self.last_reply,
            counting=dict(self.counting),
            fitting=self.fitting,
            stream=tracker.stream or "",
            received_seq=tracker.highest,
            missing=tracker.missing,
            duplicates=tracker.duplicates,
            gaps=tuple((first, last) for first, last in tracker.gaps),
        )
