"""Messages from the server to a device (commands, its pushed config), through whatever publishes to the broker:
the ingest's MQTT connection in one process; an API process of its own would bring its own."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping

from lobbywatch.protocol import Channel, Command, ConfigPush, Topic, encode

Publish = Callable[[str, bytes, bool], None]  # topic, payload, retain


class DeviceCommands:
    def __init__(self, publish: Publish) -> None:
        self._publish = publish

    def send(self, device: str, action: str, args: Mapping[str, object] | None = None) -> str:
        """Send a command (QoS 1; queued while the connection is down); returns its id, which its reply names."""
        command = Command(id=f"{action}-{uuid.uuid4().hex[:12]}", action=action, args=dict(args or {}))  # type: ignore[arg-type]
        self._publish(str(Topic(device, Channel.CMD)), encode(command), False)
        return command.id

    def push_config(self, device: str, push: ConfigPush) -> None:
        """Retained: the device applies it now or when it next connects."""
        self._publish(str(Topic(device, Channel.CONFIG)), encode(push), True)
