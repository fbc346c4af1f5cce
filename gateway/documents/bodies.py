"""The bytes of sent packages from 64 KiB up to the spool threshold, on SQLite, in a database file of
their own beside the gateway's (``lienthong-bodies.db`` beside ``lienthong.db``), with 64 KiB pages
and a rollback journal.

Why a file of its own: in the gateway's database (4 KiB pages, right for the audit's and the queue's
small rows) SQLite writes a megabyte as 256 pages into the WAL, one ``pwrite`` each, and as many again
when the checkpoint copies them, all under the one write lock the audit, the queue and the flows
share. Here it is 16 pages, under a lock of its own, and written once: with a rollback journal the
pages a new row adds go straight into the file (only the few pages a commit changes are journalled),
where a WAL would have them copied again by a checkpoint. A 1 MiB package costs the gateway about
1.7 ms less CPU, and the rate it accepts rose by about a sixth (docs/benchmarks.md, "Documents").

**Stored before the row that needs it.** The bytes are committed here, synced (``synchronous=FULL``),
before the document's row commits in the gateway's database, so a committed row always finds its
bytes, whatever stops the process in between. The other way round, bytes whose row never committed
(the transaction failed, the process died, the package was refused as a changed DocumentId), are
left behind: ``sweep`` drops those older than an hour that no document names, when a process first
writes here (looking only at those stored since the last sweep). The bytes are keyed by their
SHA-256, so a package sent twice is stored once.

On PostgreSQL, and for a SQLite database in memory, packages keep their bytes in their row.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Iterable
from pathlib import Path

import structlog
from sqlalchemy.engine import Engine

from gateway.storage.db import WriteLock, sqlite_file

__all__ = ["SIDE_MIN", "BodyFile", "bodies_path"]

SIDE_MIN = 64 * 1024  # smaller packages stay in their row: a second commit would cost them more
PAGE_SIZE = 65536
SWEEP_AGE_US = 3_600_000_000  # bytes younger than this may belong to a row about to commit
# A rollback journal, not a WAL: a WAL's checkpoint copied every megabyte a second time, and run
# inside a commit (SQLite's automatic one) it made that commit's package wait for the copy and its
# fsyncs; on a thread of its own it still cost a sixth more CPU than the journal (docs/benchmarks.md).
JOURNAL_MODE = "TRUNCATE"

log = structlog.get_logger("lienthong.documents")

# created_us before the bytes, and indexed: the sweep reads it without walking a megabyte's pages.
# ``swept``: the moment up to which bytes were swept already, so each sweep reads only the newer.
_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS bodies (sha256 TEXT PRIMARY KEY, created_us INTEGER NOT NULL, "
    "body BLOB NOT NULL)",
    "CREATE INDEX IF NOT EXISTS ix_bodies_created ON bodies (created_us)",
    "CREATE TABLE IF NOT EXISTS swept (id INTEGER PRIMARY KEY CHECK (id = 1), upto_us INTEGER NOT NULL)",
)


def bodies_path(database: str | Path) -> Path:
    """The bodies file beside a SQLite database file: ``x.db`` -> ``x-bodies.db``."""
    path = Path(database)
    return path.with_name(f"{path.stem}-bodies{path.suffix}")


class BodyFile:
    """The bodies database of one gateway database file."""

    def __init__(self, path: Path, database: str) -> None:
        self.path = path
        self._database = database  # the gateway's, for the sweep
        self._lock = threading.Lock()  # the writer's connection, used by one thread at a time
        self._writer: sqlite3.Connection | None = None
        self._queue: WriteLock | None = None
        self._readers = threading.local()

    @classmethod
    def beside(cls, engine_or_url: Engine | str) -> BodyFile | None:
        """The bodies file of a SQLite database in a file; None otherwise (bytes stay in rows)."""
        database = sqlite_file(engine_or_url)
        return cls(bodies_path(database), database) if database is not None else None

    def put(self, bodies: Iterable[tuple[str, bytes]]) -> None:
        """Store (sha256, bytes) pairs in one transaction, synced before it returns."""
        rows = [(digest, time.time_ns() // 1000, body) for digest, body in bodies]
        if not rows:
            return
        with self._lock:
            if self._queue is None:
                # the processes' writers queue on a file lock, woken when it is free, rather than
                # polling under SQLite's busy handler (gateway/storage/db.py, WriteLock)
                self._queue = WriteLock(f"sqlite:///{self.path}", "bodies")
            try:
                with self._queue:
                    conn = self._writer or self._open_writer()
                    conn.execute("BEGIN IMMEDIATE")
                    conn.executemany("INSERT OR IGNORE INTO bodies (sha256, created_us, body) "
                                     "VALUES (?, ?, ?)", rows)
                    conn.execute("COMMIT")
            except BaseException:
                self._close_writer()  # its transaction may be open: a new connection next time
                raise

    def get(self, sha256: str) -> bytes | None:
        return self._read("SELECT body FROM bodies WHERE sha256 = ?", (sha256,))

    def head(self, sha256: str, size: int) -> bytes | None:
        """The first ``size`` bytes (a package's header, for the statistics)."""
        return self._read("SELECT substr(body, 1, ?) FROM bodies WHERE sha256 = ?", (size, sha256))

    def _read(self, query: str, args: tuple[object, ...]) -> bytes | None:
        conn: sqlite3.Connection | None = getattr(self._readers, "conn", None)
        if conn is None:
            if not self.path.exists():  # nothing was ever put: a read does not make the file
                return None
            conn = self._readers.conn = self._connect()
        row = conn.execute(query, args).fetchone()
        return bytes(row[0]) if row is not None else None

    def sweep(self, conn: sqlite3.Connection, now_us: int | None = None) -> int:
        """Drop the bytes older than an hour that no document of the gateway's database names;
        only those stored since the last sweep are looked at."""
        upto = (time.time_ns() // 1000 if now_us is None else now_us) - SWEEP_AGE_US
        conn.execute("ATTACH DATABASE ? AS gateway", (self._database,))
        try:
            # deferred: IMMEDIATE would take the gateway's write lock too; the writers of the
            # bodies file are held off by the file lock ``put`` holds
            conn.execute("BEGIN")
            row = conn.execute("SELECT upto_us FROM swept WHERE id = 1").fetchone()
            since = int(row[0]) if row is not None else -1
            gone = 0
            if upto > since:
                gone = conn.execute(
                    "DELETE FROM bodies WHERE created_us > ? AND created_us <= ? AND NOT EXISTS "
                    "(SELECT 1 FROM gateway.documents d WHERE d.sha256 = bodies.sha256)",
                    (since, upto)).rowcount
                conn.execute("INSERT OR REPLACE INTO swept (id, upto_us) VALUES (1, ?)", (upto,))
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
        finally:
            conn.execute("DETACH DATABASE gateway")
        return gone

    def close(self) -> None:
        with self._lock:
            self._close_writer()
            queue, self._queue = self._queue, None
            if queue is not None:
                queue.close()

    def _open_writer(self) -> sqlite3.Connection:
        conn = self._connect()
        try:
            gone = self.sweep(conn)
            if gone:
                log.info("document_bodies_swept", count=gone)
        except sqlite3.Error as exc:  # the next process start tries again; nothing is lost
            log.warning("document_bodies_sweep_failed", error=type(exc).__name__, detail=str(exc)[:300])
        self._writer = conn
        return conn

    def _close_writer(self) -> None:
        conn, self._writer = self._writer, None
        if conn is not None:
            conn.close()

    def _connect(self) -> sqlite3.Connection:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(self.path, timeout=30, isolation_level=None, check_same_thread=False)
        conn.execute(f"PRAGMA page_size={PAGE_SIZE}")  # only a new file takes it
        conn.execute(f"PRAGMA journal_mode={JOURNAL_MODE}")
        conn.execute("PRAGMA synchronous=FULL")  # committed means on disk, before the row commits
        for statement in _SCHEMA:
            conn.execute(statement)
        return conn
