"""Guard rails: the database itself refuses to change or remove audit rows (SQLite and PostgreSQL
triggers). They stop mistakes and casual edits; the tree and the checkpoints are the proof."""

from __future__ import annotations

from pathlib import Path

import pytest
import sqlalchemy as sa

from gateway.storage.db import is_sqlite
from tests.audit_support import Filled, filled

STATEMENTS = {
    "audit_leaves": ["UPDATE audit_leaves SET status = 500 WHERE idx = 3",
                     "DELETE FROM audit_leaves WHERE idx = 3"],
    "audit_subjects": ["UPDATE audit_subjects SET subject = 'x' WHERE idx = 3",
                       "DELETE FROM audit_subjects WHERE idx = 3"],
    "audit_nodes": ["UPDATE audit_nodes SET hash = hash WHERE level = 0 AND idx = 3",
                    "DELETE FROM audit_nodes WHERE level = 0 AND idx = 3"],
    "audit_checkpoints": ["UPDATE audit_checkpoints SET note = 'x'",
                          "DELETE FROM audit_checkpoints"],
}


@pytest.fixture
def log(database_url: str, tmp_path: Path) -> Filled:
    return filled(database_url, tmp_path, size=20, every=10)


def refused(log: Filled, sql: str, **params: object) -> bool:
    try:
        with log.engine.begin() as conn:
            conn.execute(sa.text(sql), params)
    except sa.exc.DBAPIError as exc:
        return "append-only" in str(exc)
    return False


@pytest.mark.parametrize("sql", [s for group in STATEMENTS.values() for s in group])
def test_update_and_delete_are_refused(log: Filled, sql: str) -> None:
    """UPDATE and DELETE on every append-only audit table fail with the guard's message."""
    assert refused(log, sql)


def test_replacing_a_leaf_is_refused(log: Filled) -> None:
    """SQLite's INSERT OR REPLACE (a hidden delete) and an upsert (a hidden update) are refused too."""
    if is_sqlite(log.engine):
        assert refused(log, "INSERT OR REPLACE INTO audit_leaves (idx, exchange_id, ts_us, outcome, "
                            "status, leaf) VALUES (3, 'forged', 0, 'ok', 200, :leaf)", leaf=b"x")
        assert refused(log, "REPLACE INTO audit_nodes (level, idx, hash) VALUES (0, 3, :h)", h=b"x")
    assert refused(log, "INSERT INTO audit_leaves (idx, exchange_id, ts_us, outcome, status, leaf) "
                        "VALUES (3, 'forged', 0, 'ok', 200, :leaf) "
                        "ON CONFLICT (idx) DO UPDATE SET exchange_id = 'forged'", leaf=b"x")


def test_truncate_is_refused_on_postgresql(log: Filled) -> None:
    """TRUNCATE skips row triggers, so PostgreSQL has a statement trigger for it."""
    if is_sqlite(log.engine):
        pytest.skip("SQLite has no TRUNCATE (DELETE without WHERE is refused above)")
    for table in STATEMENTS:
        assert refused(log, f"TRUNCATE {table}")


def test_appends_and_the_head_still_work(log: Filled) -> None:
    """The guards leave appending alone, and the head (derived state) may move."""
    from tests.audit_support import record

    assert log.log.append_many([record(20)]) == [20]
    assert log.log.size() == 21
    assert log.verify().ok
