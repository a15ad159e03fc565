"""The server's MQTT connection: with the paho client it uses (`mqtt_client`), the one module of the ingest
that imports paho.

Messages are acknowledged by hand, after what they carry is stored (at-least-once from broker to storage):
a server that dies mid-batch gets the unacknowledged messages again from its persistent session. The paho
callback only wraps the message in a `Received` and hands it on.
"""

from __future__ import annotations

import logging
import ssl
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from lobbywatch.protocol import Channel, device_filter
from server.ingest.mqtt_client import BulkClient

log = logging.getLogger(__name__)

# Unacknowledged messages the broker may have in flight to us (MQTT 5 Receive Maximum). Acks come per stored
# batch, so this bounds the batch (twice the largest, `worker.MAX_BATCH`: the next fills while one is stored);
# below 65,535 so packet identifiers never wrap while unacknowledged.
RECEIVE_MAXIMUM = 20_000
# How long the broker keeps our session (and queues messages for it) while the server is down.
SESSION_EXPIRY_S = 3600
DEVICE_CHANNELS = (
    Channel.QUEUE,
    Channel.BUTTON,
    Channel.FACILITY,
    Channel.HEALTH,
    Channel.REPLY,
    Channel.STATUS,
    Channel.SNAPSHOT,
)


class Received(NamedTuple):
    """A message as it arrived. A tuple of plain values, which the garbage collector stops tracking: thousands
    wait in the ingest's queue under load, and tracked objects there made its collections slow."""

    topic: str
    payload: bytes
    received_at: float  # epoch seconds, server clock
    mid: int
    qos: int
    origin: Any = None  # where it came from when not from MQTT (a JetStream delivery), for its acknowledgement


@dataclass(frozen=True)
class MqttSettings:
    host: str
    port: int
    client_id: str
    username: str | None = None
    password: str | None = None
    tls: bool = False
    ca_file: Path | None = None
    protocol: str = "5"
    shared_group: str | None = None
    receive: bool = True  # False: a connection that only publishes (a scale-out worker's commands to devices)


class MqttSource:
    def __init__(self, settings: MqttSettings, handoff: Callable[[Received], None]) -> None:
        self._settings = settings
        self._handoff = handoff
        self._v5 = settings.protocol == "5"
        self.connected = threading.Event()
        self.connects = 0
        client = BulkClient(
            CallbackAPIVersion.VERSION2,
            client_id=settings.client_id,
            protocol=mqtt.MQTTv5 if self._v5 else mqtt.MQTTv311,
            clean_session=None if self._v5 else False,
            manual_ack=True,
        )
        if settings.username:
            client.username_pw_set(settings.username, settings.password)
        if settings.tls:
            client.tls_set(
                ca_certs=str(settings.ca_file) if settings.ca_file else None, tls_version=ssl.PROTOCOL_TLS_CLIENT
            )
        client.reconnect_delay_set(1, 30)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_message = self._on_message
        client.deliver = self._deliver
        client.on_subscribe = self._on_subscribe
        self._client = client

    def filters(self) -> list[str]:
        group = self._settings.shared_group
        prefix = f"$share/{group}/" if group and self._v5 else ""
        return [prefix + device_filter(channel) for channel in DEVICE_CHANNELS]

    def start(self) -> None:
        properties = None
        if self._v5:
            properties = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
            properties.SessionExpiryInterval = SESSION_EXPIRY_S
            properties.ReceiveMaximum = RECEIVE_MAXIMUM
        self._client.connect_async(
            self._settings.host,
            self._settings.port,
            keepalive=30,
            clean_start=False if self._v5 else mqtt.MQTT_CLEAN_START_FIRST_ONLY,
            properties=properties,
        )
        self._client.loop_start()

    def wait_connected(self, timeout: float) -> bool:
        return self.connected.wait(timeout)

    def ack(self, messages: Sequence[Received]) -> None:
        """Acknowledge to the broker (we subscribe at QoS 1, so no message needs more than a PUBACK)."""
        self._client.ack_all(message.mid for message in messages if message.qos == 1)

    def publish(self, topic: str, payload: bytes, retain: bool = False) -> None:
        """Server to device (config, commands), QoS 1; paho queues it while the connection is down."""
        self._client.publish(topic, payload, qos=1, retain=retain)

    def stop(self) -> None:
        self._client.disconnect()
        self._client.loop_stop()

    def _on_connect(
        self, client: mqtt.Client, _u: object, _f: object, reason: ReasonCode, _p: Properties | None
    ) -> None:
        if reason.is_failure:
            log.error("broker %s:%s refused the server: %s", self._settings.host, self._settings.port, reason)
            return
        self.connects += 1
        if not self._settings.receive:
            self.connected.set()
            return
        client.subscribe([(f, 1) for f in self.filters()])
        log.info("ingest connected to %s:%s", self._settings.host, self._settings.port)

    def _on_subscribe(
        self, _c: mqtt.Client, _u: object, _mid: int, reasons: list[ReasonCode], _p: Properties | None
    ) -> None:
        refused = [str(r) for r in reasons if r.is_failure]
        if refused:
            log.error(
                "broker %s:%s refused the server's subscriptions: %s",
                self._settings.host,
                self._settings.port,
                ", ".join(refused),
            )
            return
        # connected means receiving: until the broker has granted the subscriptions, a message sent on a new
        # session would not reach us
        self.connected.set()

    def _on_disconnect(
        self, _c: mqtt.Client, _u: object, _f: object, reason: ReasonCode, _p: Properties | None
    ) -> None:
        self.connected.clear()
        log.warning("ingest disconnected from broker: %s", reason)

    def _on_message(self, _c: mqtt.Client, _u: object, message: mqtt.MQTTMessage) -> None:
        self._handoff(Received(message.topic, bytes(message.payload), time.time(), message.mid, message.qos))

    def _deliver(self, topic: str, payload: bytes, mid: int, qos: int) -> None:
        """A plain PUBLISH, as the client cut it out of what it read (`BulkClient.deliver`)."""
        self._handoff(Received(topic, payload, time.time(), mid, qos))
