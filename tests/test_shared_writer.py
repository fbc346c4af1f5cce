"""One writer thread and transaction per SQLite database and process (gateway/storage/shared.py):
the audit log's, the delivery queue's and the flows' batches committed together, each part's
callers answered only once their writes are committed, and one part's failure failing only its own
callers."""

from __future__ import annotations

import asyncio
import errno
import fcntl
import os
import threading
import time
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from gateway.audit.log import AuditLog
from gateway.audit.merkle import leaf_hash, root_from_leaves
from gateway.delivery.model import Accepted
from gateway.delivery.store import DeliveryStore
from gateway.delivery.tables import deliveries
from gateway.errors import AuditUnavailable
from gateway.storage import shared as shared_module
from gateway.storage.db import WriteLock, create_engine, upgrade
from gateway.storage.shared import SharedWriter, Slot
from gateway.storage.writer import _STOP, BatchWriter
from tests.test_audit_log import record
from tests.test_delivery_writer_path import new


@pytest.fixture
def engine(tmp_path: Path) -> Engine:
    url = f"sqlite:///{tmp_path / 'lienthong.db'}"
    upgrade(url)
    return create_engine(url)


class Recorder:
    """A part of its own: writes a row per item into a table of its own, or fails when told to."""

    def __init__(self, engine: Engine, *, failing: bool = False) -> None:
        self.failing = failing
        self.settled: list[tuple[list[Any], Any]] = []
        self.failed: list[tuple[list[Any], Exception]] = []
        self.writes = 0
        with engine.begin() as conn:
            conn.exec_driver_sql("CREATE TABLE IF NOT EXISTS recorded (item TEXT)")

    def write(self, conn: Connection, batch: list[Any]) -> Any:
        self.writes += 1
        conn.execute(sa.text("INSERT INTO recorded (item) VALUES (:item)"),
                     [{"item": str(item)} for item in batch])
        if self.failing:
            raise RuntimeError("this part's store is broken")
        return len(batch)

    def settle(self, batch: list[Any], written: Any) -> None:
        self.settled.append((list(batch), written))

    def fail(self, batch: list[Any], exc: Exception) -> None:
        self.failed.append((list(batch), exc))


def write_one(engine: Engine, part: Recorder, item: str) -> None:
    """``item`` written by ``part`` through a shared writer of its own, started and closed."""
    slot = SharedWriter(engine).slot(part)
    slot.start()
    slot.put(item)
    slot.close()


def recorded(engine: Engine) -> list[str]:
    with engine.connect() as conn:
        return [row[0] for row in conn.exec_driver_sql("SELECT item FROM recorded")]


async def test_the_log_and_the_queue_share_transactions_and_stay_whole(engine: Engine) -> None:
    """Appends and intakes made together commit in fewer transactions than either part's batches
    count, the leaves get contiguous indices, the tree's root is the leaves', and every intake is
    stored."""
    shared = SharedWriter(engine, wait_ms=1.0, wait_max_ms=5.0)
    log = AuditLog(engine, shared=shared)
    store = DeliveryStore(engine, shared=shared)
    log.start()
    store.start()
    assert isinstance(log._writer, Slot)
    try:
        results = await asyncio.gather(*(log.append(record(i)) for i in range(200)),
                                       *(store.accept(new()) for _ in range(200)))
    finally:
        store.close()
        log.close()
    indices, accepted = results[:200], results[200:]
    assert sorted(indices) == list(range(200))  # type: ignore[type-var]
    assert all(isinstance(a, Accepted) and not a.duplicate for a in accepted)
    assert shared.commits < log.batches + store.batches  # some commits carried both parts
    leaves = log.read(0, 1000)
    assert log.head().root == root_from_leaves([leaf_hash(leaf.leaf) for leaf in leaves])
    with engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(deliveries)).scalar_one() == 200


class Gate(Recorder):
    """A part whose write waits until the test opens it: what is queued meanwhile is one batch."""

    def __init__(self, engine: Engine) -> None:
        super().__init__(engine)
        self.entered, self.open = threading.Event(), threading.Event()

    def write(self, conn: Connection, batch: list[Any]) -> Any:
        self.entered.set()
        self.open.wait(10)
        return super().write(conn, batch)


async def test_a_failing_part_fails_only_its_own_callers(engine: Engine) -> None:
    """A batch of the audit log's and a part whose writes fail, in one shared batch: the log's
    records are stored and answered, the failing part is told and leaves nothing."""
    shared = SharedWriter(engine)
    log = AuditLog(engine, shared=shared)
    gate, broken = Gate(engine), Recorder(engine, failing=True)
    gated, slot = shared.slot(gate), shared.slot(broken)
    log.start()
    gated.start()
    slot.start()
    try:
        gated.put("first")  # holds the thread while the rest queues up
        assert await asyncio.to_thread(gate.entered.wait, 10)
        for i in range(5):
            slot.put(f"item-{i}")
        appends = [asyncio.ensure_future(log.append(record(i))) for i in range(3)]
        for _ in range(500):
            if shared._writer.queued() >= 8:
                break
            await asyncio.sleep(0.01)
        gate.open.set()
        indices = await asyncio.gather(*appends)
    finally:
        slot.close()
        gated.close()
        log.close()
    assert sorted(indices) == [0, 1, 2]
    assert [items for items, _ in broken.failed] == [[f"item-{i}" for i in range(5)]]
    assert isinstance(broken.failed[0][1], RuntimeError)
    assert broken.settled == []
    assert broken.writes == 2  # with the others, then alone
    assert recorded(engine) == ["first"]  # the failing part's rows went with both rollbacks
    assert log.size() == 3


async def test_a_failing_audit_store_fails_the_exchanges_not_the_other_part(engine: Engine) -> None:
    """The audit part's own failure (its head gone) fails its appends with AuditUnavailable while
    the other part's items are committed."""
    shared = SharedWriter(engine)
    log = AuditLog(engine, shared=shared)
    other = Recorder(engine)
    slot = shared.slot(other)
    with engine.begin() as conn:
        conn.exec_driver_sql("DROP TABLE audit_head")
    log.start()
    slot.start()
    try:
        slot.put("kept")
        with pytest.raises(AuditUnavailable):
            await log.append(record(1))
    finally:
        slot.close()
        log.close()
    assert recorded(engine) == ["kept"]
    assert [items for items, _ in other.settled] == [["kept"]]


def test_closing_one_part_flushes_it_and_the_thread_lives_on_for_the_others(engine: Engine) -> None:
    shared = SharedWriter(engine)
    first, second = Recorder(engine), Recorder(engine)
    one, two = shared.slot(first), shared.slot(second)
    one.start()
    two.start()
    assert one.running and two.running
    for i in range(50):
        one.put(f"a{i}")
    one.close()  # returns once its items are handled
    assert sum(len(items) for items, _ in first.settled) == 50
    assert not one.running
    assert shared._writer.running  # the other part still writes
    two.put("b0")
    two.close()
    assert not shared._writer.running  # the last part stopped it
    assert [items for items, _ in second.settled] == [["b0"]]
    one.start()  # and it starts again
    one.put("a-again")
    one.close()
    assert sorted(recorded(engine)) == sorted([f"a{i}" for i in range(50)] + ["b0", "a-again"])


def test_each_part_is_answered_once_per_batch_after_the_commit(engine: Engine) -> None:
    """What a part's settle sees is committed: another connection reads it from there."""
    seen: list[int] = []

    class Checking(Recorder):
        def settle(self, batch: list[Any], written: Any) -> None:
            seen.append(len(recorded(engine)))
            super().settle(batch, written)

    write_one(engine, Checking(engine), "x")
    assert seen == [1]


def test_without_a_shared_writer_each_part_has_its_own_thread(engine: Engine) -> None:
    """PostgreSQL and the tools: each part with its own thread, as before."""
    log = AuditLog(engine)
    store = DeliveryStore(engine)
    assert isinstance(log._writer, BatchWriter)
    assert isinstance(store.queue._writer, BatchWriter)


def test_a_gateway_on_sqlite_shares_one_writer_among_its_parts(tmp_path: Path) -> None:
    """The runtime wires the audit log, the delivery queue and the flows to one shared writer."""
    from gateway.runtime import Runtime
    from tests.helpers import rest_only_config

    config, _ = rest_only_config(tmp_path)
    upgrade(config.database_url)
    runtime = Runtime.build(config)
    try:
        assert runtime.flows is not None
        slots = [runtime.audit._writer, runtime.deliveries.store.queue._writer,
                 runtime.flows.store._writer]
        assert all(isinstance(slot, Slot) for slot in slots)
        assert len({slot._shared for slot in slots if isinstance(slot, Slot)}) == 1
    finally:
        runtime.engine.dispose()


def test_a_lock_that_cannot_be_taken_fails_the_batch_and_the_thread_goes_on(engine: Engine) -> None:
    """The write lock's own failure (its file gone bad, say) fails that batch's callers, stores
    nothing, and the next batch is written as usual."""

    class Broken:
        def __enter__(self) -> None:
            raise OSError("flock failed")

        def __exit__(self, *_: object) -> None:
            return None

    shared = SharedWriter(engine)
    part = Recorder(engine)
    slot = shared.slot(part)
    slot.start()
    real = shared._lock
    shared._lock = Broken()  # type: ignore[assignment]
    slot.put("lost")
    flushed = threading.Event()  # behind "lost": set once its batch is handled
    shared._writer.put((None, flushed))
    assert flushed.wait(10)
    shared._lock = real
    slot.put("kept")
    slot.close()
    assert [items for items, _ in part.failed] == [["lost"]]
    assert isinstance(part.failed[0][1], OSError)
    assert [items for items, _ in part.settled] == [["kept"]]
    assert recorded(engine) == ["kept"]


def test_what_comes_while_another_process_holds_the_lock_joins_the_waiting_batch(engine: Engine) -> None:
    """A batch that waited for the write lock takes what was queued meanwhile: one transaction, not
    one now and another after it. A stop queued meanwhile ends the thread after that batch."""
    shared = SharedWriter(engine)
    part = Recorder(engine)
    slot = shared.slot(part)
    slot.start()
    other = WriteLock(engine, "other")  # another process's writer, as far as the lock can tell
    with other:
        slot.put("first")
        deadline = time.monotonic() + 10
        while slot.queued() and time.monotonic() < deadline:  # taken: waiting for the lock now
            time.sleep(0.01)
        assert not slot.queued()
        slot.put("second")
        slot.put("third")
        shared._writer.put(_STOP)  # type: ignore[arg-type]  # the marker close would queue
    thread = shared._writer._thread
    assert thread is not None
    thread.join(10)
    assert not thread.is_alive()
    other.close()
    assert [items for items, _ in part.settled] == [["first", "second", "third"]]
    assert shared.commits == 1
    assert recorded(engine) == ["first", "second", "third"]


def _lock_free(engine: Engine) -> bool:
    """Whether another process could take the database's write lock now."""
    fd = os.open(f"{engine.url.database}-writer.lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    finally:
        os.close(fd)  # closing drops a lock taken here
    return True


class Probe(Recorder):
    """Notes the synchronous level its writes run under and when it is answered."""

    def __init__(self, engine: Engine, events: list[tuple[Any, ...]]) -> None:
        super().__init__(engine)
        self.events = events

    def write(self, conn: Connection, batch: list[Any]) -> Any:
        raw = conn.connection.driver_connection
        assert raw is not None
        self.events.append(("synchronous", raw.execute("PRAGMA synchronous").fetchone()[0],
                            raw.execute("PRAGMA wal_autocheckpoint").fetchone()[0]))
        return super().write(conn, batch)

    def settle(self, batch: list[Any], written: Any) -> None:
        self.events.append(("settled", list(batch)))
        super().settle(batch, written)


def test_a_batch_is_synced_after_the_lock_and_before_its_callers_are_answered(
        engine: Engine, monkeypatch: pytest.MonkeyPatch) -> None:
    """The writer's connection commits without syncing (NORMAL, no automatic checkpoint); the WAL
    is synced once the lock is released, and only then are the callers told; the engine's other
    connections keep FULL."""
    events: list[tuple[Any, ...]] = []
    real = os.fdatasync

    def fdatasync(fd: int) -> None:
        events.append(("fdatasync", _lock_free(engine)))
        real(fd)

    monkeypatch.setattr(os, "fdatasync", fdatasync)
    write_one(engine, Probe(engine, events), "one")
    assert events == [("synchronous", 1, 0), ("fdatasync", True), ("settled", ["one"])]
    assert recorded(engine) == ["one"]
    with engine.connect() as conn:  # the writer's settings went with its connection
        assert conn.exec_driver_sql("PRAGMA synchronous").scalar_one() == 2


def test_a_wal_that_cannot_be_synced_fails_the_batch(engine: Engine, monkeypatch: pytest.MonkeyPatch) -> None:
    """Committed but perhaps not on disk: no caller is told it is stored."""

    def fdatasync(fd: int) -> None:
        raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr(os, "fdatasync", fdatasync)
    part = Recorder(engine)
    write_one(engine, part, "unsure")
    assert part.settled == []
    assert [items for items, _ in part.failed] == [["unsure"]]
    assert isinstance(part.failed[0][1], OSError)


class Watched(SharedWriter):
    """Notes the database file's size after each commit and after each checkpoint look, and
    whether the lock was free when a checkpoint ran."""

    def __init__(self, engine: Engine) -> None:
        super().__init__(engine)
        self.sizes: list[int] = []
        self.free: list[bool] = []

    def _checkpoint(self) -> None:
        before = self.checkpoints
        super()._checkpoint()
        if self.checkpoints > before:
            self.free.append(_lock_free(self.engine))
        self.sizes.append(Path(str(self.engine.url.database)).stat().st_size)


def _write_each(shared: SharedWriter, items: list[str]) -> None:
    """Each item in a commit of its own."""
    slot = shared.slot(Recorder(shared.engine))
    slot.start()
    for item in items:
        flushed = threading.Event()
        slot.put(item)
        shared._writer.put((None, flushed))
        assert flushed.wait(10)
    slot.close()


def test_the_writer_checkpoints_outside_the_lock_once_the_database_grew(
        engine: Engine, monkeypatch: pytest.MonkeyPatch) -> None:
    """Large rows: the WAL is copied into the database file by the writer once the database grew
    by ``CHECKPOINT_PAGES``, with the lock free; before, the file does not grow (the writer's
    connection makes no automatic checkpoint)."""
    monkeypatch.setattr(shared_module, "CHECKPOINT_PAGES", 150)  # a 400 kB row is about 100 pages
    shared = Watched(engine)
    _write_each(shared, ["x" * 400_000 + str(n) for n in range(4)])
    assert shared.checkpoints == 2
    assert shared.free == [True, True]
    sizes = shared.sizes
    assert sizes[1] > sizes[0] + 600_000  # both rows copied at the second commit, none at the first
    assert sizes[2] == sizes[1] and sizes[3] > sizes[2] + 300_000
    assert len(recorded(engine)) == 4


def test_the_writer_checkpoints_every_few_commits(engine: Engine, monkeypatch: pytest.MonkeyPatch) -> None:
    """Small rows: a checkpoint every ``CHECKPOINT_COMMITS`` commits."""
    monkeypatch.setattr(shared_module, "CHECKPOINT_COMMITS", 2)
    shared = Watched(engine)
    _write_each(shared, [str(n) for n in range(5)])
    assert shared.checkpoints == 2
    assert shared.free == [True, True]
