"""Messages built and put in the outbox: every sequenced message the agent sends goes through `Emitter.emit`.
A message that cannot be built is our bug; one that cannot be stored (a full or failing SD card) is counted,
and the next health report says so, straight to the broker if need be."""

from __future__ import annotations

import logging
import sqlite3
from dataclasses import dataclass, field

from pydantic import BaseModel, ValidationError

from edge_agent import __version__
from edge_agent.commands import Reply
from edge_agent.health import HealthProbe
from edge_agent.transport.link import MqttLink
from edge_agent.transport.outbox import Outbox, OutboxFull
from lobbywatch.clock import Clock
from lobbywatch.protocol import Channel, CommandReply, Health, Topic, ZoneMethod, encode

log = logging.getLogger(__name__)


@dataclass
class AgentStats:
    """What the agent last did, for status displays; written by the agent's threads, read by anyone."""

    occupancy: dict[str, int | None] = field(default_factory=dict)
    presses: int = 0
    messages: int = 0
    build_errors: int = 0
    not_stored: int = 0
    camera_ok: bool | None = None
    camera_problem: str | None = None


class Emitter:
    def __init__(self, device_id: str, outbox: Outbox, link: MqttLink, clock: Clock, stats: AgentStats) -> None:
        self._device_id = device_id
        self._outbox = outbox
        self._link = link
        self._clock = clock
        self._stats = stats
        self._started = clock.monotonic()

    def uptime_s(self) -> float:
        return round(self._clock.monotonic() - self._started, 3)

    def emit(self, channel: Channel, model: type[BaseModel], **fields: object) -> None:
        now = self._clock.now()
        uptime = self.uptime_s()
        topic = str(Topic(self._device_id, channel))

        def build(seq: int, stream: str) -> bytes:
            return encode(model(stream=stream, seq=seq, ts=now, uptime_s=uptime, **fields))  # type: ignore[arg-type]

        try:
            self._outbox.append(topic, build, now.timestamp())
        except ValidationError as exc:
            # our own bug, not the network's: say what, keep running
            self._stats.build_errors += 1
            log.error("cannot build %s message: %s", channel.value, exc)
            return
        except (OutboxFull, sqlite3.OperationalError) as exc:
            # a full or failing SD card: the agent goes on counting; what cannot be stored is counted
            self._stats.not_stored += 1
            if self._stats.not_stored == 1 or self._stats.not_stored % 100 == 0:
                log.error("cannot store a %s message (%d so far): %s", channel.value, self._stats.not_stored, exc)
            return
        self._stats.messages += 1

    def reply(self, command: str, reply: Reply, config_version: int | None) -> None:
        """The answer to a command (or to a pushed config: `command` "config")."""
        self.emit(
            Channel.REPLY,
            CommandReply,
            command=command,
            ok=reply.ok,
            detail=reply.detail,
            code=reply.code,
            params=reply.params,
            resent=reply.resent,
            unavailable=reply.unavailable[:64],
            config_version=config_version,
            calibration=reply.calibration,
        )

    def health(self, probe: HealthProbe, config_version: int | None, counting: list[ZoneMethod]) -> None:
        """The device's health: CPU, memory, the outbox and what it lost, the clock, the versions, and how each
        zone is counted."""
        self._outbox.expire(self._clock.now().timestamp())
        sample = probe.sample(self._clock.monotonic())
        fields: dict[str, object] = dict(
            cpu_pct=sample.cpu_pct,
            mem_rss_mb=sample.mem_rss_mb,
            outbox_depth=self._outbox.depth(),
            outbox_dropped=self._outbox.dropped,
            not_stored=self._stats.not_stored,
            clock_synced=sample.clock_synced,
            agent_version=__version__,
            config_version=config_version,
            counting=counting,
        )
        before = self._stats.not_stored
        self.emit(Channel.HEALTH, Health, **fields)
        if self._stats.not_stored > before:
            # the card takes nothing: say so anyway, straight to the broker, so that the loss is known. Under
            # the last sequence number stored: the server takes its counters, and stores nothing twice.
            fields["not_stored"] = self._stats.not_stored
            health = Health(
                stream=self._outbox.stream,
                seq=max(1, self._outbox.last_seq()),
                ts=self._clock.now(),
                uptime_s=self.uptime_s(),
                **fields,  # type: ignore[arg-type]
            )
            self._link.send_direct(Channel.HEALTH, encode(health))
