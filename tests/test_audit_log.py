"""The audit store: durable appends, group commit, contiguous indices across processes."""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
import multiprocessing
import time

import pytest
import sqlalchemy as sa

from gateway.audit.log import AuditLog
from gateway.audit.record import AuditRecord, BodyDigest, SubjectHasher
from gateway.errors import AuditUnavailable
from gateway.storage import writer as writer_module
from gateway.storage.db import create_engine

HASHER = SubjectHasher(b"k" * 32)


def record(i: int, **kw: object) -> AuditRecord:
    base: dict[str, object] = dict(exchange_id=f"x{i}", ts_us=int(time.time() * 1e6), protocol="rest",
                                   outcome="ok", status=200, client="VN/GOV/000.00.00.H22/MOTCUA",
                                   service="VN/GOV/000.00.00.G22/DVCQG/DongBoHoSoMC",
                                   operation="DongBoHoSoMC", request=BodyDigest.of(b"{}"))
    base.update(kw)
    return AuditRecord(**base)  # type: ignore[arg-type]


async def test_append_returns_contiguous_indices(database_url: str) -> None:
    """Concurrent appends get indices 0..n-1, each once, sharing few commits."""
    log = AuditLog(create_engine(database_url))
    log.start()
    try:
        indices = await asyncio.gather(*(log.append(record(i)) for i in range(300)))
    finally:
        log.close()
    assert sorted(indices) == list(range(300))
    assert log.batches < 300  # group commit: many appends shared a transaction
    assert log.size() == 300
    assert [leaf.idx for leaf in log.read(0, 1000)] == list(range(300))


async def test_leaf_is_canonical_json_without_personal_ids(database_url: str) -> None:
    """The stored leaf is canonical JSON and holds subjects only as keyed hashes."""
    log = AuditLog(create_engine(database_url))
    log.start()
    pid = "001060301193"
    try:
        await log.append(record(1, subjects=(HASHER(pid),), purpose="H22.23-20261121-0000001"))
    finally:
        log.close()
    (leaf,) = log.read()
    assert pid.encode() not in leaf.leaf
    doc = json.loads(leaf.leaf)
    assert json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode() == leaf.leaf
    assert doc["subjects"] == [HASHER(pid)]
    assert [x.idx for x in log.by_subject(HASHER(pid))] == [0]


async def test_failed_store_fails_the_exchange(database_url: str) -> None:
    """When the database refuses the write, append raises AuditUnavailable instead of losing it."""
    engine = create_engine(database_url)
    with engine.begin() as conn:
        conn.execute(sa.text("DROP TABLE audit_subjects"))
    log = AuditLog(engine)
    log.start()
    try:
        with pytest.raises(AuditUnavailable):
            await log.append(record(1, subjects=("ab" * 32,)))
    finally:
        log.close()


def _append_in_process(url: str, worker: int, count: int) -> None:
    log = AuditLog(create_engine(url))
    log.start()

    async def go() -> None:
        for chunk in range(0, count, 50):
            await asyncio.gather(*(log.append(record(worker * 100_000 + i))
                                   for i in range(chunk, chunk + 50)))

    asyncio.run(go())
    log.close()


def test_several_processes_append_without_gaps_or_duplicates(database_url: str) -> None:
    """Three processes appending at once leave indices 0..n-1 with no gap and no duplicate."""
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_append_in_process, args=(database_url, w, 400)) for w in range(3)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
        assert p.exitcode == 0
    log = AuditLog(create_engine(database_url))
    leaves = log.read(0, 10_000)
    assert [leaf.idx for leaf in leaves] == list(range(1200))
    assert len({leaf.exchange_id for leaf in leaves}) == 1200



async def test_a_commit_stays_open_while_leaves_keep_coming(database_url: str,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """Each gap the writer waits brings one more exchange (the writer's sleep is replaced by an
    arrival, so the test does not depend on timing): the commit stays open through all of them,
    then closes at the first quiet gap, and one commit stores them all."""
    log = AuditLog(create_engine(database_url), batch_wait_ms=2, batch_wait_max_ms=60_000)
    loop = asyncio.get_running_loop()
    arrivals: list[concurrent.futures.Future[int]] = []
    real_sleep = time.sleep

    class Gaps:
        monotonic = staticmethod(time.monotonic)

        @staticmethod
        def sleep(_seconds: float) -> None:
            if len(arrivals) == 9:
                return  # a quiet gap
            arrivals.append(asyncio.run_coroutine_threadsafe(log.append(record(len(arrivals) + 1)), loop))
            for _ in range(10_000):  # until that exchange is queued for the writer
                if log._writer.queued():
                    return
                real_sleep(0.001)

    monkeypatch.setattr(writer_module, "time", Gaps)
    log.start()
    try:
        first = await log.append(record(0))
        rest = await asyncio.gather(*(asyncio.wrap_future(f) for f in arrivals))
    finally:
        log.close()
    assert sorted([first, *rest]) == list(range(10))
    assert log.batches == 1
