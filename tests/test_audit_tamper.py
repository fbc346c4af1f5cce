"""Tampering with the stored log, straight in the database with the guard rails dropped, is found by
``verify`` and located, on SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Connection

from gateway.audit.record import BodyDigest
from gateway.audit.verify_problems import LeafHashMismatch
from tests.audit_support import Filled, drop_guards, filled, leaf_of, rebuild_tree, record

SIZE, EVERY = 300, 100  # checkpoints at 100, 200 and 300


@pytest.fixture
def log(database_url: str, tmp_path: Path) -> Filled:
    made = filled(database_url, tmp_path, SIZE, EVERY)
    drop_guards(made.engine)
    return made


def run(log: Filled, sql: str, **params: object) -> None:
    with log.engine.begin() as conn:
        conn.execute(sa.text(sql), params)


def edit(log: Filled, fn: Callable[[Connection], None]) -> None:
    with log.engine.begin() as conn:
        fn(conn)


def test_an_untouched_log_verifies(log: Filled) -> None:
    """The baseline: every leaf, node, index and checkpoint (stored and witnessed) holds."""
    report = log.verify()
    assert report.ok, report.problems
    assert (report.leaves, report.checkpoints) == (SIZE, 3)  # the witness holds the same three notes
    assert report.root == log.log.head().root


def test_changed_leaf_is_found_at_its_index(log: Filled) -> None:
    """Changing one byte of a leaf breaks its hash: found at exactly that index."""
    forged = leaf_of(log.engine, 137).replace(b'"status":200', b'"status":201')
    run(log, "UPDATE audit_leaves SET leaf = :leaf WHERE idx = 137", leaf=forged)
    report = log.verify()
    assert report.first_bad_index == 137
    assert any(isinstance(p, LeafHashMismatch) and p.index == 137 and "leaf hash" in p.what
               for p in report.problems)


def test_changed_leaf_with_rebuilt_tree_is_caught_by_the_checkpoints(log: Filled) -> None:
    """A tamperer who also rewrites every node and the head is betrayed by the signed checkpoints,
    which narrow the change to the leaves between two of them."""
    forged = record(137, client="VN/GOV/000.00.00.H41/MOTCUA").leaf()
    run(log, "UPDATE audit_leaves SET leaf = :leaf, client = :c WHERE idx = 137", leaf=forged,
        c="VN/GOV/000.00.00.H41/MOTCUA")
    rebuild_tree(log.engine)
    report = log.verify(notes=False)
    assert not report.ok
    assert report.first_bad_index == 100  # the last checkpoint that still holds
    assert "[100, 200)" in str(report.problems[0])
    assert report.checkpoints == 1  # only the one at 100


def test_deleted_leaf_is_found(log: Filled) -> None:
    """A removed leaf leaves a gap, named at its index."""
    run(log, "DELETE FROM audit_leaves WHERE idx = 42")
    report = log.verify()
    assert report.first_bad_index == 42
    assert "missing" in str(report.problems[0])


def test_deleted_leaf_with_renumbering_is_found(log: Filled) -> None:
    """Closing the gap by renumbering the later leaves shifts them off their tree positions."""
    def close_gap(conn: Connection) -> None:
        conn.execute(sa.text("DELETE FROM audit_leaves WHERE idx = 42"))
        conn.execute(sa.text("DELETE FROM audit_subjects WHERE idx >= 42"))
        for idx in range(43, SIZE):
            conn.execute(sa.text("UPDATE audit_leaves SET idx = :n WHERE idx = :o"), {"n": idx - 1, "o": idx})
        conn.execute(sa.text("UPDATE audit_head SET size = :s WHERE id = 1"), {"s": SIZE - 1})

    edit(log, close_gap)
    report = log.verify()
    assert report.first_bad_index == 42


def test_deleted_leaf_with_renumbering_and_rebuilt_tree_is_located_after_the_last_good_checkpoint(
        log: Filled) -> None:
    """Leaf 142 removed, the later leaves renumbered, every node and the head rebuilt: the leaves and
    the tree agree again, and only the signed checkpoints tell. The one at 100 still holds; the
    report names the range after it, not the end of the log."""
    def close_gap(conn: Connection) -> None:
        conn.execute(sa.text("DELETE FROM audit_leaves WHERE idx = 142"))
        conn.execute(sa.text("DELETE FROM audit_subjects WHERE idx >= 142"))
        for idx in range(143, SIZE):
            conn.execute(sa.text("UPDATE audit_leaves SET idx = :n WHERE idx = :o"), {"n": idx - 1, "o": idx})

    edit(log, close_gap)
    rebuild_tree(log.engine)
    report = log.verify(notes=False, indexes=False)
    assert report.leaves == SIZE - 1 and report.first_bad_index == 100
    assert [p.index for p in report.problems] == [100, 100]
    assert "[100, 200)" in str(report.problems[0])
    assert "[100, 299)" in str(report.problems[1]) and "after the last checkpoint that holds (100)" \
        in str(report.problems[1])


def test_reordered_leaves_are_found(log: Filled) -> None:
    """Swapping two leaves puts each where the tree expects another hash."""
    def swap(conn: Connection) -> None:
        conn.execute(sa.text("UPDATE audit_leaves SET idx = -1 WHERE idx = 10"))
        conn.execute(sa.text("UPDATE audit_leaves SET idx = 10 WHERE idx = 250"))
        conn.execute(sa.text("UPDATE audit_leaves SET idx = 250 WHERE idx = -1"))

    edit(log, swap)
    report = log.verify()
    assert report.first_bad_index == 10
    assert {p.index for p in report.problems} >= {10, 250}


def test_inserted_leaf_is_found(log: Filled) -> None:
    """A leaf slipped into the middle (the later ones moved up) is found where it went in."""
    def insert(conn: Connection) -> None:
        for idx in range(SIZE - 1, 149, -1):
            conn.execute(sa.text("UPDATE audit_leaves SET idx = :n WHERE idx = :o"), {"n": idx + 1, "o": idx})
        rec = record(9999)
        conn.execute(sa.text(
            "INSERT INTO audit_leaves (idx, exchange_id, ts_us, client, service, operation, outcome, "
            "status, user_id, purpose, rule, leaf) VALUES (150, :x, :t, :c, :s, :o, :out, :st, :u, :p, "
            ":r, :leaf)"), {"x": rec.exchange_id, "t": rec.ts_us, "c": rec.client, "s": rec.service,
                            "o": rec.operation, "out": rec.outcome, "st": rec.status, "u": rec.user_id,
                            "p": rec.purpose, "r": rec.rule, "leaf": rec.leaf()})
        conn.execute(sa.text("UPDATE audit_head SET size = :s WHERE id = 1"), {"s": SIZE + 1})

    edit(log, insert)
    report = log.verify()
    assert report.first_bad_index == 150


def test_leaf_added_past_the_head_is_found(log: Filled) -> None:
    """A leaf written beside the sequencer (the head not moved) is named."""
    rec = record(SIZE)
    run(log, "INSERT INTO audit_leaves (idx, exchange_id, ts_us, outcome, status, leaf) "
        "VALUES (:i, :x, :t, 'ok', 200, :leaf)", i=SIZE, x=rec.exchange_id, t=rec.ts_us, leaf=rec.leaf())
    report = log.verify()
    assert report.first_bad_index == SIZE
    assert "beyond the head" in str(report.problems[0])


def test_leaf_added_with_the_head_moved_is_found(log: Filled) -> None:
    """Moving the head too does not help: the tree has no node for the new leaf."""
    rec = record(SIZE)
    run(log, "INSERT INTO audit_leaves (idx, exchange_id, ts_us, client, service, operation, outcome, "
        "status, rule, leaf) VALUES (:i, :x, :t, :c, :s, :o, 'ok', 200, :r, :leaf)", i=SIZE,
        x=rec.exchange_id, t=rec.ts_us, c=rec.client, s=rec.service, o=rec.operation, r=rec.rule,
        leaf=rec.leaf())
    run(log, "UPDATE audit_head SET size = :s WHERE id = 1", s=SIZE + 1)
    report = log.verify()
    assert report.first_bad_index == SIZE


def test_truncation_is_caught_by_stored_checkpoints(log: Filled) -> None:
    """Cutting the log's end and fixing the tree and head is refuted by the checkpoint at 300. The
    leaves cannot tell a cut end from a removal inside with the rest renumbered: the report names
    the range from the last checkpoint that holds (200), and the cut as one possibility."""
    run(log, "DELETE FROM audit_leaves WHERE idx >= 250")
    run(log, "DELETE FROM audit_subjects WHERE idx >= 250")
    rebuild_tree(log.engine)
    report = log.verify(notes=False)
    assert report.first_bad_index == 200
    assert "only 250" in str(report.problems[0]) and "[200, 250)" in str(report.problems[0])
    assert "from 250 on" in str(report.problems[0])


def test_truncation_with_checkpoints_removed_is_caught_by_the_witness(log: Filled) -> None:
    """Removing the stored checkpoints too still leaves the witness file's copies."""
    run(log, "DELETE FROM audit_leaves WHERE idx >= 250")
    run(log, "DELETE FROM audit_subjects WHERE idx >= 250")
    run(log, "DELETE FROM audit_checkpoints")
    rebuild_tree(log.engine)
    assert log.verify(notes=False).ok  # without a second place, a clean truncation is invisible
    report = log.verify()
    assert report.first_bad_index == 200  # the witnessed checkpoint at 200 still holds


def test_changed_tree_node_is_found(log: Filled) -> None:
    """A stored interior node that no longer matches its leaves is named (proofs use them)."""
    run(log, "UPDATE audit_nodes SET hash = :h WHERE level = 3 AND idx = 5", h=b"\x00" * 32)
    report = log.verify()
    assert report.first_bad_index == 40
    assert "node (3, 5)" in str(report.problems[0])


def test_changed_index_column_is_found(log: Filled) -> None:
    """The search columns must agree with the leaf: a leaf cannot be hidden from a client filter."""
    run(log, "UPDATE audit_leaves SET client = 'VN/GOV/000.00.00.H41/MOTCUA' WHERE idx = 77")
    report = log.verify()
    assert report.first_bad_index == 77
    assert "client" in str(report.problems[0])
    assert log.verify(indexes=False).ok  # the quick check looks at the leaves and tree only


def test_removed_subject_row_is_found(log: Filled) -> None:
    """Removing a data-subject row (to hide an access from a citizen) is found."""
    run(log, "DELETE FROM audit_subjects WHERE idx = 99")
    report = log.verify()
    assert report.first_bad_index == 99
    assert "data-subject" in str(report.problems[0])


def test_forged_checkpoint_row_is_refused(log: Filled) -> None:
    """A stored checkpoint whose note was edited fails its signature check."""
    with log.engine.connect() as conn:
        note = conn.execute(sa.text("SELECT note FROM audit_checkpoints WHERE size = 200")).scalar_one()
    lines = note.split("\n")
    lines[1] = "199"
    run(log, "UPDATE audit_checkpoints SET note = :n WHERE size = 200", n="\n".join(lines))
    report = log.verify()
    assert not report.ok
    assert "database checkpoint 200: refused" in str(report.problems[0])


def test_bodies_digest_changes_alone_are_caught_by_hash(log: Filled) -> None:
    """Rewriting a leaf to match a swapped body (new digest) still changes the leaf hash."""
    forged = record(5, request=BodyDigest.of(b"something else")).leaf()
    run(log, "UPDATE audit_leaves SET leaf = :leaf WHERE idx = 5", leaf=forged)
    assert log.verify().first_bad_index == 5


def test_a_large_log_checks_its_indexes_in_a_second_process(log: Filled,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """The parallel path (a worker process for the index checks) finds the same problems."""
    from gateway.audit import verify

    monkeypatch.setattr(verify, "PARALLEL_FROM", 10)
    assert log.verify().ok
    run(log, "UPDATE audit_leaves SET client = 'VN/GOV/000.00.00.H41/MOTCUA' WHERE idx = 77")
    run(log, "DELETE FROM audit_subjects WHERE idx = 99")
    forged = leaf_of(log.engine, 137).replace(b'"status":200', b'"status":201')
    run(log, "UPDATE audit_leaves SET leaf = :leaf WHERE idx = 137", leaf=forged)
    report = log.verify()
    assert report.first_bad_index == 77
    assert {77, 99, 137} <= {p.index for p in report.problems}


def test_unreadable_leaf_is_found(log: Filled) -> None:
    """A leaf replaced by bytes that are not JSON at all is named (and the rest still checked)."""
    run(log, "UPDATE audit_leaves SET leaf = :leaf WHERE idx = 12", leaf=b"\xff not json")
    run(log, "UPDATE audit_leaves SET client = 'x' WHERE idx = 200")
    report = log.verify()
    assert report.first_bad_index == 12
    assert {12, 200} <= {p.index for p in report.problems}


def test_values_cut_to_their_column_still_verify(database_url: str, tmp_path: Path) -> None:
    """Over-long values kept whole in the leaf and cut in the column are not a problem."""
    made = filled(database_url, tmp_path, size=10, every=10)
    made.log.append_many([record(10, purpose="P" * 700, user_id="U" * 300, exchange_id="e" * 100)])
    report = made.verify()
    assert report.ok, report.problems


def test_bytes_moved_between_stored_nodes_are_found(log: Filled) -> None:
    """Shifting a byte from one stored node to its neighbour keeps their concatenation but not the
    nodes: found."""
    with log.engine.connect() as conn:
        a, b = (bytes(h) for (h,) in conn.execute(sa.text(
            "SELECT hash FROM audit_nodes WHERE level = 0 AND idx IN (20, 21) ORDER BY idx")))
    run(log, "UPDATE audit_nodes SET hash = :h WHERE level = 0 AND idx = 20", h=a[:31])
    run(log, "UPDATE audit_nodes SET hash = :h WHERE level = 0 AND idx = 21", h=a[31:] + b)
    report = log.verify()
    assert report.first_bad_index == 20
