"""A point of the line-protocol schema (docs/storage.md), and its serialisation to line protocol."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

FieldValue = float | int | bool | str

# Measurement names: the writer, the dashboards and the docs use these, and a test keeps them in step.
OCCUPANCY = "occupancy"
CALL = "call"
FACILITY = "facility"
DEVICE_HEALTH = "device_health"
DEVICE_STATUS = "device_status"

SCHEMA: dict[str, dict[str, tuple[tuple[str, ...], dict[str, type]]]] = {
    # measurement: (tag keys, {field: type})
    "v1": {
        OCCUPANCY: (("branch", "zone", "device"), {"occupancy": int, "error": float}),
        CALL: (("branch", "device", "button", "kind"), {"action": str, "count": int}),
        FACILITY: (("branch", "device", "sensor", "kind"), {"value": float, "ok": bool}),
        DEVICE_HEALTH: (
            ("branch", "device"),
            {"cpu_pct": float, "mem_rss_mb": float, "outbox_depth": int, "clock_skew_ms": float,
             "clock_synced": bool, "uptime_s": float},
        ),
        DEVICE_STATUS: (("branch", "device"), {"online": bool}),
    }
}


@dataclass(frozen=True, slots=True)
class Point:
    measurement: str
    tags: tuple[tuple[str, str], ...]  # sorted by key
    fields: Mapping[str, FieldValue]
    time_ns: int

    @staticmethod
    def make(measurement: str, tags: Mapping[str, str], fields: Mapping[str, FieldValue | None], time_ns: int) -> Point:
        return Point(
            measurement,
            tuple(sorted(tags.items())),
            {k: v for k, v in fields.items() if v is not None},
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
