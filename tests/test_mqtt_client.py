"""The server's paho client, which reads in bulk and acknowledges in batches, on a real Mosquitto: every message
arrives whole and in order whatever its size, a batch's acknowledgement reaches the broker (nothing comes back on
the next session), and what was not acknowledged does."""

from __future__ import annotations

import threading
import time

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from lobby_sim.broker import Mosquitto
from server.ingest.mqtt_client import READ_CHUNK, BulkClient


class Subscriber:
    """A persistent MQTT 5 session that acknowledges by hand."""

    def __init__(self, port: int) -> None:
        self.got: list[tuple[str, bytes, int]] = []
        self.arrived = threading.Condition()
        self.client = BulkClient(
            CallbackAPIVersion.VERSION2, client_id="bulk-sub", protocol=mqtt.MQTTv5, manual_ack=True
        )
        self.client.on_message = self._on_message
        self.client.on_connect = lambda c, _u, _f, _r, _p: c.subscribe("bulk/#", qos=1)
        properties = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
        properties.SessionExpiryInterval = 600
        self.client.connect("127.0.0.1", port, clean_start=False, properties=properties)
        self.client.loop_start()

    def _on_message(self, _c: mqtt.Client, _u: object, message: mqtt.MQTTMessage) -> None:
        with self.arrived:
            self.got.append((message.topic, bytes(message.payload), message.mid))
            self.arrived.notify_all()

    def wait_for(self, n: int, timeout: float = 30.0) -> None:
        with self.arrived:
            assert self.arrived.wait_for(lambda: len(self.got) >= n, timeout), f"{len(self.got)} of {n} arrived"

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def payload(i: int) -> bytes:
    """Mostly small, like queue reports; every 500th larger than one read, so that it spans several."""
    size = READ_CHUNK * 3 + 17 if i % 500 == 250 else 40 + i % 300
    return (f"{i:06d}:".encode() * (size // 7 + 1))[:size]


def test_messages_arrive_whole_and_in_order_and_a_batch_ack_reaches_the_broker(mosquitto: Mosquitto) -> None:
    publisher = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="bulk-pub", protocol=mqtt.MQTTv5)
    publisher.connect("127.0.0.1", mosquitto.port)
    publisher.loop_start()
    subscriber = Subscriber(mosquitto.port)
    time.sleep(0.5)  # subscribed
    n = 3000
    infos = [publisher.publish(f"bulk/{i % 7}", payload(i), qos=1) for i in range(n)]
    for info in infos:
        info.wait_for_publish(30)
    subscriber.wait_for(n)
    assert [(topic, body) for topic, body, _mid in subscriber.got] == [(f"bulk/{i % 7}", payload(i)) for i in range(n)]
    # all but the last 100 acknowledged, in batches; then a new connection of the same session
    for start in range(0, n - 100, 400):
        subscriber.client.ack_all(mid for _t, _b, mid in subscriber.got[start : min(start + 400, n - 100)])
    time.sleep(1.0)  # the acknowledgements written
    subscriber.close()
    again = Subscriber(mosquitto.port)
    again.wait_for(100)
    time.sleep(1.0)  # anything more the broker had would have come by now
    again.close()
    publisher.loop_stop()
    assert [body for _t, body, _mid in again.got] == [payload(i) for i in range(n - 100, n)]
