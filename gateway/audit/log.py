"""The audit log's storage, behind a narrow interface: ``append`` a record, ``read`` leaves back.

``append`` returns only once the leaf is durable. A single writer thread per process drains the
queue of pending records and stores each batch in one transaction (group commit): while one batch
is being committed the next one gathers, so many exchanges share one fsync. Inside that
transaction the sequencer reads the log's size under the write lock (``BEGIN IMMEDIATE`` on SQLite,
``SELECT … FOR UPDATE`` on PostgreSQL), so that leaves get contiguous indices with no gap and no
duplicate even when several processes or nodes append at once.

A record that cannot be stored fails its exchange (``AuditUnavailable``): the gateway never answers
an exchange it could not audit.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import queue
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
import structlog
from sqlalchemy.engine import Connection, Engine

from gateway.audit.record import AuditRecord
from gateway.errors import AuditUnavailable
from gateway.storage.tables import audit_head, audit_leaves, audit_subjects

log = structlog.get_logger("lienthong.audit")

_STOP = object()


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


@dataclass(slots=True)
class _Pending:
    record: AuditRecord
    future: concurrent.futures.Future[int]


class AuditLog:
    def __init__(self, engine: Engine, *, batch_max: int = 512, batch_wait_ms: float = 0.0) -> None:
        self._engine = engine
        self._batch_max = batch_max
        self._batch_wait = batch_wait_ms / 1000
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self.batches = 0  # for metrics and tests: how many commits the appends took

    # -- writing ---------------------------------------------------------------------------------

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="audit-writer", daemon=True)
            self._thread.start()

    def close(self) -> None:
        """Store what is pending, then stop the writer."""
        if self._thread is not None:
            self._queue.put(_STOP)
            self._thread.join()
            self._thread = None

    async def append(self, record: AuditRecord) -> int:
        """Store one record; return its leaf index once it is durable."""
        if self._thread is None:
            raise AuditUnavailable("the audit log is not running")
        future: concurrent.futures.Future[int] = concurrent.futures.Future()
        self._queue.put(_Pending(record, future))
        return await asyncio.wrap_future(future)

    def append_many(self, records: Sequence[AuditRecord]) -> list[int]:
        """Store records synchronously in one transaction (tools and benchmarks)."""
        with self._engine.begin() as conn:
            return self._store(conn, records)

    def _run(self) -> None:
        stopping = False
        while not stopping:
            first = self._queue.get()
            if first is _STOP:
                return
            batch: list[_Pending] = [first]
            while len(batch) < self._batch_max:
                try:
                    item = self._queue.get(timeout=self._batch_wait) if self._batch_wait else \
                        self._queue.get_nowait()
                except queue.Empty:
                    break
                if item is _STOP:
                    stopping = True
                    break
                batch.append(item)
            self._commit(batch)

    def _commit(self, batch: list[_Pending]) -> None:
        try:
            with self._engine.begin() as conn:
                indices = self._store(conn, [p.record for p in batch])
        except Exception as exc:  # any storage failure fails every exchange in the batch
            log.error("audit_write_failed", error=type(exc).__name__, batch=len(batch))
            failure = AuditUnavailable("the audit log could not store this exchange; it was not "
                                       "completed")
            for pending in batch:
                pending.future.set_exception(failure)
            return
        self.batches += 1
        for pending, idx in zip(batch, indices, strict=True):
            pending.future.set_result(idx)

    @staticmethod
    def _store(conn: Connection, records: Sequence[AuditRecord]) -> list[int]:
        size = conn.execute(
            sa.select(audit_head.c.size).where(audit_head.c.id == 1).with_for_update()
        ).scalar_one()
        rows: list[dict[str, Any]] = []
        subjects: list[dict[str, Any]] = []
        for offset, rec in enumerate(records):
            idx = size + offset
            rows.append({
                "idx": idx, "exchange_id": rec.exchange_id, "ts_us": rec.ts_us, "client": rec.client,
                "service": rec.service, "operation": rec.operation, "outcome": rec.outcome,
                "status": rec.status, "user_id": rec.user_id, "purpose": rec.purpose,
                "rule": rec.rule, "leaf": rec.leaf(),
            })
            subjects.extend({"subject": s, "idx": idx} for s in set(rec.subjects))
        conn.execute(sa.insert(audit_leaves), rows)
        if subjects:
            conn.execute(sa.insert(audit_subjects), subjects)
        conn.execute(sa.update(audit_head).where(audit_head.c.id == 1).values(size=size + len(rows)))
        return [size + i for i in range(len(rows))]

    # -- reading ---------------------------------------------------------------------------------

    def size(self) -> int:
        with self._engine.connect() as conn:
            return int(conn.execute(sa.select(audit_head.c.size).where(audit_head.c.id == 1))
                       .scalar_one())

    def read(self, start: int = 0, count: int = 1000) -> list[StoredLeaf]:
        """Leaves ``start`` .. ``start + count - 1`` in index order."""
        query = (sa.select(audit_leaves).where(audit_leaves.c.idx >= start)
                 .order_by(audit_leaves.c.idx).limit(count))
        return self._select(query)

    def by_exchange(self, exchange_id: str) -> list[StoredLeaf]:
        return self._select(sa.select(audit_leaves).where(audit_leaves.c.exchange_id == exchange_id)
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
                               status=r.status, rule=r.rule, leaf=bytes(r.leaf))
                    for r in conn.execute(query)]
