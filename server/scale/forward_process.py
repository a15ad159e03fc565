"""The `lobbywatch forward` process: the MQTT source, the registry's device -> branch map and the forwarder,
wired together; stops on SIGTERM or SIGINT after acknowledging what it has published."""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Sequence

from server.ingest.mqtt_source import MqttSettings, MqttSource, Received
from server.provisioning.broker_admin import FORWARD_GROUP, BrokerRefused, BrokerUnreachable, admin_of
from server.registry.database import make_engine, make_sessions
from server.scale import heartbeat, jetstream, subjects
from server.scale.device_branches import DeviceBranches
from server.scale.forwarder import Forwarder, ForwardStats
from server.settings import Settings

log = logging.getLogger(__name__)


def mqtt_settings(settings: Settings, name: str) -> MqttSettings:
    return MqttSettings(
        host=settings.mqtt_host,
        port=settings.mqtt_port,
        # stable per forwarder: its persistent session keeps what the broker had given it when it died
        client_id=f"lobbywatch-forward-{name}",
        username=settings.mqtt_username,
        password=settings.mqtt_password.get_secret_value() if settings.mqtt_password else None,
        tls=settings.mqtt_tls,
        ca_file=settings.mqtt_ca_file,
        protocol="5",
        shared_group=FORWARD_GROUP,  # every forwarder is one member of this MQTT 5 shared subscription
    )


def ensure_identity(settings: Settings, mqtt: MqttSettings) -> None:
    """The forwarder's own broker identity (its shared subscription, nothing else), made where the settings name
    the broker's administrator; elsewhere it must exist already (docs/scale.md)."""
    admin = admin_of(settings)
    if admin is None or not mqtt.username or not mqtt.password:
        return
    try:
        admin.ensure_forwarder(mqtt.username, mqtt.password, mqtt.client_id)
    except (BrokerUnreachable, BrokerRefused) as exc:  # the MQTT source retries its connection and says so
        log.error("could not check the forwarder's broker identity: %s", exc)


async def forward(settings: Settings, name: str) -> ForwardStats:
    nc = await jetstream.connect(settings, f"lobbywatch-forward-{name}", "forwarder")
    await jetstream.await_stream(nc, jetstream.layout(settings))  # made by the workers
    branches = DeviceBranches(make_sessions(make_engine(settings.database_url)))
    source: MqttSource | None = None

    def ack(batch: Sequence[Received]) -> None:
        assert source is not None
        source.ack(batch)

    forwarder = Forwarder(nc, branches, ack)
    mqtt = mqtt_settings(settings, name)
    await asyncio.to_thread(ensure_identity, settings, mqtt)
    source = MqttSource(mqtt, forwarder.handoff)

    async def changed(_msg: object) -> None:
        branches.changed()

    await nc.subscribe(subjects.REGISTRY_CHANGED, cb=changed)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, forwarder.stop)
    source.start()
    log.info("forwarder %s: MQTT %s:%s -> NATS %s", name, settings.mqtt_host, settings.mqtt_port, settings.nats_url)
    stopping = asyncio.Event()
    alive = asyncio.create_task(
        heartbeat.beat(settings.heartbeat_file, lambda: source.connected.is_set() and nc.is_connected, stopping)
    )
    try:
        await forwarder.run()
    finally:
        stopping.set()
        await alive
        source.stop()
        await nc.drain()
    return forwarder.stats
