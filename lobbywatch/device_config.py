"""The device config: what a device runs, validated strictly (an unknown key or a wrong type is an error naming
the field). Shared by the agent, which loads it from its YAML file, and the server, which pushes sections of it
(`REMOTE_SECTIONS`) and validates every push with this same model before storing or rendering it.

Every number is finite and bounded, so that a config that validates cannot crash the agent later.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from lobbywatch.protocol import REMOTE_SECTIONS, Calibration, CallKind, SensorKind, check_device_id
from lobbywatch.validation import Refused, problems, refuse

Key = Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9_-]{0,31}$")]
# A frame pixel; generous for any camera, small enough that no arithmetic on it overflows.
Coordinate = Annotated[int, Field(ge=-10_000, le=10_000)]
Point = tuple[Coordinate, Coordinate]


class SensorConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class BoardTemperatureConfig(SensorConfig):
    type: Literal["board_temperature"]
    key: Key = "board"
    zone: int = Field(0, ge=0, le=64, description="thermal zone number under /sys/class/thermal")
    max_c: float = Field(80.0, description="above this the board is reported not ok (the Pi throttles at 80-85)")


class SimulatedConfig(SensorConfig):
    type: Literal["simulated"]
    key: Key
    kind: SensorKind
    mean: float = Field(description="value the simulated reading wanders around")
    spread: float = Field(1.0, ge=0, description="how far it wanders")
    unit: str | None = None
    low: float | None = Field(None, description="below this the reading is reported not ok")
    high: float | None = Field(None, description="above this the reading is reported not ok")


class Ds18b20Config(SensorConfig):
    type: Literal["ds18b20"]
    key: Key
    address: str | None = Field(
        None, pattern=r"^28-[0-9a-f]{12}$", description="e.g. 28-0316a2790aff; default: the only probe on the bus"
    )
    low: float | None = Field(16.0, description="lobby too cold below this (°C)")
    high: float | None = Field(30.0, description="lobby too warm above this (°C)")


class ClimateConfig(SensorConfig):
    type: Literal["bme280", "sht3x"]
    key: Key
    temperature_low: float | None = Field(16.0, description="°C")
    temperature_high: float | None = Field(30.0, description="°C")
    humidity_low: float | None = Field(20.0, description="% relative humidity")
    humidity_high: float | None = Field(80.0, description="% relative humidity")


class Bh1750Config(SensorConfig):
    type: Literal["bh1750"]
    key: Key
    low: float | None = Field(300.0, description="lux; a service hall should be brighter during opening hours")


class DoorConfig(SensorConfig):
    type: Literal["door"]
    key: Key
    pin: int = Field(ge=0, le=27, description="BCM GPIO number; the contact connects the pin to ground when shut")


class EquipmentConfig(SensorConfig):
    type: Literal["equipment"]
    key: Key
    host: str | None = Field(None, description="TCP check: the machine's address")
    port: int | None = Field(None, ge=1, le=65535, description="TCP check: a port it listens on")
    url: str | None = Field(None, pattern=r"^https?://", description="HTTP check: a status page (2xx/3xx = up)")
    timeout_s: float = Field(3.0, gt=0, le=30)
    slow_ms: float | None = Field(None, gt=0, le=60_000, description="answers slower than this count as a problem")

    @model_validator(mode="after")
    def _one_check(self) -> EquipmentConfig:
        if (self.url is None) == (self.host is None or self.port is None):
            raise refuse("broker_url_or_host")
        return self


class ClockConfig(SensorConfig):
    type: Literal["clock"]
    key: Key = "clock"
    max_offset_ms: float = Field(500.0, gt=0, description="a clock further off than this is a problem")


AnySensorConfig = Annotated[
    BoardTemperatureConfig
    | SimulatedConfig
    | Ds18b20Config
    | ClimateConfig
    | Bh1750Config
    | DoorConfig
    | EquipmentConfig
    | ClockConfig,
    Field(discriminator="type"),
]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class BrokerConfig(_Strict):
    host: str = Field("127.0.0.1", description="MQTT broker host name or address")
    port: int = Field(8883, ge=1, le=65535, description="MQTT broker port (8883 = MQTT over TLS)")
    tls: bool = Field(True, description="connect over TLS; turn off only for a broker on this machine")
    ca_file: Path | None = Field(None, description="CA certificate that signed the broker's certificate")
    username: str | None = Field(None, description="MQTT user name; defaults to the device id")
    password_file: Path | None = Field(
        None, description="file holding the MQTT password (mode 0600); the password is never put in this file"
    )
    protocol: Literal["5", "3.1.1"] = Field(
        "5", description="MQTT version; 5 tells the agent when the broker refuses a message"
    )
    keepalive_s: int = Field(30, ge=5, le=600, description="MQTT keepalive; the broker sends the last will after 1.5x")
    reconnect_max_s: float = Field(
        120.0, ge=1, le=3600, description="longest wait between reconnect attempts (full-jitter exponential backoff)"
    )


class ZoneConfig(_Strict):
    key: Key = Field(description="zone key, reported with each count (e.g. 'queue', 'priority')")
    polygon: list[Point] = Field(min_length=3, description="zone outline in frame pixels, [[x, y], ...]")
    anchor: Literal["feet", "head"] = Field(
        "feet", description="point of a person that must lie in the zone: bottom-centre (feet) or top (head)"
    )
    calibration: Calibration | None = Field(
        None,
        description="set by the server: the calibration this zone had on the camera this one replaced; used "
        "(once the empty lobby is learnt) until this camera is calibrated itself",
    )


class CameraConfig(_Strict):
    source: str = Field(description="camera index ('0'), device path, stream URL, video file, or a folder of frames")
    fps: float = Field(
        1.0,
        gt=0,
        le=30,
        description="frames counted per second; one a second is what the product needs and what fits a Pi 4's budget",
    )
    zones: list[ZoneConfig] = Field(min_length=1, max_length=16)
    ignore: list[list[Point]] = Field(
        default_factory=list, description="polygons never counted (staff behind the counter)"
    )
    loop: bool = Field(False, description="play a video or frame folder again from the start at its end")
    learn_background_s: float = Field(
        3600.0,
        ge=1,
        le=86400,
        description="how long the agent watches the lobby for its quietest moments to learn the empty lobby, "
        "again and again: zones without a calibration count by the foreground where the detector clearly misses "
        "people, and a calibration carried from a replaced camera waits for the first",
    )

    @field_validator("zones")
    @classmethod
    def _unique_zone_keys(cls, zones: list[ZoneConfig]) -> list[ZoneConfig]:
        keys = [z.key for z in zones]
        if len(keys) != len(set(keys)):
            raise refuse("keys_unique", section="zones", keys=keys)
        return zones


class ButtonConfig(_Strict):
    key: Key
    kind: CallKind = Field(description="accessibility (bell at the ramp), help or priority")
    pin: int = Field(ge=0, le=27, description="BCM GPIO number; the button connects the pin to ground")
    bounce_ms: int = Field(50, ge=0, le=1000, description="contact bounce filtered by gpiozero")
    repeat_guard_s: float = Field(
        5.0, ge=0, le=3600, description="further presses within this time are the same call, not new ones"
    )
    answer_hold_s: float | None = Field(
        3.0, gt=0, le=60, description="staff holding the button this long answer the call at the button (null: off)"
    )
    answer_pin: int | None = Field(None, ge=0, le=27, description="a separate 'answered' button for staff")
    led_pin: int | None = Field(None, ge=0, le=27, description="LED that blinks 'help is coming' once acknowledged")


class ReportingConfig(_Strict):
    queue_keepalive_s: float = Field(10.0, gt=0, le=60, description="occupancy is sent at least this often")
    facility_interval_s: float = Field(60.0, gt=0, le=86400, description="facility readings are sent this often")
    health_interval_s: float = Field(30.0, gt=0, le=3600, description="device health is sent this often")
    smoothing_frames: int = Field(3, ge=1, le=31, description="median over this many frames before reporting")


class OutboxConfig(_Strict):
    history_rows: int = Field(
        100_000,
        ge=1000,
        le=100_000_000,
        description="acknowledged messages kept for resend requests before the oldest go",
    )
    max_mb: float = Field(
        256,
        ge=1,
        le=1_000_000,
        description="the outbox file never grows past this; history goes first, then the oldest unsent",
    )
    max_age_days: float = Field(
        30, gt=0, le=365, description="unsent messages older than this are dropped (and counted)"
    )


class DeviceConfig(_Strict):
    device_id: str = Field(description="the device's identity, also its MQTT user name")
    data_dir: Path = Field(Path("/var/lib/lobbywatch"), description="where the outbox and calibration live")
    locale: Literal["zh-CN", "en"] = Field("zh-CN", description="language of messages shown to the technician")
    broker: BrokerConfig = Field(default_factory=BrokerConfig)
    camera: CameraConfig | None = None
    buttons: list[ButtonConfig] = Field(default_factory=list)
    sensors: list[AnySensorConfig] = Field(default_factory=list)
    reporting: ReportingConfig = Field(default_factory=ReportingConfig)
    outbox: OutboxConfig = Field(default_factory=OutboxConfig)
    gpio_factory: Literal["auto", "mock"] = Field(
        "auto", description="'mock' drives buttons from software (tests, demos) instead of the Pi's pins"
    )

    @field_validator("device_id")
    @classmethod
    def _device_id(cls, value: str) -> str:
        return check_device_id(value)

    @model_validator(mode="after")
    def _unique_keys(self) -> DeviceConfig:
        for name, keys in (("buttons", [b.key for b in self.buttons]), ("sensors", [s.key for s in self.sensors])):
            if len(keys) != len(set(keys)):
                raise refuse("keys_unique", section=name, keys=keys)
        pins = [p for b in self.buttons for p in (b.pin, b.answer_pin, b.led_pin) if p is not None]
        if len(pins) != len(set(pins)):
            raise refuse("gpio_shared", pins=pins)
        return self

    @property
    def mqtt_username(self) -> str:
        return self.broker.username or self.device_id


class _Pushable(_Strict):
    """The sections a server may push, each validated as the device will."""

    camera: CameraConfig | None = None
    buttons: list[ButtonConfig] | None = None
    sensors: list[AnySensorConfig] | None = None
    reporting: ReportingConfig | None = None
    outbox: OutboxConfig | None = None
    locale: Literal["zh-CN", "en"] | None = None


def check_sections(sections: dict[str, Any]) -> dict[str, Any]:
    """Sections to push, validated with the device's own model; raises ValueError naming each problem.
    Returns them as JSON data (defaults not filled in: the device fills them)."""
    unknown = set(sections) - REMOTE_SECTIONS
    if unknown:
        allowed = ", ".join(sorted(REMOTE_SECTIONS))
        raise Refused("validation.sections_not_pushable", names=", ".join(sorted(unknown)), allowed=allowed)
    try:
        _Pushable.model_validate(sections)
    except ValidationError as exc:
        raise Refused("config.pushed_refused", problems(exc)) from None
    return sections
