"""Schema migrations run once, however many gateway processes start together.

Every migration (``lienthong migrate``, a gateway's start with ``migrations.at_start: auto``, the
commands that open the database) runs under one lock per database:

- PostgreSQL: a session-level advisory lock (``pg_advisory_lock``) on a fixed key, held on a
  connection of its own while alembic migrates on another. The first process migrates; the others
  wait on the lock, then find the schema at head and do nothing. The server releases the lock when
  the holder's connection ends, a process killed mid-way included (PostgreSQL's DDL is
  transactional: its migration is rolled back, the next holder starts again).
- SQLite: an OS file lock (``flock``) on ``<database>-migrate.lock`` beside the database file.
  SQLite's own write lock would serialise the DDL too, but a waiter gives up after busy_timeout
  (30 s) and the batch migrations rebuild tables in several steps; the file lock waits as long as
  the migration takes. In-memory databases take no lock (one process by nature).

``migrations.at_start: wait`` makes a gateway never migrate: it waits until the schema is at head
(``wait_for_head``), for the Kubernetes Job that runs ``lienthong migrate``.
"""

from __future__ import annotations

import fcntl
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING

import sqlalchemy as sa
from sqlalchemy.pool import NullPool

from gateway.storage.db import MIGRATIONS, is_sqlite, sqlite_file

if TYPE_CHECKING:
    from alembic.config import Config as AlembicConfig

    from gateway.config import Config

__all__ = ["ADVISORY_KEY", "Migrated", "SchemaError", "head_revision", "migrate", "prepare_schema",
           "wait_for_head"]

# "LienThon" read as a big-endian 64-bit integer: a fixed key no other application is likely to use.
ADVISORY_KEY = int.from_bytes(b"LienThon", "big")
POLL_SECONDS = 0.5


class SchemaError(RuntimeError):
    """The schema is not where the gateway needs it; the message says what to do."""


@dataclass(frozen=True)
class Migrated:
    """What a migration found and left: revisions (None: an empty database)."""

    before: str | None
    after: str

    @property
    def changed(self) -> bool:
        return self.before != self.after


def _alembic(url: str) -> AlembicConfig:
    from alembic.config import Config as AlembicConfig

    cfg = AlembicConfig()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return cfg


def head_revision() -> str:
    """The newest migration this version of the gateway ships."""
    from alembic.script import ScriptDirectory

    cfg = _alembic("sqlite://")
    head = ScriptDirectory.from_config(cfg).get_current_head()
    if head is None:  # pragma: no cover - the package ships its migrations
        raise SchemaError(f"no migrations found in {MIGRATIONS}")
    return head


def current_revision(url: str) -> str | None:
    """The database's revision; None for a database never migrated (or not yet created)."""
    from alembic.runtime.migration import MigrationContext

    engine = sa.create_engine(url, poolclass=NullPool)
    try:
        with engine.connect() as conn:
            return MigrationContext.configure(conn).get_current_revision()
    finally:
        engine.dispose()


@contextmanager
def _lock(url: str) -> Iterator[None]:
    """The database's migration lock (see the module's docstring), held while the block runs."""
    if is_sqlite(url):
        database = sqlite_file(url)
        if database is None:
            yield
            return
        os.makedirs(os.path.dirname(os.path.abspath(database)), exist_ok=True)
        fd = os.open(f"{database}-migrate.lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)  # closing releases the lock
        return
    engine = sa.create_engine(url, poolclass=NullPool, isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as conn:
            conn.execute(sa.text("SELECT pg_advisory_lock(:key)"), {"key": ADVISORY_KEY})
            try:
                yield
            finally:
                conn.execute(sa.text("SELECT pg_advisory_unlock(:key)"), {"key": ADVISORY_KEY})
    finally:
        engine.dispose()


def migrate(url: str) -> Migrated:
    """Bring the schema to head under the migration lock; what it was and is."""
    from alembic import command

    with _lock(url):
        before = current_revision(url)
        head = head_revision()
        if before != head:
            command.upgrade(_alembic(url), "head")
    return Migrated(before, head)


def wait_for_head(url: str, timeout: float) -> str:
    """Wait until another process (``lienthong migrate``) has brought the schema to head; the head.
    SchemaError at once when the database is newer than this gateway, or after ``timeout``."""
    head = head_revision()
    deadline = time.monotonic() + timeout
    while True:
        current: str | None = None
        problem: str | None = None
        try:
            current = current_revision(url)
        except sa.exc.OperationalError as exc:  # the database not reachable yet: keep waiting
            problem = f"unreachable ({type(exc.orig).__name__})"
        if current == head:
            return head
        if current is not None and not _known(current):
            raise SchemaError(f"the database's schema is at revision {current}, which this version of "
                              f"the gateway does not know (its newest is {head}): run the gateway "
                              "version that migrated it, or a newer one")
        if time.monotonic() >= deadline:
            state = (f"the database is {problem}" if problem else
                     f"the database's schema is {f'at revision {current}' if current else 'empty'}")
            raise SchemaError(
                f"{state}, not at the newest schema {head}, after waiting {timeout:g} s "
                "(migrations.at_start: wait): run 'lienthong migrate --config FILE' (the Kubernetes "
                "Job in deploy/), raise migrations.wait_timeout, or set migrations.at_start: auto")
        time.sleep(POLL_SECONDS)


def _known(revision: str) -> bool:
    from alembic.script import ScriptDirectory
    from alembic.util import CommandError

    try:
        return ScriptDirectory.from_config(_alembic("sqlite://")).get_revision(revision) is not None
    except CommandError:
        return False


def prepare_schema(config: Config) -> str:
    """At a gateway's start: migrate (``at_start: auto``) or wait for the schema (``wait``); the
    head. SchemaError when it cannot be brought there."""
    url = config.database_url
    if config.migrations.at_start == "wait":
        return wait_for_head(url, config.migrations.wait_timeout)
    try:
        return migrate(url).after
    except SchemaError:
        raise
    except Exception as exc:
        raise SchemaError(f"the database schema could not be migrated: {type(exc).__name__}: "
                          f"{str(exc).splitlines()[0] if str(exc) else ''}") from exc
