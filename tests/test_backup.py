"""Backups, restored end to end: an enrolled device and a person, the registry and Mosquitto's dynamic security
file lost, both restored by the command an operator types; the device connects again with the identity it was
given, against a real Mosquitto with its dynamic security plugin. And the rows across SQLite and PostgreSQL."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import psycopg
import pytest
from sqlalchemy import select

from lobby_sim.broker import Mosquitto
from server.backup import archive
from server.registry import audit, models
from server.registry.database import make_engine, make_sessions
from server.registry.users import add_user, authenticate
from tests.conftest import PG_ADMIN
from tests.helpers import PASSWORD, eventually, start_runtime
from tests.test_provisioning import ADMIN, SERVER, DeviceClient, Secured, identity, queue_report


def lobbywatch(*args: str, database: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "LANG": "zh_CN.UTF-8", "LOBBYWATCH_MODE": "dev", "LOBBYWATCH_DATABASE_URL": database}
    return subprocess.run(
        [sys.executable, "-m", "server.cli", *args], env=env, capture_output=True, text=True, check=False, timeout=120
    )


def test_a_lost_registry_and_broker_file_come_back_and_the_device_connects_again(tmp_path: Path) -> None:
    world = Secured(tmp_path)
    database = world.runtime.settings.database_url
    dynsec = tmp_path / "broker" / "dynamic-security.json"
    try:
        made = world.enrollment(profile="lobby-camera")
        assert world.enroll(made["uri"], "10000000abcd1234").returncode == 0
        with world.runtime.sessions() as session:
            add_user(session, "wang", "王芳", "duty_supervisor", PASSWORD, datetime.now(UTC), branches=["b1"])
        done = lobbywatch(
            "backup", "create", "--out", str(tmp_path / "backups"), "--dynsec-file", str(dynsec), database=database
        )
        assert done.returncode == 0, done.stderr
        assert "备份已写入" in done.stdout
    finally:
        world.stop()
    (folder,) = (tmp_path / "backups").iterdir()
    assert folder.stat().st_mode & 0o077 == 0  # password hashes: the owner's eyes only
    assert lobbywatch("backup", "verify", str(folder), database=database).returncode == 0

    # the disaster: the registry and the broker's identities are gone
    for lost in (*tmp_path.glob("registry.sqlite3*"), dynsec):
        lost.unlink()
    done = lobbywatch("backup", "restore", str(folder), "--dynsec-file", str(dynsec), database=database)
    assert done.returncode == 0, done.stderr
    assert "恢复" in done.stdout
    assert "启动（或重启）Mosquitto" in done.stdout

    broker = Mosquitto(tmp_path / "broker", dynsec_admin=ADMIN)
    broker.start()  # reads the restored file: no fresh administrator-only state
    runtime = start_runtime(
        tmp_path, broker.port, mqtt_username=SERVER[0], mqtt_password=SERVER[1],
        mqtt_admin_username=ADMIN[0], mqtt_admin_password=ADMIN[1],
    )  # fmt: skip
    try:
        device_id, password = identity(tmp_path / "etc" / "device.yaml")
        device = DeviceClient(broker.port, device_id, password)
        try:
            assert device.publish(f"lobby/v1/{device_id}/queue", queue_report(1, "queue2")) == "Success"
            eventually(lambda: runtime.store.query("occupancy", "b1", 0), what="the count stored after the restore")
        finally:
            device.close()
        with runtime.sessions() as session:
            assert authenticate(session, "wang", PASSWORD) is not None
            assert session.get(models.Device, device_id) is not None
            actions = session.scalars(select(models.AuditEntry.action).order_by(models.AuditEntry.id)).all()
            assert actions[:2] == ["enrollment.create", "enrollment.claim"]
    finally:
        runtime.stop()
        broker.stop()


def test_a_damaged_backup_or_a_full_database_is_refused_in_words(tmp_path: Path) -> None:
    database = f"sqlite:///{tmp_path / 'registry.sqlite3'}"
    engine = make_engine(database)
    with make_sessions(engine)() as session:
        add_user(session, "li", "李工", "technician", PASSWORD, datetime.now(UTC))
    engine.dispose()
    assert lobbywatch("backup", "create", "--out", str(tmp_path / "b"), database=database).returncode == 0
    (folder,) = (tmp_path / "b").iterdir()

    refused = lobbywatch("backup", "restore", str(folder), database=database)
    assert refused.returncode == 2
    assert "请恢复到新的空数据库，或加 --replace" in refused.stderr
    assert lobbywatch("backup", "restore", str(folder), "--replace", database=database).returncode == 0

    users = folder / "registry" / "users.jsonl"
    users.write_text(users.read_text().replace("李工", "王工"), encoding="utf-8")
    damaged = lobbywatch("backup", "verify", str(folder), database=database)
    assert damaged.returncode == 2
    assert f"{users} 在备份之后被改动过（SHA-256 不一致）" in damaged.stderr
    assert lobbywatch("backup", "restore", str(folder), "--replace", database=database).returncode == 2


@pytest.fixture
def postgres() -> Iterator[str]:
    name = f"lw_backup_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(PG_ADMIN, autocommit=True) as admin:
        admin.execute(f"CREATE DATABASE {name}")
    yield f"postgresql+psycopg://postgres@127.0.0.1:5432/{name}"
    with psycopg.connect(PG_ADMIN, autocommit=True) as admin:
        admin.execute(f"DROP DATABASE {name} WITH (FORCE)")


def rows_of(folder: Path) -> dict[str, list[dict[str, object]]]:
    def normal(value: object) -> object:  # the same instant, however the database spelled it
        if isinstance(value, str) and len(value) >= 19 and value[10] in "T " and value[4] == "-":
            try:
                moment = datetime.fromisoformat(value)
            except ValueError:
                return value
            return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).astimezone(UTC).isoformat()
        return value

    return {
        path.stem: [{k: normal(v) for k, v in json.loads(line).items()} for line in path.read_text().splitlines()]
        for path in sorted((folder / "registry").glob("*.jsonl"))
    }


def test_sqlite_rows_restore_into_postgresql_and_its_ids_go_on(tmp_path: Path, postgres: str) -> None:
    sqlite = make_engine(f"sqlite:///{tmp_path / 'registry.sqlite3'}")
    now = datetime.now(UTC)
    with make_sessions(sqlite)() as session:
        add_user(session, "li", "李工", "technician", PASSWORD, now)
        session.add(models.Region(id="r1", name="一区"))
        session.flush()  # the region first: the branch refers to it
        session.add(
            models.Branch(
                id="b1", name="阜成门支局", region_id="r1", timezone="Asia/Shanghai", settings={"hours": [1, "x"]}
            )
        )
        session.add(models.DeadLetter(at=now, device_id="d1", topic="lobby/v1/d1/queue", cause="not_json",
                                      detail="x", payload=b"\x00\xffnot json"))  # fmt: skip
        audit.record(session, now, "li", "test", "b1", "one")
        session.commit()
    first = archive.create(sqlite, tmp_path / "one", now, None)
    sqlite.dispose()

    target = make_engine(postgres, upgrade=False)
    archive.restore(target, first, now, None)
    again = archive.create(target, tmp_path / "two", now, None)
    assert rows_of(again) == rows_of(first)
    with make_sessions(target)() as session:  # new rows get ids after the restored ones
        audit.record(session, now, "li", "test", "b1", "two")
        session.commit()
        ids = session.scalars(select(models.AuditEntry.id).order_by(models.AuditEntry.id)).all()
        assert len(ids) == len(set(ids)) == len(rows_of(first)["audit_log"]) + 1
        letter = session.scalars(select(models.DeadLetter)).one()
        assert letter.payload == b"\x00\xffnot json"
    target.dispose()
