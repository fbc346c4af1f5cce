"""One writer thread and one transaction for the audit log, the delivery queue, the flows and the
sent documents of a process on SQLite.

SQLite has one write lock per database. With a writer thread each, the parts of a process took it
in turn with each other and with the other worker processes' parts: during a drain of joint
procedures the lock was held 96 % of the time, by thousands of small transactions each paying the
lock's hand-over, ``BEGIN IMMEDIATE``, a commit's fsync and the GIL's hand-backs between its
statements, while the event loops waited on them idle more than half of the time. Sharing one
writer, a process takes the lock once for what its parts have queued and commits it with one fsync
(docs/benchmarks.md, "Joint procedures" and "Documents").

Each part keeps its own batches' logic (``Part``): what to write inside the transaction, what to
answer once it is committed, what to answer when it is not. When the shared transaction fails, each
part's batch is tried again in a transaction of its own, so that one part's failure (a corrupted
audit tree, say) fails only its own callers, as when each part had its own transaction.

**Durable before answered, synced after the lock.** The writer's own connection commits with
``synchronous=NORMAL``: the commit writes its frames to the WAL file without syncing it. The writer
releases the write lock, then syncs the WAL itself (``fdatasync``), and only then answers the
batch's callers. The other process's writer meanwhile takes the lock and appends behind those
frames; a sync of the WAL, by either process, makes every frame written before it durable, and a
power loss can only take the WAL's tail, whole transactions from the end (SQLite drops a
transaction whose frames are not all there). So whatever a caller was told is stored is on disk,
as with ``synchronous=FULL``, and the lock is no longer held through the disk's flush. A ``kill
-9`` loses nothing either way: what is written is the kernel's. What another process may see
before the sync (a delivery to claim, say) is at most one fsync ahead of the disk, and would be
lost only with the power, with its callers unanswered.

Checkpoints, which copy the WAL into the database file and were run by whichever commit found
the WAL past 1,000 pages, inside that holder's lock, are this writer's too: every few commits, or
sooner when the database grew a lot, once the callers are answered and outside the lock
(``PASSIVE``: other writers go on meanwhile). The process's other connections keep SQLite's
automatic checkpoint.

On PostgreSQL each part keeps its own writer: row locks let them run side by side, and one
transaction holding the audit head's row while waiting for a flow's row another process holds
could deadlock.
"""

from __future__ import annotations

import os
import threading
from typing import Any, Generic, Protocol, TypeVar

import structlog
from sqlalchemy.engine import Connection, Engine

from gateway.storage.db import WriteLock, sqlite_file
from gateway.storage.writer import BatchWriter

__all__ = ["CHECKPOINT_COMMITS", "CHECKPOINT_PAGES", "Part", "SharedWriter", "Slot"]

# How often the writer copies the WAL into the database: SQLite's automatic checkpoint did at 1,000
# frames, every 6 commits or so of a flows drain, and at every commit of large documents. A
# checkpoint after every commit cost a 10,000-flow drain a fifth more CPU (pages copied again and
# again); one every 8 commits, whatever their size, held the writer up on the WAL of many 1 MiB
# packages (256 pages each) and cut their rate by a quarter (docs/benchmarks.md). How long the WAL
# is can only be read from the ``-shm`` file, and a process that opens and closes that file drops
# SQLite's POSIX locks on it: the database's growth in pages stands for it.
CHECKPOINT_COMMITS = 8
CHECKPOINT_PAGES = 256

log = structlog.get_logger("lienthong.storage")

T = TypeVar("T")


class Part(Protocol[T]):
    """A writer's batches, told apart from their transaction."""

    def write(self, conn: Connection, batch: list[T]) -> Any:
        """Store ``batch`` within the open transaction; what it returns goes to ``settle``."""

    def settle(self, batch: list[T], written: Any) -> None:
        """The transaction committed: answer the batch's callers."""

    def fail(self, batch: list[T], exc: Exception) -> None:
        """Nothing of the batch is stored: tell its callers."""

    # A part may also have ``prepare(batch)``: work for the batch done before the lock is taken (the
    # documents' bytes into a file of their own). When it raises, the batch fails unwritten.


class SharedWriter:
    """The writer thread of one SQLite database in this process. Parts take a ``slot`` each; the
    thread runs from the first slot's ``start`` to the last slot's ``close``."""

    def __init__(self, engine: Engine, *, batch_max: int = 1024, wait_ms: float = 0.0,
                 wait_max_ms: float | None = None) -> None:
        self.engine = engine
        self._writer: BatchWriter[tuple[Any, Any]] = BatchWriter(
            "db-writer", self._handle, batch_max=batch_max, wait_ms=wait_ms, wait_max_ms=wait_max_ms)
        self._lock: WriteLock | None = None
        self._open: set[Slot[Any]] = set()
        self._guard = threading.Lock()
        database = sqlite_file(engine)
        # None (a database in memory): commits sync as the engine's other connections do
        self._wal = f"{database}-wal" if database is not None else None
        self._conn: Connection | None = None  # the writer thread's own, while it runs
        self._since_checkpoint = 0  # commits since the writer's last checkpoint
        self._pages_at_checkpoint = 0  # the database's pages then
        self.commits = 0  # for tests and metrics: transactions committed
        self.checkpoints = 0  # for tests: checkpoints this writer ran
        self._preparing = False  # a part has ``prepare``: only then is a batch looked at for it

    def slot(self, part: Part[T]) -> Slot[T]:
        self._preparing = self._preparing or hasattr(part, "prepare")
        return Slot(self, part)

    def _start(self, slot: Slot[Any]) -> None:
        with self._guard:
            if not self._open:
                self._lock = WriteLock(self.engine, "shared")
                self._writer.start()
            self._open.add(slot)

    def _close(self, slot: Slot[Any]) -> None:
        with self._guard:  # held while the thread ends, so that a slot starting meanwhile waits
            if slot not in self._open:
                return
            self._open.discard(slot)
            if not self._open:  # the last: what is queued is handled, then the thread stops
                self._writer.close()
                self._drop()
                lock, self._lock = self._lock, None
                if lock is not None:
                    lock.close()
                return
        # The others go on: wait until what this slot queued is handled (an event put behind it).
        flushed = threading.Event()
        self._writer.put((None, flushed))
        flushed.wait()

    def _handle(self, batch: list[tuple[Any, Any]]) -> None:
        try:
            self._commit(batch)
        finally:
            for part, item in batch:
                if part is None:
                    item.set()  # a slot's flush: what it queued before is handled

    def _commit(self, batch: list[tuple[Any, Any]]) -> None:
        written: dict[Any, Any] = {}
        failed: dict[Any, Exception] = {}
        assert self._lock is not None
        if all(part is None for part, _ in batch):
            return
        groups: dict[Any, list[Any]] = {}
        # the parts whose preparation failed, told already; what joins below is written as it is
        unprepared = _prepare(_groups(batch)) if self._preparing else set()
        if unprepared:
            batch = [(part, item) for part, item in batch if part not in unprepared]
        try:
            with self._lock:
                # What came while another process held the lock joins this transaction rather than
                # waiting for the next: a drain's commits each paid a BEGIN, an fsync and a reload
                # of the pages the other process changed, for a few items.
                self._writer.take_more(batch)
                groups = _groups(batch)
                try:
                    written = self._transaction(groups)
                except Exception as exc:
                    if len(groups) == 1:
                        failed = dict.fromkeys(groups, exc)
                    else:
                        # Rolled back whole. Each part again in a transaction of its own (no
                        # savepoints on the way that never fails: they cost a sixth of the lock's
                        # time), so that only the part that fails fails its callers.
                        log.warning("shared_write_retried", error=type(exc).__name__, parts=len(groups))
                        failed = self._alone(groups, written)
        except Exception as exc:  # the lock itself could not be taken: nothing is stored
            log.error("shared_write_failed", error=type(exc).__name__, detail=str(exc)[:300])
            written.clear()
            groups = groups or _groups(batch)
            failed = dict.fromkeys(groups, exc)
        if written:
            try:
                self._sync()
            except OSError as exc:  # committed, but maybe not on disk: nobody is told it is stored
                log.error("shared_write_sync_failed", error=type(exc).__name__, detail=str(exc)[:300])
                failed.update(dict.fromkeys(written, exc))
                written.clear()
        for part, items in groups.items():
            _answer(part, items, written.get(part), failed.get(part))
        self._checkpoint()

    def _alone(self, groups: dict[Any, list[Any]], written: dict[Any, Any]) -> dict[Any, Exception]:
        failed: dict[Any, Exception] = {}
        for part, items in groups.items():
            try:
                written.update(self._transaction({part: items}))
            except Exception as alone:
                failed[part] = alone
        return failed

    def _transaction(self, groups: dict[Any, list[Any]]) -> dict[Any, Any]:
        """The parts' writes in one transaction on the writer's connection, committed (not synced:
        ``_sync`` does it once the lock is released); what each part's ``write`` returned."""
        conn = self._connection()
        try:
            with conn.begin():
                written = {part: part.write(conn, items) for part, items in groups.items()}
        except Exception:
            self._drop()  # it may be unusable; a new one for the next batch
            raise
        self.commits += 1
        self._since_checkpoint += 1
        return written

    def _connection(self) -> Connection:
        if self._conn is None:
            conn = self.engine.connect()
            if self._wal is not None:
                raw = conn.connection.driver_connection
                assert raw is not None
                raw.execute("PRAGMA synchronous=NORMAL")  # the WAL is synced by _sync, after the lock
                raw.execute("PRAGMA wal_autocheckpoint=0")  # and copied by _checkpoint, after it too
                self._pages_at_checkpoint = int(raw.execute("PRAGMA page_count").fetchone()[0])
            self._conn = conn
        return self._conn

    def _drop(self) -> None:
        """Close the writer's connection for good (its settings must not go back to the pool)."""
        conn, self._conn = self._conn, None
        if conn is not None:
            try:
                conn.invalidate()
                conn.close()
            except Exception as exc:
                log.warning("shared_writer_connection_close_failed", error=type(exc).__name__)

    def _sync(self) -> None:
        """Flush the WAL file to disk: every transaction committed before is durable after it."""
        if self._wal is None:
            return
        try:
            fd = os.open(self._wal, os.O_RDONLY)
        except FileNotFoundError:  # the last connection's close copied it into the database, synced
            return
        try:
            os.fdatasync(fd)
        finally:
            os.close(fd)

    def _checkpoint(self) -> None:
        """Copy the WAL into the database, outside the lock, every ``CHECKPOINT_COMMITS`` commits
        or sooner once the database grew by ``CHECKPOINT_PAGES`` pages (large documents)."""
        if self._wal is None or self._conn is None:
            return
        raw = self._conn.connection.driver_connection
        assert raw is not None
        try:
            pages = int(raw.execute("PRAGMA page_count").fetchone()[0])
            grown = pages - self._pages_at_checkpoint
            if self._since_checkpoint < CHECKPOINT_COMMITS and 0 <= grown < CHECKPOINT_PAGES:
                return
            raw.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
            self._since_checkpoint, self._pages_at_checkpoint = 0, pages
            self.checkpoints += 1
        except Exception as exc:  # the next one tries again; meanwhile the WAL grows
            log.warning("wal_checkpoint_failed", error=type(exc).__name__, detail=str(exc)[:300])


def _groups(batch: list[tuple[Any, Any]]) -> dict[Any, list[Any]]:
    """The batch's items by part, in order (flushes, whose part is None, left out)."""
    groups: dict[Any, list[Any]] = {}
    for part, item in batch:
        if part is not None:
            groups.setdefault(part, []).append(item)
    return groups


def _prepare(groups: dict[Any, list[Any]]) -> set[Any]:
    """Each part's ``prepare``, outside the lock; the parts whose preparation failed, their callers
    told so."""
    failed: set[Any] = set()
    for part, items in groups.items():
        prepare = getattr(part, "prepare", None)
        if prepare is None:
            continue
        try:
            prepare(items)
        except Exception as exc:
            log.error("shared_write_prepare_failed", error=type(exc).__name__, detail=str(exc)[:300])
            failed.add(part)
            _answer(part, items, None, exc)
    return failed


def _answer(part: Part[Any], items: list[Any], written: Any, failure: Exception | None) -> None:
    """One part's callers told; a part's own failure to answer must not stop the others'."""
    try:
        if failure is not None:
            part.fail(items, failure)
        else:
            part.settle(items, written)
    except Exception as exc:
        log.error("shared_write_answer_failed", error=type(exc).__name__, detail=str(exc)[:300])


class Slot(Generic[T]):
    """A part's way into the shared writer, with the surface of its own ``BatchWriter``."""

    def __init__(self, shared: SharedWriter, part: Part[T]) -> None:
        self._shared = shared
        self._part = part
        self._running = False

    @property
    def running(self) -> bool:
        return self._running

    def start(self) -> None:
        if not self._running:
            self._shared._start(self)
            self._running = True

    def put(self, item: T) -> None:
        self._shared._writer.put((self._part, item))

    def queued(self) -> int:
        return self._shared._writer.queued()

    def close(self) -> None:
        """Handle what this part queued; the thread stops with the last part."""
        if self._running:
            self._running = False
            self._shared._close(self)

