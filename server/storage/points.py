"""A point of the line-protocol schema (docs/storage.md), and its serialisation to line protocol."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

FieldValue = float | int | bool | str

# Measurement names: the writer, the dashboards and the docs use these, and a test keeps them in step.
OCCUPANCY = "occupancy"
CALL = "call"
FACILITY = "facility"
DEVICE_HEALTH = "device_health"
DEVICE_STATUS = "device_status"
WAIT = "wait"
ALERT = "alert"

# measurement: (tag keys, {field: type}). `branch_label` is the branch's name and id ("西城支局 (bj-xicheng-001)"),
# `region_label` its region's ("北京西城 (bj-xicheng)"), and
# `name` what people call the point's zone, button, sensor or device, in the branch's language: what the dashboards
# show (one value per key, so no more series; a renamed zone starts a new one). Yes/no values that
# dashboards average (InfluxQL cannot average booleans) are integers 0/1.
SCHEMA: dict[str, tuple[tuple[str, ...], dict[str, type]]] = {
    OCCUPANCY: (
        ("region", "region_label", "branch", "branch_label", "zone", "name", "device"),
        {"occupancy": int, "error": float, "known": bool, "threshold": float},
    ),
    WAIT: (
        ("region", "region_label", "branch", "branch_label", "zone", "name"),
        {
            "wait_min": float,
            "target_min": float,
            "under_target": int,
            "windows_open": int,
            "windows_needed": int,
            "service_min": float,
        },
    ),
    CALL: (
        ("region", "region_label", "branch", "branch_label", "device", "button", "name", "kind"),
        {"action": str, "count": int, "response_s": float},
    ),
    FACILITY: (
        ("region", "region_label", "branch", "branch_label", "device", "sensor", "name", "kind"),
        {"value": float, "ok": bool, "up": int},
    ),
    DEVICE_HEALTH: (
        ("region", "region_label", "branch", "branch_label", "device", "name"),
        {
            "cpu_pct": float,
            "mem_rss_mb": float,
            "outbox_depth": int,
            "clock_skew_ms": float,
            "clock_synced": bool,
            "uptime_s": float,
            "agent_version": str,
            "config_version": int,
        },
    ),
    DEVICE_STATUS: (
        ("region", "region_label", "branch", "branch_label", "device", "name"),
        {"online": bool, "up": int},
    ),
    ALERT: (
        ("region", "region_label", "branch", "branch_label", "rule", "severity"),
        {"change": str, "subject": str, "value": float},
    ),
}


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def epoch_ns(moment: datetime) -> int:
    """A point's time: exact to the microsecond a datetime holds (a float timestamp is not, in this century)."""
    return (moment - _EPOCH) // timedelta(microseconds=1) * 1000


@dataclass(frozen=True, slots=True)
class Point:
    measurement: str
    tags: tuple[tuple[str, str], ...]  # sorted by key
    fields: Mapping[str, FieldValue]
    time_ns: int

    @staticmethod
    def make(measurement: str, tags: Mapping[str, str], fields: Mapping[str, FieldValue | None], time_ns: int) -> Point:
        """A point, its fields in the schema's types: a field must keep one type in InfluxDB, and a rule's
        value of 9 and one of 9.5 would otherwise go out as 9i and 9.5, which InfluxDB refuses as a conflict."""
        types = SCHEMA[measurement][1] if measurement in SCHEMA else {}
        return Point(
            measurement,
            tuple(sorted(tags.items())),
            {
                k: float(v) if types.get(k) is float and isinstance(v, int) and not isinstance(v, bool) else v
                for k, v in fields.items()
                if v is not None
            },
            time_ns,
        )

    def tag(self, key: str) -> str | None:
        for k, v in self.tags:
            if k == key:
                return v
        return None

    @property
    def series(self) -> str:
        return ",".join(f"{k}={v}" for k, v in self.tags)

    def line(self) -> str:
        tags = "".join(f",{_escape_key(k)}={_escape_key(v)}" for k, v in self.tags if v != "")
        fields = ",".join(f"{_escape_key(k)}={_field(v)}" for k, v in self.fields.items())
        return f"{_escape_key(self.measurement)}{tags} {fields} {self.time_ns}"


def _escape_key(text: str) -> str:
    return text.replace("\\", "\\\\").replace(",", r"\,").replace("=", r"\=").replace(" ", r"\ ")


def _field(value: FieldValue) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return f"{value}i"
    if isinstance(value, float):
        return repr(value)
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
