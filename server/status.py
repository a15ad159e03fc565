"""What the server says of its own ingest at one moment, as a frozen snapshot: the API's health and figures, the
demo's table and the benchmarks read this, never the ingest's objects (which may live in another process)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any


@dataclass(frozen=True, slots=True)
class ServerStatus:
    broker_connected: bool
    stalled_s: float  # the ingest has not advanced for this long with messages waiting (0: it moves)
    ingest_backlog: int
    ingest_backlog_peak: int
    in_flight: int
    alert_backlog: int
    received: int
    stored_points: int
    duplicates: int
    late: int
    missing: int
    resend_requests: int
    internal_errors: int
    store_refused: int
    last_store_error: str | None
    dead_letters_not_kept: int
    notifications_delivered: int
    notifications_failed: int
    refused: dict[str, int] = field(default_factory=dict)
    notifications_failed_by_channel: dict[str, int] = field(default_factory=dict)
    devices_online: int = 0
    devices_known: int = 0
    # store writes that went through: [(bucket bound in seconds, writes at or under it)], +Inf last; their sum
    store_seconds: tuple[list[tuple[float, int]], float] = ([], 0.0)
    lag_ms: dict[str, float | None] = field(default_factory=dict)
    storage: dict[str, object] = field(default_factory=dict)
    last_registry_error: str | None = None  # while saving the ingest's state to the registry fails
    # an API process of the scale-out (`lobbywatch api`), which ingests nothing itself: None elsewhere
    nats_connected: bool | None = None
    workers_alive: int | None = None
    workers: dict[str, dict[str, object]] | None = None  # each live worker's own figures, by its name

    def reasons(self, stall_s: float) -> list[str]:
        """Why the server is not ingesting as it should, worst first (empty: it is)."""
        found = []
        if self.stalled_s >= stall_s:
            waiting = self.ingest_backlog + self.in_flight
            error = self.last_store_error or self.last_registry_error
            why = f": {error}" if error else ""
            found.append(f"ingest has not advanced for {self.stalled_s:.0f} s with {waiting} messages waiting{why}")
        elif self.last_store_error:
            found.append(f"storage is failing, retrying: {self.last_store_error}")
        elif self.last_registry_error:
            found.append(f"saving state to the registry is failing, retrying: {self.last_registry_error}")
        if not self.broker_connected:
            found.append("not connected to the MQTT broker")
        if self.nats_connected is False:
            found.append("not connected to the NATS cluster: the live state and acknowledged calls wait")
        elif self.workers_alive == 0:
            found.append("no worker is alive: nothing ingests, no rule runs")
        return found


# What a worker of the scale-out tells the API processes of its ingest, in its entry of the worker list; summed
# there, since an API process ingests nothing itself. The live state's device counts are the API process's own.
WORKER_COUNTERS = (
    "ingest_backlog",
    "in_flight",
    "alert_backlog",
    "received",
    "stored_points",
    "duplicates",
    "late",
    "resend_requests",
    "internal_errors",
    "store_refused",
    "dead_letters_not_kept",
    "notifications_delivered",
    "notifications_failed",
)


def worker_figures(status: ServerStatus) -> dict[str, object]:
    figures: dict[str, object] = {name: getattr(status, name) for name in WORKER_COUNTERS}
    figures.update(
        stalled_s=status.stalled_s,
        last_store_error=status.last_store_error,
        last_registry_error=status.last_registry_error,
    )
    return figures


def with_workers(status: ServerStatus, workers: Mapping[str, Mapping[str, Any]]) -> ServerStatus:
    """An API process's status with its workers' figures added: counters summed, the longest stall, an error
    any of them has; and each worker's own figures, by its name, to tell which one is in trouble."""

    def number(worker: Mapping[str, Any], name: str) -> float:
        value = worker.get(name)
        return value if isinstance(value, int | float) and not isinstance(value, bool) else 0

    def own(worker: Mapping[str, Any]) -> dict[str, Any]:
        # only the figures a worker writes, each of its type: an entry from another version shows what it has
        figures: dict[str, Any] = {name: int(number(worker, name)) for name in WORKER_COUNTERS}
        figures["stalled_s"] = float(number(worker, "stalled_s"))
        for name in ("last_store_error", "last_registry_error"):
            figures[name] = str(worker[name]) if worker.get(name) else None
        return figures

    each = {name: own(worker) for name, worker in sorted(workers.items())}

    def error(name: str) -> str | None:
        found: str | None = next((w[name] for w in each.values() if w[name]), getattr(status, name))
        return found

    return replace(
        status,
        **{name: getattr(status, name) + sum(w[name] for w in each.values()) for name in WORKER_COUNTERS},
        stalled_s=max([status.stalled_s, *(w["stalled_s"] for w in each.values())]),
        last_store_error=error("last_store_error"),
        last_registry_error=error("last_registry_error"),
        workers=dict(each),
    )
