"""Every write to the delivery queue goes through its one writer (issue 18, item 4): the operators'
retry, cancel and replay are work items in the writer's batches, beside intakes, outcomes and claims;
with no writer running (the CLI) they run the writer's own batch function under its lock. On SQLite
and, when LIENTHONG_TEST_PG_URL is set, on PostgreSQL."""

from __future__ import annotations

import asyncio
import re
import threading
import time
from collections.abc import Coroutine, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

import gateway.delivery.queue as queue_module
from gateway.delivery.model import (
    CANCELLED,
    DEAD,
    DELIVERED,
    PENDING,
    Accepted,
    NewDelivery,
    Outcome,
    QueueUnavailable,
    now_us,
)
from gateway.delivery.store import DeliveryStore
from gateway.delivery.tables import deliveries
from gateway.delivery.views import settled
from gateway.ids import new_id
from gateway.storage.db import WriteLock, create_engine, is_sqlite
from gateway.storage.writer import _STOP

SERVICE = "VN/GOV/000.00.00.G22/DVCQG/DongBoHoSoMC"
OTHER = "VN/GOV/000.00.00.G22/DVCQG/CapNhatTienDoHoSoMC"
WRITER = "delivery-writer"


class Loop:
    """An event loop in its own thread, as a serving process has: the async API is called there while
    sync callers (API routes in worker threads, the console) call from theirs."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="event-loop", daemon=True)
        self.thread.start()

    def submit(self, coro: Coroutine[Any, Any, Any]) -> Future[Any]:
        return asyncio.run_coroutine_threadsafe(coro, self.loop)

    def run(self, coro: Coroutine[Any, Any, Any]) -> Any:
        return self.submit(coro).result(60)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()


class Writes:
    """The thread of every statement that writes the queue's tables."""

    PATTERN = re.compile(r"\s*(INSERT\s+INTO|UPDATE|DELETE\s+FROM)\s+(DELIVERIES|DELIVERY_DOSSIERS)\b")

    def __init__(self, engine: Engine) -> None:
        self.threads: list[str] = []
        sa.event.listen(engine, "before_cursor_execute", self._seen)

    def _seen(self, _conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        if self.PATTERN.match(statement.upper()):
            self.threads.append(threading.current_thread().name)


@pytest.fixture
def engine(database_url: str) -> Iterator[Engine]:
    engine = create_engine(database_url)
    yield engine
    engine.dispose()


@pytest.fixture
def loop() -> Iterator[Loop]:
    running = Loop()
    yield running
    running.close()


@pytest.fixture
def store(engine: Engine) -> Iterator[DeliveryStore]:
    """A store whose writer runs, as in a serving process."""
    running = DeliveryStore(engine, batch_wait_ms=1.0)
    running.start()
    yield running
    running.close()


def new(service: str = SERVICE, dossier: str | None = None) -> NewDelivery:
    delivery_id = new_id()
    return NewDelivery(
        id=delivery_id, idem_key=f"key-{delivery_id}", order_key=f"sub|{dossier}" if dossier else delivery_id,
        dossier=dossier, service=service, operation=service.rsplit("/", 1)[1],
        client="VN/GOV/000.00.00.H60/MOTCUA", rule="motcua-push", exchange_id=f"x-{delivery_id}",
        user_id=None, purpose=None, represented_party=None, method="POST", path=f"/r1/{service}", query="",
        content_type="application/json", body=b'{"MaHoSo": "x"}', body_sha256="0" * 64, subjects=())


def accept(store: DeliveryStore, count: int, service: str = SERVICE) -> list[str]:
    results = store.accept_many([new(service) for _ in range(count)])
    assert all(isinstance(r, Accepted) and not r.duplicate for r in results), results
    return [r.id for r in results]  # type: ignore[union-attr]


def settle(store: DeliveryStore, loop: Loop, ids: list[str], state: str) -> None:
    """Claim ``ids`` and record ``state`` as their attempt's outcome, through the writer."""
    claimed = loop.run(store.claim([SERVICE, OTHER], 10_000, 60, "test"))
    leases = {c.id: c.lease for c in claimed}
    assert set(ids) <= set(leases)
    for delivery_id in ids:
        next_us = now_us() + 3_600_000_000  # a pending one waits an hour: only a retry brings it back
        assert loop.run(store.complete(Outcome(delivery_id, leases[delivery_id], state, next_us=next_us)))
    others = [c for c in claimed if c.id not in ids]  # give back what was not asked for, unattempted
    for c in others:
        loop.run(store.complete(Outcome(c.id, c.lease, PENDING, released=True)))


def rows(engine: Engine, ids: list[str] | None = None) -> dict[str, dict[str, Any]]:
    """The rows as a fresh connection sees them (what is committed)."""
    query = sa.select(deliveries)
    if ids is not None:
        query = query.where(deliveries.c.id.in_(ids))
    with engine.connect() as conn:
        return {r.id: dict(r._mapping) for r in conn.execute(query)}


def sqlite_only(engine: Engine) -> None:
    if not is_sqlite(engine):
        pytest.skip("the write lock is SQLite's; PostgreSQL writers lock rows")


# -- the writer writes ---------------------------------------------------------------------------------

def test_with_the_writer_running_only_its_thread_writes_the_queue(engine: Engine, store: DeliveryStore,
                                                                  loop: Loop) -> None:
    """Accepts, claims, outcomes and the operators' changes, called from the event loop and from other
    threads, are all written by the writer thread."""
    writes = Writes(engine)
    dead, pending, delivered = accept(store, 3), accept(store, 3), accept(store, 3)
    settle(store, loop, dead, DEAD)
    settle(store, loop, delivered, DELIVERED)
    with ThreadPoolExecutor(3, thread_name_prefix="route") as pool:  # as FastAPI runs sync routes
        retried = pool.submit(store.retry, ids=dead, state=None)
        cancelled = pool.submit(store.cancel, ids=pending)
        replayed = pool.submit(store.replay, ids=delivered)
        assert (retried.result(60), cancelled.result(60), len(replayed.result(60))) == (3, 3, 3)
    assert writes.threads and set(writes.threads) == {WRITER}
    states = {r["id"]: r["state"] for r in rows(engine).values()}
    expected = [PENDING] * 3 + [CANCELLED] * 3 + [DELIVERED] * 3
    assert [states[i] for i in dead + pending + delivered] == expected
    assert sorted(states[i] for i in replayed.result()) == [PENDING] * 3


def test_without_a_writer_a_change_runs_the_writers_function_under_its_lock(engine: Engine) -> None:
    """In the CLI no writer runs: the change is one batch of the writer's own function, in the caller's
    thread, and it waits for the write lock another writer (a serving process) holds."""
    sqlite_only(engine)
    tool = DeliveryStore(engine)
    ids = accept(tool, 2)
    writes = Writes(engine)
    before = tool.batches
    done: list[int] = []
    other = WriteLock(engine)
    with other:
        caller = threading.Thread(target=lambda: done.append(tool.cancel(ids=ids)), name="cli")
        caller.start()
        caller.join(0.5)
        assert caller.is_alive() and not done  # queued behind the other writer, not around it
    caller.join(30)
    assert done == [2]
    assert tool.batches == before + 1  # one transaction of the writer's batch function
    assert set(writes.threads) == {"cli"}
    assert {r["state"] for r in rows(engine, ids).values()} == {CANCELLED}
    other.close()
    tool.close()


def test_a_change_waits_in_the_writers_queue_and_shares_its_batch(engine: Engine, loop: Loop) -> None:
    """A retry is queued behind the batch the writer is storing, then committed in one transaction
    with the claims queued beside it, and before them: the claim takes the delivery just retried."""
    sqlite_only(engine)
    store = DeliveryStore(engine, batch_wait_ms=1.0)
    store.start()
    try:
        (dead,) = accept(store, 1)
        settle(store, loop, [dead], DEAD)
        other = WriteLock(engine)
        pool = ThreadPoolExecutor(1)
        with other:  # the writer's next batch waits for this lock
            first = loop.submit(store.accept(new()))
            _until(lambda: store.queue._writer.queued() == 0)
            time.sleep(0.3)  # the writer holds the first intake's batch, blocked on the lock
            claim = loop.submit(store.claim([SERVICE], 10, 60, "test"))
            retried = pool.submit(store.retry, ids=[dead], state=None)
            _until(lambda: store.queue._writer.queued() == 2)
            assert not retried.done()  # it waits for the writer: nothing wrote around it
            before = store.batches
        assert retried.result(30) == 1
        assert isinstance(first.result(30), Accepted)
        claimed = claim.result(30)
        assert store.batches == before + 2  # the first intake's batch, then the claim and the retry's
        assert dead in {c.id for c in claimed}  # the retry was applied before the claim in that batch
        pool.shutdown()
        other.close()
    finally:
        store.close()


def test_a_caller_is_not_left_waiting_by_a_writer_that_stopped(engine: Engine) -> None:
    """A change handed to the writer just as it stopped (a process shutting down) is stored by its
    caller once the writer is gone, not forgotten in its queue."""
    store = DeliveryStore(engine)
    ids = accept(store, 1)
    store.start()
    writer = store.queue._writer
    writer._queue.put(_STOP)  # the thread stops, but the writer still looks running
    assert writer._thread is not None
    writer._thread.join(10)
    done: list[int] = []
    caller = threading.Thread(target=lambda: done.append(store.cancel(ids=ids)), daemon=True)
    caller.start()
    caller.join(0.3)
    assert caller.is_alive()  # queued behind the stop, for a thread that is gone
    store.close()  # running no more
    caller.join(30)
    assert done == [1]
    assert rows(engine, ids)[ids[0]]["state"] == CANCELLED


def _until(condition: Any, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.005)


# -- concurrency -----------------------------------------------------------------------------------------

def test_changes_concurrent_with_accepts_all_apply(engine: Engine, store: DeliveryStore, loop: Loop) -> None:
    """While hundreds of pushes are accepted, operators retry, cancel and replay one delivery at a time,
    through the serving process's writer and through a CLI's store on the same database: no change
    fails ("database is locked" or otherwise), no push is refused, every change is applied once."""
    dead, pending, delivered = accept(store, 20), accept(store, 20), accept(store, 20)
    settle(store, loop, dead, DEAD)
    settle(store, loop, delivered, DELIVERED)
    before = rows(engine, dead)
    cli = DeliveryStore(engine)  # no writer: another process's tool, under the write lock

    async def pushes() -> list[Any]:
        out: list[Any] = []
        for _ in range(8):
            out += await asyncio.gather(*(store.accept(new(OTHER)) for _ in range(50)),
                                        return_exceptions=True)
        return out

    intake = loop.submit(pushes())
    with ThreadPoolExecutor(6, thread_name_prefix="operator") as pool:
        jobs = []
        for target, half in ((store, slice(0, 10)), (cli, slice(10, 20))):
            jobs += [pool.submit(target.retry, ids=[i], state=None) for i in dead[half]]
            jobs += [pool.submit(target.cancel, ids=[i]) for i in pending[half]]
            jobs += [pool.submit(target.replay, ids=[i]) for i in delivered[half]]
        results = [job.result(120) for job in jobs]
    accepted = intake.result(120)
    cli.close()
    assert [r for r in accepted if not isinstance(r, Accepted)] == []
    assert len({r.id for r in accepted}) == 400 and not any(r.duplicate for r in accepted)
    assert [r if isinstance(r, int) else len(r) for r in results] == [1] * 60
    after = rows(engine)
    assert len(after) == 60 + 400 + 20
    for i in dead:
        assert after[i]["state"] == PENDING and after[i]["attempt_base"] == before[i]["attempts"] == 1
        assert after[i]["next_us"] <= now_us()  # due now, not in an hour
    assert {after[i]["state"] for i in pending} == {CANCELLED}
    assert {after[i]["state"] for i in delivered} == {DELIVERED}  # the originals stay as they were
    replays = [r for r in after.values() if r["replay_of"] is not None]
    assert sorted(r["replay_of"] for r in replays) == sorted(delivered)
    assert {(r["state"], r["attempts"]) for r in replays} == {(PENDING, 0)}
    assert {r["state"] for r in after.values() if r["service"] == OTHER} == {PENDING}


# -- what the changes do -----------------------------------------------------------------------------------

def test_retry_brings_dead_deliveries_back_with_a_fresh_budget(engine: Engine, store: DeliveryStore,
                                                               loop: Loop) -> None:
    """Dead ones are pending again, due now, their attempt budget counted from here; others are left."""
    dead, delivered = accept(store, 2), accept(store, 1)
    settle(store, loop, dead, DEAD)
    settle(store, loop, delivered, DELIVERED)
    assert store.retry(ids=delivered, state=None) == 0
    assert store.retry(ids=[dead[0]], state=None) == 1
    got = rows(engine, dead)
    assert got[dead[0]]["state"] == PENDING and got[dead[0]]["attempt_base"] == got[dead[0]]["attempts"]
    assert got[dead[1]]["state"] == DEAD
    assert store.retry(service=SERVICE) == 1  # every dead one of the service: the other
    assert rows(engine, [dead[1]])[dead[1]]["state"] == PENDING


def test_retry_of_a_state_that_cannot_be_retried_is_refused_before_the_writer(store: DeliveryStore) -> None:
    """A delivered delivery cannot be retried (replay it): ValueError, and no batch is written."""
    before = store.batches
    with pytest.raises(ValueError, match="only dead, cancelled or pending"):
        store.retry(state=DELIVERED)
    assert store.batches == before


def test_a_pending_delivery_waiting_for_its_backoff_becomes_due_on_retry(engine: Engine, store: DeliveryStore,
                                                                         loop: Loop) -> None:
    """Retrying a pending one (not held by a worker) makes it due now."""
    (waiting,) = accept(store, 1)
    settle(store, loop, [waiting], PENDING)
    assert not store.due([SERVICE])
    assert store.retry(ids=[waiting], state=None) == 1
    assert store.due([SERVICE])


def test_cancel_gives_up_on_pending_and_dead_only(engine: Engine, store: DeliveryStore, loop: Loop) -> None:
    """Pending and dead deliveries are cancelled; a delivered one is not."""
    pending, dead, delivered = accept(store, 1), accept(store, 1), accept(store, 1)
    settle(store, loop, dead, DEAD)
    settle(store, loop, delivered, DELIVERED)
    assert store.cancel(ids=pending + dead + delivered) == 2
    states = {i: r["state"] for i, r in rows(engine).items()}
    assert [states[i] for i in pending + dead + delivered] == [CANCELLED, CANCELLED, DELIVERED]
    assert store.cancel(ids=pending) == 0  # already cancelled


def test_a_delivery_cancelled_in_flight_stays_cancelled(engine: Engine, store: DeliveryStore,
                                                        loop: Loop) -> None:
    """Cancelling drops the worker's lease: its outcome, arriving later, is not applied."""
    (delivery,) = accept(store, 1)
    (claimed,) = loop.run(store.claim([SERVICE], 1, 60, "test"))
    assert store.cancel(ids=[delivery]) == 1
    assert not loop.run(store.complete(Outcome(delivery, claimed.lease, DELIVERED)))
    assert rows(engine, [delivery])[delivery]["state"] == CANCELLED


def test_replay_queues_copies_in_their_original_order(engine: Engine, store: DeliveryStore,
                                                      loop: Loop) -> None:
    """Delivered and dead deliveries are sent again as new pending ones, in the order they were
    accepted, after everything queued; pending ones are not replayed."""
    first, second, waiting = accept(store, 1), accept(store, 1), accept(store, 1)
    settle(store, loop, first, DELIVERED)
    settle(store, loop, second, DEAD)
    created = store.replay(service=SERVICE)
    assert len(created) == 2
    got = rows(engine)
    copies = [got[i] for i in created]
    assert [c["replay_of"] for c in copies] == first + second
    assert copies[0]["seq"] < copies[1]["seq"] and copies[0]["seq"] > got[waiting[0]]["seq"]
    assert all(c["idem_key"] != got[c["replay_of"]]["idem_key"] for c in copies)
    assert all(c["body"] == got[c["replay_of"]]["body"] for c in copies)
    assert store.replay(ids=waiting) == []


# -- failures reach the caller ------------------------------------------------------------------------

@pytest.mark.parametrize("running", [True, False], ids=["writer", "no-writer"])
def test_a_failed_change_fails_its_caller_and_stores_nothing(engine: Engine, running: bool,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """A change whose transaction fails raises QueueUnavailable to the caller (through the writer or
    not), and the transaction, with whatever else shared it, is rolled back."""
    target = DeliveryStore(engine)
    if running:
        target.start()
    try:
        ids = accept(target, 2)

        def broken(conn: Any, change: Any, now: int) -> int:
            conn.execute(sa.update(deliveries).where(deliveries.c.id == ids[1]).values(state=CANCELLED))
            raise RuntimeError("disk full")

        monkeypatch.setattr(queue_module, "_cancel", broken)
        with pytest.raises(QueueUnavailable):
            target.cancel(ids=ids[:1])
        assert {r["state"] for r in rows(engine, ids).values()} == {PENDING}
    finally:
        target.close()


@pytest.mark.parametrize("state", [DELIVERED, DEAD])
def test_what_an_outcome_shows_is_what_the_view_reads_back(store: DeliveryStore, loop: Loop,
                                                           state: str) -> None:
    """The flow engine reads a step's finished delivery from the outcome its dispatcher recorded
    (``views.settled``) rather than from the row: the parts it reads are the row's."""
    (delivery_id,) = accept(store, 1)
    (claimed,) = [c for c in loop.run(store.claim([SERVICE], 10, 60, "test")) if c.id == delivery_id]
    refused = {"code": "Server.Refused", "status": 400, "retryable": False}
    outcome = Outcome(delivery_id, claimed.lease, state, error=None if state == DELIVERED else refused,
                      response_status=200 if state == DELIVERED else 400,
                      response=b'{"So": "7/2026"}' if state == DELIVERED else b"refused")
    assert loop.run(store.complete(outcome))
    view = store.get(delivery_id)
    shown = settled(outcome, claimed.attempts)
    assert view is not None and shown is not None
    assert shown == {key: view[key] for key in shown}
    assert store.outcome(delivery_id) == shown  # what the engine reads when another process recorded it


def test_a_queued_deliverys_outcome_is_its_state_and_nothing_yet(store: DeliveryStore, loop: Loop) -> None:
    """The engine's read of a step still on its way, and of one that is not there."""
    first, second = accept(store, 2)
    assert store.outcome(second) == {"id": second, "state": PENDING, "attempts": 0, "lastError": None,
                                     "response": None}
    (claimed,) = [c for c in loop.run(store.claim([SERVICE], 1, 60, "test")) if c.id == first]
    failed = {"code": "Server.ServiceFailed", "status": 503, "retryable": True}
    assert loop.run(store.complete(Outcome(first, claimed.lease, PENDING, next_us=1, error=failed,
                                           response_status=503, response=b"busy")))
    assert store.outcome(first) == {"id": first, "state": PENDING, "attempts": 1, "lastError": failed,
                                    "response": {"status": 503, "body": "busy"}}
    assert store.outcome("no-such-delivery") is None


def test_an_attempt_to_be_retried_or_not_made_shows_nothing() -> None:
    for outcome in (Outcome("d", "l", PENDING, next_us=1), Outcome("d", "l", DELIVERED, released=True)):
        assert settled(outcome, 1) is None
