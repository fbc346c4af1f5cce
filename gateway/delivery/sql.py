"""Statement helpers the delivery queue's parts share: plain driver SQL, chunked ``IN`` lists, the
operators' selection of deliveries, and connections that only read.

The hot statements go to the driver as plain SQL (one executemany each): SQLAlchemy's per-row
parameter processing cost more than the database's work there. The SQL is the same on SQLite (3.24+)
and PostgreSQL but for the placeholder.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from gateway.delivery.tables import deliveries

__all__ = ["chunks", "cut", "driver_sql", "for_update", "reader_for", "select_in", "selecting"]


def driver_sql(conn: Connection, text: str) -> str:
    """``text`` with ``?`` placeholders, in the connection's driver's own style."""
    return text.replace("?", "%s") if conn.dialect.name == "postgresql" else text


def for_update(conn: Connection) -> str:
    """Row locks on PostgreSQL; on SQLite the writer's transaction holds the whole database."""
    return " FOR UPDATE" if conn.dialect.name == "postgresql" else ""


def chunks(items: list[Any], size: int = 500) -> Iterable[list[Any]]:
    """Slices of ``items`` short enough for one ``IN (…)`` list."""
    for start in range(0, len(items), size):
        yield items[start:start + size]


def select_in(conn: Connection, head: str, values: Iterable[Any], tail: str = "") -> Iterator[Any]:
    """The rows of ``{head} IN (…){tail}`` for ``values``, an ``IN`` list of ``chunks`` at a time
    (``head`` ends with the column, e.g. ``SELECT id, lease FROM flows WHERE id``)."""
    for chunk in chunks(list(values)):
        marks = ", ".join("?" for _ in chunk)
        yield from conn.exec_driver_sql(driver_sql(conn, f"{head} IN ({marks}){tail}"), tuple(chunk))


def cut(value: str | None, width: int) -> str | None:
    return value[:width] if value is not None else None


def selecting(query: Any, *, state: str | None = None, service: str | None = None,
              dossier: str | None = None, flagged: bool = False, ids: Iterable[str] = ()) -> Any:
    """``query`` narrowed to the deliveries an operator names (an empty criterion selects all)."""
    ids = list(ids)
    if ids:
        query = query.where(deliveries.c.id.in_(ids))
    if state:
        query = query.where(deliveries.c.state == state)
    if service:
        query = query.where(deliveries.c.service == service)
    if dossier:
        query = query.where(deliveries.c.dossier == dossier)
    if flagged:
        query = query.where(deliveries.c.flag.is_not(None))
    return query


def reader_for(engine: Engine) -> Engine:
    """Connections for the views and the look for due work. On SQLite they read without
    ``BEGIN IMMEDIATE`` (in WAL mode a reader needs no lock) and cannot write, so the writer stays
    the only one that does; PostgreSQL's own engine reads without locking anything."""
    if engine.dialect.name == "postgresql":
        return engine
    reader = sa.create_engine(engine.url, connect_args={"timeout": 30, "check_same_thread": False})

    @sa.event.listens_for(reader, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.execute("PRAGMA busy_timeout=30000")
        dbapi_conn.execute("PRAGMA query_only=ON")

    return reader
