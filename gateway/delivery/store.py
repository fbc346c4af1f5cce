"""The delivery queue's storage: accept durably, claim with a lease, complete, and the operators' views.

Every write goes through one writer thread per process (group commit, as the audit log does):
intakes, completions and claims queue up, and each batch is stored in one transaction, so that
hundreds of accepted dossiers share one fsync and the process's writes never wait for each other's
locks. ``accept`` returns only once its row is durable. Reads (the operators' views, the look for due
work) use connections that take no write lock.

A claim picks the pending deliveries that are due and head their chain (no earlier delivery of the
same ``order_key`` still pending or dead), takes them with a lease (a random token and an expiry),
and counts the attempt; it runs after the batch's completions, so a chain moves on in the very
transaction that records its previous delivery. On PostgreSQL the pick is
``SELECT … FOR UPDATE SKIP LOCKED``, so competing processes never take the same row; on SQLite the
transaction holds the write lock (``BEGIN IMMEDIATE``). A completion applies only while its lease is
still the row's: a worker that was presumed dead (its lease expired and another took the delivery)
cannot overwrite the newer attempt's outcome.

Idempotency: ``idem_key`` is unique. A repeated push finds the first delivery, in the same batch or
in the table (``INSERT … ON CONFLICT DO NOTHING`` then a look-up covers another process inserting
the same key at the same moment).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import socket
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import orjson
import sqlalchemy as sa
import structlog
from sqlalchemy.engine import Connection, Engine

from gateway.delivery.messages import RESOLVED, DossierFacts
from gateway.delivery.tables import deliveries, delivery_dossiers
from gateway.delivery.transitions import impossible
from gateway.errors import GatewayError, InvalidBody, ServerError
from gateway.ids import new_id
from gateway.policy import Kept
from gateway.storage.db import WriteLock
from gateway.storage.writer import BatchWriter

__all__ = ["Accepted", "Claimed", "DeliveryStore", "NewDelivery", "Outcome", "QueueUnavailable",
           "now_us", "worker_name"]

log = structlog.get_logger("lienthong.delivery")

PENDING, DELIVERED, DEAD, CANCELLED = "pending", "delivered", "dead", "cancelled"
STATES = (PENDING, DELIVERED, DEAD, CANCELLED)
BLOCKING = (PENDING, DEAD)  # states that hold back the later deliveries of their chain


class QueueUnavailable(ServerError):
    status = 503
    title = "Delivery queue unavailable"
    code = "Server.QueueFailed"
    type_slug = "queue-unavailable"


def now_us() -> int:
    return time.time_ns() // 1000


def worker_name() -> str:
    return f"{socket.gethostname()[:40]}:{os.getpid()}"


@dataclass(frozen=True, slots=True)
class NewDelivery:
    """An async request, checked and ready to store."""

    id: str
    idem_key: str
    order_key: str
    dossier: str | None
    service: str
    operation: str
    client: str
    rule: str | None
    exchange_id: str
    user_id: str | None
    purpose: str | None
    represented_party: str | None
    method: str
    path: str
    query: str
    content_type: str
    body: bytes
    body_sha256: str
    subjects: tuple[str, ...]
    agency: str | None = None  # for a tracked dossier: the agency it counts for
    status: int | None = None  # the dossier status it carries, for the transition check
    transitions: str = "off"  # refuse | flag | off
    decided: Kept | None = None  # the allowing rule's response fields at intake
    addressed: str | None = None  # the member a routed message named, when its successor got it


@dataclass(frozen=True, slots=True)
class Accepted:
    id: str
    state: str
    duplicate: bool
    flag: str | None = None


@dataclass(frozen=True, slots=True)
class Claimed:
    """A delivery a worker holds, with everything needed to send it."""

    seq: int
    id: str
    lease: str
    attempts: int  # this one included, all time
    attempt_base: int  # attempts before the last operator's retry: the budget counts from here
    dossier: str | None
    service: str
    operation: str
    client: str
    rule: str | None
    exchange_id: str
    user_id: str | None
    purpose: str | None
    represented_party: str | None
    method: str
    path: str
    query: str
    content_type: str
    body: bytes
    body_sha256: str
    subjects: tuple[str, ...]
    decided: Kept | None = None  # None: stored before decisions were kept (the rule's fields apply)
    addressed: str | None = None


@dataclass(frozen=True, slots=True)
class Outcome:
    """What became of one attempt."""

    id: str
    lease: str
    state: str  # delivered | pending (retry later, or released unattempted) | dead
    next_us: int = 0
    error: dict[str, Any] | None = None
    response_status: int | None = None
    response: bytes | None = None
    released: bool = False  # not attempted after all: the attempt is not counted
    facts: tuple[DossierFacts, ...] = ()
    agency: str | None = None


@dataclass(slots=True)
class _Item:
    kind: str  # intake | outcome | claim
    value: Any
    future: asyncio.Future[Any] | None = None  # on the submitting event loop; None for tools
    result: Any = None  # the value or the exception, once the batch is stored


class DeliveryStore:
    def __init__(self, engine: Engine, *, batch_max: int = 512, batch_wait_ms: float = 2.0) -> None:
        self.engine = engine
        self._pg = engine.dialect.name == "postgresql"
        self.reader = engine if self._pg else _sqlite_reader(engine)
        # A batch stays open while items keep coming, up to 10 ms (or one wait, when longer).
        self._writer: BatchWriter[_Item] = BatchWriter(
            "delivery-writer", self._handle, batch_max=batch_max, wait_ms=batch_wait_ms,
            wait_max_ms=10.0)
        self._lock = WriteLock(engine)
        self.batches = 0

    # -- the writer ------------------------------------------------------------------------------

    def start(self) -> None:
        self._writer.start()

    def close(self) -> None:
        self._writer.close()
        if self.reader is not self.engine:
            self.reader.dispose()
        self._lock.close()

    async def accept(self, new: NewDelivery) -> Accepted:
        """Store ``new`` (or find the delivery its idempotency key already made); durable on return.
        InvalidBody (422) for an impossible status change when transitions are refused."""
        return await self._submit("intake", new)  # type: ignore[no-any-return]

    async def complete(self, outcome: Outcome) -> bool:
        """Record an attempt's outcome; False if the lease was lost (another worker has it now)."""
        return await self._submit("outcome", outcome)  # type: ignore[no-any-return]

    async def claim(self, services: Sequence[str], limit: int, lease_seconds: float,
                    worker: str) -> list[Claimed]:
        """Take up to ``limit`` due deliveries that head their chain, oldest first, with a lease."""
        request = (tuple(services), limit, lease_seconds, worker)
        return await self._submit("claim", request)  # type: ignore[no-any-return]

    async def _submit(self, kind: str, value: Any) -> Any:
        if not self._writer.running:
            raise QueueUnavailable("the delivery queue is not running")
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._writer.put(_Item(kind, value, future))
        return await future

    def accept_many(self, batch: Sequence[NewDelivery]) -> list[Accepted | GatewayError]:
        """Store a batch synchronously in one transaction (tools and benchmarks)."""
        items = [_Item("intake", new) for new in batch]
        self._commit(items)
        return [item.result for item in items]

    def _handle(self, batch: list[_Item]) -> None:
        self._commit(batch)
        self._answer(batch)

    @staticmethod
    def _answer(batch: list[_Item]) -> None:
        """Wake each waiting event loop once per batch, not once per item."""
        by_loop: dict[asyncio.AbstractEventLoop, list[_Item]] = {}
        for item in batch:
            if item.future is not None:
                by_loop.setdefault(item.future.get_loop(), []).append(item)
        for loop, items in by_loop.items():
            with contextlib.suppress(RuntimeError):  # a closed loop: nobody waits any more
                loop.call_soon_threadsafe(_settle, items)

    def _commit(self, batch: list[_Item]) -> None:
        outcomes = [item for item in batch if item.kind == "outcome"]
        intakes = [item for item in batch if item.kind == "intake"]
        claims = [item for item in batch if item.kind == "claim"]
        results: dict[int, Any] = {}
        try:
            with self._lock, self.engine.begin() as conn:
                results.update(self._store_outcomes(conn, outcomes))
                results.update(self._store_intakes(conn, intakes))
                for item in claims:
                    results[id(item)] = self._claim(conn, *item.value)
        except Exception as exc:
            log.error("delivery_write_failed", error=type(exc).__name__, detail=str(exc)[:300],
                      batch=len(batch))
            failure = QueueUnavailable("the delivery queue could not store this request; it was not "
                                       "accepted")
            for item in batch:
                item.result = failure
            return
        self.batches += 1
        for item in batch:
            item.result = results[id(item)]

    # -- intake ------------------------------------------------------------------------------------

    def _store_intakes(self, conn: Connection, items: list[_Item]) -> dict[int, Any]:
        if not items:
            return {}
        news: list[NewDelivery] = [item.value for item in items]
        keys = list({n.idem_key for n in news})
        existing = self._by_idem_key(conn, keys)
        codes = list({n.dossier for n in news if n.dossier and n.agency is not None})
        held = self._dossiers(conn, codes)
        statuses = {code: row["intake_status"] for code, row in held.items()}
        results: dict[int, Any] = {}
        rows: list[tuple[Any, ...]] = []
        fresh: dict[str, tuple[int, NewDelivery, str | None]] = {}
        touched: dict[str, NewDelivery] = {}
        now = now_us()
        for item, new in zip(items, news, strict=True):
            if new.idem_key in existing:
                found = existing[new.idem_key]
                results[id(item)] = Accepted(found["id"], found["state"], duplicate=True, flag=found["flag"])
                continue
            if new.idem_key in fresh:
                first = fresh[new.idem_key]
                results[id(item)] = Accepted(first[1].id, PENDING, duplicate=True, flag=first[2])
                continue
            flag = None
            if new.dossier and new.agency is not None and new.transitions != "off":
                reason = impossible(statuses.get(new.dossier), new.status)
                if reason and new.transitions == "refuse":
                    results[id(item)] = InvalidBody(
                        f"dossier {new.dossier}: {reason}", status=422,
                        errors=[{"path": "$", "message": reason}])
                    continue
                flag = reason
            if new.dossier and new.agency is not None:
                if new.status is not None:
                    statuses[new.dossier] = new.status
                touched[new.dossier] = new
            fresh[new.idem_key] = (id(item), new, flag)
            rows.append(self._row(new, flag, now))
        if rows:
            self._insert_ignoring_duplicates(conn, rows)
            if self._pg:  # another process may have stored the same key meanwhile; on SQLite the
                # write lock held since the look-up above rules that out
                stored = self._by_idem_key(conn, list(fresh))
            else:
                stored = {key: {"id": new.id, "state": PENDING, "flag": flag}
                          for key, (_, new, flag) in fresh.items()}
            for key, (item_id, new, _flag) in fresh.items():
                found = stored[key]
                results[item_id] = Accepted(found["id"], found["state"], duplicate=found["id"] != new.id,
                                            flag=found["flag"])
        if touched:
            self._note_intake(conn, touched, statuses, held, now)
        return results

    # The hot statements go to the driver as plain SQL (one executemany each): SQLAlchemy's
    # per-row parameter processing cost more than the database's work here. The SQL is the same
    # on SQLite (3.24+) and PostgreSQL but for the placeholder.

    _COLUMNS: ClassVar[tuple[str, ...]] = tuple(c.name for c in deliveries.c if c.name != "seq")
    _DOSSIER_COLUMNS: ClassVar[tuple[str, ...]] = tuple(c.name for c in delivery_dossiers.c)

    def _sql(self, text: str) -> str:
        return text.replace("?", "%s") if self._pg else text

    @staticmethod
    def _row(new: NewDelivery, flag: str | None, now: int) -> tuple[Any, ...]:
        values = {
            "id": new.id, "idem_key": new.idem_key, "order_key": new.order_key[:400],
            "dossier": new.dossier[:128] if new.dossier else None, "service": new.service,
            "operation": new.operation, "client": new.client, "rule": new.rule,
            "exchange_id": new.exchange_id, "user_id": _cut(new.user_id, 255),
            "purpose": _cut(new.purpose, 512), "represented_party": _cut(new.represented_party, 255),
            "method": new.method, "path": new.path, "query": new.query,
            "content_type": new.content_type[:255], "body": new.body, "body_sha256": new.body_sha256,
            "subjects": orjson.dumps(list(new.subjects)).decode(), "state": PENDING, "attempts": 0,
            "attempt_base": 0, "next_us": now, "lease": None, "worker": None, "created_us": now,
            "updated_us": now, "delivered_us": None, "last_error": None, "response_status": None,
            "response": None, "flag": _cut(flag, 512), "replay_of": None,
            "response_fields": new.decided.dumps() if new.decided is not None else None,
            "addressed": new.addressed,
        }
        return tuple(values[c] for c in DeliveryStore._COLUMNS)

    def _insert_ignoring_duplicates(self, conn: Connection, rows: list[tuple[Any, ...]]) -> None:
        columns = ", ".join(self._COLUMNS)
        marks = ", ".join("?" for _ in self._COLUMNS)
        conn.exec_driver_sql(self._sql(f"INSERT INTO deliveries ({columns}) VALUES ({marks}) "  # noqa: S608
                                       "ON CONFLICT (idem_key) DO NOTHING"), rows)

    def _by_idem_key(self, conn: Connection, keys: list[str]) -> dict[str, dict[str, Any]]:
        out: dict[str, dict[str, Any]] = {}
        for chunk in _chunks(keys, 500):
            marks = ", ".join("?" for _ in chunk)
            query = self._sql(f"SELECT idem_key, id, state, flag FROM deliveries "  # noqa: S608
                              f"WHERE idem_key IN ({marks})")
            for key, found_id, state, flag in conn.exec_driver_sql(query, tuple(chunk)):
                out[key] = {"id": found_id, "state": state, "flag": flag}
        return out

    def _dossiers(self, conn: Connection, codes: list[str]) -> dict[str, dict[str, Any]]:
        out: dict[str, dict[str, Any]] = {}
        columns = self._DOSSIER_COLUMNS
        for chunk in _chunks(codes, 500):
            marks = ", ".join("?" for _ in chunk)
            lock = " FOR UPDATE" if self._pg else ""
            query = self._sql(f"SELECT {', '.join(columns)} FROM delivery_dossiers "  # noqa: S608
                              f"WHERE code IN ({marks}){lock}")
            for row in conn.exec_driver_sql(query, tuple(chunk)):
                found = dict(zip(columns, row, strict=True))
                if found["online"] is not None:
                    found["online"] = bool(found["online"])
                out[found["code"]] = found
        return out

    def _note_intake(self, conn: Connection, touched: dict[str, NewDelivery], statuses: dict[str, Any],
                     held: dict[str, dict[str, Any]], now: int) -> None:
        rows = []
        for code, new in touched.items():
            row = dict(held.get(code) or _blank_dossier(code, new.agency or ""))
            row["intake_status"] = statuses.get(code)
            row["updated_us"] = now
            rows.append(row)
        self._upsert_dossiers(conn, rows)

    def _upsert_dossiers(self, conn: Connection, rows: list[dict[str, Any]]) -> None:
        columns = self._DOSSIER_COLUMNS
        updates = ", ".join(f"{c} = excluded.{c}" for c in columns if c != "code")
        conn.exec_driver_sql(self._sql(
            f"INSERT INTO delivery_dossiers ({', '.join(columns)}) "  # noqa: S608
            f"VALUES ({', '.join('?' for _ in columns)}) ON CONFLICT (code) DO UPDATE SET {updates}"),
            [tuple(row[c] for c in columns) for row in rows])

    # -- outcomes ----------------------------------------------------------------------------------

    def _store_outcomes(self, conn: Connection, items: list[_Item]) -> dict[int, Any]:
        """One look at the leases, one UPDATE for all the outcomes still holding theirs."""
        if not items:
            return {}
        outs: list[Outcome] = [item.value for item in items]
        leases: dict[str, str | None] = {}
        lock = " FOR UPDATE" if self._pg else ""
        for chunk in _chunks([o.id for o in outs], 500):
            marks = ", ".join("?" for _ in chunk)
            query = self._sql(f"SELECT id, lease FROM deliveries WHERE id IN ({marks}){lock}")  # noqa: S608
            leases.update((row[0], row[1]) for row in conn.exec_driver_sql(query, tuple(chunk)))
        now = now_us()
        rows: list[tuple[Any, ...]] = []
        results: dict[int, Any] = {}
        facts: list[tuple[str, DossierFacts]] = []
        for item, out in zip(items, outs, strict=True):
            applied = leases.get(out.id) == out.lease
            results[id(item)] = applied
            if not applied:
                continue
            leases[out.id] = None  # a second outcome for the same claim (never expected) is refused
            rows.append((out.state, now, now if out.state == DELIVERED else None,
                         out.next_us if out.state == PENDING else now,
                         orjson.dumps(out.error).decode() if out.error is not None else None,
                         out.response_status, out.response, 1 if out.released else 0, out.id))
            if out.state == DELIVERED and out.agency is not None:
                facts.extend((out.agency, f) for f in out.facts)
        if rows:
            conn.exec_driver_sql(self._sql(
                "UPDATE deliveries SET state = ?, lease = NULL, updated_us = ?, delivered_us = ?, "
                "next_us = ?, last_error = COALESCE(?, last_error), "
                "response_status = COALESCE(?, response_status), response = COALESCE(?, response), "
                "attempts = attempts - ? WHERE id = ?"), rows)
        if facts:
            self._track(conn, facts, now)
        return results

    def _track(self, conn: Connection, facts: list[tuple[str, DossierFacts]], now: int) -> None:
        """Fold what delivered messages say into each dossier's latest state."""
        held = self._dossiers(conn, list({f.code for _, f in facts}))
        for agency, fact in facts:
            row = held.setdefault(fact.code, _blank_dossier(fact.code, agency))
            for name in ("procedure", "received_at", "due_at", "online"):
                value = getattr(fact, name)
                if value is not None:
                    row[name] = value
            if fact.status is not None:
                row["status"] = fact.status
                if fact.status not in RESOLVED:
                    row["resolved_at"] = None
            if fact.resolved_at is not None and (fact.kind == "dossier" or row["resolved_at"] is None):
                row["resolved_at"] = fact.resolved_at  # a dossier's own date wins; else the first step's
            elif fact.status in RESOLVED and row["resolved_at"] is None:
                row["resolved_at"] = _portal_now()
            row["updated_us"] = now
        self._upsert_dossiers(conn, list(held.values()))

    # -- claims ------------------------------------------------------------------------------------

    def due(self, services: Sequence[str]) -> bool:
        """Whether any of ``services`` has a delivery that may be due (a cheap look before a claim)."""
        now = now_us()
        query = (sa.select(deliveries.c.seq)
                 .where(deliveries.c.service.in_(list(services)), deliveries.c.state == PENDING,
                        deliveries.c.next_us <= now).limit(1))
        with self.reader.connect() as conn:
            return conn.execute(query).first() is not None

    def _claim(self, conn: Connection, services: Sequence[str], limit: int, lease_seconds: float,
               worker: str) -> list[Claimed]:
        if limit <= 0 or not services:
            return []
        now = now_us()
        d, e = deliveries, deliveries.alias("e")
        blocked = sa.exists().where(e.c.order_key == d.c.order_key, e.c.seq < d.c.seq,
                                    e.c.state.in_(BLOCKING))
        token = secrets.token_hex(8)
        picked: list[Any] = []
        for service in services:
            query = (sa.select(d).where(d.c.service == service, d.c.state == PENDING,
                                        d.c.next_us <= now, ~blocked)
                     .order_by(d.c.seq).limit(limit))
            if self._pg:
                query = query.with_for_update(skip_locked=True, of=d)
            picked.extend(conn.execute(query))
        picked.sort(key=lambda r: r.seq)
        picked = picked[:limit]
        if not picked:
            return []
        lease_until = now + int(lease_seconds * 1_000_000)
        for chunk in _chunks([r.seq for r in picked], 500):
            conn.execute(sa.update(d).where(d.c.seq.in_(chunk)).values(
                lease=token, next_us=lease_until, attempts=d.c.attempts + 1, worker=worker,
                updated_us=now))
        return [Claimed(seq=r.seq, id=r.id, lease=token, attempts=r.attempts + 1,
                        attempt_base=r.attempt_base, dossier=r.dossier,
                        service=r.service, operation=r.operation, client=r.client, rule=r.rule,
                        exchange_id=r.exchange_id, user_id=r.user_id, purpose=r.purpose,
                        represented_party=r.represented_party, method=r.method, path=r.path,
                        query=r.query, content_type=r.content_type, body=bytes(r.body),
                        body_sha256=r.body_sha256, subjects=tuple(orjson.loads(r.subjects)),
                        decided=Kept.loads(r.response_fields), addressed=r.addressed)
                for r in picked]

    # -- operators ---------------------------------------------------------------------------------

    def get(self, delivery_id: str) -> dict[str, Any] | None:
        with self.reader.connect() as conn:
            row = conn.execute(sa.select(deliveries).where(deliveries.c.id == delivery_id)).first()
            if row is None:
                return None
            view = describe(row._mapping)
            if row.state == PENDING:
                view["waitingFor"] = self._blocker(conn, row.order_key, row.seq)
            return view

    @staticmethod
    def _blocker(conn: Connection, order_key: str, seq: int) -> str | None:
        query = (sa.select(deliveries.c.id).where(deliveries.c.order_key == order_key,
                                                   deliveries.c.seq < seq,
                                                   deliveries.c.state.in_(BLOCKING))
                 .order_by(deliveries.c.seq).limit(1))
        return conn.execute(query).scalar()

    def find(self, *, state: str | None = None, service: str | None = None, dossier: str | None = None,
             flagged: bool = False, after: int = 0, limit: int = 100) -> list[dict[str, Any]]:
        query = self._filter(sa.select(*[c for c in deliveries.c if c.name not in ("body", "response")]),
                             state=state, service=service, dossier=dossier, flagged=flagged)
        query = query.where(deliveries.c.seq > after).order_by(deliveries.c.seq).limit(limit)
        with self.reader.connect() as conn:
            return [describe(r._mapping) for r in conn.execute(query)]

    @staticmethod
    def _filter(query: Any, *, state: str | None = None, service: str | None = None,
                dossier: str | None = None, flagged: bool = False, ids: Iterable[str] = ()) -> Any:
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

    def retry(self, *, ids: Iterable[str] = (), state: str | None = DEAD, service: str | None = None,
              dossier: str | None = None) -> int:
        """Put dead (or cancelled) deliveries back in the queue with fresh attempts, due now; a
        pending one waiting for its backoff becomes due now."""
        states = [state] if state else [DEAD, CANCELLED, PENDING]
        if any(s not in (DEAD, CANCELLED, PENDING) for s in states):
            raise ValueError("only dead, cancelled or pending deliveries can be retried")
        now = now_us()
        cond = sa.and_(deliveries.c.state.in_(states), deliveries.c.lease.is_(None))
        query = self._filter(sa.update(deliveries).where(cond), service=service, dossier=dossier, ids=ids)
        with self._lock, self.engine.begin() as conn:  # queued with the writer's batches
            result = conn.execute(query.values(state=PENDING, attempt_base=deliveries.c.attempts, next_us=now,
                                               updated_us=now))
            return int(result.rowcount)

    def cancel(self, *, ids: Iterable[str]) -> int:
        """Give up on pending or dead deliveries (the later ones of their chains may then go)."""
        ids = list(ids)
        now = now_us()
        with self._lock, self.engine.begin() as conn:  # queued with the writer's batches
            result = conn.execute(sa.update(deliveries).where(
                deliveries.c.id.in_(ids), deliveries.c.state.in_(BLOCKING)).values(
                state=CANCELLED, lease=None, updated_us=now))
            return int(result.rowcount)

    def replay(self, *, ids: Iterable[str] = (), state: str | None = None, service: str | None = None,
               dossier: str | None = None) -> list[str]:
        """Send delivered (or dead) deliveries again: new deliveries with the same request, queued
        after everything else, in their original order. The originals stay as they were."""
        query = self._filter(sa.select(deliveries).where(deliveries.c.state.in_((DELIVERED, DEAD))),
                             state=state, service=service, dossier=dossier, ids=ids)
        now = now_us()
        created = []
        with self._lock, self.engine.begin() as conn:  # queued with the writer's batches
            rows = []
            for r in conn.execute(query.order_by(deliveries.c.seq)):
                row = dict(r._mapping)
                del row["seq"]
                replay_id = new_id()
                row.update(id=replay_id, idem_key=f"{row['idem_key'][:40]}:replay:{replay_id[-12:]}",
                           state=PENDING, attempts=0, attempt_base=0, next_us=now, lease=None, worker=None,
                           created_us=now, updated_us=now, delivered_us=None, last_error=None,
                           response_status=None, response=None, replay_of=r.id)
                rows.append(row)
                created.append(replay_id)
            if rows:
                conn.execute(sa.insert(deliveries), rows)
        return created

    def counts(self) -> list[dict[str, Any]]:
        """Deliveries and attempts by service and state."""
        d = deliveries
        query = (sa.select(d.c.service, d.c.state, sa.func.count().label("n"),
                           sa.func.coalesce(sa.func.sum(d.c.attempts), 0).label("attempts"))
                 .group_by(d.c.service, d.c.state))
        with self.reader.connect() as conn:
            return [dict(r._mapping) for r in conn.execute(query)]

    def oldest_pending_us(self) -> int | None:
        query = (sa.select(deliveries.c.created_us).where(deliveries.c.state == PENDING)
                 .order_by(deliveries.c.seq).limit(1))
        with self.reader.connect() as conn:
            value = conn.execute(query).scalar()
        return int(value) if value is not None else None


def _settle(items: list[_Item]) -> None:
    for item in items:
        future = item.future
        if future is None or future.done():  # cancelled: the caller went away
            continue
        if isinstance(item.result, BaseException):
            future.set_exception(item.result)
        else:
            future.set_result(item.result)


def _sqlite_reader(engine: Engine) -> Engine:
    """Connections that read without ``BEGIN IMMEDIATE``: in WAL mode a reader needs no lock."""
    reader = sa.create_engine(engine.url, connect_args={"timeout": 30, "check_same_thread": False})

    @sa.event.listens_for(reader, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.execute("PRAGMA busy_timeout=30000")
        dbapi_conn.execute("PRAGMA query_only=ON")

    return reader




def describe(row: Any) -> dict[str, Any]:
    """A delivery as the API and the CLI show it."""
    in_flight = row["state"] == PENDING and row["lease"] is not None and row["next_us"] > now_us()
    view: dict[str, Any] = {
        "id": row["id"], "state": "in-flight" if in_flight else row["state"],
        "service": row["service"], "operation": row["operation"], "dossier": row["dossier"],
        "client": row["client"], "attempts": row["attempts"], "exchangeId": row["exchange_id"],
        "created": _iso(row["created_us"]), "updated": _iso(row["updated_us"]),
        "delivered": _iso(row["delivered_us"]) if row["delivered_us"] else None,
        "nextAttempt": _iso(row["next_us"]) if row["state"] == PENDING and not in_flight else None,
        "lastError": orjson.loads(row["last_error"]) if row["last_error"] else None,
        "worker": row["worker"], "flag": row["flag"], "replayOf": row["replay_of"], "seq": row["seq"],
    }
    if "response" in row.keys():  # noqa: SIM118 - a RowMapping, not a dict
        view["response"] = _answer(row["response"], row["response_status"])
    return view


def _answer(body: bytes | None, status: int | None) -> dict[str, Any] | None:
    if body is None or status is None:
        return None
    try:
        payload: Any = orjson.loads(body)
    except orjson.JSONDecodeError:
        payload = bytes(body).decode("utf-8", "replace")
    return {"status": status, "body": payload}


def _iso(us: int | None) -> str | None:
    if us is None:
        return None
    from datetime import UTC, datetime

    return datetime.fromtimestamp(us / 1_000_000, UTC).isoformat(timespec="milliseconds")


def _portal_now() -> str:
    from datetime import datetime

    from gateway.delivery.messages import VIETNAM

    return datetime.now(VIETNAM).strftime("%Y%m%d%H%M%S")


def _blank_dossier(code: str, agency: str) -> dict[str, Any]:
    return {"code": code, "agency": agency[:64], "procedure": None, "received_at": None, "due_at": None,
            "online": None, "status": None, "resolved_at": None, "intake_status": None, "updated_us": 0}


def _cut(value: str | None, width: int) -> str | None:
    return value[:width] if value is not None else None


def _chunks(items: list[Any], size: int) -> Iterable[list[Any]]:
    for start in range(0, len(items), size):
        yield items[start:start + size]
