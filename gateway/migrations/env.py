"""Alembic environment: migrations run against the URL the gateway was configured with."""

from __future__ import annotations

from alembic import context

from gateway.storage.db import create_engine
from gateway.storage.tables import metadata

url = context.config.get_main_option("sqlalchemy.url")
assert url, "sqlalchemy.url must be set by gateway.storage.db.upgrade"
engine = create_engine(url)
with engine.connect() as connection:
    context.configure(connection=connection, target_metadata=metadata, render_as_batch=True)
    with context.begin_transaction():
        context.run_migrations()
engine.dispose()
