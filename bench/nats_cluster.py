"""A real NATS cluster with JetStream on free loopback ports, for the tests and `bench.scale`: three nodes by
default (the production shape), each its own process, config file and store, so that one can be killed."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import httpx

from bench.processes import Child, tied
from lobby_sim.broker import free_port, logged_ready, wait_for_port

MIN_VERSION = (2, 11)  # pinned pull consumers (priority groups, ADR-42)

NODE_CONF = """\
server_name: {name}
listen: 127.0.0.1:{port}
http: 127.0.0.1:{monitor}
jetstream {{
  store_dir: "{store}"
  max_memory_store: 64MB
  max_file_store: 100GB  # a reservation bound, not a disk check: the streams say what they may take
}}
"""
CLUSTER_CONF = """\
cluster {{
  name: lobbywatch
  listen: 127.0.0.1:{cluster}
  routes: [{routes}]
}}
"""


def server_binary() -> str:
    """The pinned build in this environment (deploy/nats/server-bin.txt), never an older one on the PATH."""
    beside = Path(sys.executable).parent / "nats-server"
    path = str(beside) if beside.exists() else shutil.which("nats-server")
    if path is None:
        raise RuntimeError("nats-server is not installed: `make test` installs it (deploy/nats/server-bin.txt)")
    version = subprocess.run([path, "--version"], capture_output=True, text=True, check=True).stdout
    numbers = tuple(int(n) for n in version.strip().rsplit("v", 1)[-1].split(".")[:2])
    if numbers < MIN_VERSION:
        raise RuntimeError(f"{path} is {version.strip()}; pinned pull consumers need 2.11 or newer")
    return path


class Node(Child):
    def __init__(self, name: str, folder: Path, binary: str, env: dict[str, str] | None = None) -> None:
        self.name = name
        self.port = self.monitor = self.cluster = 0
        self.new_ports()
        self.folder = folder
        self._binary = binary
        self._env = env

    def new_ports(self) -> None:
        self.port, self.monitor, self.cluster = free_port(), free_port(), free_port()

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    def configure(self, routes: list[int], include: Path | None = None) -> None:
        """`include`: a config file taken in as it is (deploy/nats/permissions.conf), copied beside ours."""
        self.folder.mkdir(parents=True, exist_ok=True)
        conf = NODE_CONF.format(name=self.name, port=self.port, monitor=self.monitor, store=self.folder / "store")
        if include is not None:
            shutil.copyfile(include, self.folder / include.name)
            conf += f'include "{include.name}"\n'
        if routes:  # one node alone is no cluster
            conf += CLUSTER_CONF.format(cluster=self.cluster, routes=", ".join(f"nats://127.0.0.1:{p}" for p in routes))
        (self.folder / "nats.conf").write_text(conf)

    def start(self) -> None:
        path = self.folder / "nats.log"
        since = path.stat().st_size if path.exists() else 0
        with path.open("ab") as log:
            self.process = subprocess.Popen(
                tied([self._binary, "-c", str(self.folder / "nats.conf")]),
                stdout=log,
                stderr=subprocess.STDOUT,
                env=None if self._env is None else {**os.environ, **self._env},
            )
        # "ready" once its client, monitor and route ports are bound: a port that answers may be a stranger's
        if not logged_ready(self.process, path, since, b"Server is ready", 20.0):
            raise TimeoutError(f"NATS node {self.name} does not listen on {self.port}: {self.log_tail()}")
        wait_for_port(self.port, 5.0)

    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def log_tail(self) -> str:
        lines = (self.folder / "nats.log").read_text(errors="replace").splitlines()
        return " / ".join(lines[-2:])

    def jetstream_ready(self) -> bool:
        """This node knows the cluster's JetStream meta leader."""
        try:
            info = httpx.get(f"http://127.0.0.1:{self.monitor}/jsz", timeout=1).json()
        except (httpx.HTTPError, ValueError):
            return False
        if "meta_cluster" not in info:  # a node alone: JetStream is up once it answers as enabled
            return not info.get("disabled", True) or "config" in info
        return bool(info["meta_cluster"].get("leader"))


class NatsCluster:
    def __init__(
        self, folder: Path, nodes: int = 3, include: Path | None = None, env: dict[str, str] | None = None
    ) -> None:
        """`include` and `env`: a config file every node takes in, and what it reads from the environment (the
        permissions and their passwords)."""
        binary = server_binary()
        self.nodes = [Node(f"n{i + 1}", folder / f"n{i + 1}", binary, env) for i in range(nodes)]
        self._include = include
        self._configure()

    def _configure(self) -> None:
        for node in self.nodes:
            node.configure([other.cluster for other in self.nodes if other is not node], self._include)

    @property
    def urls(self) -> list[str]:
        return [node.url for node in self.nodes]

    def start(self, timeout: float = 30.0, attempts: int = 3) -> None:
        """Every node, until JetStream has a leader. A port found free can be taken by another process before a
        node binds it (seen twice in a row of bench runs: "address already in use", the node gone): then the
        whole cluster starts again on new ports. Read `urls` after this."""
        for attempt in range(1, attempts + 1):
            try:
                for node in self.nodes:
                    node.start()
                self.wait_ready(timeout)
                return
            except TimeoutError:
                if attempt == attempts:
                    raise
                self.stop()
                for node in self.nodes:
                    node.new_ports()
                    shutil.rmtree(node.folder / "store", ignore_errors=True)  # it names the peers of the failed start
                self._configure()

    def wait_ready(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while not all(node.jetstream_ready() for node in self.nodes if node.process is not None):
            gone = [node for node in self.nodes if node.process is not None and not node.running()]
            if gone:
                raise TimeoutError(f"NATS node {gone[0].name} exited: {gone[0].log_tail()}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"the NATS cluster elected no JetStream leader in {timeout} s")
            time.sleep(0.1)

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()

    def messages(self) -> dict[str, list[int]]:
        """Messages in and out so far, over the nodes that answer: `total` (`/varz`), and by part: the clients by
        their connection name's role (`lobbywatch-forward-f1` -> `forward`; `/connz`), and `routes` between the
        nodes (`/routez`: replication and everything routed)."""
        counts: dict[str, list[int]] = {"total": [0, 0], "routes": [0, 0]}

        def add(part: str, entry: dict[str, object]) -> None:
            tally = counts.setdefault(part, [0, 0])
            tally[0] += int(entry.get("in_msgs", 0))  # type: ignore[call-overload]
            tally[1] += int(entry.get("out_msgs", 0))  # type: ignore[call-overload]

        for node in self.nodes:
            base = f"http://127.0.0.1:{node.monitor}"
            try:
                varz = httpx.get(f"{base}/varz", timeout=2).json()
                connz = httpx.get(f"{base}/connz", params={"limit": 10_000}, timeout=2).json()
                routez = httpx.get(f"{base}/routez", timeout=2).json()
            except (httpx.HTTPError, ValueError):
                continue
            add("total", varz)
            for connection in connz.get("connections") or []:
                name = str(connection.get("name") or "")
                add(name.split("-")[1] if name.startswith("lobbywatch-") else "other", connection)
            for route in routez.get("routes") or []:
                add("routes", route)
        return counts
