"""`lobbywatch replay SCENARIO_DIR`: the real ingest and rules, on a simulated clock, over a scenario.

A scenario folder holds `site.yaml` (the server's own site format), `events.jsonl` (timed MQTT messages and
user actions) and optionally `scenario.yaml` (`start`, `tick_s`). One JSON line per alert event is printed,
with its simulated time; see docs/replay.md.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TextIO

import yaml
from pydantic import SecretStr

from lobbywatch.clock import FakeClock
from lobbywatch.protocol import Channel, InvalidTopic, Topic
from server.alerts.errors import AlertError
from server.alerts.service import OPEN_STATES
from server.delivery.grouping import GROUP_INTERVAL_S, GROUP_WAIT_S
from server.delivery.notify import Notice
from server.ingest.mqtt_source import Received
from server.ingest.pipeline import Pipeline
from server.registry import models
from server.registry.directory import Contact
from server.registry.site import SiteError
from server.runtime import Runtime
from server.settings import Settings
from server.storage.base import TimeSeriesStore
from server.storage.sqlite_store import SqliteStore

# A Monday, 09:30 in Beijing: inside every grade's opening hours.
DEFAULT_START = datetime(2026, 11, 23, 1, 30, tzinfo=UTC)
ACTIONS = ("acknowledge", "resolve", "pass", "silence")
NOT_ALERT_EVENTS = frozenset({"call", "broker_down", "broker_back"})


class ScenarioError(ValueError):
    """A scenario that cannot be replayed; the message names the file and line."""


@dataclass
class Scenario:
    folder: Path
    start: datetime = DEFAULT_START
    tick_s: float = 1.0
    until: float | None = None  # keep the clock running to this second after the last event
    group_wait_s: float = GROUP_WAIT_S  # as production's defaults (LOBBYWATCH_GROUP_WAIT_S, _INTERVAL_S)
    group_interval_s: float = GROUP_INTERVAL_S
    lines: list[tuple[int, dict[str, Any]]] = field(default_factory=list)


def load_scenario(folder: Path) -> Scenario:
    scenario = Scenario(folder)
    settings_path = folder / "scenario.yaml"
    if settings_path.exists():
        settings = yaml.safe_load(settings_path.read_text(encoding="utf-8")) or {}
        known = {"start", "tick_s", "until", "group_wait_s", "group_interval_s"}
        unknown = set(settings) - known
        if unknown:
            raise ScenarioError(
                f"{settings_path}: unknown settings {sorted(unknown)} (known: {', '.join(sorted(known))})"
            )
        if "start" in settings:
            start = settings["start"]
            start = start if isinstance(start, datetime) else datetime.fromisoformat(str(start))
            if start.tzinfo is None:
                raise ScenarioError(f"{settings_path}: start needs a time zone, e.g. 2026-11-23T09:30:00+08:00")
            scenario.start = start.astimezone(UTC)
        scenario.tick_s = float(settings.get("tick_s", 1.0))
        scenario.group_wait_s = float(settings.get("group_wait_s", GROUP_WAIT_S))
        scenario.group_interval_s = float(settings.get("group_interval_s", GROUP_INTERVAL_S))
        scenario.until = float(settings["until"]) if "until" in settings else None
    events = folder / "events.jsonl"
    if not events.exists():
        raise ScenarioError(f"{folder}: events.jsonl is missing")
    for number, text in enumerate(events.read_text(encoding="utf-8").splitlines(), 1):
        if text.strip() and not text.lstrip().startswith("#"):
            scenario.lines.append((number, _line(events, number, text)))
    scenario.lines.sort(key=lambda item: (float(item[1]["t"]), item[0]))
    return scenario


def _line(events: Path, number: int, text: str) -> dict[str, Any]:
    """One line of events.jsonl, checked; the error names the file and line."""
    try:
        line = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ScenarioError(f"{events}:{number}: not JSON ({exc.msg})") from None
    if not isinstance(line, dict) or not isinstance(line.get("t"), int | float):
        raise ScenarioError(f"{events}:{number}: each line needs a number 't' (seconds from the start)")
    if sum(k in line for k in ("topic", "action", "server", "broker")) != 1:
        raise ScenarioError(
            f"{events}:{number}: give one of 'topic' and 'payload', 'action', 'server' "
            "(down, up) or 'broker' (down, up)"
        )
    if "action" in line and line["action"] not in ACTIONS:
        raise ScenarioError(f"{events}:{number}: unknown action {line['action']!r} (known: {', '.join(ACTIONS)})")
    for outage in ("server", "broker"):
        if outage in line and line[outage] not in ("down", "up"):
            raise ScenarioError(f"{events}:{number}: '{outage}' is 'down' or 'up', not {line[outage]!r}")
    return line


class Replayer:
    def __init__(
        self,
        scenario: Scenario,
        emit: Callable[[dict[str, object]], None],
        on_notice: Callable[[Notice], None] | None = None,
        store: TimeSeriesStore | None = None,
    ) -> None:
        self.scenario = scenario
        self.clock = FakeClock(scenario.start)
        self.hearing = True  # the server hears the broker ('broker': 'down' ends that)
        # production's wiring, synchronous, on the simulated clock; the people's messages are recorded (a line
        # each) instead of sent
        settings = Settings.model_construct(
            mode="dev",
            database_url="sqlite://",
            site_file=scenario.folder / "site.yaml",
            timeseries_path=Path(":memory:"),
            public_url="http://replay",
            link_secret=SecretStr("replay"),
            group_wait_s=scenario.group_wait_s,
            group_interval_s=scenario.group_interval_s,
            reports_by_mail=False,
        )
        try:
            self.runtime = Runtime(
                settings,
                self.clock,
                synchronous=True,
                sender=self._record,
                hearing=lambda: self.hearing,
                store=store or SqliteStore(Path(":memory:")),
            )
        except SiteError as exc:
            raise ScenarioError(str(exc)) from None
        self.runtime.on_notice = on_notice
        self.runtime.observers.append(self._event)
        self.sessions = self.runtime.sessions
        self.alerts = self.runtime.alerts
        self.dispatcher = self.runtime.dispatcher
        self.rejects = self.runtime.rejects
        self._emit = emit
        self.events = 0
        self.down = False  # the server itself is down ('server': 'down'): messages wait at the broker
        self._waiting: list[tuple[int, dict[str, Any]]] = []
        self.retired: list[Pipeline] = []  # the pipelines of servers that went down, for the summary
        self._seq: dict[str, int] = {}
        self._start()

    @property
    def pipeline(self) -> Pipeline:
        return self.runtime.pipeline

    def _start(self) -> None:
        # a replay, with no crash to survive, saves only when its scenario kills the server: the same state
        self.runtime.pipeline.save_every_batch = False

    def _elapsed(self) -> float:
        return round((self.clock.now() - self.scenario.start).total_seconds(), 3)

    def _event(self, event: dict[str, object]) -> None:
        if event.get("event") not in NOT_ALERT_EVENTS:
            self.events += 1
        self._emit({"t": self._elapsed(), **event})

    def _record(self, contact: Contact, title: str, _body: str, alerts: Sequence[int]) -> bool:
        self._emit(
            {
                "t": self._elapsed(),
                "event": "message",
                "to": contact.name,
                "role": contact.role,
                "alerts": list(alerts),
                "title": title,
            }
        )
        return True

    def run(self) -> None:
        for number, line in self.scenario.lines:
            self._advance_to(float(line["t"]))
            if "server" in line:
                self._server(line["server"] == "up")
            elif "broker" in line:
                self.hearing = line["broker"] == "up"
                self.pipeline.tick()
            elif "topic" in line and self.down:
                self._waiting.append((number, line))  # the broker keeps it for the server's session
            elif "topic" in line:
                self._message(number, line)
            else:
                self._action(number, line)
        if self.scenario.until is not None:
            self._advance_to(self.scenario.until)
        self.dispatcher.flush_now(force=True)  # what is still held when the replay ends

    def _server(self, up: bool) -> None:
        """'down': killed (nothing saved on the way out); 'up': started again from the registry, then given
        what the broker kept for it meanwhile."""
        self._emit({"t": self._elapsed(), "event": "server_up" if up else "server_down"})
        if not up:
            self.pipeline.save_rules()  # what production saved with its last batch
            self.down = True
            return
        self.down = False
        self.retired.append(self.pipeline)
        self.runtime.restarted()
        self._start()
        waiting, self._waiting = self._waiting, []
        for number, line in waiting:
            self._message(number, line)

    def _advance_to(self, t: float) -> None:
        while self._elapsed() + self.scenario.tick_s <= t:
            self.clock.advance(self.scenario.tick_s)
            self._tick()
        remaining = t - self._elapsed()
        if remaining > 0:
            self.clock.advance(remaining)
            self._tick()

    def _tick(self) -> None:
        if not self.down:
            self.pipeline.tick()
        self.dispatcher.flush_now()

    def _message(self, number: int, line: dict[str, Any]) -> None:
        topic = str(line["topic"])
        payload = line.get("payload", {})
        if isinstance(payload, dict):
            made = line.get("made")
            payload = self._complete(
                topic, dict(payload), float(line["t"]), float(made) if isinstance(made, int | float) else None
            )
            raw = json.dumps(payload).encode()
        else:
            raw = str(payload).encode()  # a broken payload, on purpose
        self.pipeline.process([Received(topic, raw, self.clock.now().timestamp(), number, 0)])

    def _complete(self, topic: str, payload: dict[str, Any], t: float, made: float | None = None) -> dict[str, Any]:
        """Fill what a hand-written scenario leaves out: schema revision, stream, sequence, device time (when
        it was `made`, for a message that arrives late, else when it arrives)."""
        try:
            parsed = Topic.parse(topic)
        except InvalidTopic:
            return payload
        when = (self.scenario.start + timedelta(seconds=made if made is not None else t)).isoformat()
        payload.setdefault("v", 1)
        if parsed.channel is Channel.STATUS:
            payload.setdefault("since", when)
            payload.setdefault("agent_version", "replay")
        elif parsed.channel.sequenced:
            self._seq[parsed.device] = self._seq.get(parsed.device, 0) + 1
            payload.setdefault("stream", "0000000000000000")
            payload.setdefault("seq", self._seq[parsed.device])
            payload.setdefault("ts", when)
            payload.setdefault("uptime_s", t)
        return payload

    def _action(self, number: int, line: dict[str, Any]) -> None:
        key, by = str(line.get("alert", "")), str(line.get("by", "replay"))
        if self.down:
            self._emit({"t": self._elapsed(), "event": "action_refused", "line": number, "why": "the server is down"})
            return
        if line["action"] == "silence":
            try:
                self.alerts.silences.add(
                    str(line.get("branch")),
                    float(line.get("minutes", 0)),
                    by,
                    str(line.get("reason", "")),
                    line.get("rule"),
                    line.get("subject"),
                )
            except AlertError as exc:
                self._emit({"t": self._elapsed(), "event": "action_refused", "line": number, "why": str(exc)})
            return
        with self.sessions() as session:
            alert = (
                session.query(models.Alert).filter(models.Alert.key == key, models.Alert.state.in_(OPEN_STATES)).first()
            )
        try:
            if alert is None:
                raise AlertError(f"no open alert {key!r}")
            if line["action"] == "acknowledge":
                self.alerts.acknowledge(alert.id, by, str(line.get("channel", "replay")))
            elif line["action"] == "resolve":
                self.alerts.resolve(alert.id, by, str(line.get("note", "")))
            else:
                self.alerts.pass_on(alert.id, by, str(line.get("to", "")))
        except AlertError as exc:
            self._emit({"t": self._elapsed(), "event": "action_refused", "line": number, "why": str(exc)})


def replay(folder: Path, out: TextIO = sys.stdout) -> dict[str, Any]:
    logging.getLogger("server.delivery.notify").setLevel(logging.ERROR)  # the lines say it; no log copy of each
    scenario = load_scenario(folder)
    replayer = Replayer(scenario, lambda event: print(json.dumps(event, ensure_ascii=False), file=out))
    started = time.perf_counter()
    replayer.run()
    wall = time.perf_counter() - started
    simulated = (replayer.clock.now() - scenario.start).total_seconds()
    pipelines = [*replayer.retired, replayer.pipeline]
    return {
        "simulated_hours": round(simulated / 3600, 3),
        "wall_seconds": round(wall, 3),
        "simulated_hours_per_second": round(simulated / 3600 / wall, 1) if wall else 0.0,
        "events": replayer.events,
        "refused": sum(replayer.rejects.snapshot().values()),
        "refused_by_cause": replayer.rejects.snapshot(),
        "duplicates": sum(p.stats.duplicates for p in pipelines),
        "late": sum(p.stats.late for p in pipelines),
        "missing": sum(d.sequence.missing for d in replayer.pipeline.devices.values()),
    }


def iter_events(text: str) -> Iterator[dict[str, Any]]:
    for line in text.splitlines():
        if line.strip():
            yield json.loads(line)
