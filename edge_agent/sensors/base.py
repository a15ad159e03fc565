"""What every sensor module shares: the config base, the driver protocol, where the hardware is found."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from lobbywatch.protocol import Reading, SensorKind


class Sensor(Protocol):
    key: str

    def read(self) -> list[Reading]:
        """Readings now. A sensor that cannot be read reports value None and ok False; it never raises."""


@dataclass(frozen=True)
class SensorEnv:
    """Where drivers find the hardware; tests point these at fake trees and mock pins."""

    sysfs_root: Path = Path("/sys")
    run_root: Path = Path("/run")
    seed: int | None = None
    pin_factory: Any = None  # gpiozero pin factory (None: the Pi's own pins)


def judged(
    sensor: str,
    kind: SensorKind,
    value: float | None,
    unit: str | None,
    low: float | None = None,
    high: float | None = None,
    problem: str | None = None,
) -> Reading:
    """A reading, ok unless it could not be read or is outside [low, high]."""
    if value is None:
        return Reading(sensor=sensor, kind=kind, value=None, unit=unit, ok=False, detail=(problem or "no value")[:200])
    if low is not None and value < low:
        return Reading(sensor=sensor, kind=kind, value=value, unit=unit, ok=False, detail=f"below {low:g}")
    if high is not None and value > high:
        return Reading(sensor=sensor, kind=kind, value=value, unit=unit, ok=False, detail=f"above {high:g}")
    return Reading(sensor=sensor, kind=kind, value=value, unit=unit, ok=True)


def read_number(path: Path) -> tuple[float | None, str | None]:
    """A number from a sysfs file, or None and why not."""
    try:
        return float(path.read_text().strip()), None
    except (OSError, ValueError) as exc:
        return None, f"cannot read {path}: {exc}"
