"""The delivery queue: accept durably, claim with a lease, complete, and the operators' changes
(retry, cancel, replay), all written by one writer.

Every write to ``deliveries`` goes through one writer thread per process (group commit, as the audit
log does): intakes, completions, claims and operators' changes queue up, and each batch is stored in
one transaction, so that hundreds of accepted dossiers share one fsync and the process's writes never
wait for each other's locks. Event loops submit and await (``accept``, ``complete``, ``claim``);
sync code (API routes in worker threads, the console, the CLI) submits and waits (``retry``,
``cancel``, ``replay``, ``accept_many``). With no writer running (the CLI, tools) the same batch
function runs in the caller's thread under the same lock. Either way a call returns only once its
transaction is committed. Reads (the look for due work) use connections that take no write lock.

A batch stores outcomes, then intakes, then changes, then claims. A claim picks the pending
deliveries that are due and head their chain (no earlier delivery of the same ``order_key`` still
pending or dead), takes them with a lease (a random token and an expiry), and counts the attempt; it
runs after the batch's completions and changes, so a chain moves on in the very transaction that
records its previous delivery, or its retry or cancellation. On PostgreSQL the pick is
``SELECT … FOR UPDATE SKIP LOCKED``, so competing processes never take the same row; on SQLite the
transaction holds the write lock (``BEGIN IMMEDIATE``, queued on ``WriteLock``). A completion applies
only while its lease is still the row's: a worker that was presumed dead (its lease expired and
another took the delivery) cannot overwrite the newer attempt's outcome.

Intake: the admission (``admission.py``, pure) decides each new delivery from what the table holds
for the batch's idempotency keys and dossier codes; this module fetches those and applies the
verdicts. ``idem_key`` is unique: ``INSERT … ON CONFLICT DO NOTHING`` then a look-up covers another
process inserting the same key at the same moment.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import orjson
import sqlalchemy as sa
import structlog
from sqlalchemy.engine import Connection, Engine

from gateway.delivery import dossiers
from gateway.delivery.admission import Admit, Duplicate, Held, Refuse, Verdict, admit
from gateway.delivery.messages import DossierFacts
from gateway.delivery.model import (
    BLOCKING,
    CANCELLED,
    DEAD,
    DELIVERED,
    PENDING,
    Accepted,
    Claimed,
    NewDelivery,
    Outcome,
    QueueUnavailable,
    now_us,
)
from gateway.delivery.retention import kept
from gateway.delivery.sql import chunks, cut, driver_sql, for_update, select_in, selecting
from gateway.delivery.tables import deliveries
from gateway.errors import GatewayError
from gateway.ids import new_id, random_hex
from gateway.policy import Kept
from gateway.storage.db import WriteLock
from gateway.storage.shared import SharedWriter, Slot
from gateway.storage.writer import BatchWriter, Request, answer

__all__ = ["Cancel", "ClaimRequest", "DeliveryQueue", "Replay", "Retry"]

log = structlog.get_logger("lienthong.delivery")

COLUMNS: tuple[str, ...] = tuple(c.name for c in deliveries.c if c.name != "seq")


@dataclass(frozen=True, slots=True)
class ClaimRequest:
    services: tuple[str, ...]
    limit: int
    lease_seconds: float
    worker: str


@dataclass(frozen=True, slots=True)
class Retry:
    """Put the deliveries selected back in the queue with fresh attempts, due now."""

    ids: tuple[str, ...]
    states: tuple[str, ...]
    service: str | None = None
    dossier: str | None = None


@dataclass(frozen=True, slots=True)
class Cancel:
    """Give up on the pending or dead deliveries named."""

    ids: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Replay:
    """Queue the delivered or dead deliveries selected again, as new deliveries."""

    ids: tuple[str, ...]
    state: str | None = None
    service: str | None = None
    dossier: str | None = None


Change = Retry | Cancel | Replay
Work = NewDelivery | Outcome | ClaimRequest | Change


_Item = Request[Work]


class _Part:
    """The queue's batches in the shared writer's transactions (gateway/storage/shared.py)."""

    def __init__(self, owner: DeliveryQueue) -> None:
        self.owner = owner

    def write(self, conn: Connection, batch: list[_Item]) -> dict[int, Any]:
        return self.owner._write_batch(conn, batch)

    def settle(self, batch: list[_Item], written: dict[int, Any]) -> None:
        self.owner._stored(batch, written)
        answer(batch)

    def fail(self, batch: list[_Item], exc: Exception) -> None:
        self.owner._failed(batch, exc)
        answer(batch)


class DeliveryQueue:
    def __init__(self, engine: Engine, reader: Engine, *, batch_max: int = 512,
                 batch_wait_ms: float = 2.0, shared: SharedWriter | None = None) -> None:
        """``shared``: the process's one writer for this SQLite database (gateway/storage/shared.py);
        otherwise a writer thread of the queue's own."""
        self.engine = engine
        self.reader = reader
        self._pg = engine.dialect.name == "postgresql"
        # A batch stays open while items keep coming, up to 10 ms (or one wait, when longer).
        self._writer: BatchWriter[_Item] | Slot[_Item] = (
            shared.slot(_Part(self)) if shared is not None else
            BatchWriter("delivery-writer", self._handle, batch_max=batch_max, wait_ms=batch_wait_ms,
                        wait_max_ms=10.0))
        self._lock = WriteLock(engine, "delivery")
        self.batches = 0

    def start(self) -> None:
        self._writer.start()

    def close(self) -> None:
        self._writer.close()
        self._lock.close()

    # -- from event loops --------------------------------------------------------------------------

    async def accept(self, new: NewDelivery) -> Accepted:
        """Store ``new`` (or find the delivery its idempotency key already made); durable on return.
        InvalidBody (422) for an impossible status change when transitions are refused."""
        return await self._submit(new)  # type: ignore[no-any-return]

    async def complete(self, outcome: Outcome) -> bool:
        """Record an attempt's outcome; False if the lease was lost (another worker has it now)."""
        return await self._submit(outcome)  # type: ignore[no-any-return]

    async def claim(self, services: Sequence[str], limit: int, lease_seconds: float,
                    worker: str) -> list[Claimed]:
        """Take up to ``limit`` due deliveries that head their chain, oldest first, with a lease."""
        return await self._submit(  # type: ignore[no-any-return]
            ClaimRequest(tuple(services), limit, lease_seconds, worker))

    async def _submit(self, work: Work) -> Any:
        if not self._writer.running:
            raise QueueUnavailable("the delivery queue is not running")
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._writer.put(Request(work, future))
        return await future

    # -- from sync code ----------------------------------------------------------------------------

    def accept_many(self, batch: Sequence[NewDelivery]) -> list[Accepted | GatewayError]:
        """Store a batch, durably on return (tools and benchmarks); one transaction when no writer
        runs."""
        return [item.result for item in self._write(batch)]

    def retry(self, *, ids: Iterable[str] = (), state: str | None = DEAD, service: str | None = None,
              dossier: str | None = None) -> int:
        """Put dead (or cancelled) deliveries back in the queue with fresh attempts, due now; a
        pending one waiting for its backoff becomes due now. How many were."""
        states = (state,) if state else (DEAD, CANCELLED, PENDING)
        if any(s not in (DEAD, CANCELLED, PENDING) for s in states):
            raise ValueError("only dead, cancelled or pending deliveries can be retried")
        return int(self._write_one(Retry(tuple(ids), states, service, dossier)))

    def cancel(self, *, ids: Iterable[str]) -> int:
        """Give up on pending or dead deliveries (the later ones of their chains may then go)."""
        return int(self._write_one(Cancel(tuple(ids))))

    def replay(self, *, ids: Iterable[str] = (), state: str | None = None, service: str | None = None,
               dossier: str | None = None) -> list[str]:
        """Send delivered (or dead) deliveries again: new deliveries with the same request, queued
        after everything else, in their original order. The originals stay as they were."""
        return list(self._write_one(Replay(tuple(ids), state, service, dossier)))

    def _write_one(self, work: Work) -> Any:
        (item,) = self._write([work])
        if isinstance(item.result, BaseException):
            raise item.result
        return item.result

    def _write(self, works: Sequence[Work]) -> list[_Item]:
        """Through the writer thread when it runs, waiting until its batch is committed; otherwise
        through the very function it runs, under the same lock, in this thread."""
        if not self._writer.running:
            items = [Request(work) for work in works]
            self._commit(items)
            return items
        items = [Request(work, done=threading.Event()) for work in works]
        for item in items:
            self._writer.put(item)
        for item in items:
            assert item.done is not None
            while not item.done.wait(1.0):
                if not self._writer.running and not item.done.is_set():
                    self._commit([item])  # the writer stopped before it took this one
                    break
        return items

    # -- the writer --------------------------------------------------------------------------------

    def _handle(self, batch: list[_Item]) -> None:
        self._commit(batch)
        answer(batch)

    def _commit(self, batch: list[_Item]) -> None:
        """Store one batch in one transaction; each item's ``result`` says how it went."""
        try:
            with self._lock, self.engine.begin() as conn:
                results = self._write_batch(conn, batch)
        except Exception as exc:
            self._failed(batch, exc)
            return
        self._stored(batch, results)

    def _write_batch(self, conn: Connection, batch: list[_Item]) -> dict[int, Any]:
        """The batch's statements, in the open transaction: each item's result by its ``id``."""
        outcomes = [(item, item.work) for item in batch if isinstance(item.work, Outcome)]
        intakes = [(item, item.work) for item in batch if isinstance(item.work, NewDelivery)]
        changes = [(item, item.work) for item in batch if isinstance(item.work, Retry | Cancel | Replay)]
        claims = [(item, item.work) for item in batch if isinstance(item.work, ClaimRequest)]
        results: dict[int, Any] = {}
        results.update(self._store_outcomes(conn, outcomes))
        results.update(self._store_intakes(conn, intakes))
        now = now_us()
        for item, change in changes:
            results[id(item)] = _change(conn, change, now)
        for item, request in claims:
            results[id(item)] = self._claim(conn, request)
        return results

    def _stored(self, batch: list[_Item], results: dict[int, Any]) -> None:
        self.batches += 1
        for item in batch:
            item.result = results[id(item)]

    @staticmethod
    def _failed(batch: list[_Item], exc: Exception) -> None:
        log.error("delivery_write_failed", error=type(exc).__name__, detail=str(exc)[:300],
                  batch=len(batch))
        failure = QueueUnavailable("the delivery queue could not store this request; it was not "
                                   "accepted")
        for item in batch:
            item.result = failure

    # -- intake ------------------------------------------------------------------------------------

    def _store_intakes(self, conn: Connection, intakes: list[tuple[_Item, NewDelivery]]) -> dict[int, Any]:
        """Fetch what the admission needs, let it decide, apply its verdicts."""
        if not intakes:
            return {}
        news = [new for _, new in intakes]
        held = _by_idem_key(conn, {n.idem_key for n in news})
        rows = dossiers.fetch(conn, {n.tracked for n in news if n.tracked is not None})
        admission = admit(news, held, {code: row["intake_status"] for code, row in rows.items()})
        now = now_us()
        fresh = [(new, v) for new, v in zip(news, admission.verdicts, strict=True) if isinstance(v, Admit)]
        stored: dict[str, Held] = {}
        if fresh:
            _insert_ignoring_duplicates(conn, [_row(new, verdict.flag, now) for new, verdict in fresh])
            if self._pg:  # another process may have stored the same key meanwhile; on SQLite the
                # write lock held since the look-up above rules that out
                stored = _by_idem_key(conn, {new.idem_key for new, _ in fresh})
        if admission.dossiers:
            dossiers.note_intake(conn, admission.dossiers, rows, now)
        return {id(item): _accepted(new, verdict, stored)
                for (item, new), verdict in zip(intakes, admission.verdicts, strict=True)}

    # -- outcomes ----------------------------------------------------------------------------------

    def _store_outcomes(self, conn: Connection, outcomes: list[tuple[_Item, Outcome]]) -> dict[int, Any]:
        """One look at the leases, one UPDATE for all the outcomes still holding theirs."""
        if not outcomes:
            return {}
        leases: dict[str, str | None] = {}
        leases.update((row[0], row[1]) for row in select_in(
            conn, "SELECT id, lease FROM deliveries WHERE id", [out.id for _, out in outcomes],
            for_update(conn)))
        now = now_us()
        rows: list[tuple[Any, ...]] = []
        results: dict[int, Any] = {}
        facts: list[tuple[str, DossierFacts]] = []
        for item, out in outcomes:
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
            conn.exec_driver_sql(driver_sql(
                conn, "UPDATE deliveries SET state = ?, lease = NULL, updated_us = ?, delivered_us = ?, "
                      "next_us = ?, last_error = COALESCE(?, last_error), "
                      "response_status = COALESCE(?, response_status), response = COALESCE(?, response), "
                      "attempts = attempts - ? WHERE id = ?"), rows)
        if facts:
            dossiers.track(conn, facts, now)
        return results

    # -- claims ------------------------------------------------------------------------------------

    def due(self, services: Sequence[str]) -> bool:
        """Whether any of ``services`` has a delivery that may be due (a cheap look before a claim)."""
        with self.reader.connect() as conn:
            return conn.execute(_DUE, {"c_services": list(services), "c_now": now_us()}).first() is not None

    def _claim(self, conn: Connection, request: ClaimRequest) -> list[Claimed]:
        if request.limit <= 0 or not request.services:
            return []
        now = now_us()
        token = random_hex(8)
        picked: list[Any] = []
        query = _CLAIM_PG if self._pg else _CLAIM
        for service in request.services:
            picked.extend(conn.execute(query, {"c_service": service, "c_now": now, "c_limit": request.limit}))
        picked.sort(key=lambda r: r.seq)
        picked = picked[:request.limit]
        if not picked:
            return []
        lease_until = now + int(request.lease_seconds * 1_000_000)
        for chunk in chunks([r.seq for r in picked]):
            conn.execute(_LEASE, {"c_seqs": chunk, "c_lease": token, "c_next": lease_until,
                                  "c_worker": request.worker, "c_now": now})
        return [Claimed(seq=r.seq, id=r.id, lease=token, attempts=r.attempts + 1,
                        attempt_base=r.attempt_base, dossier=r.dossier,
                        service=r.service, operation=r.operation, client=r.client, rule=r.rule,
                        exchange_id=r.exchange_id, user_id=r.user_id, purpose=r.purpose,
                        represented_party=r.represented_party, method=r.method, path=r.path,
                        query=r.query, content_type=r.content_type, body=bytes(r.body),
                        body_sha256=r.body_sha256, subjects=tuple(orjson.loads(r.subjects)),
                        decided=Kept.loads(r.response_fields), addressed=r.addressed,
                        body_document=r.body_document)
                for r in picked]


# -- claims' statements (built once: a claim is made several times a second under the write lock) --

def _claim_query(pg: bool) -> sa.Select[Any]:
    """A service's due deliveries, oldest first, none behind an earlier one of its order still open."""
    d, e = deliveries, deliveries.alias("e")
    blocked = sa.exists().where(e.c.order_key == d.c.order_key, e.c.seq < d.c.seq, e.c.state.in_(BLOCKING))
    query = (sa.select(d).where(d.c.service == sa.bindparam("c_service"), d.c.state == PENDING,
                                d.c.next_us <= sa.bindparam("c_now"), ~blocked)
             .order_by(d.c.seq).limit(sa.bindparam("c_limit")))
    return query.with_for_update(skip_locked=True, of=d) if pg else query


_DUE = (sa.select(deliveries.c.seq)
        .where(deliveries.c.service.in_(sa.bindparam("c_services", expanding=True)),
               deliveries.c.state == PENDING, deliveries.c.next_us <= sa.bindparam("c_now")).limit(1))
_CLAIM = _claim_query(pg=False)
_CLAIM_PG = _claim_query(pg=True)
_LEASE = (sa.update(deliveries).where(deliveries.c.seq.in_(sa.bindparam("c_seqs", expanding=True)))
          .values(lease=sa.bindparam("c_lease"), next_us=sa.bindparam("c_next"),
                  attempts=deliveries.c.attempts + 1, worker=sa.bindparam("c_worker"),
                  updated_us=sa.bindparam("c_now")))


# -- intake's statements -----------------------------------------------------------------------------

def _by_idem_key(conn: Connection, keys: Iterable[str]) -> dict[str, Held]:
    out: dict[str, Held] = {}
    for key, found_id, state, flag in select_in(
            conn, "SELECT idem_key, id, state, flag FROM deliveries WHERE idem_key", keys):
        out[key] = Held(found_id, state, flag)
    return out


def _accepted(new: NewDelivery, verdict: Verdict, stored: dict[str, Held]) -> Accepted | GatewayError:
    """What the client is told of ``new``; ``stored``: who holds the keys this batch inserted."""
    if isinstance(verdict, Refuse):
        return verdict.error
    found = stored.get(new.idem_key)  # on PostgreSQL another process may have won the key
    if found is not None:
        return Accepted(found.id, found.state, duplicate=found.id != new.id, flag=found.flag)
    if isinstance(verdict, Duplicate):
        return Accepted(verdict.of, verdict.state, duplicate=True, flag=verdict.flag)
    return Accepted(new.id, PENDING, duplicate=False, flag=verdict.flag)


def _row(new: NewDelivery, flag: str | None, now: int) -> tuple[Any, ...]:
    values = {
        "id": new.id, "idem_key": new.idem_key, "order_key": new.order_key[:400],
        "dossier": new.dossier[:128] if new.dossier else None, "service": new.service,
        "operation": new.operation, "client": new.client, "rule": new.rule,
        "exchange_id": new.exchange_id, "user_id": cut(new.user_id, 255),
        "purpose": cut(new.purpose, 512), "represented_party": cut(new.represented_party, 255),
        "method": new.method, "path": new.path, "query": new.query,
        "content_type": new.content_type[:255], "body": new.body, "body_sha256": new.body_sha256,
        "subjects": orjson.dumps(list(new.subjects)).decode(), "state": PENDING, "attempts": 0,
        "attempt_base": 0, "next_us": now, "lease": None, "worker": None, "created_us": now,
        "updated_us": now, "delivered_us": None, "last_error": None, "response_status": None,
        "response": None, "flag": cut(flag, 512), "replay_of": None,
        "response_fields": new.decided.dumps() if new.decided is not None else None,
        "addressed": new.addressed, "body_document": new.body_document,
    }
    return tuple(values[c] for c in COLUMNS)


def _insert_ignoring_duplicates(conn: Connection, rows: list[tuple[Any, ...]]) -> None:
    columns = ", ".join(COLUMNS)
    marks = ", ".join("?" for _ in COLUMNS)
    conn.exec_driver_sql(driver_sql(conn, f"INSERT INTO deliveries ({columns}) VALUES ({marks}) "  # noqa: S608
                                          "ON CONFLICT (idem_key) DO NOTHING"), rows)


# -- operators' changes ------------------------------------------------------------------------------

def _change(conn: Connection, change: Change, now: int) -> int | list[str]:
    if isinstance(change, Retry):
        return _retry(conn, change, now)
    if isinstance(change, Cancel):
        return _cancel(conn, change, now)
    return _replay(conn, change, now)


def _retry(conn: Connection, retry: Retry, now: int) -> int:
    cond = sa.and_(deliveries.c.state.in_(retry.states), deliveries.c.lease.is_(None), kept())
    query = selecting(sa.update(deliveries).where(cond), service=retry.service, dossier=retry.dossier,
                      ids=retry.ids)
    result = conn.execute(query.values(state=PENDING, attempt_base=deliveries.c.attempts, next_us=now,
                                       updated_us=now))
    return int(result.rowcount)


def _cancel(conn: Connection, cancel: Cancel, now: int) -> int:
    result = conn.execute(sa.update(deliveries).where(
        deliveries.c.id.in_(cancel.ids), deliveries.c.state.in_(BLOCKING)).values(
        state=CANCELLED, lease=None, updated_us=now))
    return int(result.rowcount)


def _replay(conn: Connection, replay: Replay, now: int) -> list[str]:
    query = selecting(sa.select(deliveries).where(deliveries.c.state.in_((DELIVERED, DEAD)), kept()),
                      state=replay.state, service=replay.service, dossier=replay.dossier, ids=replay.ids)
    rows, created = [], []
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
