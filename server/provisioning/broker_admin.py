"""Device identities at the broker, through Mosquitto's dynamic security plugin: one client and one role per
device, allowed to publish only under its own topics and to read only its own config and commands. Changes
apply at once, without restarting the broker; deleting a client disconnects it.

Commands go as JSON to `$CONTROL/dynamic-security/v1`; answers come back on `.../response`, matched by
correlation data. This is the only module of the server besides the ingest that speaks MQTT.
"""

from __future__ import annotations

import json
import logging
import ssl
import threading
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from lobbywatch.protocol import Channel, Topic

log = logging.getLogger(__name__)

CONTROL = "$CONTROL/dynamic-security/v1"
TIMEOUT_S = 10.0


class BrokerUnreachable(RuntimeError):
    """The broker could not be reached, or did not answer; nothing was changed there."""


class BrokerRefused(RuntimeError):
    """The broker answered with an error; the message is its own."""


@dataclass(frozen=True, slots=True)
class AdminSettings:
    host: str
    port: int
    username: str
    password: str
    tls: bool = False
    ca_file: Path | None = None


def device_acls(device_id: str) -> list[dict[str, Any]]:
    """Publish under its own topics (status and its will included); read its own config and commands only."""
    own = str(Topic(device_id, Channel.QUEUE)).rsplit("/", 1)[0]
    readable = [str(Topic(device_id, Channel.CONFIG)), str(Topic(device_id, Channel.CMD))]
    acls: list[dict[str, Any]] = [{"acltype": "publishClientSend", "topic": f"{own}/#", "allow": True}]
    for topic in readable:
        acls += [{"acltype": "subscribeLiteral", "topic": topic, "allow": True},
                 {"acltype": "publishClientReceive", "topic": topic, "allow": True}]
    return acls


class BrokerAdmin:
    def __init__(self, settings: AdminSettings) -> None:
        self._settings = settings
        self._lock = threading.Lock()  # one conversation at a time

    def run(self, commands: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Send the commands, return the broker's responses in order; raise BrokerUnreachable if it is not there."""
        tagged = [{**c, "correlationData": uuid.uuid4().hex} for c in commands]
        answers: dict[str, dict[str, Any]] = {}
        done = threading.Event()
        subscribed = threading.Event()
        connected = threading.Event()
        refused: list[str] = []
        client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"lobbywatch-admin-{uuid.uuid4().hex[:8]}",
                             protocol=mqtt.MQTTv5)
        client.username_pw_set(self._settings.username, self._settings.password)
        if self._settings.tls:
            client.tls_set(ca_certs=str(self._settings.ca_file) if self._settings.ca_file else None,
                           tls_version=ssl.PROTOCOL_TLS_CLIENT)

        def on_connect(c: mqtt.Client, _u: object, _f: object, reason: Any, _p: object) -> None:
            if reason.is_failure:
                refused.append(str(reason))
            connected.set()

        def on_message(_c: mqtt.Client, _u: object, message: mqtt.MQTTMessage) -> None:
            for response in json.loads(message.payload).get("responses", []):
                answers[str(response.get("correlationData"))] = response
            if all(c["correlationData"] in answers for c in tagged):
                done.set()

        client.on_connect = on_connect
        client.on_message = on_message
        client.on_subscribe = lambda *_args: subscribed.set()
        with self._lock:
            try:
                client.connect(self._settings.host, self._settings.port, keepalive=30)
            except OSError as exc:
                raise BrokerUnreachable(f"cannot reach the broker at {self._settings.host}:{self._settings.port}: "
                                        f"{exc.strerror or exc}") from None
            client.loop_start()
            try:
                if not connected.wait(TIMEOUT_S) or refused:
                    why = refused[0] if refused else "no answer"
                    raise BrokerUnreachable(f"the broker refused the administrator: {why}")
                client.subscribe(f"{CONTROL}/response", qos=1)
                if not subscribed.wait(TIMEOUT_S):
                    raise BrokerUnreachable("the broker did not confirm the subscription to its control answers")
                client.publish(CONTROL, json.dumps({"commands": tagged}), qos=1)
                if not done.wait(TIMEOUT_S):
                    raise BrokerUnreachable("the broker did not answer the administration commands")
            finally:
                client.disconnect()
                client.loop_stop()
        return [answers[c["correlationData"]] for c in tagged]

    def _check(self, responses: list[dict[str, Any]], tolerated: tuple[str, ...] = ()) -> None:
        for response in responses:
            error = response.get("error")
            if error and not any(t in str(error) for t in tolerated):
                raise BrokerRefused(f"{response.get('command')}: {error}")

    def create_device(self, device_id: str, password: str) -> None:
        """The device's client and role; made again from scratch if they exist (a re-enrolled device)."""
        self._check(self.run([{"command": "deleteClient", "username": device_id},
                              {"command": "deleteRole", "rolename": device_id}]), tolerated=("not found",))
        self._check(self.run([
            {"command": "createRole", "rolename": device_id, "acls": device_acls(device_id)},
            {"command": "createClient", "username": device_id, "password": password,
             "roles": [{"rolename": device_id}]},
        ]))
        log.info("broker identity of %s created", device_id)

    def revoke_device(self, device_id: str) -> None:
        """Delete the client (the broker disconnects it at once) and its role."""
        self._check(self.run([{"command": "deleteClient", "username": device_id},
                              {"command": "deleteRole", "rolename": device_id}]), tolerated=("not found",))
        log.info("broker identity of %s revoked", device_id)

    def ensure_server(self, username: str, password: str) -> bool:
        """The ingest's own identity, made if it is missing (several ingest workers share it, so one that
        starts never disconnects the others): read every device's messages, write their config and commands.
        True when it was made now."""
        (found,) = self.run([{"command": "getClient", "username": username}])
        if not found.get("error"):
            return False
        acls = [{"acltype": "subscribePattern", "topic": "lobby/v1/#", "allow": True},
                {"acltype": "subscribePattern", "topic": "$share/+/lobby/v1/#", "allow": True},
                {"acltype": "publishClientSend", "topic": "lobby/v1/+/cmd", "allow": True},
                {"acltype": "publishClientSend", "topic": "lobby/v1/+/config", "allow": True}]
        self._check(self.run([{"command": "deleteRole", "rolename": username}]), tolerated=("not found",))
        self._check(self.run([
            {"command": "createRole", "rolename": username, "acls": acls},
            {"command": "createClient", "username": username, "password": password,
             "roles": [{"rolename": username}]},
        ]))
        log.info("broker identity of the server (%s) created", username)
        return True
