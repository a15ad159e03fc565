"""paho's MQTT client, made cheaper per message for a server that receives thousands a second.

paho reads a packet with three `recv` calls (its type, its length, the rest) and waits in `select` before each
packet; it sends each acknowledgement as a packet of its own, waking its thread through a socket pair for each.
Under a flood, paho's `select`, `recv` and wake-up calls were about a seventh of the server's samples (py-spy of
`bench.ingest`; paho's thread in all, a third). This client reads what the socket has in one call and hands out
the packets from that, and queues a batch's acknowledgements as one write.

What paho then did for each message (the packet read a piece at a time through a dict of state, a `Properties`
object, an `MQTTMessage`, a debug log call, the callback lookup) was still about half the server's MQTT thread
and a fifth of all its samples under a flood. So with `deliver` set, the plain PUBLISH packets that lie whole in
what was read (QoS 0 or 1, no MQTT 5 properties: every device message) are cut out of it here and handed on
directly. Everything else (other packets, a packet the read cut short, one with properties, anything malformed)
is left to paho, in order, at a packet boundary.

These go through paho internals (`_sock_recv`, `_in_packet`, `_packet_queue`, `_last_bytes_received`), so the
dependency is pinned to the minor version they were read in (pyproject.toml), and tests/test_mqtt_client.py
runs them against a real Mosquitto.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Iterable
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import MQTTErrorCode

READ_CHUNK = 65536  # bytes asked of the socket at once: a few hundred queue reports
PUBACK = 0x40  # MQTT packet type, with its flags (none)
PUBLISH = 0x30  # MQTT packet type; its low four bits are flags (dup, QoS, retain)

# A plain PUBLISH handed on: topic, payload, packet identifier (0 at QoS 0), QoS.
Deliver = Callable[[str, bytes, int, int], None]


class BulkClient(mqtt.Client):
    """A paho `Client` that reads in bulk and acknowledges in batches (`ack_all`)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._read: bytes = b""  # what the socket gave and paho has not taken yet, from `_read_at` on
        self._read_at = 0
        self._read_from: object = None  # the socket it came from: a new connection starts afresh
        # with `manual_ack` (the cut sends no acknowledgement), plain PUBLISH packets go here, not to `on_message`
        self.deliver: Deliver | None = None

    def _sock_recv(self, bufsize: int) -> bytes:
        if self._spent():
            self._fill()
        start = self._read_at
        self._read_at = min(start + bufsize, len(self._read))
        return self._read[start : self._read_at]

    def loop_read(self, max_packets: int = 1) -> MQTTErrorCode:
        """Every packet the last read brought, not one per `select`: nothing is left in hand when the loop
        waits on the socket again (a packet cut short by the read is kept in paho's own state)."""
        while True:
            # at a packet boundary: paho holds no part of a packet
            if self._cutting() and self._in_packet["command"] == 0:
                self._deliver_whole()
            rc = super().loop_read(max_packets)
            if rc or self._spent():
                return rc

    def _cutting(self) -> bool:
        return self.deliver is not None and self._manual_ack and self._sock is not None

    def _spent(self) -> bool:
        """Nothing left of the last read for this connection."""
        return self._read_at >= len(self._read) or self._read_from is not self._sock

    def _fill(self) -> None:
        self._read = super()._sock_recv(READ_CHUNK)  # raises BlockingIOError when there is nothing
        self._read_at = 0
        self._read_from = self._sock

    def _deliver_whole(self) -> None:
        """Hand on the plain PUBLISH packets from `_read_at` on, up to the first that paho must read."""
        if self._spent():
            try:  # read here, so that the first packet of a read is cut out too, not left to paho
                self._fill()
            except OSError:  # nothing to read yet, or a broken connection: paho's own read meets it and judges it
                return
        deliver, buffer, at = self.deliver, self._read, self._read_at
        assert deliver is not None
        end = len(buffer)
        v5 = self._protocol == mqtt.MQTTv5
        handed = 0
        while at < end:
            packet = plain_publish(buffer, at, end, v5)
            if packet is None:
                break
            at, topic, payload, mid, qos = packet
            deliver(topic, payload, mid, qos)
            self._read_at = at  # after each: a callback that raises leaves its packet and the rest unread
            handed += 1
        if handed:
            with self._msgtime_mutex:
                self._last_bytes_received = mqtt.time_func()  # paho's keepalive clock

    def ack_all(self, mids: Iterable[int]) -> None:
        """Acknowledge QoS 1 messages received with `manual_ack`: one write for all of them."""
        packets = b"".join(struct.pack("!BBH", PUBACK, 2, mid) for mid in mids)
        if packets:
            self._packet_queue(PUBACK, packets, 0, 0)


def plain_publish(buffer: bytes, at: int, end: int, v5: bool) -> tuple[int, str, bytes, int, int] | None:
    """The PUBLISH packet at `at`, if it lies whole before `end` and is plain (QoS 0 or 1, no MQTT 5
    properties, a topic in UTF-8): where the next packet starts, topic, payload, packet identifier and QoS.
    None for anything else, which paho reads (and judges) as ever."""
    header = buffer[at]
    qos = (header >> 1) & 3
    sized = remaining_length(buffer, at + 1, end) if header & 0xF0 == PUBLISH and qos < 2 else None
    if sized is None:
        return None
    length, i = sized
    finish, topic_at = i + length, i + 2
    if finish > end or topic_at > finish:
        return None
    topic_end = topic_at + ((buffer[i] << 8) | buffer[i + 1])
    body = topic_end + 2 * qos  # after the packet identifier
    mid = (buffer[topic_end] << 8) | buffer[topic_end + 1] if qos and body <= finish else 0
    # MQTT 5: a properties length of zero, one byte; properties (a topic alias, say) are paho's to read
    if body + v5 > finish or (v5 and buffer[body] != 0) or topic_end == topic_at or (qos and mid == 0):
        return None
    try:
        topic = buffer[topic_at:topic_end].decode()
    except UnicodeDecodeError:
        return None
    return finish, topic, buffer[body + v5 : finish], mid, qos


def remaining_length(buffer: bytes, i: int, end: int) -> tuple[int, int] | None:
    """A packet's remaining length at `i` (up to four bytes, seven bits each) and where it ends; None when it
    runs past `end` or is too long."""
    length = 0
    for shift in (0, 7, 14, 21):
        if i >= end:
            return None
        byte = buffer[i]
        length |= (byte & 0x7F) << shift
        i += 1
        if not byte & 0x80:
            return length, i
    return None
