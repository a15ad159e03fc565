"""Alembic environment: the registry's migrations, run by `server.registry.database.migrate`."""

from __future__ import annotations

from alembic import context

from server.registry.models import Base

config = context.config
connection = config.attributes["connection"]
context.configure(connection=connection, target_metadata=Base.metadata, render_as_batch=True)
with context.begin_transaction():
    context.run_migrations()
