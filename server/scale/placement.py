"""Which worker a partition prefers: rendezvous (highest random weight) hashing over the live workers' names.
Each partition ranks every worker by a hash of (worker, partition) and prefers the first; a worker joining or
leaving moves only the partitions it wins or held, about 1/n of them. Pure."""

from __future__ import annotations

import hashlib
from collections.abc import Collection


def _weight(worker: str, partition: int) -> int:
    return int.from_bytes(hashlib.blake2b(f"{worker}/{partition}".encode(), digest_size=8).digest(), "big")


def preferred(partition: int, workers: Collection[str]) -> str | None:
    if not workers:
        return None
    return max(workers, key=lambda worker: (_weight(worker, partition), worker))


def preferred_partitions(worker: str, partitions: int, workers: Collection[str]) -> frozenset[int]:
    """The partitions `worker` should own while `workers` (itself among them) are alive."""
    everyone = {*workers, worker}
    return frozenset(p for p in range(partitions) if preferred(p, everyone) == worker)
