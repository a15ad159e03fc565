"""What the ingest saves of a branch's rule state with each batch: at once when a threshold, a call or a device's
presence moved (a crash must not lose it), and only every REFRESH_S when a count moved nothing but the presence
watch's times and the service learners (most counts, and most of the cost of saving)."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from pathlib import Path

from lobbywatch.clock import FakeClock
from server.ingest.mqtt_source import Received
from server.processing.branch import REFRESH_S
from server.registry import models
from server.runtime import Runtime
from server.settings import Settings
from tests.helpers import Device, site, write_site


def test_a_count_that_moves_no_rule_waits_for_the_refresh_and_a_crossing_is_saved_at_once(tmp_path: Path) -> None:
    clock = FakeClock(datetime.now(UTC).replace(second=0, microsecond=0))  # the counts within one minute
    runtime = Runtime(
        Settings(
            mode="dev",
            database_url=f"sqlite:///{tmp_path / 'registry.sqlite3'}",
            site_file=write_site(tmp_path, site({"threshold": 5, "for_s": 60, "clear_below": 2, "clear_for_s": 0})),
            timeseries_path=tmp_path / "ts.sqlite3",
        ),
        clock=clock,
    )
    camera = Device.offline("dev-b1-cam")

    def count(occupancy: int) -> datetime:
        """One report, processed as a batch of its own; when the rule state was last saved."""
        clock.advance(1)
        payload = camera.envelope(ts=clock.now().isoformat(), zones=[{"zone": "queue", "occupancy": occupancy}])
        runtime.pipeline.process(
            [Received("lobby/v1/dev-b1-cam/queue", json.dumps(payload).encode(), time.time(), 0, 1)]
        )
        with runtime.sessions() as session:
            saved = session.get(models.RuleState, "b1")
            assert saved is not None
            return saved.updated_at.replace(tzinfo=UTC)

    try:
        first = count(1)  # a branch's first save
        assert count(2) == first  # the presence time and the learner moved, no rule
        crossing = count(6)  # over the threshold: on its way to firing in 60 s
        assert crossing > first
        with runtime.sessions() as session:
            state = session.get(models.RuleState, "b1")
            assert state is not None
            assert state.state["thresholds"]["queue_too_long/queue"]["over_since"] is not None  # type: ignore[index]
        assert count(7) == crossing  # still over: nothing a restart needs moved
        clock.advance(REFRESH_S)
        assert count(7) > crossing  # the times and the learners, once a refresh is due (and the minute new)
    finally:
        runtime.store.close()
        runtime.engine.dispose()
