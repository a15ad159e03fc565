"""The storage interface the rest of the server sees."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from server.storage.points import Point


class TimeSeriesStore(Protocol):
    def write(self, points: Sequence[Point]) -> None:
        """Store the points durably (or hand them to something that will); same series and time overwrite."""

    def query(self, measurement: str, branch: str, since_ns: int, until_ns: int | None = None) -> list[Point]:
        """Points of one measurement and branch in a time range, oldest first."""

    def health(self) -> dict[str, object]:
        """Counters for /health: points written, pending, failed."""

    def close(self) -> None:
        """Flush what is buffered and release connections."""
