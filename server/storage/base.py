"""The storage interface the rest of the server sees."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from server.storage.points import Point


class RefusedPoints(ValueError):
    """The store will never take these points, whatever the retries (a number it cannot hold, a type conflict):
    the caller sets the message aside instead of holding the ingest for it. Any other exception from `write`
    is passing (disk full, database locked, server down) and worth retrying."""


class TimeSeriesStore(Protocol):
    def write(self, points: Sequence[Point]) -> None:
        """Store the points durably (or hand them to something that will); same series and time overwrite.
        All or nothing: on any error nothing of this call is kept. Raises RefusedPoints for content."""

    def query(self, measurement: str, branch: str, since_ns: int, until_ns: int | None = None) -> list[Point]:
        """Points of one measurement and branch in a time range, oldest first."""

    def health(self) -> dict[str, object]:
        """Counters for /health: points written, pending, failed."""

    def close(self) -> None:
        """Flush what is buffered and release connections."""
