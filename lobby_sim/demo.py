"""`lobbywatch demo`: the whole system on embedded defaults, with three simulated branches.

A local broker (Mosquitto, or amqtt where Mosquitto is not installed), the server with SQLite storage and the
API on http://127.0.0.1:8000, and one agent per branch running the real agent code: its camera films a
simulated lobby whose queue follows arrivals and the service-time standards, its accessibility bell is pressed
through gpiozero's mock pins, and its board temperature comes from a fake sysfs tree. The lobby runs 60 times
faster than real time so that a peak builds within a minute; when a queue alert stays open, the simulated duty
supervisor opens a flexible window.
"""

from __future__ import annotations

import logging
import random
import secrets
import shutil
import socket
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import uvicorn
import yaml
from gpiozero.pins.mock import MockFactory
from rich.console import Console, Group
from rich.live import Live
from rich.table import Table
from rich.text import Text

from edge_agent.agent import Agent
from edge_agent.config import parse_config
from edge_agent.counting.zones import Zone
from edge_agent.sensors import SensorEnv
from lobby_sim.broker import AmqttBroker, Mosquitto, start_local_broker
from lobby_sim.camera import SimulatedCamera, calibrate_simulated
from lobby_sim.demo_enroll import device_identity, enroll_device
from lobby_sim.demo_site import BELL_PIN, BRANCHES, DemoBranch, device_config, site_config
from lobby_sim.inbox import Inbox
from lobby_sim.lobby import Lobby
from lobby_sim.render import QUEUE_ZONE, LobbyRenderer
from lobbywatch.clock import SystemClock
from lobbywatch.i18n import normalize_locale, t
from server.api.routes import branch_summary, open_alert_counts
from server.api.schemas import BranchSummary
from server.app import create_app
from server.registry.users import add_user
from server.runtime import Runtime
from server.settings import Settings

log = logging.getLogger(__name__)

SPEED = 60.0  # simulated seconds per real second
BELL_AT_S = 20.0  # when the wheelchair user rings the bell at the ramp of the second branch
SUPERVISOR_REACTS_S = 8.0  # how long an open queue alert waits before a flexible window opens
TICK_S = 0.2


@dataclass
class SimulatedBranch:
    spec: DemoBranch
    lobby: Lobby
    lock: threading.Lock
    agent: Agent
    pins: MockFactory
    sysfs: Path
    alert_open_since: float | None = None
    bell_rung: bool = False
    threads: list[threading.Thread] = field(default_factory=list)


def _fake_sysfs(root: Path, millidegrees: int) -> Path:
    zone = root / "class" / "thermal" / "thermal_zone0"
    zone.mkdir(parents=True, exist_ok=True)
    (zone / "temp").write_text(f"{millidegrees}\n")
    return root


class Demo:
    def __init__(self, workdir: Path, http_port: int, locale: str, broker_kind: str = "auto") -> None:
        self.workdir = workdir
        self.broker_kind = broker_kind
        self.http_port = http_port
        self.locale = locale
        self.password = ""
        self.stop = threading.Event()
        self.branches: list[SimulatedBranch] = []
        self.broker: Mosquitto | AmqttBroker | None = None
        self.runtime: Runtime | None = None
        self._http: uvicorn.Server | None = None
        self._socket: socket.socket | None = None
        self.inbox: Inbox | None = None
        self.second_password = ""
        self._threads: list[threading.Thread] = []
        self.alerts_fired = 0
        self.enrolled: str | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    def start(self) -> None:
        # the port first, before anything is wiped or started: a second demo must not eat the first one's data
        self._socket = listen(self.http_port)
        if self.workdir.exists():
            shutil.rmtree(self.workdir)
        self.workdir.mkdir(parents=True)
        # the terminal shows a live table; the details go to a log file beside the databases
        logging.basicConfig(
            filename=str(self.workdir / "demo.log"),
            level=logging.INFO,
            force=True,
            format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        )
        # an administrator made up for this run: with Mosquitto's dynamic security plugin, devices can be enrolled
        admin = ("lobbywatch-admin", secrets.token_urlsafe(18))
        self.broker = start_local_broker(self.workdir / "broker", self.broker_kind, admin)
        site = self.workdir / "site.yaml"
        # the contacts' phones: a page in the browser where their notices land, one-tap links and all
        self.inbox = Inbox({"wang": "王芳", "li": "李强"}, self.locale)
        self.inbox.start()
        log.info("the contacts' phones: %s", self.inbox.url)
        contacts: list[dict[str, object]] = [
            {"name": "王芳", "role": "duty_supervisor", "urls": [self.inbox.address("wang")]},
            {"name": "李强", "role": "branch_manager", "urls": [self.inbox.address("li")]},
        ]
        site.write_text(yaml.safe_dump(site_config(contacts), allow_unicode=True, sort_keys=False), encoding="utf-8")
        settings = Settings(
            mode="dev",
            database_url=f"sqlite:///{self.workdir / 'registry.sqlite3'}",
            site_file=site,
            timeseries_path=self.workdir / "timeseries.sqlite3",
            mqtt_port=self.broker.port,
            mqtt_username=None,
            mqtt_protocol="5" if self.broker.mqtt5 else "3.1.1",
            http_port=self.http_port,
            public_url=self.url,
            mqtt_admin_username=self.broker.admin[0] if self.broker.admin else None,
            mqtt_admin_password=self.broker.admin[1] if self.broker.admin else None,
            broker_public_host="127.0.0.1",
            broker_public_port=self.broker.port,
            broker_public_tls=False,
        )
        self.runtime = Runtime(settings)
        self.runtime.start()
        # a sign-in for the lobby pages, made up for this run: no password is built into the product
        self.password = secrets.token_urlsafe(9)
        with self.runtime.sessions() as session:
            add_user(
                session,
                "demo",
                t(self.locale, "demo.user"),
                "administrator",
                self.password,
                datetime.now(UTC),
                locale=self.locale,
            )
            # a second person, so that passing an alert on can be tried
            self.second_password = secrets.token_urlsafe(9)
            add_user(
                session,
                "wang",
                "王芳",
                "duty_supervisor",
                self.second_password,
                datetime.now(UTC),
                locale=self.locale,
                branches=[b.id for b in BRANCHES],
            )
        self._http = uvicorn.Server(
            uvicorn.Config(create_app(runtime=self.runtime), host="127.0.0.1", port=self.http_port, log_level="warning")
        )
        self._spawn(self._http.run, "http", [self._socket])
        for i, spec in enumerate(BRANCHES):
            self.branches.append(self._start_branch(i, spec))
        if self.broker.admin is not None:  # one more device, enrolled through the real flow
            extra = enroll_device(self.runtime, self.url, BRANCHES[-1].id, self.workdir / "devices" / "extra", "demo")
            self.enrolled = extra.config.device_id
            self._spawn(extra.run, "agent-enrolled", self.stop)
            log.info("enrolled %s through the enrollment API", self.enrolled)

    def _spawn(self, target: object, name: str, *args: object) -> threading.Thread:
        thread = threading.Thread(target=target, args=args, name=name, daemon=True)  # type: ignore[arg-type]
        thread.start()
        self._threads.append(thread)
        return thread

    def _start_branch(self, index: int, spec: DemoBranch) -> SimulatedBranch:
        assert self.broker is not None
        lobby = Lobby(spec.plan, random.Random(index))
        lock = threading.Lock()
        folder = self.workdir / "devices" / spec.id
        secret = device_identity(self.runtime, f"{spec.id}-cam1", folder)
        config = parse_config(
            device_config(spec, self.broker.port, self.broker.mqtt5, folder, secret),
            f"demo device of {spec.id}",
        )
        renderer = LobbyRenderer(index)
        calibrate_simulated(config.data_dir, renderer, Zone("queue", list(QUEUE_ZONE)), seed=index)
        pins = MockFactory()
        sysfs = _fake_sysfs(self.workdir / "devices" / spec.id / "sys", 47_000 + 1500 * index)
        agent = Agent(
            config,
            clock=SystemClock(),
            frame_source=SimulatedCamera(lobby, renderer, lock),
            pin_factory=pins,
            sensor_env=SensorEnv(sysfs_root=sysfs, seed=index),
        )
        branch = SimulatedBranch(spec, lobby, lock, agent, pins, sysfs)
        branch.threads.append(self._spawn(agent.run, f"agent-{spec.id}", self.stop))
        return branch

    def _ring_bell(self, branch: SimulatedBranch) -> None:
        pin = branch.pins.pin(BELL_PIN)
        pin.drive_low()
        time.sleep(0.2)
        pin.drive_high()

    def step(self, elapsed: float, dt: float) -> None:
        assert self.runtime is not None
        open_alerts = {a.branch_id for a in self.runtime.alerts.open_alerts()}
        for branch in self.branches:
            with branch.lock:
                branch.lobby.advance(dt * SPEED / 60)
            if branch.spec.id in open_alerts:
                branch.alert_open_since = branch.alert_open_since or elapsed
                if elapsed - branch.alert_open_since >= SUPERVISOR_REACTS_S:
                    with branch.lock:
                        branch.lobby.open_window()
                    branch.alert_open_since = elapsed
            else:
                branch.alert_open_since = None
                with branch.lock:  # the peak is over: the flexible window closes, ready for the next one
                    if branch.lobby.waiting <= 1:
                        branch.lobby.close_window()
        second = self.branches[1]
        if elapsed >= BELL_AT_S and not second.bell_rung:
            second.bell_rung = True
            self._spawn(self._ring_bell, "bell", second)

    def table(self, elapsed: float) -> Group:
        assert self.runtime is not None
        assert self.broker is not None
        lang = self.locale
        rows = {b.id: b for b in self._api_branches()}
        table = Table(title=t(lang, "demo.title", seconds=int(elapsed)), expand=False)
        for key in ("branch", "zone", "windows", "devices", "call", "facility", "alerts"):
            table.add_column(t(lang, f"demo.col.{key}"))
        for branch in self.branches:
            row = rows[branch.spec.id]
            zone = row.zones[0] if row.zones else None
            counted = "–" if zone is None or zone.occupancy is None else str(zone.occupancy)
            call = row.last_call
            local = call.at.astimezone(ZoneInfo(row.timezone)) if call else None
            call_text = f"{t(lang, 'demo.call.' + call.kind)} {local:%H:%M:%S}" if call and local else "–"
            readings = self.runtime.live.readings(branch.spec.id)
            temp = next((r for k, r in readings.items() if k.endswith("/lobby-temp")), None)
            temp_text = f"{temp.value:.1f} °C" if temp and temp.value is not None else "–"
            style = "bold red" if row.open_alerts else ""
            table.add_row(
                row.name,
                f"{counted} / {branch.lobby.waiting}",
                str(branch.lobby.windows_open),
                f"{row.devices_online}/{row.devices_total}",
                call_text,
                temp_text,
                str(row.open_alerts),
                style=style,
            )
        alerts = self.runtime.alerts.open_alerts()
        last = max(alerts, key=lambda a: a.id, default=None)
        if last is not None:
            entry = self.runtime.directory.branches[last.branch_id]
            subject = self.runtime.directory.subject_name(last.branch_id, last.subject)
            title = t(lang, f"alert.{last.rule}.title", branch=entry.name, zone=subject, subject=subject)
            footer = t(lang, "demo.last_alert", title=title if last.value is None else f"{title} ({last.value:.0f})")
        else:
            footer = t(lang, "demo.no_alert")
        broker = t(lang, "demo.broker", kind=self.broker.kind, port=self.broker.port)
        if self.enrolled:
            broker += " " + t(lang, "demo.enrolled", device=self.enrolled)
        return Group(
            table,
            Text(footer),
            Text(broker),
            Text(t(lang, "demo.open", url=self.url), style="bold"),
            Text(t(lang, "demo.pages", url=self.url, login="demo", password=self.password), style="bold"),
            Text(
                t(
                    lang,
                    "demo.phones",
                    url=self.inbox.url if self.inbox else "-",
                    login="wang",
                    password=self.second_password,
                ),
                style="bold",
            ),
        )

    def _api_branches(self) -> list[BranchSummary]:
        assert self.runtime is not None
        counts = open_alert_counts(self.runtime)
        return [
            BranchSummary.model_validate(branch_summary(self.runtime, b, counts))
            for b in self.runtime.directory.branches.values()
        ]

    def shutdown(self) -> None:
        self.stop.set()
        for branch in self.branches:
            for thread in branch.threads:
                thread.join(10)
        if self._http is not None:
            self._http.should_exit = True
            for thread in self._threads:  # uvicorn lets go of the socket before it is closed
                if thread.name == "http":
                    thread.join(10)
        if self._socket is not None:
            self._socket.close()
        if self.runtime is not None:
            self.runtime.stop()
        if self.broker is not None:
            self.broker.stop()
        if self.inbox is not None:
            self.inbox.stop()


class PortTaken(OSError):
    """The demo's HTTP port is in use (another demo, or another server)."""


def listen(port: int) -> socket.socket:
    """The demo's HTTP socket, bound now (uvicorn serves on it): a taken port fails here, at once."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # a port in TIME_WAIT after the last demo is free
    try:
        sock.bind(("127.0.0.1", port))
    except OSError as exc:
        sock.close()
        raise PortTaken(str(exc)) from None
    sock.listen(128)
    return sock


def run(
    seconds: float | None,
    http_port: int = 8000,
    workdir: Path = Path(".demo"),
    lang: str | None = None,
    broker: str = "auto",
) -> int:
    locale = normalize_locale(lang)
    console = Console()
    demo = Demo(workdir, http_port, locale, broker)
    started = time.monotonic()
    try:
        demo.start()
    except PortTaken:
        console.print(t(locale, "demo.port_taken", port=http_port), style="bold red")
        return 2
    except BaseException:
        demo.shutdown()
        raise
    try:
        with Live(demo.table(0.0), console=console, refresh_per_second=4, transient=False) as live:
            last = time.monotonic()
            while seconds is None or time.monotonic() - started < seconds:
                time.sleep(TICK_S)
                now = time.monotonic()
                demo.step(now - started, now - last)
                last = now
                live.update(demo.table(now - started))
    except KeyboardInterrupt:
        pass
    finally:
        console.print("\n" + t(locale, "demo.stopping"))
        demo.shutdown()
    assert demo.runtime is not None
    status = demo.runtime.status()
    with demo.runtime.sessions() as session:
        from server.registry import models

        fired = session.query(models.Alert).count()
    console.print(
        t(
            locale,
            "demo.summary",
            seconds=int(time.monotonic() - started),
            messages=status.received,
            alerts=fired,
            refused=sum(status.refused.values()),
        )
    )
    return 0
