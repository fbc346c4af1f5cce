"""The audit log's storage, behind a narrow interface: ``append`` a record, ``read`` leaves back.

``append`` returns only once the leaf is durable. A single writer thread per process drains the
queue of pending records and stores each batch in one transaction (group commit): while one batch
is being committed the next one gathers, so many exchanges share one fsync. Inside that
transaction the sequencer reads the log's size under the write lock (``BEGIN IMMEDIATE`` on SQLite,
``SELECT … FOR UPDATE`` on PostgreSQL), so that leaves get contiguous indices with no gap and no
duplicate even when several processes or nodes append at once, and integrates them into the Merkle
tree in the same transaction: it loads the tree's right edge (O(log n) stored nodes), checks it
against the head's root, appends the batch's leaf hashes, stores the perfect nodes they complete
and moves the head (size and root). A leaf is acknowledged only once it is in the tree.

Bodies that a policy rule keeps arrive sealed (see ``gateway.audit.bodies``) and are stored in the
same transaction, apart from the leaves.

A record that cannot be stored fails its exchange (``AuditUnavailable``): the gateway never answers
an exchange it could not audit.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import sqlalchemy as sa
import structlog
from sqlalchemy.engine import Connection, Engine

from gateway.audit import tree
from gateway.audit.bodies import Bodies, BodyVault
from gateway.audit.merkle import EMPTY_ROOT, Frontier, leaf_hash, range_nodes
from gateway.audit.record import AuditRecord
from gateway.audit.tree import as_bytes
from gateway.errors import AuditUnavailable
from gateway.metrics import AUDIT_COMMIT_LEAVES
from gateway.storage.db import WriteLock
from gateway.storage.shared import SharedWriter, Slot
from gateway.storage.tables import audit_bodies, audit_head, audit_leaves, audit_subjects
from gateway.storage.writer import BatchWriter

log = structlog.get_logger("lienthong.audit")

_T = TypeVar("_T")


@dataclass(frozen=True, slots=True)
class StoredLeaf:
    idx: int
    exchange_id: str
    ts_us: int
    client: str | None
    service: str | None
    operation: str | None
    outcome: str
    status: int
    rule: str | None
    leaf: bytes
    user_id: str | None = None
    purpose: str | None = None


@dataclass(frozen=True, slots=True)
class TreeHead:
    """The log's size and the RFC 9162 root of its first ``size`` leaves."""

    size: int
    root: bytes


class TreeCorruptedError(RuntimeError):
    """The stored tree does not lead to the head's root: appending would extend a broken tree."""


@dataclass(slots=True)
class _Entry:
    """A record made ready outside the write lock: its row but the index, its leaf hash, its data
    subjects and its sealed bodies."""

    row: tuple[Any, ...]  # LEAF_COLUMNS after idx
    leaf_hash: bytes
    subjects: frozenset[str]
    bodies: dict[str, Any] | None


@dataclass(slots=True)
class _Pending:
    entry: _Entry
    future: asyncio.Future[int]
    loop: asyncio.AbstractEventLoop


def _settle(batch: Sequence[_Pending], outcomes: Sequence[int | BaseException]) -> None:
    """Hand each waiting append its index or failure: one wake-up per event loop, not per append."""
    by_loop: dict[asyncio.AbstractEventLoop, list[tuple[asyncio.Future[int], int | BaseException]]] = {}
    for pending, outcome in zip(batch, outcomes, strict=True):
        by_loop.setdefault(pending.loop, []).append((pending.future, outcome))
    for loop, items in by_loop.items():
        with contextlib.suppress(RuntimeError):  # that loop is closed: nobody waits any more
            loop.call_soon_threadsafe(_resolve, items)


def _resolve(items: list[tuple[asyncio.Future[int], int | BaseException]]) -> None:
    for future, outcome in items:
        if future.done():  # the waiting exchange was cancelled
            continue
        if isinstance(outcome, BaseException):
            future.set_exception(outcome)
        else:
            future.set_result(outcome)


# The leaf holds every value whole; the index columns beside it hold them cut to the column's width,
# so that one over-long header can never fail the commit that a whole batch of exchanges shares.
COLUMN_WIDTHS = {c.name: c.type.length for c in audit_leaves.c
                 if isinstance(c.type, sa.String) and c.type.length}


LEAF_COLUMNS = ("idx", "exchange_id", "ts_us", "client", "service", "operation", "outcome", "status",
                "user_id", "purpose", "rule", "leaf")


BODY_COLUMNS = ("idx", "key_id", "expires_us", "request", "response", "upstream_request",
                "upstream_response")


@dataclass(frozen=True, slots=True)
class _Statements:
    """The sequencer's statements as plain driver SQL: the hot path skips SQLAlchemy's per-row and
    per-statement work. Table and column names are constants here, never input."""

    mark: str
    begin: str | None  # SQLite: take the write lock first; PostgreSQL: the head's row lock does
    head: str
    leaves: str
    nodes: str
    subjects: str
    bodies: str
    move_head: str

    @classmethod
    def for_dialect(cls, paramstyle: str, name: str) -> _Statements:
        mark = "?" if paramstyle == "qmark" else "%s"
        sqlite = name == "sqlite"

        def insert(table: str, columns: Sequence[str]) -> str:
            values = ", ".join([mark] * len(columns))
            return f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({values})"  # noqa: S608

        lock = "" if sqlite else " FOR UPDATE"
        return cls(mark=mark, begin="BEGIN IMMEDIATE" if sqlite else None,
                   head=f"SELECT size, root FROM audit_head WHERE id = 1{lock}",  # noqa: S608
                   leaves=insert("audit_leaves", LEAF_COLUMNS),
                   nodes=insert("audit_nodes", ("level", "idx", "hash")),
                   subjects=insert("audit_subjects", ("subject", "idx")),
                   bodies=insert("audit_bodies", BODY_COLUMNS),
                   move_head=f"UPDATE audit_head SET size = {mark}, root = {mark} WHERE id = 1")  # noqa: S608

    def edge(self, count: int) -> str:
        """Read ``count`` nodes named by (level, idx) pairs."""
        one = f"(level = {self.mark} AND idx = {self.mark})"
        return "SELECT level, idx, hash FROM audit_nodes WHERE " + " OR ".join([one] * count)  # noqa: S608


@functools.cache
def _statements(paramstyle: str, name: str) -> _Statements:
    return _Statements.for_dialect(paramstyle, name)


class _Sequencer:
    """A database connection for the sequencer's transactions, driven through the driver itself:
    per batch, SQLAlchemy's connection, statement and result machinery would cost more CPU than the
    commit. Kept open between batches; dropped after a failure that leaves it unusable."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self._raw: Any = None
        self._lock = WriteLock(engine, "audit")
        self.sql = _statements(engine.dialect.paramstyle, engine.dialect.name)

    def run(self, work: Callable[[Any], _T]) -> _T:
        """``work(cursor)`` in one transaction, committed."""
        with self._lock:
            return self._transaction(work)

    def _transaction(self, work: Callable[[Any], _T]) -> _T:
        if self._raw is None:
            self._raw = self._engine.raw_connection()
        raw = self._raw
        cursor = raw.cursor()
        try:
            if self.sql.begin:
                cursor.execute(self.sql.begin)
            result = work(cursor)
            raw.commit()
            return result
        except BaseException:
            try:
                raw.rollback()
            except Exception:  # the connection is gone: the next batch gets a new one
                self._drop(invalidate=True)
            raise
        finally:
            with contextlib.suppress(Exception):
                cursor.close()

    def _drop(self, *, invalidate: bool = False) -> None:
        raw, self._raw = self._raw, None
        if raw is not None:
            with contextlib.suppress(Exception):
                raw.invalidate() if invalidate else raw.close()

    def close(self) -> None:
        self._drop()
        self._lock.close()


def _cut(value: str | None, column: str) -> str | None:
    return value[:COLUMN_WIDTHS[column]] if value is not None else None


def index_columns(doc: dict[str, Any]) -> dict[str, Any]:
    """The index columns a leaf (parsed) must have beside it, except the time (see record.leaf_time)."""
    return {"exchange_id": _cut(doc["id"], "exchange_id"), "client": _cut(doc["client"], "client"),
            "service": _cut(doc["service"], "service"), "operation": _cut(doc["operation"], "operation"),
            "outcome": doc["outcome"], "status": doc["status"],
            "user_id": _cut(doc["userId"], "user_id"), "purpose": _cut(doc["purpose"], "purpose"),
            "rule": _cut(doc["rule"], "rule")}


class _Part:
    """The log's batches in the shared writer's transactions (gateway/storage/shared.py)."""

    def __init__(self, owner: AuditLog) -> None:
        self.owner = owner

    def write(self, conn: Connection, batch: list[_Pending]) -> list[int]:
        cursor = conn.connection.cursor()
        try:
            return self.owner._store(cursor, self.owner._sql, [p.entry for p in batch])
        finally:
            cursor.close()

    def settle(self, batch: list[_Pending], written: list[int]) -> None:
        self.owner._stored(batch, written)

    def fail(self, batch: list[_Pending], exc: Exception) -> None:
        self.owner._failed(batch, exc)


class AuditLog:
    def __init__(self, engine: Engine, *, batch_max: int = 512, batch_wait_ms: float = 0.0,
                 batch_wait_max_ms: float | None = None, vault: BodyVault | None = None,
                 shared: SharedWriter | None = None) -> None:
        """``shared``: the process's one writer for this SQLite database (gateway/storage/shared.py),
        whose transactions the records then share with the other parts' writes; otherwise a
        writer thread of the log's own."""
        self._engine = engine
        self._vault = vault
        self._writer: BatchWriter[_Pending] | Slot[_Pending] = (
            shared.slot(_Part(self)) if shared is not None else
            BatchWriter("audit-writer", self._commit, batch_max=batch_max, wait_ms=batch_wait_ms,
                        wait_max_ms=batch_wait_max_ms))
        self._own = shared is None
        self._sql = _statements(engine.dialect.paramstyle, engine.dialect.name)
        self._sequencer: _Sequencer | None = None  # the own writer thread's, while it runs
        self.batches = 0  # for metrics and tests: how many commits the appends took
        self._edge: tuple[int, bytes, Frontier] | None = None  # the tree's right edge after our last batch

    # -- writing ---------------------------------------------------------------------------------

    def start(self) -> None:
        if not self._writer.running:
            if self._own:
                self._sequencer = _Sequencer(self._engine)
            self._writer.start()

    def close(self) -> None:
        """Store what is pending, then stop the writer."""
        self._writer.close()
        if self._sequencer is not None:
            self._sequencer.close()
            self._sequencer = None

    @property
    def engine(self) -> Engine:
        return self._engine

    def attach_vault(self, vault: BodyVault) -> None:
        """Seal the bodies that policy rules keep with this vault's key."""
        self._vault = vault

    async def append(self, record: AuditRecord, *, bodies: Bodies | None = None) -> int:
        """Store one record (and the bodies a rule keeps); return its leaf index once it is durable
        and in the tree."""
        if not self._writer.running:
            raise AuditUnavailable("the audit log is not running")
        try:
            entry = self._prepare(record, bodies)
        except AuditUnavailable:
            raise
        except Exception as exc:  # a record that cannot become a leaf fails its exchange
            log.error("audit_record_refused", error=f"{type(exc).__name__}: {exc}")
            raise AuditUnavailable("the audit record of this exchange could not be made; it was not "
                                   "completed") from exc
        loop = asyncio.get_running_loop()
        future: asyncio.Future[int] = loop.create_future()
        self._writer.put(_Pending(entry, future, loop))
        return await future

    def append_many(self, records: Sequence[AuditRecord],
                    bodies: Sequence[Bodies | None] | None = None) -> list[int]:
        """Store records synchronously in one transaction (tools and benchmarks)."""
        entries = [self._prepare(rec, bodies[i] if bodies else None) for i, rec in enumerate(records)]
        sequencer = _Sequencer(self._engine)
        try:
            return sequencer.run(lambda cursor: self._store(cursor, sequencer.sql, entries))
        finally:
            sequencer.close()

    def _prepare(self, record: AuditRecord, bodies: Bodies | None) -> _Entry:
        sealed = None
        if bodies is not None:
            if self._vault is None:
                raise AuditUnavailable("a policy rule keeps this exchange's bodies, but no body key "
                                       "is loaded; the exchange was not completed")
            sealed = self._vault.seal(record.exchange_id, bodies, record.ts_us)
        leaf = record.leaf()
        row = (_cut(record.exchange_id, "exchange_id"), record.ts_us, _cut(record.client, "client"),
               _cut(record.service, "service"), _cut(record.operation, "operation"), record.outcome,
               record.status, _cut(record.user_id, "user_id"), _cut(record.purpose, "purpose"),
               _cut(record.rule, "rule"), leaf)
        return _Entry(row, leaf_hash(leaf), frozenset(record.subjects), sealed)

    def _commit(self, batch: list[_Pending]) -> None:
        """One batch of the own writer thread's, in one transaction."""
        sequencer = self._sequencer
        assert sequencer is not None
        try:
            entries = [p.entry for p in batch]
            indices = sequencer.run(lambda cursor: self._store(cursor, sequencer.sql, entries))
        except Exception as exc:
            self._failed(batch, exc)
            return
        self._stored(batch, indices)

    def _stored(self, batch: list[_Pending], indices: list[int]) -> None:
        self.batches += 1
        AUDIT_COMMIT_LEAVES.observe(len(batch))
        _settle(batch, indices)

    @staticmethod
    def _failed(batch: list[_Pending], exc: Exception) -> None:
        """Any storage failure fails every exchange in the batch."""
        log.error("audit_write_failed", error=type(exc).__name__, batch=len(batch))
        failure = AuditUnavailable("the audit log could not store this exchange; it was not completed")
        _settle(batch, [failure] * len(batch))

    def _store(self, cursor: Any, sql: _Statements, entries: Sequence[_Entry]) -> list[int]:
        cursor.execute(sql.head)
        head_size, head_root = cursor.fetchone()
        size, root = int(head_size), as_bytes(head_root) if head_root is not None else EMPTY_ROOT
        edge = self._edge
        if edge is not None and edge[0] == size and edge[1] == root:
            frontier = edge[2].copy()  # nobody else appended since our last batch
        else:
            wanted = range_nodes(0, size)
            rows: list[Any] = []
            if wanted:
                cursor.execute(sql.edge(len(wanted)), [v for node in wanted for v in node])
                rows = cursor.fetchall()
            frontier = tree.frontier_from(size, rows)
            if frontier.root() != root:
                raise TreeCorruptedError(f"the stored tree of {size} leaves does not give the head's root")
        leaves = [(size + offset, *entry.row) for offset, entry in enumerate(entries)]
        subjects = [(subject, size + offset) for offset, entry in enumerate(entries)
                    for subject in entry.subjects]
        bodies = [(size + offset, *(entry.bodies[c] for c in BODY_COLUMNS[1:]))
                  for offset, entry in enumerate(entries) if entry.bodies is not None]
        nodes = [(level, first + i, h) for level, first, hashes
                 in frontier.extend_levels([entry.leaf_hash for entry in entries])
                 for i, h in enumerate(hashes)]
        cursor.executemany(sql.leaves, leaves)
        cursor.executemany(sql.nodes, nodes)
        if subjects:
            cursor.executemany(sql.subjects, subjects)
        if bodies:
            cursor.executemany(sql.bodies, bodies)
        new_root = frontier.root()
        cursor.execute(sql.move_head, (frontier.size, new_root))
        # Keyed by the head it extends, so a batch that then fails to commit, or another process's
        # appends, only cost a reload from the stored nodes.
        self._edge = (frontier.size, new_root, frontier.copy())
        return [size + i for i in range(len(leaves))]

    # -- reading ---------------------------------------------------------------------------------

    def size(self) -> int:
        with self._engine.connect() as conn:
            return int(conn.execute(sa.select(audit_head.c.size).where(audit_head.c.id == 1))
                       .scalar_one())

    def head(self) -> TreeHead:
        with self._engine.connect() as conn:
            row = conn.execute(sa.select(audit_head.c.size, audit_head.c.root)
                               .where(audit_head.c.id == 1)).one()
        return TreeHead(int(row.size), as_bytes(row.root) if row.root is not None else EMPTY_ROOT)

    def inclusion_proof(self, index: int, size: int) -> list[bytes]:
        """The RFC 9162 inclusion proof of leaf ``index`` in the tree of ``size`` leaves."""
        with self._engine.connect() as conn:
            return tree.inclusion_proof(conn, index, size)

    def consistency_proof(self, size1: int, size2: int) -> list[bytes]:
        """The RFC 9162 consistency proof between the trees of ``size1`` and ``size2`` leaves."""
        with self._engine.connect() as conn:
            return tree.consistency_proof(conn, size1, size2)

    def root_at(self, size: int) -> bytes:
        with self._engine.connect() as conn:
            return tree.root_at(conn, size)

    def bodies(self, index: int) -> Bodies | None:
        """The kept bodies of leaf ``index``, opened; None if none were kept or they were purged."""
        if self._vault is None:
            raise AuditUnavailable("no body key is loaded")
        with self._engine.connect() as conn:
            row = conn.execute(sa.select(audit_bodies, audit_leaves.c.exchange_id)
                               .join(audit_leaves, audit_leaves.c.idx == audit_bodies.c.idx)
                               .where(audit_bodies.c.idx == index)).first()
        return None if row is None else self._vault.open(row.exchange_id, row)

    def read(self, start: int = 0, count: int = 1000) -> list[StoredLeaf]:
        """Leaves ``start`` .. ``start + count - 1`` in index order."""
        query = (sa.select(audit_leaves).where(audit_leaves.c.idx >= start)
                 .order_by(audit_leaves.c.idx).limit(count))
        return self._select(query)

    def by_exchange(self, exchange_id: str) -> list[StoredLeaf]:
        return self._select(sa.select(audit_leaves)
                            .where(audit_leaves.c.exchange_id == _cut(exchange_id, "exchange_id"))
                            .order_by(audit_leaves.c.idx))

    def by_subject(self, subject_hash: str) -> list[StoredLeaf]:
        query = (sa.select(audit_leaves)
                 .join(audit_subjects, audit_subjects.c.idx == audit_leaves.c.idx)
                 .where(audit_subjects.c.subject == subject_hash).order_by(audit_leaves.c.idx))
        return self._select(query)

    def _select(self, query: sa.Select[Any]) -> list[StoredLeaf]:
        with self._engine.connect() as conn:
            return [StoredLeaf(idx=r.idx, exchange_id=r.exchange_id, ts_us=r.ts_us, client=r.client,
                               service=r.service, operation=r.operation, outcome=r.outcome,
                               status=r.status, rule=r.rule, leaf=as_bytes(r.leaf), user_id=r.user_id,
                               purpose=r.purpose)
                    for r in conn.execute(query)]
