"""The agent: wires frame source, counter, buttons and sensors to the outbox, and the outbox to the broker.

Threads: the camera loop counts and reports occupancy; gpiozero's thread hands button presses to a queue;
the main loop turns presses into messages and runs the periodic facility and health reports; the link thread
owns the MQTT connection. Every message goes through the outbox first.
"""

from __future__ import annotations

import base64
import contextlib
import logging
import queue
import re
import sqlite3
import threading
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from gpiozero.pins import Factory
from numpy.typing import NDArray
from pydantic import BaseModel, ValidationError

from edge_agent import __version__
from edge_agent.buttons import ButtonInput, CallButtons
from edge_agent.camera_health import CameraHealth
from edge_agent.config import ConfigError, DeviceConfig, counting_zone
from edge_agent.counting.calibration import CalibrationError, CalibrationStore
from edge_agent.counting.dataset import DatasetError
from edge_agent.debounce import PressFilter
from edge_agent.frames import FrameSource, open_source
from edge_agent.health import HealthProbe
from edge_agent.link import Inbound, MqttLink
from edge_agent.outbox import Outbox, OutboxFull
from edge_agent.remote_calibration import MIN_LABELS, LabelError, add_label, fit, save_snapshot
from edge_agent.remote_config import Applied, load_applied, merge, save_applied
from edge_agent.reporting import OccupancyReporter
from edge_agent.sensors import SensorEnv, build_sensor
from edge_agent.systemd import Notifier
from edge_agent.zone_counting import ZoneCounting
from lobbywatch.clock import Clock
from lobbywatch.protocol import (
    MAX_SNAPSHOT_BYTES,
    ButtonAction,
    ButtonEvent,
    Calibration,
    Channel,
    Command,
    CommandReply,
    ConfigPush,
    FacilityReport,
    Health,
    InvalidPayload,
    QueueReport,
    Reading,
    ResendArgs,
    SensorKind,
    Snapshot,
    Topic,
    ZoneCount,
    encode,
    parse_payload,
)

log = logging.getLogger(__name__)
Frame = NDArray[np.uint8]

# Frames in a row that may fail before the camera is reported faulty (a USB camera re-enumerating takes ~2 s).
CAMERA_FAILURES_BEFORE_FAULT = 5
# A camera loop that has not turned for this long is hung (a capture that never returns): stop the watchdog.
CAMERA_STALL_S = 20.0
IDENTIFY_S = 30  # how long the LEDs blink when a technician asks which box this is


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


class Agent:
    def __init__(
        self,
        config: DeviceConfig,
        *,
        clock: Clock,
        frame_source: FrameSource | None = None,
        pin_factory: Factory | None = None,
        sensor_env: SensorEnv | None = None,
        health_probe: HealthProbe | None = None,
        notifier: Notifier | None = None,
        outbox: Outbox | None = None,
    ) -> None:
        self._notifier = notifier or Notifier()
        self._camera_beat = clock.monotonic()  # the camera loop's last turn, for the watchdog
        self._local_config = config
        self.config = config
        self._clock = clock
        self._started = clock.monotonic()
        self.stats = AgentStats()
        # button presses (from gpiozero's thread) and server messages (from the link's thread) wait here for
        # the main loop: no work runs on those threads
        self._events: queue.SimpleQueue[ButtonInput | Inbound] = queue.SimpleQueue()
        self.outbox = outbox or Outbox(**outbox_options(config))
        self.link = MqttLink(
            device_id=config.device_id,
            username=config.mqtt_username,
            broker=config.broker,
            outbox=self.outbox,
            clock=clock,
            agent_version=__version__,
            on_inbound=self._events.put,
        )
        self._pin_factory = pin_factory
        self._sensor_env = sensor_env or SensorEnv(pin_factory=pin_factory)
        self._health = health_probe or HealthProbe()
        self._injected_frames = frame_source
        self._frames: FrameSource | None = None
        self._buttons: CallButtons | None = None
        self._camera_thread: threading.Thread | None = None
        self._camera_stop = threading.Event()
        self._errors: dict[str, float | None] = {}
        self._last_camera: CameraHealth | None = None
        self._running: threading.Event | None = None
        self._last_frame: Frame | None = None
        self.counting: ZoneCounting | None = None  # while the camera runs
        self._identify_timer: threading.Timer | None = None
        self.restart_requested = False
        self.config_version: int | None = None
        applied = load_applied(config.data_dir)
        if applied is not None:
            try:
                self.config = merge(config, applied.version, applied.sections)
                self.config_version = applied.version
            except ConfigError as exc:  # the local file changed under it: the local file wins
                log.error("the saved remote config no longer fits the local one, not applied: %s", exc)
        self._build_parts()

    def _build_parts(self) -> None:
        """Buttons, sensors, counter input: everything a pushed config may change."""
        config = self.config
        self._press_filters = {b.key: PressFilter(b.repeat_guard_s) for b in config.buttons}
        self._button_kinds = {b.key: b.kind for b in config.buttons}
        self._buttons = CallButtons(config.buttons, self._events.put, self._pin_factory) if config.buttons else None
        self._sensors = [build_sensor(s, self._sensor_env) for s in config.sensors]
        if config.camera is None:
            self._frames = None
        elif self._injected_frames is not None:
            self._frames = self._injected_frames
        else:
            self._frames = open_source(config.camera.source, config.camera.loop)

    def _stop_parts(self) -> None:
        self._camera_stop.set()
        if self._camera_thread is not None:
            self._camera_thread.join(5)
            self._camera_thread = None
        self._camera_stop.clear()
        if self._buttons is not None:
            self._buttons.close()
            self._buttons = None
        for sensor in getattr(self, "_sensors", []):
            close = getattr(sensor, "close", None)  # sensors on GPIO pins hold them
            if close is not None:
                close()
        if self._frames is not None and self._frames is not self._injected_frames:
            self._frames.close()

    def _start_camera(self, stop: threading.Event) -> None:
        if self.config.camera is None:
            return
        self._camera_thread = threading.Thread(
            target=self._camera_loop, args=(stop,), name=f"camera-{self.config.device_id}", daemon=True
        )
        self._camera_thread.start()

    # -- message building ----------------------------------------------------------------------------
    def _emit(self, channel: Channel, model: type[BaseModel], **fields: object) -> None:
        now = self._clock.now()
        uptime = round(self._clock.monotonic() - self._started, 3)
        topic = str(Topic(self.config.device_id, channel))

        def build(seq: int, stream: str) -> bytes:
            return encode(model(stream=stream, seq=seq, ts=now, uptime_s=uptime, **fields))  # type: ignore[arg-type]

        try:
            self.outbox.append(topic, build, now.timestamp())
        except ValidationError as exc:
            # our own bug, not the network's: say what, keep running
            self.stats.build_errors += 1
            log.error("cannot build %s message: %s", channel.value, exc)
            return
        except (OutboxFull, sqlite3.OperationalError) as exc:
            # a full or failing SD card: the agent goes on counting; what cannot be stored is counted
            self.stats.not_stored += 1
            if self.stats.not_stored == 1 or self.stats.not_stored % 100 == 0:
                log.error("cannot store a %s message (%d so far): %s", channel.value, self.stats.not_stored, exc)
            return
        self.stats.messages += 1

    # -- the camera loop -----------------------------------------------------------------------------
    def _camera_loop(self, stop: threading.Event) -> None:
        camera = self.config.camera
        assert camera is not None
        assert self._frames is not None
        reporter = OccupancyReporter(self.config.reporting.queue_keepalive_s, self.config.reporting.smoothing_frames)
        period = 1.0 / camera.fps
        health = CameraHealth()
        counting = self.counting = ZoneCounting(
            camera, CalibrationStore(self.config.data_dir), self._clock.monotonic(), health.set_reference
        )
        while not stop.is_set() and not self._camera_stop.is_set():
            began = self._camera_beat = self._clock.monotonic()
            frame = self._frames.read()
            health.observe(frame, began, CAMERA_FAILURES_BEFORE_FAULT)
            if frame is not None:
                self._last_frame = frame  # for a snapshot a technician asks for
            counts: dict[str, int | None] = {z.key: None for z in camera.zones}
            if frame is not None and health.ok:
                results = counting.count(frame, began)
                counts = {r.zone: r.count for r in results}
                self._errors = {r.zone: r.error for r in results}
            if health.problem.value != self.stats.camera_problem:
                self.stats.camera_ok, self.stats.camera_problem = health.ok, health.problem.value
                if not health.ok:
                    log.warning("camera problem: %s (%s)", health.problem.value, health.detail)
                self._emit(Channel.FACILITY, FacilityReport, readings=[self._camera_reading(health)])
                self._last_camera = health
            smoothed = {key: reporter.smooth(key, count) for key, count in counts.items()}
            self.stats.occupancy = smoothed
            if reporter.due(self._clock.monotonic(), smoothed):
                errors = {key: reporter.error(key, self._errors.get(key)) for key in smoothed}
                self.report_queue(
                    [ZoneCount(zone=key, occupancy=value, error=errors[key]) for key, value in smoothed.items()]
                )
            self._camera_stop.wait(max(0.0, period - (self._clock.monotonic() - began)))

    def _camera_reading(self, health: CameraHealth) -> Reading:
        detail = None if health.ok else f"{health.problem.value}: {health.detail}"
        return Reading(
            sensor="camera", kind=SensorKind.CAMERA, value=1.0 if health.ok else 0.0, ok=health.ok, detail=detail
        )

    def report_queue(self, zones: list[ZoneCount]) -> None:
        """Store a queue report in the outbox, to be sent (what the camera loop does when a count is due)."""
        self._emit(Channel.QUEUE, QueueReport, zones=zones)

    # -- presses, sensors, health --------------------------------------------------------------------
    def _handle_button(self, event: ButtonInput) -> None:
        key = event.key
        if event.action == "answered":
            if self._buttons is not None:
                self._buttons.indicate(key, help_coming=False)  # help is here
            self._emit(
                Channel.BUTTON, ButtonEvent, button=key, kind=self._button_kinds[key], action=ButtonAction.ANSWERED
            )
            return
        if not self._press_filters[key].accept(key, self._clock.monotonic()):
            return
        self.stats.presses += 1
        self._emit(Channel.BUTTON, ButtonEvent, button=key, kind=self._button_kinds[key])

    def report_facility(self) -> None:
        readings = [reading for sensor in self._sensors for reading in sensor.read()]
        if self._last_camera is not None:
            readings.append(self._camera_reading(self._last_camera))
        if readings:
            self._emit(Channel.FACILITY, FacilityReport, readings=readings)

    def report_health(self) -> None:
        self.outbox.expire(self._clock.now().timestamp())
        sample = self._health.sample(self._clock.monotonic())
        fields: dict[str, object] = dict(
            cpu_pct=sample.cpu_pct,
            mem_rss_mb=sample.mem_rss_mb,
            outbox_depth=self.outbox.depth(),
            outbox_dropped=self.outbox.dropped,
            not_stored=self.stats.not_stored,
            clock_synced=sample.clock_synced,
            agent_version=__version__,
            config_version=self.config_version,
        )
        before = self.stats.not_stored
        self._emit(Channel.HEALTH, Health, **fields)
        if self.stats.not_stored > before:
            # the card takes nothing: say so anyway, straight to the broker, so that the loss is known. Under
            # the last sequence number stored: the server takes its counters, and stores nothing twice.
            now = self._clock.now()
            fields["not_stored"] = self.stats.not_stored
            health = Health(
                stream=self.outbox.stream,
                seq=max(1, self.outbox.last_seq()),
                ts=now,
                uptime_s=round(self._clock.monotonic() - self._started, 3),
                **fields,  # type: ignore[arg-type]
            )
            self.link.send_direct(Channel.HEALTH, encode(health))

    # -- commands from the server -------------------------------------------------------------------
    def _handle_inbound(self, message: Inbound) -> None:
        if message.channel is Channel.CONFIG:
            self._apply_config(message.payload)
            return
        if message.channel is not Channel.CMD:
            log.info("received %s message of %d bytes", message.channel.value, len(message.payload))
            return
        try:
            command = parse_payload(Channel.CMD, message.payload)
        except InvalidPayload as exc:
            log.error("refused a command from the server: %s", exc)
            return
        assert isinstance(command, Command)
        handlers = {
            "resend": self._resend,
            "indicate": self._indicate,
            "identify": self._identify,
            "restart": self._restart,
            "snapshot": self._snapshot,
            "label": self._label,
        }
        handler = handlers.get(command.action)
        if handler is not None:
            handler(command)
        else:
            self._reply(command.id, ok=False, detail=f"agent {__version__} does not support {command.action!r}")

    def _apply_config(self, payload: bytes) -> None:
        if not payload:
            return  # the server cleared the retained config: keep running what we have
        try:
            push = parse_payload(Channel.CONFIG, payload)
        except InvalidPayload as exc:
            log.error("refused a pushed config: %s", exc)
            self._reply("config", ok=False, detail=str(exc))
            return
        assert isinstance(push, ConfigPush)
        if push.version == self.config_version:
            return  # the retained copy, delivered again after a reconnect
        try:
            new = merge(self._local_config, push.version, dict(push.config))
        except ConfigError as exc:
            log.error("refused config version %d: %s", push.version, exc)
            self._reply("config", ok=False, detail=str(exc)[:1000])
            return
        save_applied(new.data_dir, Applied(push.version, dict(push.config)))
        self._stop_parts()
        self.config, self.config_version = new, push.version
        self._build_parts()
        if self._running is not None:
            self._start_camera(self._running)
        log.info("applied config version %d", push.version)
        self._reply("config", ok=True)

    def _indicate(self, command: Command) -> None:
        button, state = command.args.get("button"), command.args.get("state")
        if button not in self._button_kinds or state not in ("help_coming", "off"):
            self._reply(
                command.id,
                ok=False,
                detail=f"indicate needs a known button and state help_coming|off, got {button!r}, {state!r}",
            )
            return
        assert isinstance(button, str)
        shown = self._buttons is not None and self._buttons.indicate(button, help_coming=state == "help_coming")
        self._reply(command.id, ok=shown, detail=None if shown else f"button {button} has no LED")

    def _identify(self, command: Command) -> None:
        """Blink every LED for a while, so that a technician finds this box among others."""
        keys = list(self._button_kinds)
        shown = [k for k in keys if self._buttons is not None and self._buttons.indicate(k, help_coming=True)]
        log.warning("identify requested (%s): blinking %d LEDs for %d s", command.id, len(shown), IDENTIFY_S)
        if self._identify_timer is not None:
            self._identify_timer.cancel()
        self._identify_timer = threading.Timer(
            IDENTIFY_S,
            lambda: [self._buttons.indicate(k, help_coming=False) for k in shown if self._buttons is not None],
        )
        self._identify_timer.daemon = True
        self._identify_timer.start()
        self._reply(
            command.id,
            ok=bool(shown),
            detail=f"blinking {len(shown)} LEDs for {IDENTIFY_S} s" if shown else "this device has no LED",
        )

    def _restart(self, command: Command) -> None:
        """Stop; systemd starts the agent again (Restart=always)."""
        log.warning("restart requested (%s)", command.id)
        self._reply(command.id, ok=True, detail="restarting")
        self.restart_requested = True
        if self._running is not None:
            self._running.set()

    def _snapshot(self, command: Command) -> None:
        frame = self._last_frame
        if self.config.camera is None or frame is None:
            self._reply(command.id, ok=False, detail="no camera image to send (no camera, or none read yet)")
            return
        if not re.fullmatch(r"[a-z0-9-]{1,64}", command.id):
            self._reply(command.id, ok=False, detail="a snapshot id must be a-z, 0-9 and '-'")
            return
        save_snapshot(self.config.data_dir, command.id, frame)
        jpeg = _jpeg_within(frame, MAX_SNAPSHOT_BYTES * 3 // 4)
        height, width = frame.shape[:2]
        self.link.send_direct(
            Channel.SNAPSHOT,
            encode(
                Snapshot(
                    id=command.id,
                    ts=self._clock.now(),
                    width=int(width),
                    height=int(height),
                    jpeg_b64=base64.b64encode(jpeg).decode(),
                )
            ),
        )
        log.info("sent snapshot %s (%d bytes) on request", command.id, len(jpeg))
        self._reply(command.id, ok=True, detail=f"snapshot {width}x{height}, {len(jpeg)} bytes")

    def _label(self, command: Command) -> None:
        camera = self.config.camera
        zone_key, snapshot, count = command.args.get("zone"), command.args.get("snapshot"), command.args.get("count")
        zones = {z.key: z for z in camera.zones} if camera else {}
        if zone_key not in zones or not isinstance(snapshot, str) or not isinstance(count, int):
            self._reply(
                command.id,
                ok=False,
                detail=f"label needs a known zone, a snapshot id and a count; got "
                f"{zone_key!r}, {snapshot!r}, {count!r}",
            )
            return
        zone = counting_zone(zones[str(zone_key)])
        try:
            labels = add_label(self.config.data_dir, zone, snapshot, count)
            fitted = fit(self.config.data_dir, zone)
        except (LabelError, DatasetError, CalibrationError) as exc:
            self._reply(command.id, ok=False, detail=str(exc)[:1000])
            return
        if fitted is None:
            self._reply(command.id, ok=True, detail=f"{labels} labels; {MIN_LABELS} needed to calibrate")
            return
        self._reply(
            command.id,
            ok=True,
            detail=f"{labels} labels; calibrated, residual {fitted.model.residual_sd:.2f} people",
            calibration=Calibration.model_validate(asdict(fitted)),
        )

    def _resend(self, command: Command) -> None:
        try:
            args = ResendArgs.model_validate(command.args)
        except ValidationError as exc:
            self._reply(command.id, ok=False, detail=f"bad resend arguments: {exc.errors(include_url=False)[0]}")
            return
        if args.stream != self.outbox.stream:
            # the outbox was re-created (new SD card): that stream's history is gone for good
            detail = f"stream {args.stream} is gone; this outbox is {self.outbox.stream}"
            self._reply(command.id, ok=False, detail=detail, unavailable=args.ranges)
            return
        resent, unavailable = 0, []
        for first, last in args.ranges:
            count, gone = self.outbox.requeue(first, last)
            resent += count
            unavailable.extend(gone)
        self.link.rewind()
        log.info("resending %d messages on request %s; %d ranges no longer kept", resent, command.id, len(unavailable))
        self._reply(command.id, ok=True, resent=resent, unavailable=unavailable)

    def _reply(
        self,
        command: str,
        *,
        ok: bool,
        detail: str | None = None,
        resent: int = 0,
        unavailable: list[list[int]] | None = None,
        calibration: Calibration | None = None,
    ) -> None:
        self._emit(
            Channel.REPLY,
            CommandReply,
            command=command,
            ok=ok,
            detail=detail,
            resent=resent,
            unavailable=(unavailable or [])[:64],
            config_version=self.config_version,
            calibration=calibration,
        )

    # -- lifecycle -----------------------------------------------------------------------------------
    def run(self, stop: threading.Event, on_tick: Callable[[], None] | None = None) -> None:
        self.link.start()
        self._running = stop
        self._start_camera(stop)
        schedule = {self.report_facility: 0.0, self.report_health: 0.0}
        self._notifier.notify("READY=1")
        try:
            while not stop.is_set():
                now = self._clock.monotonic()
                if self.alive(now):
                    self._notifier.notify("WATCHDOG=1")
                intervals = {  # read each time: a pushed config may change them
                    self.report_facility: self.config.reporting.facility_interval_s,
                    self.report_health: self.config.reporting.health_interval_s,
                }
                for task, due in schedule.items():
                    if now >= due:
                        task()
                        schedule[task] = now + intervals[task]
                if on_tick is not None:
                    on_tick()
                timeout = max(0.0, min(schedule.values()) - self._clock.monotonic())
                with contextlib.suppress(queue.Empty):
                    event = self._events.get(timeout=min(timeout, 0.5))
                    if isinstance(event, Inbound):
                        self._handle_inbound(event)
                    else:
                        self._handle_button(event)
        finally:
            self.close()

    def alive(self, now: float) -> bool:
        """Every thread that matters turns: the main loop (it asks), the uplink (a dead or hung one loses
        nothing, but sends nothing either) and the camera loop. Otherwise the watchdog is not fed, and systemd
        restarts the agent."""
        if not self.link.alive(now):
            return False
        if self.config.camera is None or self._camera_thread is None:
            return True
        return now - self._camera_beat <= max(CAMERA_STALL_S, 3.0 / self.config.camera.fps)

    def close(self) -> None:
        self._notifier.notify("STOPPING=1")
        if self._identify_timer is not None:
            self._identify_timer.cancel()
            self._identify_timer.join(5)
        self._stop_parts()
        if self._frames is not None:
            self._frames.close()
        self.link.stop()
        self.outbox.close()


def outbox_options(config: DeviceConfig) -> dict[str, Any]:
    """The outbox a device config asks for, as `Outbox`'s arguments."""
    return {
        "path": config.data_dir / "outbox.sqlite3",
        "history_rows": config.outbox.history_rows,
        "max_bytes": int(config.outbox.max_mb * 2**20),
        "max_age_s": config.outbox.max_age_days * 86400,
    }


def data_dir_writable(path: Path) -> bool:
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = path / ".write-test"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError:
        return False
    return True


def _jpeg_within(frame: Frame, limit: int) -> bytes:
    """The frame as a JPEG of at most `limit` bytes: lower quality first, then a smaller image."""
    image = frame
    while True:
        for quality in (80, 65, 50, 35):
            ok, encoded = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, quality])
            if ok and len(encoded) <= limit:
                return bytes(encoded.tobytes())
        size = (image.shape[1] * 3 // 4, image.shape[0] * 3 // 4)
        image = np.asarray(cv2.resize(image, size, interpolation=cv2.INTER_AREA), dtype=np.uint8)
