"""Device identities at the broker, through Mosquitto's dynamic security plugin: one client and one role per
device, allowed to publish only under its own topics and to read only its own config and commands. Changes
apply at once, without restarting the broker; deleting a client disconnects it.

Every client is bound to its client id (a device's is its device id, the server's its ingest client id), so no
one can connect under another's client id and take over its session. A client this module made is marked
(`textname`); it never deletes or changes a client that is not marked, whatever the name asked for.

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

from lobbywatch.protocol import Channel, Topic, check_device_id
from server.settings import Settings

log = logging.getLogger(__name__)

CONTROL = "$CONTROL/dynamic-security/v1"
TIMEOUT_S = 10.0
DEVICE_MARK = "lobbywatch device"
SERVER_MARK = "lobbywatch server"
FORWARDER_MARK = "lobbywatch forwarder"
FORWARD_GROUP = "lobbywatch-forward"  # the forwarders' MQTT 5 shared subscription
SERVER_ACLS = [
    {"acltype": "subscribePattern", "topic": "lobby/v1/#", "allow": True},
    {"acltype": "subscribePattern", "topic": "$share/+/lobby/v1/#", "allow": True},
    {"acltype": "publishClientSend", "topic": "lobby/v1/+/cmd", "allow": True},
    {"acltype": "publishClientSend", "topic": "lobby/v1/+/config", "allow": True},
]
FORWARDER_ACLS = [{"acltype": "subscribePattern", "topic": f"$share/{FORWARD_GROUP}/lobby/v1/#", "allow": True}]


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


def _check_id(device_id: str) -> None:
    try:
        check_device_id(device_id)
    except ValueError as exc:
        raise BrokerRefused(str(exc)) from None


def device_acls(device_id: str) -> list[dict[str, Any]]:
    """Publish under its own topics (status and its will included); read its own config and commands only."""
    own = str(Topic(device_id, Channel.QUEUE)).rsplit("/", 1)[0]
    readable = [str(Topic(device_id, Channel.CONFIG)), str(Topic(device_id, Channel.CMD))]
    acls: list[dict[str, Any]] = [{"acltype": "publishClientSend", "topic": f"{own}/#", "allow": True}]
    for topic in readable:
        acls += [
            {"acltype": "subscribeLiteral", "topic": topic, "allow": True},
            {"acltype": "publishClientReceive", "topic": topic, "allow": True},
        ]
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
        client = mqtt.Client(
            CallbackAPIVersion.VERSION2, client_id=f"lobbywatch-admin-{uuid.uuid4().hex[:8]}", protocol=mqtt.MQTTv5
        )
        client.username_pw_set(self._settings.username, self._settings.password)
        if self._settings.tls:
            client.tls_set(
                ca_certs=str(self._settings.ca_file) if self._settings.ca_file else None,
                tls_version=ssl.PROTOCOL_TLS_CLIENT,
            )

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
                raise BrokerUnreachable(
                    f"cannot reach the broker at {self._settings.host}:{self._settings.port}: {exc.strerror or exc}"
                ) from None
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

    def _existing(self, username: str) -> dict[str, Any] | None:
        """The broker's client of this name, or None."""
        (found,) = self.run([{"command": "getClient", "username": username}])
        if found.get("error"):
            return None
        client: dict[str, Any] = found.get("data", {}).get("client", {})
        return client

    @staticmethod
    def _ours(client: dict[str, Any], mark: str, username: str) -> bool:
        # a device made before clients were marked has exactly its own role
        roles = [r.get("rolename") for r in client.get("roles", [])]
        return client.get("textname") == mark or (mark == DEVICE_MARK and roles == [username])

    def create_device(self, device_id: str, password: str) -> None:
        """The device's client (bound to its device id as client id) and role. A device's own client that
        exists already (a re-enrolled device) gets the new password; any other client of that name is left
        alone and the creation refused."""
        _check_id(device_id)
        self._check(
            self.run([{"command": "createRole", "rolename": device_id, "acls": device_acls(device_id)}]),
            tolerated=("already exists",),
        )
        (made,) = self.run(
            [
                {
                    "command": "createClient",
                    "username": device_id,
                    "password": password,
                    "clientid": device_id,
                    "textname": DEVICE_MARK,
                    "roles": [{"rolename": device_id}],
                }
            ]
        )
        if made.get("error"):
            existing = self._existing(device_id)
            if existing is None or not self._ours(existing, DEVICE_MARK, device_id):
                raise BrokerRefused(
                    f"a broker client named {device_id!r} exists and is not a LobbyWatch device: "
                    "left as it is; choose another device id"
                )
            self._check(
                self.run(
                    [
                        {
                            "command": "modifyClient",
                            "username": device_id,
                            "password": password,
                            "clientid": device_id,
                            "textname": DEVICE_MARK,
                            "roles": [{"rolename": device_id}],
                        }
                    ]
                )
            )
        log.info("broker identity of %s created", device_id)

    def revoke_device(self, device_id: str) -> None:
        """Delete the device's client (the broker disconnects it at once) and its role; never a client that
        is not a device's."""
        _check_id(device_id)
        existing = self._existing(device_id)
        if existing is not None and not self._ours(existing, DEVICE_MARK, device_id):
            raise BrokerRefused(f"the broker client {device_id!r} is not a LobbyWatch device: not deleted")
        self._check(
            self.run(
                [{"command": "deleteClient", "username": device_id}, {"command": "deleteRole", "rolename": device_id}]
            ),
            tolerated=("not found",),
        )
        log.info("broker identity of %s revoked", device_id)

    def ensure_server(self, username: str, password: str, client_id: str) -> bool:
        """The ingest's own identity, made if it is missing: read every device's messages, write their config
        and commands; bound to the ingest's client id, so that nobody else can take over its persistent
        session (each ingest worker has a username of its own). True when it was made now."""
        return self._ensure(username, password, client_id, SERVER_ACLS, SERVER_MARK)

    def ensure_forwarder(self, username: str, password: str, client_id: str) -> bool:
        """A forwarder's own identity: a member of the forwarders' shared subscription to the devices'
        messages, and nothing else (it sends no commands and reads no other subscription's share)."""
        return self._ensure(username, password, client_id, FORWARDER_ACLS, FORWARDER_MARK)

    def _ensure(self, username: str, password: str, client_id: str, acls: list[dict[str, Any]], mark: str) -> bool:
        existing = self._existing(username)
        if existing is not None:
            if existing.get("clientid") != client_id:  # made before identities were bound, or a new client id
                if not self._ours(existing, mark, username) and existing.get("clientid"):
                    raise BrokerRefused(
                        f"the broker client {username!r} is bound to client id "
                        f"{existing.get('clientid')!r}, not {client_id!r}: not changed"
                    )
                self._check(
                    self.run(
                        [{"command": "modifyClient", "username": username, "clientid": client_id, "textname": mark}]
                    )
                )
                log.info("broker identity %s (%s) bound to client id %s", username, mark, client_id)
            return False
        self._check(self.run([{"command": "deleteRole", "rolename": username}]), tolerated=("not found",))
        self._check(
            self.run(
                [
                    {"command": "createRole", "rolename": username, "acls": acls},
                    {
                        "command": "createClient",
                        "username": username,
                        "password": password,
                        "clientid": client_id,
                        "textname": mark,
                        "roles": [{"rolename": username}],
                    },
                ]
            )
        )
        log.info("broker identity %s (%s) created", username, mark)
        return True


def admin_of(settings: Settings) -> BrokerAdmin | None:
    """The broker's administrator the settings name, or None where there is none (a broker without the plugin)."""
    if not settings.mqtt_admin_username or settings.mqtt_admin_password is None:
        return None
    return BrokerAdmin(
        AdminSettings(
            settings.mqtt_host,
            settings.mqtt_port,
            settings.mqtt_admin_username,
            settings.mqtt_admin_password.get_secret_value(),
            settings.mqtt_tls,
            settings.mqtt_ca_file,
        )
    )
