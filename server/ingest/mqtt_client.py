"""paho's MQTT client, made cheaper per message for a server that receives thousands a second.

paho reads a packet with three `recv` calls (its type, its length, the rest) and waits in `select` before each
packet; it sends each acknowledgement as a packet of its own, waking its thread through a socket pair for each.
Under a flood, paho's `select`, `recv` and wake-up calls were about a seventh of the server's samples (py-spy of
`bench.ingest`; paho's thread in all, a third). This client reads what the socket has in one call and hands out
the packets from that, and queues a batch's acknowledgements as one write. Both go through paho internals
(`_sock_recv`, `_packet_queue`), so the dependency is pinned to the minor version they were read in
(pyproject.toml), and tests/test_mqtt_client.py runs them against a real Mosquitto.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import MQTTErrorCode

READ_CHUNK = 65536  # bytes asked of the socket at once: a few hundred queue reports
PUBACK = 0x40  # MQTT packet type, with its flags (none)


class BulkClient(mqtt.Client):
    """A paho `Client` that reads in bulk and acknowledges in batches (`ack_all`)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._read: bytes = b""  # what the socket gave and paho has not taken yet, from `_read_at` on
        self._read_at = 0
        self._read_from: object = None  # the socket it came from: a new connection starts afresh

    def _sock_recv(self, bufsize: int) -> bytes:
        if self._read_at >= len(self._read) or self._read_from is not self._sock:
            self._read = super()._sock_recv(READ_CHUNK)  # raises BlockingIOError when there is nothing
            self._read_at = 0
            self._read_from = self._sock
        start = self._read_at
        self._read_at = min(start + bufsize, len(self._read))
        return self._read[start : self._read_at]

    def loop_read(self, max_packets: int = 1) -> MQTTErrorCode:
        """Every packet the last read brought, not one per `select`: nothing is left in hand when the loop
        waits on the socket again (a packet cut short by the read is kept in paho's own state)."""
        while True:
            rc = super().loop_read(max_packets)
            if rc or self._read_at >= len(self._read) or self._read_from is not self._sock:
                return rc

    def ack_all(self, mids: Iterable[int]) -> None:
        """Acknowledge QoS 1 messages received with `manual_ack`: one write for all of them."""
        packets = b"".join(struct.pack("!BBH", PUBACK, 2, mid) for mid in mids)
        if packets:
            self._packet_queue(PUBACK, packets, 0, 0)
