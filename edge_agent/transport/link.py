"""The agent's MQTT connection: the one module on the edge that imports paho.

One thread owns the paho client: it connects (full-jitter backoff), publishes the outbox in sequence order with
a bounded window of unacknowledged messages, marks what the broker acknowledged, and hands server-to-device
messages on. paho's callbacks only record what happened; the loop acts on it. Nothing is published while
disconnected: after a reconnect the outbox is sent again from its oldest unacknowledged message, so a message can
arrive twice (the server drops duplicates by sequence number) but never not at all.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import sqlite3
import ssl
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from edge_agent.config import BrokerConfig
from edge_agent.transport.backoff import Backoff
from edge_agent.transport.outbox import Outbox
from lobbywatch.clock import Clock
from lobbywatch.protocol import Channel, ConnectionState, Status, Topic, encode

log = logging.getLogger(__name__)

# Unacknowledged messages in flight at once. Small, because a device sends little and a reconnect resends the
# whole window; large enough that a backlog after an outage drains at hundreds of messages a second.
WINDOW = 64
# A connection that has lasted this long is "stable": the next failure starts the backoff from the bottom again.
STABLE_AFTER_S = 60.0
LOOP_TIMEOUT_S = 0.05
STALL_S = 60.0  # a connected link whose loop has not turned for this long is hung: the watchdog stops feeding


@dataclass(frozen=True, slots=True)
class Inbound:
    channel: Channel
    payload: bytes


class MqttLink:
    def __init__(
        self,
        *,
        device_id: str,
        username: str,
        broker: BrokerConfig,
        outbox: Outbox,
        clock: Clock,
        agent_version: str,
        on_inbound: Callable[[Inbound], None],
        backoff: Backoff | None = None,
    ) -> None:
        self._device = device_id
        self._username = username
        self._broker = broker
        self._outbox = outbox
        self._clock = clock
        self._version = agent_version
        self._on_inbound = on_inbound
        self._backoff = backoff or Backoff(cap_s=broker.reconnect_max_s)
        self._stop = threading.Event()
        self.connected = threading.Event()
        self._rewind = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"mqtt-{device_id}", daemon=True)
        # filled by paho callbacks on the link thread, consumed by the same thread's loop
        self._acks: list[tuple[int, ReasonCode]] = []
        self._conn_result: ReasonCode | None = None
        self._lost = False
        self.refused = 0
        self.connect_failures = 0
        self.storage_errors = 0  # outbox reads and writes that failed; retried, never the end of the uplink
        self.session_errors = 0
        self.beat = clock.monotonic()  # the link's loop turned at this time (the watchdog looks)
        self._unsettled: list[int] = []  # acknowledged by the broker, not yet marked in the outbox
        # sent when connected, at most once and not through the outbox: a snapshot a technician asked for
        self._direct: queue.SimpleQueue[tuple[Channel, bytes]] = queue.SimpleQueue()

    # -- public ------------------------------------------------------------------------------------------
    def start(self) -> None:
        self._thread.start()

    def alive(self, now: float) -> bool:
        """The uplink's thread runs, and while connected its loop turns (waiting to reconnect is alive)."""
        if not self._thread.is_alive():
            return False
        return not self.connected.is_set() or now - self.beat <= STALL_S

    def send_direct(self, channel: Channel, payload: bytes) -> None:
        """Send once, now or at the next connection, never stored on the device: lost with the connection."""
        self._direct.put((channel, payload))

    def rewind(self) -> None:
        """Messages were queued again below what was sent: send the outbox from its start again."""
        self._rewind.set()

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        if self._thread.ident is not None:  # started
            self._thread.join(timeout)

    # -- the loop ----------------------------------------------------------------------------------------
    def _topic(self, channel: Channel) -> str:
        return str(Topic(self._device, channel))

    def _status(self, state: ConnectionState, since: datetime) -> bytes:
        return encode(Status(state=state, since=since, agent_version=self._version))

    def _new_client(self) -> mqtt.Client:
        v5 = self._broker.protocol == "5"
        client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=self._device,
            protocol=mqtt.MQTTv5 if v5 else mqtt.MQTTv311,
            clean_session=None if v5 else True,
        )
        password = None
        if self._broker.password_file is not None:
            password = self._broker.password_file.read_text(encoding="utf-8").strip()
        client.username_pw_set(self._username, password)
        if self._broker.tls:
            client.tls_set(ca_certs=str(self._broker.ca_file) if self._broker.ca_file else None)
        client.max_inflight_messages_set(WINDOW)
        client.max_queued_messages_set(WINDOW)
        since = self._clock.now()
        client.will_set(self._topic(Channel.STATUS), self._status(ConnectionState.OFFLINE, since), qos=1, retain=True)
        client.on_connect = self._cb_connect
        client.on_disconnect = self._cb_disconnect
        client.on_publish = self._cb_publish
        client.on_message = self._cb_message
        self._since = since
        return client

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                client = self._new_client()
                client.connect(self._broker.host, self._broker.port, self._broker.keepalive_s)
            except (OSError, ssl.SSLError, ValueError) as exc:
                self.connect_failures += 1
                log.warning("broker %s:%s unreachable: %s", self._broker.host, self._broker.port, exc)
                self._stop.wait(self._backoff.next_delay())
                continue
            try:
                stable = self._session(client)
            except Exception as exc:  # a bug or a storage error we did not foresee: never end the uplink
                self.session_errors += 1
                stable = False
                log.error("the uplink's session ended on an error, reconnecting: %s: %s", type(exc).__name__, exc)
                with contextlib.suppress(Exception):
                    client.disconnect()
            self.connected.clear()
            self.beat = self._clock.monotonic()
            if stable:
                self._backoff.reset()
            if not self._stop.is_set():
                self._stop.wait(self._backoff.next_delay())

    def _session(self, client: mqtt.Client) -> bool:
        """Run one connection until it ends; return whether it lasted long enough to count as stable."""
        self._conn_result, self._lost, self._acks = None, False, []
        inflight: dict[int, int] = {}  # mid -> seq
        last_sent = 0
        started = self._clock.monotonic()
        while not self._stop.is_set() and not self._lost:
            self.beat = self._clock.monotonic()
            if client.loop(timeout=LOOP_TIMEOUT_S) != MQTTErrorCode.MQTT_ERR_SUCCESS:
                break
            if self._conn_result is not None and not self.connected.is_set():
                if self._conn_result.is_failure:
                    self.connect_failures += 1
                    log.error("broker refused the connection: %s", self._conn_result)
                    client.disconnect()
                    return False
                self._on_connected(client)
            self._settle(inflight)
            if self._rewind.is_set():
                self._rewind.clear()
                last_sent = 0
            if self.connected.is_set():
                try:
                    last_sent = self._drain(client, inflight, last_sent)
                except sqlite3.Error as exc:  # the card failing: try again at the next turn
                    self._storage_error("read", exc)
                while not self._direct.empty():
                    channel, payload = self._direct.get_nowait()
                    client.publish(self._topic(channel), payload, qos=0)
        if self._stop.is_set() and self.connected.is_set():
            self._goodbye(client)
        return self._clock.monotonic() - started >= STABLE_AFTER_S

    def _on_connected(self, client: mqtt.Client) -> None:
        self.connected.set()
        log.info("connected to %s:%s", self._broker.host, self._broker.port)
        client.publish(self._topic(Channel.STATUS), self._status(ConnectionState.ONLINE, self._since), 1, True)
        client.subscribe([(self._topic(Channel.CONFIG), 1), (self._topic(Channel.CMD), 1)])

    def _settle(self, inflight: dict[int, int]) -> None:
        acked = self._unsettled
        for mid, reason in self._acks:
            seq = inflight.pop(mid, None)
            if seq is None:
                continue  # the status message, which is not in the outbox
            if reason.is_failure:
                self.refused += 1
                log.error("broker refused message %d: %s", seq, reason)
                try:
                    self._outbox.mark_refused(seq, str(reason))
                except sqlite3.Error as exc:
                    self._storage_error("write", exc)
            else:
                acked.append(seq)
        self._acks.clear()
        try:
            self._outbox.mark_acked(acked)
        except sqlite3.Error as exc:  # kept, and marked at the next turn; meanwhile nothing is lost
            self._storage_error("write", exc)
            self._unsettled = acked[-100_000:]
            return
        self._unsettled = []

    def _storage_error(self, what: str, exc: Exception) -> None:
        self.storage_errors += 1
        if self.storage_errors == 1 or self.storage_errors % 100 == 0:
            log.error("outbox %s failed (%d so far), the uplink goes on: %s", what, self.storage_errors, exc)

    def _drain(self, client: mqtt.Client, inflight: dict[int, int], last_sent: int) -> int:
        room = WINDOW - len(inflight)
        if room <= 0:
            return last_sent
        for item in self._outbox.pending(last_sent, room):
            info = client.publish(item.topic, item.payload, qos=1)
            if info.rc != MQTTErrorCode.MQTT_ERR_SUCCESS:
                break
            inflight[info.mid] = item.seq
            last_sent = item.seq
        return last_sent

    def _goodbye(self, client: mqtt.Client) -> None:
        info = client.publish(self._topic(Channel.STATUS), self._status(ConnectionState.OFFLINE, self._since), 1, True)
        # the connection may already be gone: then the broker sends the last will instead
        if info.rc == MQTTErrorCode.MQTT_ERR_SUCCESS:
            deadline = self._clock.monotonic() + 2.0
            while self._clock.monotonic() < deadline and not info.is_published():
                if client.loop(timeout=LOOP_TIMEOUT_S) != MQTTErrorCode.MQTT_ERR_SUCCESS:
                    break
        client.disconnect()
        client.loop(timeout=LOOP_TIMEOUT_S)

    # -- paho callbacks: record and return ---------------------------------------------------------------
    def _cb_connect(self, _c: mqtt.Client, _u: object, _f: object, reason: ReasonCode, _p: Properties | None) -> None:
        self._conn_result = reason

    def _cb_disconnect(
        self, _c: mqtt.Client, _u: object, _f: object, _reason: ReasonCode, _p: Properties | None
    ) -> None:
        self._lost = True

    def _cb_publish(self, _c: mqtt.Client, _u: object, mid: int, reason: ReasonCode, _p: Properties | None) -> None:
        self._acks.append((mid, reason))

    def _cb_message(self, _c: mqtt.Client, _u: object, message: mqtt.MQTTMessage) -> None:
        try:
            channel = Topic.parse(message.topic).channel
        except ValueError:
            return
        self._on_inbound(Inbound(channel, bytes(message.payload)))
