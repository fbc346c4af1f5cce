"""The flows' durable state (gateway/flows/tables.py): filing a flow once per dossier, claiming the
flows that are due, and saving what a step became; in a running gateway these writes share
transactions (group commit, one writer thread per process), each committed before its caller goes on.

A flow is advanced by one process at a time: ``claim`` leases due flows (``next_us`` passed, as the
delivery workers lease deliveries) and ``save`` writes a flow's new state with the lease still
held, so a process that dies mid-step leaves a flow that another claims when the lease lapses.
Nothing a step sends is lost or doubled by that: a step's request is stored as a delivery under an
idempotency key made of the flow, the step and the send's number (gateway/flows/engine.py).
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson
import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import IntegrityError

from gateway.delivery.sql import chunks, driver_sql, for_update, select_in
from gateway.flows.tables import flow_steps, flows
from gateway.ids import new_id, random_hex
from gateway.storage.db import WriteLock
from gateway.storage.shared import SharedWriter, Slot
from gateway.storage.writer import BatchWriter, Request, answer

__all__ = ["FlowRow", "FlowStore", "StepRow"]

ACTIVE = ("running", "waiting")
FINISHED = ("completed", "rejected", "failed")


@dataclass
class StepRow:
    # The fields' order is ``_STEP_READ``'s (after the flow's id): ``_flow_of`` builds by place.
    step: str
    position: int
    service: str
    state: str = "pending"
    delivery_id: str | None = None
    sends: int = 0
    undo_delivery_id: str | None = None
    started_us: int | None = None
    finished_us: int | None = None
    deadline_us: int | None = None
    overdue: bool = False
    result: Any = None
    reason: Any = None
    due_us: int = 0  # not before: a send after an outage waits its backoff

    def view(self) -> dict[str, Any]:
        return {"step": self.step, "service": self.service, "state": self.state,
                "deliveryId": self.delivery_id, "undoDeliveryId": self.undo_delivery_id,
                "sends": self.sends, "started": _iso(self.started_us), "finished": _iso(self.finished_us),
                "deadline": _iso(self.deadline_us), "overdue": self.overdue, "result": self.result,
                "reason": self.reason}


@dataclass
class FlowRow:
    id: str
    name: str
    dossier_code: str
    client: str
    exchange_id: str
    state: str
    dossier: Any
    subjects: tuple[str, ...]
    started_us: int
    updated_us: int
    deadline_us: int
    finished_us: int | None = None
    overdue: bool = False
    reason: Any = None
    steps: list[StepRow] = field(default_factory=list)

    def view(self) -> dict[str, Any]:
        """A flow as ``GET /flows/{id}`` shows it (the joint dossier itself is not repeated)."""
        return {"id": self.id, "flow": self.name, "dossier": self.dossier_code, "client": self.client,
                "state": self.state, "started": _iso(self.started_us), "updated": _iso(self.updated_us),
                "finished": _iso(self.finished_us), "deadline": _iso(self.deadline_us),
                "overdue": self.overdue, "reason": self.reason, "exchangeId": self.exchange_id,
                "steps": [s.view() for s in self.steps]}


class FlowStore:
    """The flows' tables. Writes (``file``, ``claim``, ``save``, ``poke``) are committed before
    they return. Once ``start`` runs a writer thread (the gateway's engine does), concurrent writes
    share transactions (group commit, as the delivery queue and the audit log do: one fsync for
    many flows) and queue on the database's ``WriteLock`` rather than on SQLite's busy handler;
    without it (the CLI, tools) each write is its own transaction in the caller's thread."""

    def __init__(self, engine: Engine, *, batch_max: int = 256, batch_wait_ms: float = 1.0,
                 shared: SharedWriter | None = None) -> None:
        """``shared``: the process's one writer for this SQLite database (gateway/storage/shared.py);
        otherwise a writer thread of the store's own."""
        self.engine = engine
        self._writer: BatchWriter[_Item] | Slot[_Item] = (
            shared.slot(_Part(self)) if shared is not None else
            BatchWriter("flow-writer", self._handle, batch_max=batch_max, wait_ms=batch_wait_ms,
                        wait_max_ms=5.0))
        self._lock: WriteLock | None = None  # opened by start(): one file per running store

    def start(self) -> None:
        if self._lock is None:
            self._lock = WriteLock(self.engine, "flows")
        self._writer.start()

    def close(self) -> None:
        self._writer.close()
        if self._lock is not None:
            self._lock.close()
            self._lock = None

    # -- writes, from threads (each returns once committed) ----------------------------------------

    def file(self, flow: FlowRow, now: int) -> tuple[FlowRow, bool]:
        """Store a new flow with its steps, due now; a flow already filed for the same name and
        dossier code is returned instead (``True``: it is that one)."""
        return self._write(_File.of(flow, now))  # type: ignore[no-any-return]

    def claim(self, limit: int, lease_us: int, now: int,
              first: Sequence[str] = ()) -> list[tuple[FlowRow, str]]:
        """Flows that are due, leased to the caller until ``now + lease_us``: those of ``first``
        that are due before the others (the flows this process poked: it holds their news)."""
        return self._write(_Claim(limit, lease_us, now, tuple(first)))  # type: ignore[no-any-return]

    def save(self, flow: FlowRow, lease: str, next_us: int, now: int,
             steps: Sequence[StepRow] = ()) -> bool:
        """Write a leased flow's state and the steps that changed, and release it until ``next_us``;
        False when the lease was lost (another process took the flow over: this one's view is
        stale and nothing is written). A flow left waiting for a delivery that has meanwhile
        finished is due at once: the poke that finish sent found the flow still leased."""
        return self._write(_Save.of(flow, lease, next_us, now, steps))  # type: ignore[no-any-return]

    def poke(self, flow_id: str, now: int) -> None:
        """Make a flow due now (its step's delivery has an outcome)."""
        self._write(_Poke((flow_id,), now))

    def poke_many(self, flow_ids: Sequence[str], now: int) -> None:
        """Make these flows due now, those not leased (a leased one's save looks for itself)."""
        self._write(_Poke(tuple(flow_ids), now))

    # -- the same, from event loops ----------------------------------------------------------------

    async def file_async(self, flow: FlowRow, now: int) -> tuple[FlowRow, bool]:
        return await self._submit(_File.of(flow, now))  # type: ignore[no-any-return]

    async def claim_async(self, limit: int, lease_us: int, now: int,
                          first: Sequence[str] = ()) -> list[tuple[FlowRow, str]]:
        return await self._submit(_Claim(limit, lease_us, now, tuple(first)))  # type: ignore[no-any-return]

    async def save_async(self, flow: FlowRow, lease: str, next_us: int, now: int,
                         steps: Sequence[StepRow] = ()) -> bool:
        return await self._submit(_Save.of(flow, lease, next_us, now, steps))  # type: ignore[no-any-return]

    async def poke_async(self, flow_ids: Sequence[str], now: int) -> None:
        await self._submit(_Poke(tuple(flow_ids), now))

    # -- reads -------------------------------------------------------------------------------------

    def get(self, flow_id: str) -> FlowRow | None:
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(flows).where(flows.c.id == flow_id)).first()
            return _flow(conn, row) if row is not None else None

    def by_dossier(self, name: str, code: str) -> FlowRow | None:
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(flows).where(flows.c.name == name,
                                                      flows.c.dossier_code == code)).first()
            return _flow(conn, row) if row is not None else None

    def find(self, *, dossier: str | None = None, state: str | None = None,
             limit: int = 100) -> list[FlowRow]:
        query = sa.select(flows).order_by(flows.c.started_us, flows.c.id).limit(limit)
        if dossier is not None:
            query = query.where(flows.c.dossier_code == dossier)
        if state is not None:
            query = query.where(flows.c.state == state)
        with self.engine.connect() as conn:
            return [_flow(conn, row) for row in conn.execute(query).all()]

    def counts(self) -> dict[str, dict[str, int]]:
        """Flows by name and state."""
        with self.engine.connect() as conn:
            out: dict[str, dict[str, int]] = {}
            for name, state, n in conn.execute(sa.select(flows.c.name, flows.c.state, sa.func.count())
                                               .group_by(flows.c.name, flows.c.state)):
                out.setdefault(name, {})[state] = int(n)
            return out

    # -- the writer --------------------------------------------------------------------------------

    def _write(self, work: _Work) -> Any:
        item = Request(work, done=threading.Event())
        if not self._writer.running:
            self._commit([item])
        else:
            self._writer.put(item)
            assert item.done is not None
            while not item.done.wait(1.0):
                if not self._writer.running and not item.done.is_set():
                    self._commit([item])  # the writer stopped before it took this one
                    break
        if isinstance(item.result, BaseException):
            raise item.result
        return item.result

    async def _submit(self, work: _Work) -> Any:
        if not self._writer.running:
            return await asyncio.to_thread(self._write, work)
        item = Request(work, future=asyncio.get_running_loop().create_future())
        self._writer.put(item)
        assert item.future is not None
        return await item.future

    def _handle(self, batch: list[_Item]) -> None:
        self._commit(batch)
        answer(batch)

    def _commit(self, batch: list[_Item]) -> None:
        """One transaction for the batch (``_write_batch``), then what follows it."""
        pokes = [item for item in batch if isinstance(item.work, _Poke)]
        pg = self.engine.dialect.name == "postgresql"
        lock = self._lock if self._lock is not None else WriteLock(self.engine, "flows")
        try:
            with lock, self.engine.begin() as conn:
                self._write_batch(conn, batch, pokes=not pg)
        except Exception as exc:  # nothing of the batch is stored
            _failed(batch, exc)
        finally:
            if lock is not self._lock:
                lock.close()
        _claimed(batch)
        if pokes and pg:
            # On PostgreSQL in a transaction of their own: a poke waits for the row of a flow
            # another process is saving, and must hold no row that process's batch may want.
            try:
                with self.engine.begin() as conn:
                    _poke_all(conn, pokes)
            except Exception as exc:
                for item in pokes:
                    item.result = exc

    @staticmethod
    def _write_batch(conn: Connection, batch: list[_Item], *, pokes: bool) -> None:
        """Filings, then saves, then pokes (unless ``pokes`` is false), then claims, in the open
        transaction (so that a flow saved or poked in this batch may be claimed by it). A filing
        in a savepoint of its own, so that a dossier filed twice leaves the others'; the saves, the
        pokes and each claim as a few statements for all of them."""
        files = [item for item in batch if isinstance(item.work, _File)]
        saves = [item for item in batch if isinstance(item.work, _Save)]
        poking = [item for item in batch if isinstance(item.work, _Poke)] if pokes else []
        claims = [item for item in batch if isinstance(item.work, _Claim)]
        if files:
            _file_many(conn, files)
        if saves:
            _save_many(conn, saves)
        if poking:
            _poke_all(conn, poking)
        for item in claims:
            assert isinstance(item.work, _Claim)
            item.result = _claim(conn, item.work.limit, item.work.lease_us, item.work.now, item.work.first)


class _Part:
    """The store's batches in the shared writer's transactions (gateway/storage/shared.py): on
    SQLite only, so the pokes go with the rest."""

    def __init__(self, owner: FlowStore) -> None:
        self.owner = owner

    def write(self, conn: Connection, batch: list[_Item]) -> None:
        self.owner._write_batch(conn, batch, pokes=True)

    def settle(self, batch: list[_Item], written: None) -> None:
        _claimed(batch)
        answer(batch)

    def fail(self, batch: list[_Item], exc: Exception) -> None:
        _failed(batch, exc)
        answer(batch)


def _poke_all(conn: Connection, pokes: list[_Item]) -> None:
    """The pokes of a batch as one statement, at the earliest of their times."""
    works = [item.work for item in pokes if isinstance(item.work, _Poke)]
    _poke(conn, [i for work in works for i in work.ids], min(work.now for work in works))


def _failed(batch: list[_Item], exc: Exception) -> None:
    for item in batch:
        item.result = exc


def _claimed(batch: list[_Item]) -> None:
    """The claimed rows made into flows once the lock is free for others."""
    for item in batch:
        if isinstance(item.work, _Claim) and not isinstance(item.result, BaseException):
            try:
                item.result = [(_flow_of(row, steps), lease) for row, steps, lease in item.result]
            except Exception as exc:  # an unreadable row: the claim's leases run out unused
                item.result = exc


@dataclass(frozen=True, slots=True)
class _File:
    flow: FlowRow
    now: int
    row: tuple[Any, ...]  # the flow's and its steps' rows, made by the caller: not under the lock
    step_rows: tuple[tuple[Any, ...], ...]

    @classmethod
    def of(cls, flow: FlowRow, now: int) -> _File:
        row = {"id": flow.id, "name": flow.name, "dossier_code": flow.dossier_code, "client": flow.client,
               "exchange_id": flow.exchange_id, "state": flow.state, "dossier": orjson.dumps(flow.dossier),
               "subjects": orjson.dumps(list(flow.subjects)).decode(), "started_us": flow.started_us,
               "updated_us": now, "finished_us": None, "deadline_us": flow.deadline_us, "overdue": False,
               "reason": None, "next_us": now, "lease": None}
        return cls(flow, now, tuple(row[c] for c in _FLOW_COLUMNS),
                   tuple(_step_row(flow.id, s) for s in flow.steps))


@dataclass(frozen=True, slots=True)
class _Claim:
    limit: int
    lease_us: int
    now: int
    first: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class _Save:
    flow: FlowRow
    lease: str
    next_us: int
    now: int
    steps: tuple[StepRow, ...]
    row: tuple[Any, ...]  # the UPDATEs' parameters, made by the caller: not under the lock
    step_rows: tuple[tuple[Any, ...], ...]

    @classmethod
    def of(cls, flow: FlowRow, lease: str, next_us: int, now: int, steps: Sequence[StepRow]) -> _Save:
        row = (flow.state, now, flow.finished_us, flow.overdue, _json(flow.reason), next_us, flow.id)
        return cls(flow, lease, next_us, now, tuple(steps), row,
                   tuple(_step_update(flow.id, s) for s in steps))


@dataclass(frozen=True, slots=True)
class _Poke:
    ids: tuple[str, ...]
    now: int


_Work = _File | _Claim | _Save | _Poke
_Item = Request[_Work]


def _file_many(conn: Connection, items: list[_Item]) -> None:
    """New flows with their steps, each dossier once per flow name: the names and codes already
    taken are looked up first, and the others inserted with one statement per table. A filing whose
    name and code are taken (before, or earlier in the batch) gets the flow that holds them."""
    works = [(item, item.work) for item in items if isinstance(item.work, _File)]
    taken = _filed(conn, {w.flow.dossier_code for _, w in works})
    fresh: list[tuple[_Item, _File]] = []
    again: list[tuple[_Item, _File]] = []
    for item, work in works:
        key = (work.flow.name, work.flow.dossier_code)
        (again if key in taken else fresh).append((item, work))
        taken.add(key)
    if fresh:
        try:
            with conn.begin_nested():
                _insert_flows(conn, [w for _, w in fresh])
        except IntegrityError:
            # Filed meanwhile by another process (PostgreSQL: nothing holds the table), or an id
            # that collided: each on its own, as the filing that lost finds the flow that won.
            for item, work in fresh:
                try:
                    with conn.begin_nested():
                        _insert_flows(conn, [work])
                    item.result = (work.flow, False)
                except IntegrityError as exc:
                    item.result = _duplicate(conn, work, exc)
        else:
            for item, work in fresh:
                item.result = (work.flow, False)
    for item, work in again:
        item.result = _duplicate(conn, work, None)


def _filed(conn: Connection, codes: set[str]) -> set[tuple[str, str]]:
    """The (flow name, dossier code) pairs already filed among ``codes``."""
    return {(name, code) for name, code in select_in(
        conn, "SELECT name, dossier_code FROM flows WHERE dossier_code", sorted(codes))}


def _insert_flows(conn: Connection, works: list[_File]) -> None:
    conn.exec_driver_sql(driver_sql(conn, _INSERT_FLOW), [w.row for w in works])
    conn.exec_driver_sql(driver_sql(conn, _INSERT_STEP), [r for w in works for r in w.step_rows])


def _duplicate(conn: Connection, work: _File, exc: IntegrityError | None) -> Any:
    """A filing whose name and dossier code are taken: the flow that holds them."""
    row = conn.execute(sa.select(flows).where(flows.c.name == work.flow.name,
                                              flows.c.dossier_code == work.flow.dossier_code)).first()
    if row is None:  # pragma: no cover - an id collision of 128 random bits
        return exc if exc is not None else RuntimeError("a filing's flow vanished within its transaction")
    return _flow(conn, row), True


def _claim(conn: Connection, limit: int, lease_us: int, now: int,
           first: Sequence[str] = ()) -> list[tuple[Any, list[Any], str]]:
    """Lease up to ``limit`` due flows under one token (a flow is saved by its id and that token),
    the due ones of ``first`` before the others: each flow's row, its steps' rows and the token
    (made into a ``FlowRow`` by the caller)."""
    pg = conn.dialect.name == "postgresql"
    ids: list[str] = []
    for chunk in chunks(list(first[:limit])):
        ids.extend(r.id for r in conn.execute(_DUE_AMONG_PG if pg else _DUE_AMONG,
                                              {"c_ids": chunk, "c_now": now}))
    if len(ids) < limit:
        taken = set(ids)
        if pg:
            due = [r.id for r in conn.execute(_DUE_PG, {"c_now": now, "c_limit": limit})]
        else:  # one state at a time, each read in its index's order: given both, SQLite sorted
            # every due flow for each claim (10,000 filed at once: all of them, a hundred times)
            found = [r for state in ACTIVE
                     for r in conn.execute(_DUE_IN, {"c_state": state, "c_now": now, "c_limit": limit})]
            due = [r.id for r in sorted(found, key=lambda r: r.next_us)]
        ids.extend(i for i in due if i not in taken)
        ids = ids[:limit]
    if not ids:
        return []
    lease = random_hex(8)
    conn.execute(_LEASE, {"c_ids": ids, "c_now": now, "c_lease": lease, "c_next": now + lease_us})
    rows = conn.execute(_LEASED, {"c_ids": ids, "c_lease": lease}).all()
    steps: dict[str, list[Any]] = {}
    for s in conn.execute(_STEPS_OF, {"c_ids": [r.id for r in rows]}):
        steps.setdefault(s.flow_id, []).append(s)
    return [(row, steps.get(row.id, []), lease) for row in rows]


# A claim's statements, built once: a claim is made several times a second under the write lock.
_AMONG = flows.c.id.in_(sa.bindparam("c_ids", expanding=True))
_DUE_PG = (sa.select(flows.c.id).where(flows.c.state.in_(ACTIVE), flows.c.next_us <= sa.bindparam("c_now"))
           .order_by(flows.c.next_us).limit(sa.bindparam("c_limit")).with_for_update(skip_locked=True))
_DUE_IN = (sa.select(flows.c.id, flows.c.next_us)
           .where(flows.c.state == sa.bindparam("c_state"), flows.c.next_us <= sa.bindparam("c_now"))
           .order_by(flows.c.next_us).limit(sa.bindparam("c_limit")))
# Among given flows, "not finished" rather than "active" (the same flows): given ``state IN``,
# SQLite's planner (no statistics) walks the due index, every active flow, rather than looking the
# hundred keys up.
_DUE_AMONG = sa.select(flows.c.id).where(_AMONG, flows.c.state.not_in(FINISHED),
                                         flows.c.next_us <= sa.bindparam("c_now"))
_DUE_AMONG_PG = _DUE_AMONG.with_for_update(skip_locked=True)
_POKE = (flows.update().where(_AMONG, flows.c.state.not_in(FINISHED), flows.c.lease.is_(None),
                              flows.c.next_us > sa.bindparam("c_now"))
         .values(next_us=sa.bindparam("c_now")))
_LEASE = (flows.update().where(_AMONG, flows.c.next_us <= sa.bindparam("c_now"))
          .values(lease=sa.bindparam("c_lease"), next_us=sa.bindparam("c_next")))
_LEASED = sa.select(flows).where(_AMONG, flows.c.lease == sa.bindparam("c_lease"))
# A step's columns in ``StepRow``'s order after the flow's id (``_flow_of`` unpacks them by place).
_STEP_READ = tuple(flow_steps.c[name] for name in (
    "flow_id", "step", "position", "service", "state", "delivery_id", "sends", "undo_delivery_id",
    "started_us", "finished_us", "deadline_us", "overdue", "result", "reason", "due_us"))
_STEPS_OF = (sa.select(*_STEP_READ).where(flow_steps.c.flow_id.in_(sa.bindparam("c_ids", expanding=True)))
             .order_by(flow_steps.c.flow_id, flow_steps.c.position))


# The hot writes as plain driver SQL, their parameters made by the caller (``_File.of``,
# ``_Save.of``): SQLAlchemy's statement building and per-row parameter processing were most of the
# flows' time under the write lock (a filing's ``insert().values()`` and savepoint, 180-200 µs of
# CPU an item, the largest of the shared writer's parts; docs/benchmarks.md, "Joint procedures").
_FLOW_COLUMNS = tuple(c.name for c in flows.columns)
_STEP_ROW_COLUMNS = tuple(c.name for c in flow_steps.columns)
_KEYS = ("flow_id", "step")
_SET_AT = tuple(i for i, c in enumerate(_STEP_ROW_COLUMNS) if c not in _KEYS)  # a save's columns in a row
_INSERT_FLOW = (f"INSERT INTO flows ({', '.join(_FLOW_COLUMNS)}) "  # noqa: S608 - the table's own names
                f"VALUES ({', '.join('?' for _ in _FLOW_COLUMNS)})")
_INSERT_STEP = (f"INSERT INTO flow_steps ({', '.join(_STEP_ROW_COLUMNS)}) "  # noqa: S608
                f"VALUES ({', '.join('?' for _ in _STEP_ROW_COLUMNS)})")
_SAVE_FLOW = ("UPDATE flows SET state = ?, updated_us = ?, finished_us = ?, overdue = ?, reason = ?, "
              "next_us = ?, lease = NULL WHERE id = ?")
_SAVE_STEP = (f"UPDATE flow_steps SET {', '.join(f'{_STEP_ROW_COLUMNS[i]} = ?' for i in _SET_AT)} "  # noqa: S608
              "WHERE flow_id = ? AND step = ?")
_DUE_NOW = "UPDATE flows SET next_us = ? WHERE id = ?"


def _save_many(conn: Connection, items: list[_Item]) -> None:
    """Each save applies only while its lease is still the flow's (one look at the leases, then one
    statement per table for all of them)."""
    works = [item.work for item in items if isinstance(item.work, _Save)]
    leases: dict[str, str | None] = {}
    # locked in one order in every process
    leases.update((flow_id, lease) for flow_id, lease in select_in(
        conn, "SELECT id, lease FROM flows WHERE id", sorted({w.flow.id for w in works}),
        f" ORDER BY id{for_update(conn)}"))
    applied: list[_Save] = []
    for item in items:
        work = item.work
        assert isinstance(work, _Save)
        item.result = leases.get(work.flow.id) == work.lease
        if item.result:
            leases[work.flow.id] = None  # a second save under the same lease is stale
            applied.append(work)
    if not applied:
        return
    conn.exec_driver_sql(driver_sql(conn, _SAVE_FLOW), [w.row for w in applied])
    steps = [row for w in applied for row in w.step_rows]
    if steps:
        conn.exec_driver_sql(driver_sql(conn, _SAVE_STEP), steps)
    # A flow left waiting for a delivery that finished while the flow was leased (the poke sent
    # when it finished found the lease) is due now.
    awaited: dict[str, list[_Save]] = {}
    for w in applied:
        if w.next_us > w.now and w.flow.state in ACTIVE:
            for s in w.flow.steps:
                if s.state == "sent" and s.delivery_id:
                    awaited.setdefault(s.delivery_id, []).append(w)
                elif s.state == "compensating" and s.undo_delivery_id:
                    awaited.setdefault(s.undo_delivery_id, []).append(w)
    due: dict[str, int] = {}
    for (delivery_id,) in select_in(conn, "SELECT id FROM deliveries WHERE state <> 'pending' AND id",
                                    sorted(awaited)):
        for w in awaited[delivery_id]:
            due[w.flow.id] = w.now
    if due:
        conn.exec_driver_sql(driver_sql(conn, _DUE_NOW), [(now, flow_id) for flow_id, now in due.items()])


def _poke(conn: Connection, ids: Sequence[str], now: int) -> None:
    for chunk in chunks(list(ids)):
        conn.execute(_POKE, {"c_ids": chunk, "c_now": now})


def new_flow_id() -> str:
    return new_id()


def _step_row(flow_id: str, step: StepRow) -> tuple[Any, ...]:
    """A step's row, in the table's column order."""
    values = {"flow_id": flow_id, "step": step.step, "position": step.position, "service": step.service,
              "state": step.state, "delivery_id": step.delivery_id, "sends": step.sends,
              "undo_delivery_id": step.undo_delivery_id, "started_us": step.started_us,
              "finished_us": step.finished_us, "deadline_us": step.deadline_us, "overdue": step.overdue,
              "due_us": step.due_us, "result": None if step.result is None else orjson.dumps(step.result),
              "reason": _json(step.reason)}
    return tuple(values[c] for c in _STEP_ROW_COLUMNS)


def _step_update(flow_id: str, step: StepRow) -> tuple[Any, ...]:
    """A step's ``_SAVE_STEP`` parameters: the columns it sets, then its keys."""
    row = _step_row(flow_id, step)
    return (*(row[i] for i in _SET_AT), flow_id, step.step)


def _json(value: Any) -> str | None:
    return None if value is None else orjson.dumps(value).decode()


def _flow(conn: Connection, row: Any) -> FlowRow:
    return _flow_of(row, conn.execute(sa.select(*_STEP_READ).where(flow_steps.c.flow_id == row.id)
                                      .order_by(flow_steps.c.position)).all())


def _flow_of(row: Any, step_rows: Sequence[Any]) -> FlowRow:
    """A flow and its steps (``_STEP_READ``'s columns) as the engine reads them. The steps are
    unpacked by place: by name, a claim of 512 flows spent three times as long on them, a few
    percent of a drain's CPU in the writer's thread."""
    steps = []
    for (_flow_id, step, position, service, state, delivery_id, sends, undo_delivery_id, started_us,
         finished_us, deadline_us, overdue, result, reason, due_us) in step_rows:
        steps.append(StepRow(step, position, service, state, delivery_id, sends, undo_delivery_id,
                             started_us, finished_us, deadline_us, bool(overdue),
                             orjson.loads(result) if result is not None else None,
                             orjson.loads(reason) if reason else None, due_us))
    return FlowRow(id=row.id, name=row.name, dossier_code=row.dossier_code, client=row.client,
                   exchange_id=row.exchange_id, state=row.state, dossier=orjson.loads(row.dossier),
                   subjects=tuple(orjson.loads(row.subjects)), started_us=row.started_us,
                   updated_us=row.updated_us, deadline_us=row.deadline_us, finished_us=row.finished_us,
                   overdue=bool(row.overdue), reason=orjson.loads(row.reason) if row.reason else None,
                   steps=steps)


def _iso(us: int | None) -> str | None:
    if us is None:
        return None
    from datetime import UTC, datetime

    return datetime.fromtimestamp(us / 1e6, tz=UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
