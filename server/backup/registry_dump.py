"""The registry as rows: written table by table as JSON lines inside one consistent read, and read back into an
empty database built at the schema revision the rows were taken at, then upgraded. Logical rows, not a file
copy, so that a backup of SQLite restores into PostgreSQL and the other way, and needs no pg_dump of the
server's exact version."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

from alembic import command
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Connection, Engine, MetaData, Table, func, inspect, select, text
from sqlalchemy.types import DateTime, LargeBinary

from lobbywatch.validation import Refused
from server.registry.database import alembic_config

BATCH = 1000
Progress = Callable[[str, int], None]  # table, rows so far


class RestoreRefused(Refused):
    """A restore that would lose data or cannot work; the message says what to do."""


def _encode(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, bytes):
        return base64.b64encode(value).decode()
    return value


def _decoder(table: Table) -> Callable[[dict[str, Any]], dict[str, Any]]:
    kinds = {c.name: c.type for c in table.columns}

    def decode(row: dict[str, Any]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for name, stored in row.items():
            kind = kinds.get(name)
            if kind is None:
                raise RestoreRefused("backup.error.unknown_column", table=table.name, column=name)
            if stored is not None and isinstance(kind, DateTime):
                out[name] = datetime.fromisoformat(stored)
            elif stored is not None and isinstance(kind, LargeBinary):
                out[name] = base64.b64decode(stored)
            else:
                out[name] = stored
        return out

    return decode


def _tables(connection: Connection) -> list[Table]:
    """The tables as the database has them, parents before children (the Alembic version table left out)."""
    metadata = MetaData()
    metadata.reflect(connection)
    return [t for t in metadata.sorted_tables if t.name != "alembic_version"]


def revision(connection: Connection) -> str | None:
    return MigrationContext.configure(connection).get_current_revision()


def dump(engine: Engine, folder: Path, progress: Progress | None = None) -> tuple[str, dict[str, int]]:
    """Every table to `<folder>/<table>.jsonl`; returns the schema revision and the rows per table."""
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    counts: dict[str, int] = {}
    options = {"isolation_level": "REPEATABLE READ"} if engine.dialect.name == "postgresql" else {}
    with engine.connect().execution_options(**options) as connection, connection.begin():
        found = revision(connection)
        if found is None:
            raise RestoreRefused("backup.error.no_schema")
        for table in _tables(connection):
            order = list(table.primary_key.columns) or list(table.columns)
            path = folder / f"{table.name}.jsonl"
            with path.open("w", encoding="utf-8") as out:
                count = 0
                for row in connection.execute(select(table).order_by(*order)).mappings():
                    out.write(json.dumps({k: _encode(v) for k, v in row.items()}, ensure_ascii=False) + "\n")
                    count += 1
                    if progress and count % BATCH == 0:
                        progress(table.name, count)
            counts[table.name] = count
            if progress:
                progress(table.name, count)
    return found, counts


def _rows(path: Path) -> Iterator[dict[str, Any]]:
    with path.open(encoding="utf-8") as lines:
        for line in lines:
            yield json.loads(line)


def restore(
    engine: Engine, folder: Path, at_revision: str, replace: bool = False, progress: Progress | None = None
) -> dict[str, int]:
    """Into an empty database (or, with `replace`, one emptied first): the schema at the backup's revision, its
    rows, then the newest schema. One transaction: a failure leaves the database as it was."""
    counts: dict[str, int] = {}
    with engine.begin() as connection:
        held = inspect(connection).get_table_names()
        if held and not replace:
            raise RestoreRefused("backup.error.not_empty", count=len(held))
        if held:
            existing = MetaData()
            existing.reflect(connection)
            existing.drop_all(connection)
        command.upgrade(alembic_config(connection), at_revision)
        for table in _tables(connection):
            path = folder / f"{table.name}.jsonl"
            if not path.exists():
                raise RestoreRefused("backup.error.incomplete", path=path)
            decode, batch, count = _decoder(table), [], 0
            for row in _rows(path):
                batch.append(decode(row))
                if len(batch) == BATCH:
                    connection.execute(table.insert(), batch)
                    count, batch = count + len(batch), []
                    if progress:
                        progress(table.name, count)
            if batch:
                connection.execute(table.insert(), batch)
                count += len(batch)
            counts[table.name] = count
            if progress:
                progress(table.name, count)
            if engine.dialect.name == "postgresql":
                _continue_sequences(connection, table)
        command.upgrade(alembic_config(connection), "head")
    return counts


def _continue_sequences(connection: Connection, table: Table) -> None:
    """Rows came with their ids: the next id a sequence gives must come after them."""
    for column in table.primary_key.columns:
        sequence = connection.execute(select(func.pg_get_serial_sequence(table.name, column.name))).scalar()
        if sequence is None:
            continue
        highest = connection.execute(select(func.max(column))).scalar()
        connection.execute(
            text("SELECT setval(CAST(:sequence AS regclass), :value, :called)"),
            {"sequence": sequence, "value": highest or 1, "called": highest is not None},
        )
