"""Saving the ingest's state when the registry fails: a real PostgreSQL deadlock with another writer is retried,
the batch goes through, nothing is lost and the ingest goes on (it once stopped for good on the first such
error)."""

from __future__ import annotations

import copy
import json
import logging
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from server.ingest.mqtt_source import Received
from server.registry import models
from server.runtime import Runtime
from server.settings import Settings
from tests.conftest import PG_ADMIN
from tests.helpers import Device, eventually, site, write_site


@pytest.fixture
def postgres() -> Iterator[tuple[str, str]]:
    """A PostgreSQL database of its own: (SQLAlchemy URL, psycopg URL)."""
    name = f"lw_fail_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(PG_ADMIN, autocommit=True) as admin:
        admin.execute(f"CREATE DATABASE {name}")
    yield f"postgresql+psycopg://postgres@127.0.0.1:5432/{name}", f"postgresql://postgres@127.0.0.1:5432/{name}"
    with psycopg.connect(PG_ADMIN, autocommit=True) as admin:
        admin.execute(f"DROP DATABASE {name} WITH (FORCE)")


def two_cameras() -> dict[str, object]:
    spec = copy.deepcopy(site())
    branch = spec["branches"][0]  # type: ignore[index]
    branch["devices"].append({"id": "dev-b1-cam2", "zones": [{"key": "queue2", "name": "窗口排队区二"}]})
    return spec


def waiting_for_a_lock(database: str) -> bool:
    with psycopg.connect(database, autocommit=True) as watcher:
        row = watcher.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'"
        ).fetchone()
    return bool(row and row[0])


def test_a_deadlock_while_saving_state_is_retried_and_the_batch_goes_through(
    tmp_path: Path, postgres: tuple[str, str], caplog: pytest.LogCaptureFixture
) -> None:
    url, database = postgres
    runtime = Runtime(
        Settings(
            mode="dev",
            database_url=url,
            site_file=write_site(tmp_path, two_cameras()),
            timeseries_path=tmp_path / "ts.sqlite3",
        )
    )
    cameras = {name: Device.offline(name) for name in ("dev-b1-cam", "dev-b1-cam2")}

    def report(name: str, zone: str, occupancy: int) -> Received:
        payload = cameras[name].envelope(zones=[{"zone": zone, "occupancy": occupancy}])
        return Received(f"lobby/v1/{name}/queue", json.dumps(payload).encode(), time.time(), 0, 1)

    rival = psycopg.connect(database)  # another writer, taking the device rows in the opposite order
    try:
        # its deadlock check comes long after ours, so PostgreSQL picks the ingest's transaction as the victim
        rival.execute("SET deadlock_timeout = '20s'")
        rival.execute("UPDATE devices SET agent_version = 'rival' WHERE id = 'dev-b1-cam2'")
        batch = [report("dev-b1-cam", "queue", 4), report("dev-b1-cam2", "queue2", 6)]
        caplog.set_level(logging.ERROR, logger="server.ingest.state_saver")
        ingest = threading.Thread(target=runtime.pipeline.process, args=(batch,))
        ingest.start()  # saves dev-b1-cam's row, then waits for dev-b1-cam2's
        eventually(lambda: waiting_for_a_lock(database), what="the ingest waiting for the rival's row")
        closing = threading.Thread(
            target=lambda: (
                rival.execute("UPDATE devices SET agent_version = 'rival' WHERE id = 'dev-b1-cam'"),
                rival.commit(),
            )
        )
        closing.start()  # the cycle: PostgreSQL aborts the ingest's transaction a second later
        closing.join(30)
        ingest.join(30)
        assert not ingest.is_alive(), "the batch never got through"
    finally:
        rival.close()
    stats = runtime.pipeline.stats
    assert stats.registry_failures >= 1
    assert stats.last_registry_error is None  # went through since
    assert "saving the batch's state failed (attempt 1), retrying" in caplog.text
    assert "deadlock detected" in caplog.text
    occupancies = sorted(int(p.fields["occupancy"]) for p in runtime.store.query("occupancy", "b1", 0))
    assert occupancies == [4, 6]
    with runtime.sessions() as session:  # the retry saved the same rows: each device's numbering up to seq 1
        saved = {d.id: d.sequence for d in session.query(models.Device).filter(models.Device.branch_id == "b1")}
    assert {name: (saved[name] or {}).get("highest") for name in cameras} == {"dev-b1-cam": 1, "dev-b1-cam2": 1}
    # and the ingest goes on: the next batch is saved at once
    runtime.pipeline.process([report("dev-b1-cam", "queue", 5)])
    with runtime.sessions() as session:
        assert (session.get(models.Device, "dev-b1-cam").sequence or {}).get("highest") == 2  # type: ignore[union-attr]
    runtime.store.close()
    runtime.engine.dispose()
