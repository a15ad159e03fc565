"""The stateless first step of the ingest: a received MQTT message to (device, message), or refused.

A refusal is counted by cause (`Rejects`) and set aside as a dead letter with its raw payload (camera images are
never kept). Nothing here holds state of its own: the registry's site read model says which devices exist.
"""

from __future__ import annotations

from lobbywatch.protocol import Channel, DeviceMessage, InvalidPayload, InvalidTopic, Message, Topic, parse_payload
from server.ingest.dead_letters import DeadLetters
from server.ingest.mqtt_source import Received
from server.ingest.rejects import Rejects
from server.registry.directory import DeviceEntry, Directory

# Device timestamps are taken within this window of the server's clock. The past reaches back past the
# outbox's longest keep (30 days by default) so that a device cut off for weeks still delivers; the future
# allows a clock that is off but not broken. Outside it a message is refused (and kept as a dead letter).
MAX_AGE_S = 35 * 86400.0
MAX_AHEAD_S = 3600.0


class Decoder:
    def __init__(
        self,
        directory: Directory,
        rejects: Rejects,
        dead_letters: DeadLetters,
        max_age_s: float = MAX_AGE_S,
        max_ahead_s: float = MAX_AHEAD_S,
    ) -> None:
        self.directory = directory
        self.rejects = rejects
        self.dead_letters = dead_letters
        self.window = (max_age_s, max_ahead_s)

    def refuse(self, cause: str, device: str | None, detail: str, received: Received) -> None:
        """Count the refusal and set the message aside with its raw payload."""
        self.rejects.refuse(cause, device or "?", detail)
        payload = received.payload
        if received.topic.endswith(f"/{Channel.SNAPSHOT.value}"):  # camera images are never kept on the server
            payload, detail = b"", f"{detail} [camera image not kept]"
        self.dead_letters.add(cause, device, received.topic, detail, payload)

    def decode(self, received: Received) -> tuple[DeviceEntry, Message] | None:
        """The sending device and the message; None when refused (counted and set aside)."""
        try:
            topic = Topic.parse(received.topic)
        except InvalidTopic as exc:
            self.refuse("bad_topic", None, str(exc), received)
            return None
        device = self.directory.devices.get(topic.device)
        if device is None:
            self.refuse("unknown_device", None, f"device {topic.device!r} is not in the registry", received)
            return None
        try:
            return device, parse_payload(topic.channel, received.payload)
        except InvalidPayload as exc:
            self.refuse(exc.cause, device.id, str(exc), received)
            return None

    def refused_skew(self, device: DeviceEntry, message: DeviceMessage, received: Received) -> float | None:
        """None when the device's timestamp lies within the window of the server's clock; else the message is
        refused (and set aside), and this returns how far off the device's clock is, in seconds."""
        skew_s = message.ts.timestamp() - received.received_at
        max_age_s, max_ahead_s = self.window
        if -max_age_s <= skew_s <= max_ahead_s:
            return None
        self.refuse(
            "ts_out_of_range",
            device.id,
            f"timestamp {message.ts.isoformat()} is {_span(skew_s)} "
            f"{'ahead of' if skew_s > 0 else 'behind'} the server's clock "
            f"(accepted: {_span(max_age_s)} behind to {_span(max_ahead_s)} ahead)",
            received,
        )
        return skew_s


def device_of(topic: str) -> str | None:
    parts = topic.split("/")
    return parts[2] if len(parts) == 4 else None


def _span(seconds: float) -> str:
    seconds = abs(seconds)
    if seconds >= 86400:
        return f"{seconds / 86400:.0f} d"
    return f"{seconds / 3600:.1f} h" if seconds >= 3600 else f"{seconds:.0f} s"
