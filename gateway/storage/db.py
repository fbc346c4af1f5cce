"""Engines for the embedded SQLite default and for PostgreSQL, and schema migrations."""

from __future__ import annotations

import fcntl
import os
import threading
import time
from pathlib import Path
from types import TracebackType
from typing import Any

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.engine import Engine

from gateway.metrics import write_lock_timers

MIGRATIONS = Path(__file__).resolve().parent.parent / "migrations"


def is_sqlite(engine_or_url: Engine | str) -> bool:
    url = engine_or_url if isinstance(engine_or_url, str) else str(engine_or_url.url)
    return url.startswith("sqlite")


def sqlite_file(engine_or_url: Engine | str) -> str | None:
    """The path of the SQLite database file an engine or URL names; None for PostgreSQL, memory or
    a ``file:`` URI (no lock files, WAL or copies beside those)."""
    if not is_sqlite(engine_or_url):
        return None
    url = engine_or_url.url if isinstance(engine_or_url, Engine) else sa.engine.make_url(engine_or_url)
    database = url.database
    if database and database != ":memory:" and not database.startswith("file:"):
        return database
    return None


class WriteLock:
    """Queues a SQLite database's busy writers (the audit sequencer and the delivery queue of every
    gateway process) on an OS file lock beside the database, taken before ``BEGIN IMMEDIATE``.

    SQLite's own busy handler polls for its lock with sleeps that grow to 100 ms, so with two
    worker processes the unlucky writer's batch, and every exchange waiting on it, often waited a
    second or two (p99 10-20 times the median). A blocked ``flock`` is woken as soon as the lock is
    released. Each instance is its own open file, so instances exclude each other within a process
    too; a no-op for PostgreSQL and in-memory SQLite.

    ``writer`` names the holder in ``lienthong_db_write_lock_seconds`` (gateway/metrics.py): how
    long each writer waited for the lock, held it and computed while holding it, the figures that
    say when one SQLite file is what a deployment waits on (docs/operations.md#metrics).
    """

    def __init__(self, engine: Engine | str, writer: str = "other") -> None:
        database = sqlite_file(engine)
        self._fd: int | None = None
        if database is not None:
            self._fd = os.open(f"{database}-writer.lock", os.O_RDWR | os.O_CREAT, 0o600)
        self._threads = threading.Lock()  # the same instance used from two threads
        # (wait, held, cpu) histograms; observed after the release, never while holding the lock
        self._timers: tuple[Any, Any, Any] | None = None if self._fd is None else write_lock_timers(writer)
        self._asked = self._taken = self._cpu = 0.0

    def __enter__(self) -> WriteLock:
        asked = time.perf_counter()
        self._threads.acquire()
        if self._fd is not None:
            try:
                fcntl.flock(self._fd, fcntl.LOCK_EX)
            except BaseException:
                self._threads.release()
                raise
            self._asked, self._taken, self._cpu = asked, time.perf_counter(), time.thread_time()
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        try:
            if self._fd is not None:
                fcntl.flock(self._fd, fcntl.LOCK_UN)
                released, cpu = time.perf_counter(), time.thread_time()
                if self._timers is not None:
                    self._timers[0].observe(self._taken - self._asked)
                    self._timers[1].observe(released - self._taken)
                    self._timers[2].observe(cpu - self._cpu)
        finally:
            self._threads.release()

    def close(self) -> None:
        fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)


def create_engine(url: str, **kwargs: Any) -> Engine:
    """An engine with the settings durability needs: on SQLite WAL with synchronous=FULL, so that a
    committed row survives power loss, and explicit ``BEGIN IMMEDIATE`` so a writer takes the write
    lock before it reads the sequencer's state."""
    if not is_sqlite(url):
        return sa.create_engine(url, pool_pre_ping=True, **kwargs)
    if url.startswith("sqlite:///") and ":memory:" not in url:
        Path(url[len("sqlite:///"):]).parent.mkdir(parents=True, exist_ok=True)
    engine = sa.create_engine(url, connect_args={"timeout": 30, "check_same_thread": False}, **kwargs)

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.isolation_level = None  # we issue BEGIN ourselves
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA synchronous=FULL")
        cur.execute("PRAGMA busy_timeout=30000")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.execute("PRAGMA recursive_triggers=ON")  # INSERT OR REPLACE meets the audit guards
        cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Any) -> None:
        conn.exec_driver_sql("BEGIN IMMEDIATE")

    return engine


def upgrade(url: str) -> None:
    """Bring the database schema to the newest migration, under the migration lock
    (gateway/storage/migrate_lock.py), so that processes starting together migrate once."""
    from gateway.storage.migrate_lock import migrate

    migrate(url)
