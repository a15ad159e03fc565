"""The agent: wires frame source, counter, buttons and sensors to the outbox, and the outbox to the broker.

Threads: the camera loop counts and reports occupancy; gpiozero's thread hands button presses to a queue;
the main loop turns presses into messages and runs the periodic facility and health reports; the link thread
owns the MQTT connection. Every message goes through the outbox first.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import threading
from collections.abc import Callable

import numpy as np
from gpiozero.pins import Factory
from numpy.typing import NDArray

from edge_agent import __version__
from edge_agent.buttons import ButtonInput, CallButtons
from edge_agent.camera_health import CameraHealth
from edge_agent.camera_loop import CameraLoop, camera_reading
from edge_agent.commands import Reply, carry_out
from edge_agent.config import ConfigError, DeviceConfig, outbox_options
from edge_agent.debounce import PressFilter
from edge_agent.emitter import AgentStats, Emitter
from edge_agent.frames import FrameSource, open_source
from edge_agent.head_fits import HEAD_FITS
from edge_agent.health import HealthProbe
from edge_agent.remote_config import load_applied, merge, read_push, save_applied
from edge_agent.sensors import SensorEnv, build_sensor
from edge_agent.systemd import Notifier
from edge_agent.transport.link import Inbound, MqttLink
from edge_agent.transport.outbox import Outbox
from edge_agent.zone_counting import ZoneCounting
from lobbywatch.clock import Clock
from lobbywatch.protocol import (
    ButtonAction,
    ButtonEvent,
    Channel,
    FacilityReport,
    QueueReport,
    ZoneCount,
    ZoneMethod,
)

log = logging.getLogger(__name__)
Frame = NDArray[np.uint8]


def zone_methods(counting: ZoneCounting | None, fitting: set[str]) -> list[ZoneMethod]:
    """How each zone is counted now, and whether a head counter is being fitted for it (for the fleet page)."""
    methods = counting.methods() if counting is not None else {}
    return [ZoneMethod(zone=key, method=method, fitting=key in fitting) for key, method in methods.items()]


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
        self._local_config = config
        self.config = config
        self._clock = clock
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
        self._emitter = Emitter(config.device_id, self.outbox, self.link, clock, self.stats)
        self._pin_factory = pin_factory
        self._sensor_env = sensor_env or SensorEnv(pin_factory=pin_factory)
        self._health = health_probe or HealthProbe()
        self._injected_frames = frame_source
        self._frames: FrameSource | None = None
        self._buttons: CallButtons | None = None
        self._camera: CameraLoop | None = None
        self._running: threading.Event | None = None
        self._last_frame: Frame | None = None
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
        if self._camera is not None:
            if self._camera.last_frame is not None:
                self._last_frame = self._camera.last_frame  # still there for a snapshot after a config push
            self._camera.stop()
            self._camera = None
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
        if self.config.camera is None or self._frames is None:
            return
        self._camera = CameraLoop(
            self.config.camera,
            self.config.reporting,
            self.config.data_dir,
            self._frames,
            self._clock,
            report_queue=self.report_queue,
            camera_changed=self._camera_changed,
            counted=self._counted,
            reported_problem=self.stats.camera_problem,
        )
        self._camera.start(stop, name=f"camera-{self.config.device_id}")

    @property
    def counting(self) -> ZoneCounting | None:
        """The zones' counting while the camera runs."""
        return self._camera.counting if self._camera is not None else None

    # -- the camera loop -----------------------------------------------------------------------------
    def _camera_changed(self, health: CameraHealth) -> None:
        self.stats.camera_ok, self.stats.camera_problem = health.ok, health.problem.value
        self._emitter.emit(Channel.FACILITY, FacilityReport, readings=[camera_reading(health)])

    def _counted(self, smoothed: dict[str, int | None]) -> None:
        self.stats.occupancy = smoothed

    def report_queue(self, zones: list[ZoneCount]) -> None:
        """Store a queue report in the outbox, to be sent (what the camera loop does when a count is due)."""
        self._emitter.emit(Channel.QUEUE, QueueReport, zones=zones)

    # -- presses, sensors, health --------------------------------------------------------------------
    def _handle_button(self, event: ButtonInput) -> None:
        key = event.key
        if event.action == "answered":
            if self._buttons is not None:
                self._buttons.indicate(key, help_coming=False)  # help is here
            self._emitter.emit(
                Channel.BUTTON, ButtonEvent, button=key, kind=self._button_kinds[key], action=ButtonAction.ANSWERED
            )
            return
        if not self._press_filters[key].accept(key, self._clock.monotonic()):
            return
        self.stats.presses += 1
        self._emitter.emit(Channel.BUTTON, ButtonEvent, button=key, kind=self._button_kinds[key])

    def report_facility(self) -> None:
        readings = [reading for sensor in self._sensors for reading in sensor.read()]
        if self._camera is not None and self._camera.health is not None:
            readings.append(camera_reading(self._camera.health))
        if readings:
            self._emitter.emit(Channel.FACILITY, FacilityReport, readings=readings)

    def report_health(self) -> None:
        counting = zone_methods(self.counting, HEAD_FITS.zones(self.config.data_dir))
        self._emitter.health(self._health, self.config_version, counting)

    # -- commands from the server -------------------------------------------------------------------
    def _handle_inbound(self, message: Inbound) -> None:
        if message.channel is Channel.CONFIG:
            self._apply_config(message.payload)
            return
        if message.channel is not Channel.CMD:
            log.info("received %s message of %d bytes", message.channel.value, len(message.payload))
            return
        done = carry_out(self, message.payload)
        if done is not None:
            self._reply(*done)

    def _apply_config(self, payload: bytes) -> None:
        try:
            push = read_push(self._local_config, self.config_version, payload)
        except ConfigError as exc:
            log.error("refused a pushed config: %s", exc)
            self._reply("config", Reply(ok=False, detail=str(exc)[:1000], code="config_refused"))
            return
        if push is None:
            return
        save_applied(push.config.data_dir, push.applied)
        self._stop_parts()
        self.config, self.config_version = push.config, push.applied.version
        self._build_parts()
        if self._running is not None:
            self._start_camera(self._running)
        log.info("applied config version %d", self.config_version)
        self._reply("config", Reply(ok=True, code="config_applied", params={"version": self.config_version}))

    # -- what a command may touch (edge_agent/commands.py's Device) ---------------------------------
    @property
    def clock(self) -> Clock:
        return self._clock

    @property
    def last_frame(self) -> Frame | None:
        if self._camera is not None and self._camera.last_frame is not None:
            return self._camera.last_frame
        return self._last_frame

    @property
    def button_keys(self) -> list[str]:
        return list(self._button_kinds)

    def indicate(self, button: str, help_coming: bool) -> bool:
        return self._buttons is not None and self._buttons.indicate(button, help_coming=help_coming)

    def blink_all(self, seconds: float) -> int:
        """Every LED on for `seconds`, then off; returns how many there are."""
        return self._buttons.blink_all(seconds) if self._buttons is not None else 0

    def request_restart(self) -> None:
        self.restart_requested = True
        if self._running is not None:
            self._running.set()

    def _reply(self, command: str, reply: Reply) -> None:
        self._emitter.reply(command, reply, self.config_version)

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
        return self._camera is None or self._camera.alive(now)

    def close(self) -> None:
        self._notifier.notify("STOPPING=1")
        self._stop_parts()
        if self._frames is not None:
            self._frames.close()
        self.link.stop()
        self.outbox.close()
