"""Payloads of the v1 contract.

Evolution rule (see docs/protocol.md): within v1 a change may only add optional fields or new enum values that
old servers can ignore; receivers ignore fields they do not know (`extra="ignore"`), and senders state the schema
revision they speak in `v`. Anything else is v2: a new topic root (`lobby/v2/...`) that servers subscribe to
beside v1 until every agent is upgraded.

Types are strict: "5" is not an occupancy, and a timestamp must carry its offset. Every field has a range:
numbers are finite and bounded, strings and lists have a length, timestamps lie between 2020 and 2100 (the
server also refuses those too far from its own clock: see `server/ingest/decode.py`), so that no single message
can overflow a store, a schedule or a sequence window downstream.
"""

from __future__ import annotations

from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated, Literal, cast

from pydantic import AfterValidator, AwareDatetime, BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

from lobbywatch.protocol.topics import Channel

SCHEMA_REVISION = 1

# An MQTT message larger than this is refused before parsing. The biggest legitimate payload is a facility
# report of a few dozen readings (~4 KiB); 16 KiB leaves room without letting one device bloat the ingest.
MAX_PAYLOAD_BYTES = 16 * 1024
MAX_SNAPSHOT_BYTES = 96 * 1024  # a JPEG of the camera's view, base64 (the broker's limit is 128 KiB)

Key = Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9_-]{0,31}$", description="a short lower-case identifier")]

# The widest a device clock may be taken at face value; the server narrows this to a window around its own clock.
EARLIEST = datetime(2020, 1, 1, tzinfo=UTC)
LATEST = datetime(2100, 1, 1, tzinfo=UTC)
# Sequence numbers: a device sending ten messages a second for a century stays below 2^35; 2^53 keeps every
# number exact in JSON readers that use doubles, and far inside SQLite's and InfluxDB's 64-bit integers.
MAX_SEQ = 2**53 - 1
MAX_COUNTER = 2**31 - 1  # depths, versions and counts reported by a device
MAX_READING = 1e9  # no sensor of a lobby reads beyond this in its unit (lux peaks near 1e5)


def _in_contract_years(moment: datetime) -> datetime:
    if not EARLIEST <= moment < LATEST:
        raise ValueError(f"timestamp {moment.isoformat()} is outside {EARLIEST.year}-{LATEST.year - 1}")
    return moment


Timestamp = Annotated[AwareDatetime, AfterValidator(_in_contract_years)]


class _Model(BaseModel):
    # allow_inf_nan=False: NaN and infinities are refused wherever a number is expected
    model_config = ConfigDict(strict=True, extra="ignore", frozen=True, allow_inf_nan=False)


class Envelope(_Model):
    """Fields every sequenced message carries."""

    v: int = Field(SCHEMA_REVISION, ge=1, le=1000, description="schema revision the sender speaks, within major v1")
    stream: str = Field(
        pattern=r"^[0-9a-f]{8,32}$",
        description="id of the device's outbox; a new one (a re-imaged SD card) restarts the sequence",
    )
    seq: int = Field(ge=1, le=MAX_SEQ, description="per-device sequence number; survives reboots; gap-free per stream")
    ts: Timestamp = Field(description="device clock when the message was made (RFC 3339 with offset)")
    uptime_s: float = Field(
        ge=0, le=1e10, description="seconds since the agent started; tells clock jumps from reboots"
    )


class ZoneCount(_Model):
    zone: Key = Field(description="zone key from the device config, e.g. 'queue'")
    occupancy: int | None = Field(
        ge=0, le=1000, description="people in the zone now; null when the camera cannot see (never a fake 0)"
    )
    error: float | None = Field(
        None, ge=0, le=1000, description="one standard error of the count, when the counter knows it"
    )


class QueueReport(Envelope):
    zones: list[ZoneCount] = Field(min_length=1, max_length=16)


class CallKind(StrEnum):
    ACCESSIBILITY = "accessibility"
    HELP = "help"
    PRIORITY = "priority"


class ButtonAction(StrEnum):
    PRESS = "press"
    ANSWERED = "answered"


class ButtonEvent(Envelope):
    button: Key = Field(description="button key from the device config")
    kind: CallKind
    action: ButtonAction = ButtonAction.PRESS


class SensorKind(StrEnum):
    TEMPERATURE = "temperature"
    HUMIDITY = "humidity"
    LIGHT = "light"
    DOOR = "door"
    EQUIPMENT = "equipment"
    CLOCK = "clock"
    CAMERA = "camera"
    BOARD_TEMPERATURE = "board_temperature"


class Reading(_Model):
    sensor: Key
    kind: SensorKind
    value: float | None = Field(ge=-MAX_READING, le=MAX_READING, description="null when the sensor could not be read")
    unit: str | None = Field(None, max_length=16)
    ok: bool = Field(description="false when the sensor or the thing it watches is faulty")
    detail: str | None = Field(None, max_length=200, description="why not ok, for the technician")


class FacilityReport(Envelope):
    readings: list[Reading] = Field(min_length=1, max_length=64)


class ZoneMethod(_Model):
    """How a zone is counted now. A string, not an enum: an older server shows a method it does not know by name
    instead of refusing the whole health report."""

    zone: Key
    method: Key = Field(
        description="'detector', 'area' (the foreground, where the detector misses people), 'regression' or "
        "'heads' (learnt from clicked heads)",
    )
    fitting: bool = Field(False, description="a head counter is being fitted from the technician's labels")


class Health(Envelope):
    cpu_pct: float = Field(ge=0, le=10_000, description="agent process CPU since the last report, % of one core")
    mem_rss_mb: float = Field(ge=0, le=1_000_000)
    outbox_depth: int = Field(
        ge=0, le=MAX_COUNTER, description="messages written but not yet acknowledged by the broker"
    )
    outbox_dropped: int = Field(
        0, ge=0, le=MAX_COUNTER, description="messages the outbox ever had to drop at its bounds (should stay 0)"
    )
    not_stored: int = Field(
        0,
        ge=0,
        le=MAX_COUNTER,
        description="messages the agent made but could not even store (a failing card) since it started",
    )
    clock_synced: bool | None = Field(description="NTP says synchronised; null when unknown")
    agent_version: str = Field(max_length=32)
    config_version: int | None = Field(None, ge=0, le=MAX_COUNTER)
    counting: list[ZoneMethod] = Field(
        default_factory=list, max_length=16, description="how each camera zone is counted; empty without a camera"
    )


class ConnectionState(StrEnum):
    ONLINE = "online"
    OFFLINE = "offline"


class Status(_Model):
    """Retained connection state; the `offline` form is the last will. Not sequenced: it describes the
    connection, and replaying an old one later would be wrong."""

    v: int = Field(SCHEMA_REVISION, ge=1, le=1000)
    state: ConnectionState
    since: Timestamp = Field(description="when this connection was made (for offline: when it was opened)")
    agent_version: str = Field(max_length=32)


# What a pushed config may replace: the sections that describe the lobby. Never who the device is or where it
# connects (device_id, broker, data_dir, gpio_factory): a wrong push must not cut a device off.
REMOTE_SECTIONS = frozenset({"camera", "buttons", "sensors", "reporting", "outbox", "locale"})


class ConfigPush(_Model):
    """Server -> device, retained: the device config the server wants the device to run."""

    v: int = Field(SCHEMA_REVISION, ge=1, le=1000)
    version: int = Field(ge=1, le=MAX_COUNTER)
    config: dict[str, object]


class Command(_Model):
    """Server -> device, not retained. `args` depend on the action (for `resend`: `ResendArgs`)."""

    v: int = Field(SCHEMA_REVISION, ge=1, le=1000)
    id: str = Field(max_length=64)
    action: Literal["resend", "identify", "restart", "indicate", "snapshot", "label"]
    args: dict[str, object] = Field(default_factory=dict)


# [first, last], both included. A list, not a tuple, so that it validates the same from JSON and from Python.
SeqRange = Annotated[list[Annotated[int, Field(ge=1, le=MAX_SEQ)]], Field(min_length=2, max_length=2)]


class ResendArgs(_Model):
    stream: str = Field(max_length=32, description="the stream the ranges belong to; another stream's history is gone")
    ranges: list[SeqRange] = Field(min_length=1, max_length=64, description="[first, last] sequence numbers")


class RidgeNumbers(_Model):
    mean: list[float] = Field(max_length=256)
    scale: list[float] = Field(max_length=256)
    weights: list[float] = Field(max_length=256)
    intercept: float
    residual_sd: float = Field(ge=0, description="the count's error bar, people")


class Calibration(_Model):
    """A zone's counting calibration as numbers, no image: the regression from crowd features to a count and the
    polygon and frame size it was fitted for. A device reports it when a technician's labels complete a fit; the
    server keeps it with the zone and hands it to a camera that replaces this one."""

    zone: Key
    polygon: list[Annotated[list[Annotated[int, Field(ge=0, le=8192)]], Field(min_length=2, max_length=2)]] = Field(
        min_length=3, max_length=64
    )
    frame_shape: list[Annotated[int, Field(ge=1, le=8192)]] = Field(
        min_length=2, max_length=2, description="[height, width] of the frames"
    )
    method: str = Field(max_length=32)
    model: RidgeNumbers
    frames: int = Field(ge=1, le=MAX_COUNTER, description="labelled frames it was fitted on")
    created: str = Field(max_length=40)
    ignore: (
        list[
            Annotated[
                list[Annotated[list[Annotated[int, Field(ge=0, le=8192)]], Field(min_length=2, max_length=2)]],
                Field(min_length=3, max_length=64),
            ]
        ]
        | None
    ) = Field(None, max_length=16, description="the areas to ignore it was fitted without (None: older)")


ReplyParam = Annotated[str, Field(max_length=200)] | int | float


class CommandReply(Envelope):
    """Device -> server: how a command or a pushed config went."""

    command: str = Field(max_length=64, description="the command's id, or 'config' for a pushed config")
    ok: bool
    detail: str | None = Field(None, max_length=1000, description="what went wrong, for the technician")
    code: str | None = Field(
        None,
        pattern=r"^[a-z_]{1,32}$",
        description="the outcome as a code a page translates (e.g. no_led); `detail` says it in English",
    )
    params: dict[Annotated[str, Field(pattern=r"^[a-z_]{1,32}$")], ReplyParam] = Field(
        default_factory=dict, max_length=8, description="the numbers and names the code's message shows"
    )
    resent: int = Field(0, ge=0, le=MAX_COUNTER, description="messages queued again for a resend")
    unavailable: list[SeqRange] = Field(
        default_factory=list, max_length=64, description="requested ranges no longer in the outbox history"
    )
    config_version: int | None = Field(
        None, ge=0, le=MAX_COUNTER, description="the config version the device runs after this"
    )
    calibration: Calibration | None = Field(
        None, description="a zone's new calibration, when a `label` completed a fit"
    )


class Snapshot(_Model):
    """Device -> server, asked for by a technician (the `snapshot` command): the camera's view, to draw zones
    and label counts on. Kept on the device for labelling; shown by the server, never stored there."""

    v: int = Field(SCHEMA_REVISION, ge=1, le=1000)
    id: str = Field(pattern=r"^[a-z0-9-]{1,64}$", description="the command's id; labels refer to it")
    ts: Timestamp
    width: int = Field(ge=1, le=4096, description="of the frame the zones are drawn on (the JPEG may be smaller)")
    height: int = Field(ge=1, le=4096)
    jpeg_b64: str = Field(max_length=MAX_SNAPSHOT_BYTES, description="the image, JPEG, base64")


DeviceMessage = QueueReport | ButtonEvent | FacilityReport | Health | CommandReply
Message = DeviceMessage | Status | ConfigPush | Command | Snapshot

MODELS: dict[Channel, type[_Model]] = {
    Channel.QUEUE: QueueReport,
    Channel.BUTTON: ButtonEvent,
    Channel.FACILITY: FacilityReport,
    Channel.HEALTH: Health,
    Channel.REPLY: CommandReply,
    Channel.STATUS: Status,
    Channel.CONFIG: ConfigPush,
    Channel.CMD: Command,
    Channel.SNAPSHOT: Snapshot,
}

_ADAPTERS = {channel: TypeAdapter(model) for channel, model in MODELS.items()}


class InvalidPayload(ValueError):
    """A payload refused, with a short machine cause (for counters) and a message naming the problem."""

    def __init__(self, cause: str, message: str) -> None:
        super().__init__(message)
        self.cause = cause


def parse_payload(channel: Channel, raw: bytes) -> Message:
    limit = MAX_SNAPSHOT_BYTES + 1024 if channel is Channel.SNAPSHOT else MAX_PAYLOAD_BYTES
    if len(raw) > limit:
        raise InvalidPayload("too_large", f"payload of {len(raw)} bytes exceeds {limit}")
    try:
        result = cast(Message, _ADAPTERS[channel].validate_json(raw))
    except ValidationError as exc:
        first = exc.errors(include_url=False)[0]
        if first["type"] == "json_invalid":
            raise InvalidPayload("not_json", f"payload is not JSON: {first['msg']}") from None
        where = ".".join(str(p) for p in first["loc"]) or "payload"
        more = f" (and {exc.error_count() - 1} more)" if exc.error_count() > 1 else ""
        raise InvalidPayload("invalid", f"{channel.value} field {where}: {first['msg']}{more}") from None
    return result


def encode(message: _Model) -> bytes:
    return message.model_dump_json(exclude_none=False).encode()


def utc_iso(moment: datetime) -> str:
    return moment.isoformat(timespec="milliseconds")
