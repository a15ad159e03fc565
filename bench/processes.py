"""The real processes the fault suite starts, kills and heals: the server, a fleet of agents, VictoriaMetrics
(InfluxDB's write path), and a TCP proxy that cuts agents off the broker without stopping it."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import httpx

from lobby_sim.broker import free_port


def tied(command: list[str]) -> list[str]:
    """`command`, killed when the suite's process ends however it ends (a timeout's kill -9 too), so that no
    server or agent outlives a run (util-linux's setpriv sets the parent-death signal, then runs it)."""
    setpriv = shutil.which("setpriv")
    return [setpriv, "--pdeathsig", "KILL", "--", *command] if setpriv else command


class Child:
    """A process of the suite's: killed with -9 (the fault), or stopped with SIGTERM (the end of a run)."""

    process: subprocess.Popen[bytes] | None = None

    def kill(self) -> None:
        if self.process is not None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(15)
            self.process = None

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            try:
                self.process.wait(60)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(15)
            self.process = None


class Server(Child):
    """`lobbywatch serve` in dev mode on SQLite (or what `storage` says), on the files in `work`."""

    def __init__(self, work: Path, broker_port: int, storage: dict[str, str]) -> None:
        self.work = work
        self.port = free_port()
        self.env = {
            **os.environ,
            "LOBBYWATCH_MODE": "dev",
            "LOBBYWATCH_MQTT_USERNAME": "",
            "LOBBYWATCH_DATABASE_URL": f"sqlite:///{work}/registry.sqlite3",
            "LOBBYWATCH_SITE_FILE": str(work / "site.yaml"),
            "LOBBYWATCH_TIMESERIES_PATH": str(work / "ts.sqlite3"),
            "LOBBYWATCH_SPOOL_PATH": str(work / "spool.sqlite3"),
            "LOBBYWATCH_MQTT_PORT": str(broker_port),
            "LOBBYWATCH_MQTT_CLIENT_ID": "lobbywatch-ingest-faults",
            "LOBBYWATCH_HTTP_PORT": str(self.port),
            "LOBBYWATCH_REPORTS_BY_MAIL": "false",
            **storage,
        }

    def start(self) -> None:
        """Started and connected to the broker. `free_port` can only pick a port, not hold it: when another
        process of the suite took it first (seen in CI: the webhook's), the server exits, and starts again on
        another port."""
        for _attempt in range(3):
            log = (self.work / "server.log").open("ab")
            self.process = subprocess.Popen(
                tied([str(Path(sys.executable).parent / "lobbywatch"), "serve", "--log-level", "warning"]),
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
            if self._came_up(60.0):
                return
            self.port = free_port()
            self.env["LOBBYWATCH_HTTP_PORT"] = str(self.port)
        raise RuntimeError(f"the server did not start (see {self.work / 'server.log'})")

    def _came_up(self, timeout: float) -> bool:
        """True once it answers and has its broker (or, still running, when `timeout` is up); False if it exited."""
        assert self.process is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                return False
            if self.health().get("broker_connected"):
                return True
            time.sleep(0.2)
        return self.process.poll() is None

    def get(self, path: str) -> Any:
        """A JSON answer of the API (dev mode: no token), or None while the server cannot answer."""
        try:
            response = httpx.get(f"http://127.0.0.1:{self.port}/api/v1/{path}", timeout=10)
            response.raise_for_status()
        except httpx.HTTPError:
            return None
        return response.json()

    def health(self) -> dict[str, Any]:
        return self.get("health") or {}


class Forward(Child):
    """`lobbywatch forward --name <name>`: MQTT into JetStream, on the registry in `work`."""

    def __init__(
        self,
        work: Path,
        name: str,
        broker_port: int,
        nats_urls: list[str],
        partitions: int,
        database_url: str | None = None,
    ) -> None:
        self.work = work
        self.name = name
        self.env = {
            **os.environ,
            "LOBBYWATCH_MODE": "dev",
            "LOBBYWATCH_MQTT_USERNAME": "",
            "LOBBYWATCH_DATABASE_URL": database_url or f"sqlite:///{work}/registry.sqlite3",
            "LOBBYWATCH_MQTT_PORT": str(broker_port),
            "LOBBYWATCH_NATS_URL": ",".join(nats_urls),
            "LOBBYWATCH_NATS_USER": "",
            "LOBBYWATCH_NATS_PARTITIONS": str(partitions),
        }

    command = "forward"  # the `lobbywatch` subcommand; its log is `<command>-<name>.log` in `work`

    def arguments(self) -> list[str]:
        return [self.command, "--name", self.name]

    def start(self) -> None:
        log = (self.work / f"{self.command}-{self.name}.log").open("ab")
        self.process = subprocess.Popen(
            tied([str(Path(sys.executable).parent / "lobbywatch"), *self.arguments()]),
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )


class Work(Forward):
    """`lobbywatch worker --name <name>`: partitions of the stream, on the registry in `work`, writing points
    where `storage` says."""

    command = "worker"

    def __init__(
        self,
        work: Path,
        name: str,
        broker_port: int,
        nats_urls: list[str],
        partitions: int,
        storage: dict[str, str],
        database_url: str | None = None,
    ) -> None:
        super().__init__(work, name, broker_port, nats_urls, partitions, database_url)
        self.env |= {
            "LOBBYWATCH_REPORTS_BY_MAIL": "false",
            **storage,
        }


class Api(Forward):
    """`lobbywatch api`: the API and pages over the workers' live state, on the registry in `work`, on a free
    port (dev mode: no token asked)."""

    command = "api"

    def __init__(self, work: Path, name: str, broker_port: int, nats_urls: list[str], partitions: int) -> None:
        super().__init__(work, name, broker_port, nats_urls, partitions)
        self.port = free_port()
        self.env |= {
            "LOBBYWATCH_HTTP_PORT": str(self.port),
            "LOBBYWATCH_MQTT_CLIENT_ID": f"lobbywatch-api-{name}",
            "LOBBYWATCH_TIMESERIES_PATH": str(work / f"ts-api-{name}.sqlite3"),
            "LOBBYWATCH_REPORTS_BY_MAIL": "false",
        }

    def arguments(self) -> list[str]:
        return [self.command, "--log-level", "info"]

    def call(self, method: str, path: str, body: dict[str, object] | None = None) -> Any:
        """A JSON answer of the API, or None while the process cannot answer."""
        try:
            response = httpx.request(method, f"http://127.0.0.1:{self.port}/api/v1/{path}", json=body, timeout=10)
            response.raise_for_status()
        except httpx.HTTPError:
            return None
        return response.json()


class Fleet(Child):
    """`python -m bench.fleet`: `devices` real agents in one process, from device index `first`."""

    def __init__(self, work: Path, port: int, first: int, devices: int, **options: float) -> None:
        self.work, self.port, self.first, self.devices = work, port, first, devices
        self.options = options

    def start(self, rate: float, seconds: float) -> None:
        for marker in (self._marker("ready"), self._marker("done")):
            marker.unlink(missing_ok=True)
        options = [f"--{key.replace('_', '-')}={value}" for key, value in self.options.items()]
        self.process = subprocess.Popen(
            tied(
                [
                    sys.executable,
                    "-m",
                    "bench.fleet",
                    "--port",
                    str(self.port),
                    "--work",
                    str(self.work),
                    "--first",
                    str(self.first),
                    "--devices",
                    str(self.devices),
                    "--rate",
                    str(rate),
                    "--seconds",
                    str(seconds),
                    *options,
                ]
            ),
            stdout=subprocess.DEVNULL,
            stderr=(self.work / f"fleet-{self.first}.err").open("ab"),
        )
        deadline = time.monotonic() + 120
        while not self._marker("ready").exists():
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"fleet {self.first} did not start; see {self.work}/fleet-{self.first}.err")
            time.sleep(0.05)

    def _marker(self, what: str) -> Path:
        return self.work / f"fleet-{self.first}.{what}"

    @property
    def done(self) -> bool:
        return self._marker("done").exists()


class Victoria(Child):
    """VictoriaMetrics, keeping one sample per series and millisecond, as InfluxDB keeps one point per series
    and time: a batch the server sent again after a kill (idempotent there) is not counted twice."""

    def __init__(self, work: Path, dedup: bool = True) -> None:
        """`dedup` False: every sample kept, so that a point written twice is seen twice."""
        self.work = work
        self.port = free_port()
        self.dedup = dedup
        self._port_ours = True  # picked here: another may be picked until the first start, then clients know it

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        """Start it and wait until it answers as itself. A port picked as free can be taken by another process
        before it binds it (it exits with "address already in use" while the stranger answers on the port, as
        Mosquitto did in CI); on its first start it then tries another port."""
        for attempt in range(5):
            if self._start_once():
                self._port_ours = False
                return
            if not self._port_ours or attempt == 4:
                raise RuntimeError(f"victoria-metrics could not listen on 127.0.0.1:{self.port}")
            self.port = free_port()

    def _start_once(self) -> bool:
        store = f"{self.work}/vm"
        self.process = process = subprocess.Popen(
            tied(
                [
                    "victoria-metrics",
                    f"-storageDataPath={store}",
                    *(["-dedup.minScrapeInterval=1ms"] if self.dedup else []),
                    f"-httpListenAddr=127.0.0.1:{self.port}",
                ]
            ),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if process.poll() is not None:
                self.process = None
                return False
            with contextlib.suppress(httpx.HTTPError):  # its flags name its store: it is ours, not a stranger
                if f'-storageDataPath="{store}"' in httpx.get(f"{self.url}/flags", timeout=1).text:
                    return True
            time.sleep(0.1)
        raise TimeoutError(f"victoria-metrics does not answer on {self.url} after 30 s")


class Proxy:
    """A TCP relay to 127.0.0.1:`target`. `cut()` drops every connection and refuses new ones (a branch's line
    down: the agents' connections break, the broker stays up); `heal()` lets them through again."""

    def __init__(self, target: int) -> None:
        self.target = target
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = int(self._listener.getsockname()[1])
        self._cut = threading.Event()
        self._open: set[socket.socket] = set()
        self._lock = threading.Lock()
        self._closed = False
        self._acceptor = threading.Thread(target=self._accept, name="proxy-accept", daemon=True)
        self._acceptor.start()

    def cut(self) -> None:
        self._cut.set()
        with self._lock:
            for sock in self._open:
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)

    def heal(self) -> None:
        self._cut.clear()

    def close(self) -> None:
        self._closed = True
        self.cut()
        with contextlib.suppress(OSError):  # wakes the accept (closing alone does not, on Linux)
            self._listener.shutdown(socket.SHUT_RDWR)
        self._listener.close()
        self._acceptor.join(5)

    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            if self._cut.is_set():
                client.close()
                continue
            try:
                upstream = socket.create_connection(("127.0.0.1", self.target), timeout=5)
            except OSError:
                client.close()
                continue
            upstream.settimeout(None)
            with self._lock:
                self._open.update((client, upstream))
            for source, sink in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(source, sink), daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass
        for sock in (source, sink):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
        with self._lock:
            self._open.discard(source)
        source.close()
