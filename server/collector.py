"""Python's garbage collector, set for a long-running server under a flood of messages."""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager

# A batch of 2,000 queue reports makes tens of thousands of objects that live until the batch is stored (points,
# their fields, rows): with a young collection every 700 allocations (Python's default), many of them were
# scanned again and again and moved to the older generations. Every 20,000: a mean of 64.7 µs a message against
# 67.9 (`python -m bench.pipeline_cost --batch 2000 --batches 10 --repeat 3`, three runs of each in alternation;
# freezing alone had given more). Collection only finds cycles; other garbage goes at once.
YOUNG_THRESHOLD = 20_000


@contextmanager
def serving() -> Iterator[None]:
    """While the server runs: what was built at start (the app, the registry's models, the branches' state),
    which lives as long as the server, stays out of the collector's scans, and young collections are rarer."""
    before = gc.get_threshold()
    gc.freeze()
    gc.set_threshold(YOUNG_THRESHOLD, *before[1:])
    try:
        yield
    finally:
        gc.set_threshold(*before)
        gc.unfreeze()
