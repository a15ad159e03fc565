"""A local MQTT broker for the demo and the tests: Mosquitto when it is installed, else amqtt embedded."""

from __future__ import annotations

import asyncio
import getpass
import random
import shutil
import socket
import subprocess
import threading
import time
from pathlib import Path

# Written into the broker's config; the same values as deploy/mosquitto/mosquitto.conf where they matter.
MOSQUITTO_CONF = """\
listener {port} 127.0.0.1
{access}
persistence {persistence}
persistence_location {data_dir}/
# The ingest acknowledges per stored batch: let it have thousands of messages in flight (3.1.1 clients;
# MQTT 5 clients state their own Receive Maximum).
max_inflight_messages 20000
# Messages kept for a disconnected persistent session (the server during a restart); see docs/protocol.md.
max_queued_messages 50000
log_dest file {data_dir}/mosquitto.log
# Run as whoever started it (started as root, Mosquitto would switch to a user that cannot write here).
user {user}
"""


def free_port() -> int:
    """A port nothing listens on now, for a server started soon after. Picked below the kernel's range for
    outgoing connections where it can be: a port from that range (what binding port 0 gives) can be taken by any
    process's next outgoing connection before the server binds it (seen: a NATS node's route port)."""
    low = _ephemeral_low()
    for _ in range(50):
        port = random.randrange(10_000, low) if low > 10_000 else 0
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return int(s.getsockname()[1])
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _ephemeral_low() -> int:
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 0


def wait_for_port(port: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"nothing listens on 127.0.0.1:{port} after {timeout} s")


def logged_ready(process: subprocess.Popen[bytes], log: Path, since: int, marker: bytes, timeout: float) -> bool:
    """True once `log`, from byte `since` (a restart appends to the same log), holds `marker`: the server's own
    word that it listens, where a port that merely answers may be a stranger's that took it first. False when
    the process exited instead."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            return False
        if log.exists() and marker in log.read_bytes()[since:]:
            return True
        time.sleep(0.05)
    raise TimeoutError(f"{log.name} does not say {marker.decode()!r} after {timeout} s")


DYNSEC_PLUGIN = (
    "/usr/lib/x86_64-linux-gnu/mosquitto_dynamic_security.so",
    "/usr/lib/aarch64-linux-gnu/mosquitto_dynamic_security.so",
    "/usr/lib/mosquitto_dynamic_security.so",
)


class Mosquitto:
    kind = "mosquitto"
    mqtt5 = True

    def __init__(
        self,
        data_dir: Path,
        port: int | None = None,
        persistence: bool = False,
        dynsec_admin: tuple[str, str] | None = None,
        open_to_anonymous: bool = False,
    ) -> None:
        """`dynsec_admin`: run with the dynamic security plugin (no anonymous access), this user its admin.
        `open_to_anonymous` (the demo's): with it, clients without a name may still do anything, while enrolled
        devices get identities of their own, as in production."""
        self.port = port or free_port()
        self._port_ours = port is None  # picked here: another may be picked if a stranger took it first
        self.data_dir = data_dir
        self._persistence = persistence
        self._dynsec_admin = dynsec_admin
        self._anonymous = open_to_anonymous
        self.admin = dynsec_admin
        self._process: subprocess.Popen[bytes] | None = None

    @staticmethod
    def available() -> bool:
        return shutil.which("mosquitto") is not None

    def start(self) -> None:
        """Start Mosquitto and wait until it listens. A port picked as free can be taken by another process before
        Mosquitto binds it (seen in CI: the broker exited with "Address already in use" while the stranger
        answered on the port, and every client failed with a protocol error); on its first start it then tries
        another port, and otherwise says so."""
        for attempt in range(5):
            if self._start_once():
                break
            if not self._port_ours or attempt == 4:
                raise RuntimeError(f"mosquitto could not listen on 127.0.0.1:{self.port}: {self._log_tail()}")
            self.port = free_port()
        self._port_ours = False  # clients know this port now: a restart must come back on it
        if self._dynsec_admin is not None and self._anonymous:
            self._let_anonymous_in()

    def _start_once(self) -> bool:
        """True once our Mosquitto listens on the port; False when it exited instead."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        conf = self.data_dir / "mosquitto.conf"
        conf.write_text(
            MOSQUITTO_CONF.format(
                port=self.port,
                data_dir=self.data_dir,
                user=getpass.getuser(),
                persistence="true" if self._persistence else "false",
                access=self._access(),
            )
        )
        binary = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
        # a fixed binary and a config file we wrote: no untrusted input
        quiet = subprocess.DEVNULL
        log = self.data_dir / "mosquitto.log"
        logged = log.stat().st_size if log.exists() else 0  # a restart appends to the same log
        self._process = process = subprocess.Popen([binary, "-c", str(conf)], stdout=quiet, stderr=quiet)  # noqa: S603
        if not logged_ready(process, log, logged, b" running", 10.0):  # said once every listener is bound
            return False
        wait_for_port(self.port)
        return True

    def _log_tail(self) -> str:
        log = self.data_dir / "mosquitto.log"
        return " | ".join(log.read_text(errors="replace").splitlines()[-3:]) if log.exists() else "no log"

    def _let_anonymous_in(self) -> None:
        user, password = self._dynsec_admin or ("", "")
        ctrl = ["mosquitto_ctrl", "-h", "127.0.0.1", "-p", str(self.port), "-u", user, "-P", password, "dynsec"]
        steps = [
            ["createRole", "demo-anonymous"],
            *(
                ["addRoleACL", "demo-anonymous", kind, "#", "allow"]
                for kind in ("publishClientSend", "publishClientReceive", "subscribePattern", "unsubscribePattern")
            ),
            ["createGroup", "demo-anonymous"],
            ["addGroupRole", "demo-anonymous", "demo-anonymous"],
            ["setAnonymousGroup", "demo-anonymous"],
        ]
        for step in steps:  # our own arguments to a fixed tool; a step done on an earlier run fails harmlessly
            subprocess.run([*ctrl, *step], check=False, capture_output=True, timeout=10)  # noqa: S603

    def _access(self) -> str:
        if self._dynsec_admin is None:
            return "allow_anonymous true"
        plugin = next((p for p in DYNSEC_PLUGIN if Path(p).exists()), None)
        if plugin is None:
            raise FileNotFoundError("Mosquitto's dynamic security plugin is not installed (Debian: mosquitto)")
        state = self.data_dir / "dynamic-security.json"
        anonymous = "true" if self._anonymous else "false"
        if not state.exists():  # kept over restarts: it is the broker's list of clients
            user, password = self._dynsec_admin
            # our own arguments to a fixed tool
            command = ["mosquitto_ctrl", "dynsec", "init", str(state), user, password]
            subprocess.run(command, check=True, capture_output=True)  # noqa: S603
        return f"allow_anonymous {anonymous}\nplugin {plugin}\nplugin_opt_config_file {state}"

    def kill(self) -> None:
        """kill -9: no goodbye to anyone, nothing written on the way out."""
        if self._process is not None:
            self._process.kill()
            self._process.wait(10)
            self._process = None

    def stop(self) -> None:
        if self._process is not None:
            self._process.terminate()
            try:
                self._process.wait(10)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait(5)
            self._process = None


class AmqttBroker:
    """amqtt in its own thread and event loop. MQTT 3.1.1 only, and slow: for the demo, not for production."""

    kind = "amqtt"
    mqtt5 = False
    admin: tuple[str, str] | None = None  # no identities of its own: nothing can be enrolled on it

    def __init__(self, port: int | None = None) -> None:
        self.port = port or free_port()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._broker: object | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="amqtt", daemon=True)
        self._thread.start()
        if not self._ready.wait(15):
            raise TimeoutError("the embedded amqtt broker did not start")
        wait_for_port(self.port)

    def _run(self) -> None:
        from amqtt.broker import Broker

        loop = asyncio.new_event_loop()
        self._loop = loop
        config = {
            "listeners": {"default": {"type": "tcp", "bind": f"127.0.0.1:{self.port}"}},
            "plugins": {"amqtt.plugins.authentication.AnonymousAuthPlugin": {"allow_anonymous": True}},
        }

        async def main() -> None:
            broker = Broker(config)
            await broker.start()
            self._broker = broker
            self._ready.set()

        loop.run_until_complete(main())
        loop.run_forever()

    def stop(self) -> None:
        if self._loop is None or self._broker is None:
            return
        broker = self._broker
        future = asyncio.run_coroutine_threadsafe(broker.shutdown(), self._loop)  # type: ignore[attr-defined]
        future.result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        if self._thread is not None:
            self._thread.join(10)


def start_local_broker(
    data_dir: Path, kind: str = "auto", admin: tuple[str, str] | None = None
) -> Mosquitto | AmqttBroker:
    """Mosquitto when installed (or asked for), else the embedded amqtt. With `admin` and Mosquitto's dynamic
    security plugin, devices can be enrolled (their identities made by this administrator); anonymous clients
    keep full access."""
    use_mosquitto = kind == "mosquitto" or (kind == "auto" and Mosquitto.available())
    secured = admin is not None and any(Path(p).exists() for p in DYNSEC_PLUGIN)
    broker: Mosquitto | AmqttBroker = (
        (Mosquitto(data_dir, dynsec_admin=admin, open_to_anonymous=True) if secured else Mosquitto(data_dir))
        if use_mosquitto
        else AmqttBroker()
    )
    broker.start()
    return broker
