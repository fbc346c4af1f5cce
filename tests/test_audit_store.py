"""The Merkle tree in the database: integrated in the append's transaction, proofs from O(log n)
stored nodes, a frontier that fails closed, and logs migrated from the first schema."""

from __future__ import annotations

import asyncio
import multiprocessing
import random
from pathlib import Path

import pytest
import sqlalchemy as sa
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.audit import tree
from gateway.audit.log import AuditLog, TreeCorruptedError
from gateway.audit.merkle import (
    EMPTY_ROOT,
    Frontier,
    leaf_hash,
    root_from_leaves,
    verify_consistency,
    verify_inclusion,
)
from gateway.errors import AuditUnavailable
from gateway.storage.db import create_engine, upgrade
from tests.audit_support import ORIGIN, SIGNER, drop_guards, record
from tests.conftest import PG_URL


def stored_leaf_hashes(log: AuditLog) -> list[bytes]:
    return [leaf_hash(leaf.leaf) for leaf in log.read(0, 100_000)]


async def test_group_commit_integrates_every_leaf(database_url: str) -> None:
    """Concurrent appends leave the head at the RFC 9162 root of exactly the stored leaves."""
    log = AuditLog(create_engine(database_url), batch_max=64)
    log.start()
    try:
        indices = await asyncio.gather(*(log.append(record(i)) for i in range(500)))
    finally:
        log.close()
    assert sorted(indices) == list(range(500))
    assert log.batches > 1
    head = log.head()
    assert head.size == 500
    assert head.root == root_from_leaves(stored_leaf_hashes(log))


def test_empty_log_has_the_empty_root(database_url: str) -> None:
    """A fresh log's head is size 0 with the hash of nothing."""
    head = AuditLog(create_engine(database_url)).head()
    assert (head.size, head.root) == (0, EMPTY_ROOT)


def test_proofs_from_stored_nodes_verify(database_url: str) -> None:
    """Every inclusion and consistency proof served from storage verifies, for every tree size
    along the way (batches of uneven sizes)."""
    log = AuditLog(create_engine(database_url))
    sizes, i = [], 0
    for batch in (1, 2, 5, 1, 8, 13, 3, 7):
        log.append_many([record(j) for j in range(i, i + batch)])
        i += batch
        sizes.append(i)
    hashes = stored_leaf_hashes(log)
    for size in range(1, i + 1):
        root = log.root_at(size)
        assert root == root_from_leaves(hashes[:size])
        for index in range(size):
            assert verify_inclusion(index, size, hashes[index], log.inclusion_proof(index, size), root)
    for size1 in range(1, i + 1):
        for size2 in range(size1, i + 1, 3):
            proof = log.consistency_proof(size1, size2)
            assert verify_consistency(size1, size2, log.root_at(size1), log.root_at(size2), proof)


def test_proofs_read_logarithmically_many_nodes(tmp_path: Path) -> None:
    """A proof in a tree of 5,000 leaves reads only the nodes it names (a few dozen at most)."""
    url = f"sqlite:///{tmp_path / 'a.db'}"
    upgrade(url)
    engine = create_engine(url)
    log = AuditLog(engine)
    log.append_many([record(i) for i in range(5000)])
    statements: list[str] = []
    sa.event.listen(engine, "before_cursor_execute", lambda *args: statements.append(args[2]))
    proof = log.inclusion_proof(1234, 5000)
    reads = [s for s in statements if not s.startswith("BEGIN")]
    assert len(reads) == 1 and len(proof) == 13
    assert reads[0].count("audit_nodes.idx =") <= 2 * 13


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(min_value=1, max_value=70), min_size=1, max_size=12), st.integers(0, 50))
def test_extend_levels_makes_the_same_nodes_as_extend(batches: list[int], start: int) -> None:
    """The level-at-a-time append stores exactly the nodes the leaf-at-a-time one makes."""
    rng = random.Random(start)
    one, many = Frontier(), Frontier()
    one.extend(rng.randbytes(32) for _ in range(start))
    many = Frontier.from_nodes(start, lambda level, index: {(n.level, n.index): n.hash
                                                           for n in one.nodes()}[(level, index)])
    for batch in batches:
        hashes = [rng.randbytes(32) for _ in range(batch)]
        expected = sorted(one.extend(hashes))
        got = sorted((level, first + k, h) for level, first, nodes in many.extend_levels(hashes)
                     for k, h in enumerate(nodes))
        assert got == expected
        assert many.root() == one.root() and many.size == one.size


def test_extend_levels_refuses_bad_hashes() -> None:
    """A batch with a hash of the wrong size is refused before anything changes."""
    frontier = Frontier()
    with pytest.raises(ValueError):
        frontier.extend_levels([b"\x00" * 32, b"short"])
    assert frontier.size == 0


async def test_a_broken_tree_fails_the_append(database_url: str) -> None:
    """If the stored right edge does not give the head's root, appends fail (the exchange too)
    instead of growing a tree nobody can verify, and no checkpoint is signed."""
    engine = create_engine(database_url)
    log = AuditLog(engine)
    log.append_many([record(i) for i in range(6)])
    drop_guards(engine)
    with engine.begin() as conn:
        conn.execute(sa.text("UPDATE audit_nodes SET hash = :h WHERE level = 2 AND idx = 0"),
                     {"h": b"\x01" * 32})
    log = AuditLog(engine)  # a process (re)starting: it reads the right edge from storage
    with pytest.raises(TreeCorruptedError):
        log.append_many([record(6)])
    log.start()
    try:
        with pytest.raises(AuditUnavailable):
            await log.append(record(7))
    finally:
        log.close()
    from gateway.audit.checkpointer import Checkpointer

    with pytest.raises(TreeCorruptedError):
        Checkpointer(engine, SIGNER, ORIGIN).make()


def test_long_values_are_cut_in_their_columns_only(database_url: str) -> None:
    """An over-long purpose or official cannot fail the shared commit: the column holds a prefix,
    the leaf the whole value, and a search by the whole value still finds it."""
    from gateway.audit.query import Filters, search

    engine = create_engine(database_url)
    log = AuditLog(engine)
    purpose, official = "P" * 900, "U" * 400
    log.append_many([record(0, purpose=purpose, user_id=official), record(1, purpose="P" * 512)])
    (leaf,) = log.read(0, 1)
    assert purpose.encode() in leaf.leaf and leaf.purpose == purpose[:512]
    found = search(engine, Filters(purpose=purpose))
    assert [e.index for e in found] == [0]
    assert [e.index for e in search(engine, Filters(official=official))] == [0]


def _append_in_process(url: str, worker: int) -> None:
    log = AuditLog(create_engine(url), batch_max=16)
    log.start()

    async def go() -> None:
        for chunk in range(0, 200, 40):
            await asyncio.gather(*(log.append(record(worker * 10_000 + i)) for i in range(chunk, chunk + 40)))

    asyncio.run(go())
    log.close()


def test_several_processes_grow_one_tree(database_url: str) -> None:
    """Three processes appending at once still leave one consistent tree: the head's root is the
    root of the stored leaves, and every stored node is right."""
    from gateway.audit.verify import verify_log

    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_append_in_process, args=(database_url, w)) for w in range(3)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
        assert p.exitcode == 0
    engine = create_engine(database_url)
    log = AuditLog(engine)
    assert log.head().root == root_from_leaves(stored_leaf_hashes(log))
    report = verify_log(engine, verifiers=[SIGNER.verifier()], origin=ORIGIN)
    assert report.ok and report.leaves == 600, report.problems


@pytest.mark.parametrize("backend", ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def test_migration_integrates_leaves_of_the_first_schema(backend: str, tmp_path: Path) -> None:
    """A log written under migration 0001 (no tree) gets its nodes and root from migration 0002."""
    from alembic import command
    from alembic.config import Config as AlembicConfig

    from gateway.storage.db import MIGRATIONS
    from tests.conftest import _fresh_pg_database

    if backend == "postgresql":
        if not PG_URL:
            pytest.skip("no PostgreSQL")
        url = _fresh_pg_database()
    else:
        url = f"sqlite:///{tmp_path / 'old.db'}"
    cfg = AlembicConfig()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    command.upgrade(cfg, "0001")
    engine = create_engine(url)
    leaves = [record(i).leaf() for i in range(37)]
    with engine.begin() as conn:
        conn.execute(sa.text("INSERT INTO audit_leaves (idx, exchange_id, ts_us, outcome, status, leaf) "
                             "VALUES (:i, :x, 0, 'ok', 200, :leaf)"),
                     [{"i": i, "x": f"x{i}", "leaf": leaf} for i, leaf in enumerate(leaves)])
        conn.execute(sa.text("UPDATE audit_head SET size = 37"))
    engine.dispose()
    upgrade(url)
    engine = create_engine(url)
    log = AuditLog(engine)
    hashes = [leaf_hash(x) for x in leaves]
    assert log.head().root == root_from_leaves(hashes)
    log.append_many([record(37)])
    assert log.head().root == root_from_leaves([*hashes, leaf_hash(record(37).leaf())])
    with engine.connect() as conn:
        assert tree.root_at(conn, 20) == root_from_leaves(hashes[:20])


async def test_a_record_that_cannot_be_a_leaf_fails_its_exchange(tmp_path: Path) -> None:
    """A record canonical JSON cannot hold (an integer past 2**53) fails with AuditUnavailable."""
    url = f"sqlite:///{tmp_path / 'a.db'}"
    upgrade(url)
    log = AuditLog(create_engine(url))
    log.start()
    try:
        with pytest.raises(AuditUnavailable):
            await log.append(record(0, total_us=2**60))
        assert await log.append(record(1)) == 0
    finally:
        log.close()
