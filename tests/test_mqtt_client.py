"""The server's paho client, which reads in bulk, cuts plain PUBLISH packets out of what it read and acknowledges
in batches, on a real Mosquitto: every message arrives whole and in order whatever its size and whichever path
read it, a batch's acknowledgement reaches the broker (nothing comes back on the next session), and what was not
acknowledged does."""

from __future__ import annotations

import struct
import threading
import time

import paho.mqtt.client as mqtt
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from paho.mqtt._packet import decode_publish
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from lobby_sim.broker import Mosquitto
from server.ingest.mqtt_client import READ_CHUNK, BulkClient, plain_publish, remaining_length


class Subscriber:
    """A persistent MQTT 5 session that acknowledges by hand; `cut`: plain PUBLISH packets through `deliver`."""

    def __init__(self, port: int, cut: bool = False) -> None:
        self.got: list[tuple[str, bytes, int]] = []
        self.qos: list[int] = []
        self.by_paho = 0  # messages paho read, not cut out
        self.arrived = threading.Condition()
        self.client = BulkClient(
            CallbackAPIVersion.VERSION2, client_id="bulk-sub", protocol=mqtt.MQTTv5, manual_ack=True
        )
        self.client.on_message = self._on_message
        if cut:
            self.client.deliver = self._deliver
        self.client.on_connect = lambda c, _u, _f, _r, _p: c.subscribe("bulk/#", qos=1)
        properties = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
        properties.SessionExpiryInterval = 600
        self.client.connect("127.0.0.1", port, clean_start=False, properties=properties)
        self.client.loop_start()

    def _on_message(self, _c: mqtt.Client, _u: object, message: mqtt.MQTTMessage) -> None:
        self.by_paho += 1
        self._deliver(message.topic, bytes(message.payload), message.mid, message.qos)

    def _deliver(self, topic: str, payload: bytes, mid: int, qos: int) -> None:
        with self.arrived:
            self.got.append((topic, payload, mid))
            self.qos.append(qos)
            self.arrived.notify_all()

    def wait_for(self, n: int, timeout: float = 30.0) -> None:
        with self.arrived:
            assert self.arrived.wait_for(lambda: len(self.got) >= n, timeout), f"{len(self.got)} of {n} arrived"

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def topic(i: int) -> str:
    return f"bulk/{i % 7}" if i % 11 else "bulk/大厅"


def payload(i: int) -> bytes:
    """Mostly small, like queue reports; every 500th larger than one read, so that it spans several."""
    size = READ_CHUNK * 3 + 17 if i % 500 == 250 else 40 + i % 300
    return (f"{i:06d}:".encode() * (size // 7 + 1))[:size]


def with_property(i: int) -> Properties | None:
    """Every 40th message carries an MQTT 5 property: not plain, so paho reads it."""
    if i % 40 != 3:
        return None
    properties = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
    properties.UserProperty = ("n", str(i))
    return properties


@pytest.mark.parametrize("cut", [False, True], ids=["paho", "cut"])
def test_messages_arrive_whole_and_in_order_and_a_batch_ack_reaches_the_broker(mosquitto: Mosquitto, cut: bool) -> None:
    publisher = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="bulk-pub", protocol=mqtt.MQTTv5)
    publisher.connect("127.0.0.1", mosquitto.port)
    publisher.loop_start()
    subscriber = Subscriber(mosquitto.port, cut)
    time.sleep(0.5)  # subscribed
    n = 3000
    # QoS 0 and 1 mixed, and a topic in Chinese: UTF-8 of more bytes than characters
    infos = [
        publisher.publish(topic(i), payload(i), qos=0 if i % 9 == 0 else 1, properties=with_property(i))
        for i in range(n)
    ]
    for info in infos:
        info.wait_for_publish(30)
    subscriber.wait_for(n)
    # in order within each QoS (the publisher sends QoS 0 at once, QoS 1 as its window allows)
    for qos in (0, 1):
        got = [(t, body) for (t, body, _mid), q in zip(subscriber.got, subscriber.qos, strict=True) if q == qos]
        assert got == [(topic(i), payload(i)) for i in range(n) if (i % 9 != 0) == qos]
    with_properties = len([i for i in range(n) if with_property(i)])
    # cut: paho read those with properties, and the first of a read (if any) that came while it held part of one
    assert subscriber.by_paho == n if not cut else with_properties <= subscriber.by_paho < n // 4
    # the QoS 1 messages acknowledged in batches, all but the last 100; then a new connection of the same session
    acknowledged = [m for m, q in zip(subscriber.got, subscriber.qos, strict=True) if q == 1]
    unacknowledged = [body for _t, body, _mid in acknowledged[-100:]]
    del acknowledged[-100:]
    for start in range(0, len(acknowledged), 400):
        subscriber.client.ack_all(mid for _t, _b, mid in acknowledged[start : start + 400])
    time.sleep(1.0)  # the acknowledgements written
    subscriber.close()
    again = Subscriber(mosquitto.port)
    again.wait_for(100)
    time.sleep(1.0)  # anything more the broker had would have come by now
    again.close()
    publisher.loop_stop()
    assert [body for _t, body, _mid in again.got] == unacknowledged


def test_mqtt_3_1_1_packets_are_cut_out_too(mosquitto: Mosquitto) -> None:
    """MQTT 3.1.1 (`mqtt_protocol` 3.1.1) has no properties byte in a PUBLISH: the cut must not take one."""
    got: list[tuple[str, bytes]] = []
    by_paho: list[bytes] = []

    def on_message(_c: mqtt.Client, _u: object, message: mqtt.MQTTMessage) -> None:
        by_paho.append(message.payload)
        got.append((message.topic, message.payload))

    subscriber = BulkClient(CallbackAPIVersion.VERSION2, client_id="bulk-311", protocol=mqtt.MQTTv311, manual_ack=True)
    subscriber.deliver = lambda t, body, _mid, _qos: got.append((t, body))
    subscriber.on_message = on_message
    subscriber.on_connect = lambda c, _u, _f, _r, _p: c.subscribe("bulk/#", qos=1)
    subscriber.connect("127.0.0.1", mosquitto.port)
    subscriber.loop_start()
    publisher = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="bulk-pub-311", protocol=mqtt.MQTTv311)
    publisher.connect("127.0.0.1", mosquitto.port)
    publisher.loop_start()
    time.sleep(0.5)  # subscribed
    n = 1000
    for info in [publisher.publish(topic(i), payload(i), qos=1) for i in range(n)]:
        info.wait_for_publish(30)
    deadline = time.monotonic() + 30
    while len(got) < n and time.monotonic() < deadline:
        time.sleep(0.05)
    for client in (publisher, subscriber):
        client.disconnect()
        client.loop_stop()
    assert got == [(topic(i), payload(i)) for i in range(n)]
    assert len(by_paho) < n // 4  # those a read cut short


def publish_packet(topic: bytes, payload: bytes, qos: int, mid: int, v5: bool, properties: bytes = b"") -> bytes:
    """A PUBLISH packet as a broker writes it."""
    body = struct.pack("!H", len(topic)) + topic + (struct.pack("!H", mid) if qos else b"")
    if v5:
        body += bytes([len(properties)]) + properties
    body += payload
    length, size = b"", len(body)
    while True:
        byte, size = size & 0x7F, size >> 7
        length += bytes([byte | (0x80 if size else 0)])
        if not size:
            break
    return bytes([0x30 | qos << 1]) + length + body


@settings(max_examples=300, deadline=None)
@given(
    topic=st.text(min_size=1, max_size=40),
    payload=st.binary(max_size=300),
    qos=st.integers(0, 1),
    mid=st.integers(1, 65535),
    v5=st.booleans(),
    cut=st.integers(0, 400),
)
def test_a_plain_publish_is_read_as_paho_reads_it_and_a_cut_one_is_left_alone(
    topic: str, payload: bytes, qos: int, mid: int, v5: bool, cut: int
) -> None:
    packet = publish_packet(topic.encode(), payload, qos, mid, v5)
    buffer = b"\x40\x02\x00\x01" + packet + b"\xc0\x00"  # a PUBACK before it, a PINGREQ after
    got = plain_publish(buffer, 4, len(buffer), v5)
    assert got is not None
    assert got == (4 + len(packet), topic, payload, mid if qos else 0, qos)
    sized = remaining_length(packet, 1, len(packet))
    assert sized is not None
    protocol = MQTTProtocolVersion.MQTTv5 if v5 else MQTTProtocolVersion.MQTTv311
    paho = decode_publish(packet[0], packet[sized[1] :], protocol)
    assert (paho.topic.decode(), bytes(paho.payload), paho.mid, paho.qos) == got[1:]
    # what a read cut short holds is paho's to finish
    end = 4 + min(cut, len(packet) - 1)
    assert plain_publish(buffer, 4, end, v5) is None
    assert plain_publish(buffer, 0, len(buffer), v5) is None  # a PUBACK is paho's


@settings(max_examples=500, deadline=None)
@given(noise=st.binary(min_size=1, max_size=64), v5=st.booleans())
def test_no_bytes_make_the_cut_raise_or_read_past_its_end(noise: bytes, v5: bool) -> None:
    got = plain_publish(noise, 0, len(noise), v5)
    if got is not None:
        finish, topic, payload, mid, qos = got
        assert finish <= len(noise)
        assert topic
        assert len(payload) <= len(noise)
        assert qos in (0, 1)
        assert mid > 0 or qos == 0


def test_a_publish_with_properties_is_left_to_paho() -> None:
    packet = publish_packet(b"bulk/1", b"x", 1, 7, True, properties=b"\x23\x00\x05")  # a topic alias
    assert plain_publish(packet, 0, len(packet), True) is None
