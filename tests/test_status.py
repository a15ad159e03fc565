"""The server's status as an API process of the scale-out shows it: its workers' figures summed."""

from __future__ import annotations

import json
from dataclasses import replace

from server.status import WORKER_COUNTERS, ServerStatus, with_workers, worker_figures


def test_an_api_process_sums_its_workers_figures_and_names_their_trouble() -> None:
    """What each worker writes into its entry of the worker list, summed in the API process's status."""
    own = ServerStatus(
        **{name: 0 for name in WORKER_COUNTERS},
        broker_connected=True,
        stalled_s=0.0,
        ingest_backlog_peak=0,
        missing=3,  # the API process's own live state: never summed
        last_store_error=None,
    )
    first = worker_figures(replace(own, received=10, stored_points=20, stalled_s=0.0))
    second = worker_figures(replace(own, received=5, stalled_s=42.0, last_registry_error="deadlock detected"))
    older = {"alive": True}  # an entry without figures (an older worker): alive, nothing to add
    entries = {"w1": json.loads(json.dumps(first)), "w2": json.loads(json.dumps(second)), "w0": older}
    combined = with_workers(own, entries)
    assert (combined.received, combined.stored_points, combined.missing) == (15, 20, 3)
    assert combined.stalled_s == 42.0
    assert combined.last_registry_error == "deadlock detected"
    assert any("deadlock detected" in reason for reason in combined.reasons(stall_s=30))
    # each worker's own figures, by name, to tell which one is in trouble
    assert combined.workers is not None
    assert list(combined.workers) == ["w0", "w1", "w2"]
    assert combined.workers["w1"]["received"] == 10
    assert combined.workers["w2"]["stalled_s"] == 42.0
    assert combined.workers["w2"]["last_registry_error"] == "deadlock detected"
    assert combined.workers["w1"]["last_registry_error"] is None
    assert combined.workers["w0"]["received"] == 0  # an older worker's entry: alive, no figures
    garbled = with_workers(own, {"w3": {"received": "many", "stalled_s": True}})  # another version's entry
    assert garbled.workers == {
        "w3": {
            **dict.fromkeys(WORKER_COUNTERS, 0),
            "stalled_s": 0.0,
            "last_store_error": None,
            "last_registry_error": None,
        }
    }
