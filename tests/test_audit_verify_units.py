"""The checks of ``audit verify`` over the in-memory store: a correct log built with the project's own
Merkle code, damaged one way per test; each asserts the exact problem type and its evidence."""

from __future__ import annotations

import copy
import dataclasses
import functools
from collections.abc import Sequence
from pathlib import Path

import orjson
import pytest
import sqlalchemy as sa
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.audit import verify_problems
from gateway.audit.bodies import Bodies, BodyVault
from gateway.audit.checkpoint import Checkpoint, Signer
from gateway.audit.checkpointer import StoredCheckpoint
from gateway.audit.log import index_columns
from gateway.audit.merkle import EMPTY_ROOT, Frontier, consistency_proof_nodes, leaf_hash, nodes_to_fetch
from gateway.audit.record import AuditRecord, BodyDigest, leaf_time
from gateway.audit.verify import MAX_PROBLEMS, Report, verify, verify_log
from gateway.audit.verify_memory import MemoryVerifyStore
from gateway.audit.verify_problems import (
    BeyondHead,
    BodyMismatch,
    BodyUnreadable,
    CheckpointPastGap,
    CheckpointRefused,
    CheckpointRootMismatch,
    CheckpointRowMismatch,
    Fork,
    Gap,
    HeadMismatch,
    InconsistentCheckpoints,
    IndexColumnMismatch,
    LeafHashMismatch,
    LeafNotInTree,
    LeavesRemoved,
    MoreCheckpointsFail,
    NodeMismatch,
    NodeMissing,
    Problem,
    SubjectRowMismatch,
    UnreadableLeaf,
)
from gateway.audit.verify_store import INDEX_ROW_FIELDS, IndexRow
from gateway.storage.db import create_engine, upgrade
from tests.audit_support import CLIENT, HASHER, ORIGIN, SIGNER, drop_guards, filled, record

VAULT = BodyVault(b"k" * 32)
KEPT = (3, 10)  # leaves whose bodies are kept
SIZE, EVERY = 300, 100


def _bodies(i: int) -> Bodies:
    return Bodies(request=b'{"i": %d}' % i, response=b"", upstream_request=b"<up %d/>" % i)


def subject_of(i: int) -> str:
    """The data subject ``record(i)`` names (every third leaf names one)."""
    return HASHER(f"0010{i:08d}")


def _record(i: int) -> AuditRecord:
    if i in KEPT:
        return record(i, upstream_request=BodyDigest.of(b"<up %d/>" % i))
    return record(i)


def _row(idx: int, ts_us: int, leaf: bytes) -> IndexRow:
    columns = index_columns(orjson.loads(leaf))
    return (idx, ts_us, columns["exchange_id"], columns["client"], columns["service"],
            columns["operation"], columns["outcome"], columns["status"], columns["user_id"],
            columns["purpose"], columns["rule"], leaf)


def _stored(size: int, root: bytes, signer: Signer = SIGNER, origin: str = ORIGIN) -> StoredCheckpoint:
    return StoredCheckpoint(size, root, signer.sign(Checkpoint(origin, size, root)), 0)


def rebuild(store: MemoryVerifyStore) -> dict[int, bytes]:
    """Recompute every node and the head from the rows as they are (what a careful tamperer does);
    return the root at every size."""
    frontier, roots = Frontier(), {0: EMPTY_ROOT}
    store.nodes_by_id.clear()
    for idx in sorted(store.rows):
        for node in frontier.append(leaf_hash(store.rows[idx][11])):
            store.nodes_by_id[(node.level, node.index)] = node.hash
        roots[frontier.size] = frontier.root()
    store.head_size, store.head_root = frontier.size, frontier.root()
    return roots


def build(records: Sequence[AuditRecord], checkpoints_at: Sequence[int] = (100, 200, 300), *,
          shortcuts: bool = False) -> MemoryVerifyStore:
    """A correct log of ``records`` with a signed checkpoint at each size, bodies kept for KEPT."""
    store = MemoryVerifyStore(shortcuts=shortcuts)
    for idx, rec in enumerate(records):
        store.rows[idx] = _row(idx, rec.ts_us, rec.leaf())
        store.subject_rows |= {(idx, s) for s in rec.subjects}
        if idx in KEPT:
            sealed = VAULT.seal(rec.exchange_id, _bodies(idx), 0)
            store.body_rows[idx] = (idx, sealed["key_id"], sealed["request"], sealed["response"],
                                    sealed["upstream_request"], sealed["upstream_response"])
    roots = rebuild(store)
    store.stored_checkpoints = [_stored(size, roots[size]) for size in checkpoints_at]
    return store


def check(store: MemoryVerifyStore, **kw: object) -> Report:
    return verify(store, verifiers=[SIGNER.verifier()], origin=ORIGIN, vault=VAULT, **kw)  # type: ignore[arg-type]


def with_column(row: IndexRow, column: str, value: object) -> IndexRow:
    at = INDEX_ROW_FIELDS.index(column)
    return (*row[:at], value, *row[at + 1:])  # type: ignore[return-value]


def kinds(report: Report) -> list[type[Problem]]:
    return [type(p) for p in report.problems]


@pytest.fixture(params=[False, True], ids=["every-row", "shortcuts"])
def log(request: pytest.FixtureRequest) -> MemoryVerifyStore:
    """300 leaves, checkpoints at 100, 200 and 300; with and without the store's shortcuts."""
    return build([_record(i) for i in range(SIZE)], shortcuts=request.param)


def true_hash(store: MemoryVerifyStore, level: int, index: int) -> bytes:
    return store.nodes_by_id[(level, index)]


# ------------------------------------------------------------------------------------ an intact log

def test_an_intact_log_verifies(log: MemoryVerifyStore) -> None:
    """Every leaf, node, index, body and checkpoint of a correct log holds."""
    report = check(log)
    assert report.ok, report.problems
    assert (report.leaves, report.checkpoints, report.bodies) == (SIZE, 3, len(KEPT))
    assert report.root == log.head_root and report.first_bad_index is None


def test_an_empty_log_verifies() -> None:
    """No leaves, no checkpoints: nothing to find, and the root is the empty one."""
    report = check(MemoryVerifyStore(head_root=EMPTY_ROOT))
    assert report.ok and report.leaves == 0 and report.root == EMPTY_ROOT


def test_a_checkpoint_of_size_zero_holds() -> None:
    """The empty tree's checkpoint holds against any log (its root is the empty root)."""
    store = build([_record(i) for i in range(5)], (5,))
    store.stored_checkpoints.insert(0, _stored(0, EMPTY_ROOT))
    report = check(store)
    assert report.ok and report.checkpoints == 2


def test_the_quick_check_skips_indexes_and_bodies(log: MemoryVerifyStore) -> None:
    """Without indexes, damage to a column, a subject row or a body goes unseen; leaves do not."""
    log.rows[7] = with_column(log.rows[7], "client", "VN/GOV/000.00.00.H41/MOTCUA")
    log.subject_rows.discard((9, subject_of(9)))
    report = check(log, indexes=False)
    assert report.ok and report.bodies == 0
    assert not check(log).ok


# ------------------------------------------------------------------------------------------ leaves

def test_a_changed_leaf_is_a_leaf_hash_mismatch_at_its_index(log: MemoryVerifyStore) -> None:
    """One edited leaf: its hash against the stored leaf node, the column it no longer matches, the
    checkpoints from there on and the head, all located at it."""
    original = log.rows[137][11]
    forged = original.replace(b'"status":200', b'"status":201')
    log.rows[137] = (*log.rows[137][:11], forged)
    report = check(log)
    assert report.first_bad_index == 137
    assert report.problems[0] == LeafHashMismatch(137, leaf_hash(original), leaf_hash(forged))
    assert IndexColumnMismatch(137, "status", 201, 200) in report.problems
    root_problem = next(p for p in report.problems if isinstance(p, CheckpointRootMismatch))
    assert (root_problem.index, root_problem.size, root_problem.begin) == (137, 200, 100)
    assert root_problem.expected == log.stored_checkpoints[1].root != root_problem.computed
    assert MoreCheckpointsFail((300,)) in report.problems
    assert HeadMismatch(SIZE, log.head_root, report.root) in report.problems
    assert report.checkpoints == 1
    assert not any(isinstance(p, NodeMismatch) for p in report.problems)  # nodes above 137 are its


def test_a_changed_leaf_with_the_tree_rebuilt_is_located_by_the_checkpoints(log: MemoryVerifyStore) -> None:
    """A tamperer who rewrites the nodes and the head is left with the signed checkpoints, which
    narrow the change to the range after the last one that holds."""
    forged = record(137, client="VN/GOV/000.00.00.H41/MOTCUA")
    log.rows[137] = _row(137, forged.ts_us, forged.leaf())
    roots = rebuild(log)
    report = check(log)
    assert report.problems == [
        CheckpointRootMismatch(100, "database checkpoint 200", 200, 100, log.stored_checkpoints[1].root,
                               roots[200]),
        MoreCheckpointsFail((300,)),
    ]
    assert report.checkpoints == 1 and report.first_bad_index == 100


def test_a_deleted_leaf_is_a_gap(log: MemoryVerifyStore) -> None:
    """A removed leaf stops the scan at its index; the checkpoints beyond it cannot be checked."""
    del log.rows[42]
    report = check(log)
    assert report.problems == [Gap(42, 43)] + [
        CheckpointPastGap(42, f"database checkpoint {size}", size) for size in (100, 200, 300)]
    assert report.leaves == 42 and report.first_bad_index == 42


def test_a_deleted_and_renumbered_leaf_is_found_where_it_was(log: MemoryVerifyStore) -> None:
    """Closing the gap by renumbering shifts every later leaf off its tree position."""
    shifted = {idx - (idx > 42): row for idx, row in log.rows.items() if idx != 42}
    log.rows = {idx: (idx, *row[1:]) for idx, row in shifted.items()}
    log.head_size = SIZE - 1
    report = check(log, indexes=False)
    assert report.first_bad_index == 42
    assert report.problems[0] == LeafHashMismatch(42, true_hash(log, 0, 42), leaf_hash(log.rows[42][11]))


def test_a_deleted_and_renumbered_leaf_with_the_tree_rebuilt_is_located_after_the_last_good_checkpoint(
        log: MemoryVerifyStore) -> None:
    """Leaf 142 removed, the later ones renumbered, subject rows, nodes and head rebuilt: only the
    checkpoints tell, and the removal is named as a range after the one at 100 that still holds."""
    records = [_record(i) for i in range(SIZE) if i != 142]
    rebuilt = build(records, (), shortcuts=log.shortcuts)
    rebuilt.stored_checkpoints = log.stored_checkpoints  # the signed ones, from before
    report = check(rebuilt)
    assert [type(p) for p in report.problems] == [CheckpointRootMismatch, LeavesRemoved]
    removed = report.problems[1]
    assert removed == LeavesRemoved(100, "database checkpoint 300", 300, 100, SIZE - 1)
    assert "[100, 299)" in str(removed) and "after the last checkpoint that holds (100)" in str(removed)
    assert report.problems[0].index == 100 and "[100, 200)" in str(report.problems[0])
    assert report.leaves == SIZE - 1 and report.first_bad_index == 100


def test_a_truncated_log_names_the_cut_as_one_possibility(log: MemoryVerifyStore) -> None:
    """The end cut and the tree rebuilt: the checkpoint at 300 covers leaves the log no longer has."""
    for idx in range(250, SIZE):
        del log.rows[idx]
    rebuild(log)
    report = check(log)
    assert report.problems == [LeavesRemoved(200, "database checkpoint 300", 300, 200, 250)]
    assert "from 250 on" in str(report.problems[0])


def test_swapped_leaves_are_found_at_both_places(log: MemoryVerifyStore) -> None:
    """Two leaves exchanged (with their columns): each sits where the tree expects the other."""
    a, b = log.rows[10], log.rows[250]
    log.rows[10], log.rows[250] = (10, *b[1:]), (250, *a[1:])
    report = check(log, indexes=False)
    assert report.first_bad_index == 10
    mismatched = [p for p in report.problems if isinstance(p, LeafHashMismatch)]
    assert [(p.index, p.expected, p.computed) for p in mismatched] == [
        (10, leaf_hash(a[11]), leaf_hash(b[11])), (250, leaf_hash(b[11]), leaf_hash(a[11]))]


def test_a_leaf_beyond_the_head_is_named(log: MemoryVerifyStore) -> None:
    """A leaf written beside the sequencer (the head not moved) is named at its index."""
    extra = record(SIZE)
    log.rows[SIZE] = _row(SIZE, extra.ts_us, extra.leaf())
    assert check(log).problems == [BeyondHead(SIZE)]


def test_a_leaf_added_with_the_head_moved_is_not_in_the_tree(log: MemoryVerifyStore) -> None:
    """Moving the head too does not help: no stored leaf node for it, and not the head's root."""
    extra = record(SIZE)
    log.rows[SIZE] = _row(SIZE, extra.ts_us, extra.leaf())
    log.head_size = SIZE + 1
    report = check(log)
    assert report.problems[0] == LeafNotInTree(SIZE, leaf_hash(extra.leaf()))
    assert report.first_bad_index == SIZE


def test_an_unreadable_leaf_is_named_and_the_rest_still_checked(log: MemoryVerifyStore) -> None:
    """Bytes that are not JSON: a hash mismatch and an unreadable document, at the same index; a
    column edited further on is still found."""
    log.rows[12] = (*log.rows[12][:11], b"\xff not json")
    log.rows[200] = with_column(log.rows[200], "client", "x")
    report = check(log)
    assert report.first_bad_index == 12
    unreadable = [p for p in report.problems if isinstance(p, UnreadableLeaf)]
    assert [p.index for p in unreadable] == [12]
    assert IndexColumnMismatch(200, "client", CLIENT, "x") in report.problems


def test_a_leaf_missing_a_field_is_unreadable(log: MemoryVerifyStore) -> None:
    """A JSON object without the leaf's fields cannot have its columns checked: named as such."""
    log.rows[30] = (*log.rows[30][:11], b'{"v":1}')
    problem = next(p for p in check(log).problems if isinstance(p, UnreadableLeaf))
    assert problem.index == 30 and "KeyError" in problem.reason


def test_a_leaf_that_is_not_an_object_is_unreadable(log: MemoryVerifyStore) -> None:
    """A JSON array where a document should be is named."""
    log.rows[31] = (*log.rows[31][:11], b"[1,2]")
    assert UnreadableLeaf(31, "not a JSON object") in check(log).problems


# -------------------------------------------------------------------------------------------- tree

def test_a_changed_leaf_node_is_a_leaf_hash_mismatch(log: MemoryVerifyStore) -> None:
    """The stored leaf hash changed, the leaf not: the only problem, with both hashes."""
    true = true_hash(log, 0, 5)
    log.nodes_by_id[(0, 5)] = b"\x00" * 32
    assert check(log).problems == [LeafHashMismatch(5, b"\x00" * 32, true)]


def test_a_removed_leaf_node_is_named(log: MemoryVerifyStore) -> None:
    """A leaf whose level-0 node is gone is not in the tree."""
    true = true_hash(log, 0, 6)
    del log.nodes_by_id[(0, 6)]
    assert check(log).problems == [LeafNotInTree(6, true)]


def test_a_changed_interior_node_is_named_with_its_leaves(log: MemoryVerifyStore) -> None:
    """Node (3, 5) covers leaves [40, 48): named at 40, with the stored and the recomputed hash."""
    true = true_hash(log, 3, 5)
    log.nodes_by_id[(3, 5)] = b"\x01" * 32
    report = check(log)
    assert report.problems == [NodeMismatch(40, 3, 5, b"\x01" * 32, true)]
    assert "node (3, 5) over leaves [40, 48)" in str(report.problems[0])


def test_a_removed_interior_node_is_named(log: MemoryVerifyStore) -> None:
    """A perfect node the tree must have, gone: missing, at its first leaf."""
    true = true_hash(log, 5, 2)
    del log.nodes_by_id[(5, 2)]
    report = check(log)
    assert report.problems[0] == NodeMissing(64, 5, 2, true)
    assert "is missing" in str(report.problems[0])


def test_a_short_node_cannot_hide_in_the_concatenation(log: MemoryVerifyStore) -> None:
    """A byte moved from one stored node to its neighbour keeps the joined bytes, not the nodes."""
    a, b = true_hash(log, 0, 20), true_hash(log, 0, 21)
    log.nodes_by_id[(0, 20)], log.nodes_by_id[(0, 21)] = a[:31], a[31:] + b
    report = check(log)
    assert report.first_bad_index == 20
    assert [p.index for p in report.problems] == [20, 21]


def test_a_changed_head_root_is_a_head_mismatch(log: MemoryVerifyStore) -> None:
    """The head's root, and only it, changed: its evidence is both roots."""
    true = log.head_root
    log.head_root = b"\x02" * 32
    report = check(log)
    assert report.problems == [HeadMismatch(SIZE, b"\x02" * 32, true)]
    assert report.first_bad_index is None


def test_a_head_larger_than_the_log_is_a_gap_at_its_end(log: MemoryVerifyStore) -> None:
    """The head says more leaves than are stored: the first absent one is named."""
    log.head_size = SIZE + 5
    assert check(log).problems == [Gap(SIZE, None)]


def test_a_head_moved_back_is_caught_by_the_checkpoint_and_the_leaves_beyond(log: MemoryVerifyStore) -> None:
    """A head set back to an earlier size (with that size's root): the leaves past it and the
    checkpoint at 300 both tell."""
    roots = rebuild(log)
    log.head_size, log.head_root = 250, roots[250]
    report = check(log)
    assert report.problems == [BeyondHead(250), LeavesRemoved(200, "database checkpoint 300", 300, 200, 250)]


# ----------------------------------------------------------------------------------------- indexes

@pytest.mark.parametrize(("column", "value"), [
    ("client", "VN/GOV/000.00.00.H41/MOTCUA"), ("service", None), ("operation", "Khac"),
    ("outcome", "failed"), ("status", 500), ("user_id", "VN-someone"), ("purpose", "P"),
    ("rule", "other"), ("exchange_id", "x999999"),
])
def test_a_changed_index_column_is_named_with_both_values(log: MemoryVerifyStore, column: str,
                                                          value: object) -> None:
    """A search column that disagrees with its leaf: the column, the leaf's value and the stored."""
    expected = log.rows[77][INDEX_ROW_FIELDS.index(column)]
    log.rows[77] = with_column(log.rows[77], column, value)
    assert check(log).problems == [IndexColumnMismatch(77, column, expected, value)]


def test_a_changed_time_column_is_named(log: MemoryVerifyStore) -> None:
    """The time column is compared as the leaf writes its time."""
    ts_us = log.rows[78][1]
    log.rows[78] = with_column(log.rows[78], "ts_us", ts_us + 1)
    assert check(log).problems == [IndexColumnMismatch(78, "ts_us", leaf_time(ts_us), ts_us + 1)]


def test_several_columns_of_one_leaf_are_each_named(log: MemoryVerifyStore) -> None:
    """Two columns off on one leaf: two problems, one leaf located."""
    row = with_column(with_column(log.rows[79], "client", "a"), "rule", "b")
    log.rows[79] = row
    report = check(log)
    assert [(p.column, p.found) for p in report.problems if isinstance(p, IndexColumnMismatch)] == [
        ("client", "a"), ("rule", "b")]
    assert report.bad_leaves == [79]


def test_a_value_cut_to_its_column_is_not_a_problem() -> None:
    """Over-long values are kept whole in the leaf and cut in the column: that holds."""
    store = build([record(0, purpose="P" * 700, user_id="U" * 300, exchange_id="e" * 100)], (1,))
    assert store.rows[0][9] != orjson.loads(store.rows[0][11])["purpose"]  # cut indeed
    assert check(store).ok


def test_a_removed_subject_row_is_named(log: MemoryVerifyStore) -> None:
    """Hiding an access from a citizen's report: the leaf's subjects and the rows found."""
    subject = subject_of(99)
    log.subject_rows.discard((99, subject))
    assert check(log).problems == [SubjectRowMismatch(99, (subject,), ())]


def test_an_added_subject_row_is_named(log: MemoryVerifyStore) -> None:
    """A subject row for a leaf that names nobody (steering a citizen's report)."""
    log.subject_rows.add((100, "f" * 64))
    assert check(log).problems == [SubjectRowMismatch(100, (), ("f" * 64,))]


def test_a_replaced_subject_row_is_named(log: MemoryVerifyStore) -> None:
    """Another person's hash in place of the leaf's subject."""
    subject = subject_of(3)
    log.subject_rows.discard((3, subject))
    log.subject_rows.add((3, "e" * 64))
    assert check(log).problems == [SubjectRowMismatch(3, (subject,), ("e" * 64,))]


def test_subject_rows_of_an_absent_leaf_are_left_to_the_gap(log: MemoryVerifyStore) -> None:
    """Rows of a leaf that is not stored: the gap names it; the subject check does not twice."""
    del log.rows[42]
    report = check(log)
    assert not any(isinstance(p, SubjectRowMismatch) for p in report.problems)
    assert report.problems[0] == Gap(42, 43)


def test_a_leaf_naming_subjects_that_are_not_names_disagrees(log: MemoryVerifyStore) -> None:
    """A leaf whose subjects are not a list of names cannot match any rows (the tree also tells)."""
    doc = orjson.loads(log.rows[6][11])
    doc["subjects"] = [1]
    log.rows[6] = (*log.rows[6][:11], orjson.dumps(doc, option=orjson.OPT_SORT_KEYS))
    found = [p for p in check(log).problems if isinstance(p, SubjectRowMismatch)]
    assert found == [SubjectRowMismatch(6, (), (subject_of(6),))]


# ------------------------------------------------------------------------------------------ bodies

def test_a_swapped_body_is_a_body_mismatch_with_both_digests(log: MemoryVerifyStore) -> None:
    """A kept request sealed anew with other content: it opens, but is not the leaf's."""
    other = Bodies(request=b"something else", response=b"", upstream_request=b"<up 3/>")
    sealed = VAULT.seal(record(3).exchange_id, other, 0)
    log.body_rows[3] = (3, sealed["key_id"], sealed["request"], sealed["response"],
                        sealed["upstream_request"], None)
    report = check(log)
    assert report.problems == [BodyMismatch(
        3, "request", BodyDigest.of(b'{"i": 3}').as_json(), BodyDigest.of(b"something else").as_json())]
    assert report.bodies == len(KEPT) - 1


def test_a_dropped_upstream_body_is_a_body_mismatch(log: MemoryVerifyStore) -> None:
    """A part the leaf has a digest of, no longer kept: expected the digest, computed nothing."""
    sealed = VAULT.seal(record(10).exchange_id, Bodies(request=b'{"i": 10}', response=b""), 0)
    log.body_rows[10] = (10, sealed["key_id"], sealed["request"], sealed["response"], None, None)
    assert check(log).problems == [BodyMismatch(10, "upstream_request",
                                                BodyDigest.of(b"<up 10/>").as_json(), None)]


def test_a_changed_sealed_byte_is_a_body_that_does_not_open(log: MemoryVerifyStore) -> None:
    """One byte of a sealed body flipped: it no longer opens under the key."""
    row = log.body_rows[3]
    request = row[2]
    assert request is not None
    log.body_rows[3] = (3, row[1], request[:-1] + bytes([request[-1] ^ 1]), *row[3:])
    report = check(log)
    assert kinds(report) == [BodyUnreadable]
    assert report.problems[0].index == 3 and "does not open" in str(report.problems[0])


def test_a_body_moved_to_another_leaf_does_not_open(log: MemoryVerifyStore) -> None:
    """Bodies are sealed to their exchange: moved to another leaf, they do not open."""
    log.body_rows[4] = (4, *log.body_rows[3][1:])
    assert kinds(check(log)) == [BodyUnreadable]


def test_a_body_under_another_key_is_named(log: MemoryVerifyStore) -> None:
    """A row naming another key id cannot be opened by this vault."""
    log.body_rows[3] = (3, "0" * 16, *log.body_rows[3][2:])
    problem = check(log).problems[0]
    assert isinstance(problem, BodyUnreadable) and "sealed under key 0000000000000000" in problem.reason


def test_bodies_are_not_checked_without_a_vault(log: MemoryVerifyStore) -> None:
    """Without the body key, kept bodies are not opened (and not counted)."""
    log.body_rows[3] = (3, "0" * 16, *log.body_rows[3][2:])
    report = verify(log, verifiers=[SIGNER.verifier()], origin=ORIGIN)
    assert report.ok and report.bodies == 0


# ------------------------------------------------------------------------------------- checkpoints

def test_a_checkpoint_of_another_root_is_a_root_mismatch(log: MemoryVerifyStore) -> None:
    """A validly signed checkpoint whose root the leaves do not give: located after the last good
    one, with the signed and the recomputed root."""
    true = log.stored_checkpoints[1].root
    log.stored_checkpoints[1] = _stored(200, b"\x03" * 32)
    report = check(log)
    assert report.problems == [
        CheckpointRootMismatch(100, "database checkpoint 200", 200, 100, b"\x03" * 32, true)]
    assert report.checkpoints == 2


def test_two_roots_for_one_size_are_a_fork(log: MemoryVerifyStore) -> None:
    """A witness holding another signed root for size 200: a fork, with both roots and sources."""
    true = log.stored_checkpoints[1].root
    forked = SIGNER.sign(Checkpoint(ORIGIN, 200, b"\x04" * 32))
    report = check(log, notes=[("witness 2", forked)])
    assert report.problems[0] == Fork(200, (("database checkpoint 200", true), ("witness 2", b"\x04" * 32)))
    assert report.problems[1] == CheckpointRootMismatch(100, "witness 2", 200, 100, b"\x04" * 32, true)
    assert report.checkpoints == 3


def test_a_given_note_equal_to_a_stored_one_counts_once(log: MemoryVerifyStore) -> None:
    """The witness holds the same signed bytes as the database: not a second claim."""
    report = check(log, notes=[("witness 1", log.stored_checkpoints[0].note)])
    assert report.ok and report.checkpoints == 3


def test_an_edited_checkpoint_note_is_refused(log: MemoryVerifyStore) -> None:
    """A stored note whose size line was edited fails its signature: refused, with the reason."""
    stored = log.stored_checkpoints[1]
    note = stored.note.replace(b"\n200\n", b"\n199\n")
    log.stored_checkpoints[1] = dataclasses.replace(stored, note=note)
    report = check(log)
    assert kinds(report) == [CheckpointRefused]
    refused = report.problems[0]
    assert isinstance(refused, CheckpointRefused) and refused.source == "database checkpoint 200"
    assert str(refused).startswith("database checkpoint 200: refused: ")
    assert report.checkpoints == 2


def test_a_checkpoint_signed_by_an_untrusted_key_is_refused(log: MemoryVerifyStore) -> None:
    """A checkpoint signed by a key the verifier does not trust is refused as such."""
    stranger = Signer.generate(ORIGIN)
    log.stored_checkpoints[0] = _stored(100, log.stored_checkpoints[0].root, stranger)
    problem = check(log).problems[0]
    assert isinstance(problem, CheckpointRefused) and problem.error == "UnverifiedNoteError"


def test_a_checkpoint_of_another_log_is_refused(log: MemoryVerifyStore) -> None:
    """The right key, another origin: refused."""
    log.stored_checkpoints[0] = _stored(100, log.stored_checkpoints[0].root, SIGNER, "other.test/audit")
    problem = check(log).problems[0]
    assert isinstance(problem, CheckpointRefused) and problem.error == "OriginMismatchError"


def test_a_checkpoint_row_that_is_not_its_note_is_named(log: MemoryVerifyStore) -> None:
    """The row's root column edited, the signed note not: the row and the note, side by side."""
    stored = log.stored_checkpoints[2]
    log.stored_checkpoints[2] = dataclasses.replace(stored, root=b"\x05" * 32)
    assert check(log).problems == [CheckpointRowMismatch("database checkpoint 300", 300, b"\x05" * 32,
                                                         300, stored.root)]


def test_checkpoints_without_a_consistency_proof_are_named(log: MemoryVerifyStore) -> None:
    """A node the proof from 100 to 200 needs, removed: the tree scan and the proof both tell."""
    wanted = [n for n in nodes_to_fetch(consistency_proof_nodes(100, 200)) if n.level > 0]
    level, index = wanted[0]
    del log.nodes_by_id[(level, index)]
    report = check(log)
    inconsistent = [p for p in report.problems if isinstance(p, InconsistentCheckpoints)]
    assert [(p.index, p.size2) for p in inconsistent] == [(100, 200)]
    assert f"({level}, {index})" in inconsistent[0].reason
    assert any(isinstance(p, NodeMissing) and (p.level, p.node) == (level, index) for p in report.problems)


def test_many_failing_checkpoints_are_summed_up(log: MemoryVerifyStore) -> None:
    """Every checkpoint from a change on fails: the first is named, the rest counted with sizes."""
    log.stored_checkpoints += [_stored(size, b"\x06" * 32) for size in (150, 250)]
    report = check(log)
    assert kinds(report) == [CheckpointRootMismatch, MoreCheckpointsFail]
    assert report.problems[1] == MoreCheckpointsFail((250,))
    assert str(report.problems[1]) == "1 later checkpoint(s) fail the same way"


# ------------------------------------------------------------------------------------------ report

def test_problems_beyond_the_limit_are_counted_and_the_first_index_kept(log: MemoryVerifyStore) -> None:
    """More problems than the report lists: counted, and the lowest index still named."""
    for idx in range(200, 200 + MAX_PROBLEMS + 10):
        log.rows[idx] = with_column(log.rows[idx], "rule", "x")
    log.rows[5] = with_column(log.rows[5], "rule", "x")
    report = check(log)
    assert len(report.problems) == MAX_PROBLEMS and report.more_problems == 11
    assert report.first_bad_index == 5


def test_every_problem_type_has_its_own_kind() -> None:
    """Kinds are stable machine names, one per type."""
    types = [getattr(verify_problems, name) for name in verify_problems.__all__ if name != "Problem"]
    kinds_ = [t.kind for t in types]
    assert len(set(kinds_)) == len(types) == 22  # with the witnesses' two (gateway/witness/cosigned.py)
    assert all(k == k.lower() and " " not in k for k in kinds_)


def test_a_problem_as_json_carries_its_evidence_in_hex() -> None:
    """JSON: kind, index, message and the evidence, hashes in hex, names in camelCase."""
    problem = NodeMismatch(40, 3, 5, b"\x01" * 32, b"\x02" * 32)
    assert problem.as_json() == {"kind": "node-mismatch", "index": 40, "what": problem.what, "level": 3,
                                 "node": 5, "expected": "01" * 32, "computed": "02" * 32}
    fork = Fork(7, (("a", b"\x00" * 32), ("b", b"\xff" * 32)))
    assert fork.as_json()["roots"] == [["a", "00" * 32], ["b", "ff" * 32]] and fork.index is None
    assert Gap(3, None).as_json() == {"kind": "gap", "index": 3, "what": Gap(3, None).what, "nextIndex": None}
    assert orjson.loads(orjson.dumps(CheckpointRowMismatch("s", 1, b"\x00" * 32, 2, b"\x01" * 32)
                                     .as_json()))["signedRoot"] == "01" * 32


def test_a_problem_reads_as_before() -> None:
    """str() keeps the CLI's wording: the leaf first when there is one."""
    assert str(Gap(42, 43)) == "leaf 42: missing (the next stored leaf is 43)"
    assert str(BeyondHead(7)) == "leaf 7: stored beyond the head's size: added outside the sequencer"
    assert str(HeadMismatch(1, b"\x00" * 32, b"\x01" * 32)).startswith("the head's root 0000")


def test_problems_are_frozen() -> None:
    """Evidence cannot be changed after the fact."""
    problem = Gap(1, 2)
    with pytest.raises(dataclasses.FrozenInstanceError):
        problem.index = 3  # type: ignore[misc]


# ------------------------------------------------------------- the two stores give the same answers

def memory_copy(url: str) -> MemoryVerifyStore:
    """A database's audit tables read into the in-memory store, with plain SQLAlchemy."""
    from gateway.audit.checkpointer import stored_checkpoints

    engine = create_engine(url)
    store = MemoryVerifyStore(shortcuts=True)
    with engine.connect() as conn:
        size, root = conn.execute(sa.text("SELECT size, root FROM audit_head WHERE id = 1")).one()
        store.head_size, store.head_root = int(size), bytes(root)
        columns = ", ".join(INDEX_ROW_FIELDS)  # constant names, no input
        for row in conn.execute(sa.text(f"SELECT {columns} FROM audit_leaves")):  # noqa: S608
            store.rows[row[0]] = (*row[:11], bytes(row[11]))
        for level, idx, hash_ in conn.execute(sa.text("SELECT level, idx, hash FROM audit_nodes")):
            store.nodes_by_id[(level, idx)] = bytes(hash_)
        store.subject_rows = {(idx, s) for idx, s in conn.execute(sa.text(
            "SELECT idx, subject FROM audit_subjects"))}
    store.stored_checkpoints = stored_checkpoints(engine)
    engine.dispose()
    return store


def test_the_sql_and_memory_stores_find_the_same_problems(tmp_path: Path) -> None:
    """The same damage, in SQLite and in its copy in memory: the same problems, with the same
    evidence (the in-memory store stands for the database)."""
    url = f"sqlite:///{tmp_path / 'lienthong.db'}"
    upgrade(url)
    made = filled(url, tmp_path, SIZE, EVERY)
    drop_guards(made.engine)
    forged = record(137, status=201).leaf()
    with made.engine.begin() as conn:
        conn.execute(sa.text("UPDATE audit_leaves SET leaf = :l WHERE idx = 137"), {"l": forged})
        conn.execute(sa.text("UPDATE audit_leaves SET client = 'x' WHERE idx = 77"))
        conn.execute(sa.text("DELETE FROM audit_subjects WHERE idx = 99"))
        conn.execute(sa.text("INSERT INTO audit_subjects (idx, subject) VALUES (100, 'y')"))
        conn.execute(sa.text("UPDATE audit_nodes SET hash = :h WHERE level = 3 AND idx = 25"),
                     {"h": b"\x00" * 32})
    in_sql = verify_log(made.engine, verifiers=[SIGNER.verifier()], origin=ORIGIN)
    in_memory = verify(memory_copy(url), verifiers=[SIGNER.verifier()], origin=ORIGIN)
    assert sorted(in_sql.problems, key=repr) == sorted(in_memory.problems, key=repr)
    assert {type(p) for p in in_sql.problems} == {LeafHashMismatch, IndexColumnMismatch, SubjectRowMismatch,
                                                  NodeMismatch, CheckpointRootMismatch,
                                                  MoreCheckpointsFail, HeadMismatch}
    assert (in_sql.first_bad_index, in_sql.root) == (in_memory.first_bad_index, in_memory.root) == (
        77, in_memory.root)
    made.engine.dispose()


# ------------------------------------------------------------ any single-byte change is found

@functools.cache
def small_log() -> MemoryVerifyStore:
    """40 leaves, checkpoints at 16, 33 and 40, bodies kept for KEPT."""
    return build([_record(i) for i in range(40)], (16, 33, 40))


def _flip(data: bytes, offset: int, delta: int) -> bytes:
    return data[:offset] + bytes([data[offset] ^ delta]) + data[offset + 1:]


OFFSET = st.integers(min_value=0, max_value=10_000)
DELTA = st.integers(min_value=1, max_value=255)


@settings(max_examples=150)
@given(data=st.data(), shortcuts=st.booleans())
def test_any_changed_byte_of_a_leaf_is_found_at_its_index(data: st.DataObject, shortcuts: bool) -> None:
    """Whatever byte of whatever leaf changes, to whatever value: the leaf's hash mismatch names it,
    and no earlier index is blamed."""
    store = copy.deepcopy(small_log())
    store.shortcuts = shortcuts
    idx = data.draw(st.integers(0, 39))
    leaf = store.rows[idx][11]
    forged = _flip(leaf, data.draw(OFFSET) % len(leaf), data.draw(DELTA))
    store.rows[idx] = (*store.rows[idx][:11], forged)
    report = check(store)
    assert LeafHashMismatch(idx, leaf_hash(leaf), leaf_hash(forged)) in report.problems
    assert report.first_bad_index == idx


@settings(max_examples=150)
@given(data=st.data())
def test_any_changed_byte_of_a_stored_node_is_found_over_its_leaves(data: st.DataObject) -> None:
    """Whatever byte of whatever stored node changes: named at the node's first leaf, with the
    stored and the recomputed hash."""
    store = copy.deepcopy(small_log())
    level, index = data.draw(st.sampled_from(sorted(store.nodes_by_id)))
    true = store.nodes_by_id[(level, index)]
    store.nodes_by_id[(level, index)] = forged = _flip(true, data.draw(st.integers(0, 31)), data.draw(DELTA))
    report = check(store)
    expected = LeafHashMismatch(index, forged, true) if level == 0 else \
        NodeMismatch(index << level, level, index, forged, true)
    assert report.problems[0] == expected
    # A node that a consistency proof between two checkpoints uses breaks that proof too (named at
    # the first checkpoint's size).
    assert all(isinstance(p, InconsistentCheckpoints) for p in report.problems[1:])


@settings(max_examples=100)
@given(offset=st.integers(0, 31), delta=DELTA)
def test_any_changed_byte_of_the_head_root_is_found(offset: int, delta: int) -> None:
    """The head's root with one byte changed: a head mismatch and nothing else."""
    store = copy.deepcopy(small_log())
    store.head_root = _flip(store.head_root, offset, delta)
    assert kinds(check(store)) == [HeadMismatch]


@settings(max_examples=150)
@given(which=st.integers(0, 2), offset=OFFSET, delta=DELTA)
def test_any_changed_byte_of_a_signed_note_is_refused(which: int, offset: int, delta: int) -> None:
    """A stored checkpoint note with any one byte changed is refused: never taken as another claim,
    never an error."""
    store = copy.deepcopy(small_log())
    stored = store.stored_checkpoints[which]
    note = _flip(stored.note, offset % len(stored.note), delta)
    store.stored_checkpoints[which] = dataclasses.replace(stored, note=note)
    report = check(store)
    assert [(type(p), getattr(p, "source", None)) for p in report.problems] == [
        (CheckpointRefused, f"database checkpoint {stored.size}")]


@settings(max_examples=100)
@given(data=st.data(), shortcuts=st.booleans())
def test_any_changed_character_of_an_index_is_found(data: st.DataObject, shortcuts: bool) -> None:
    """One character of a text column or a subject row, or the time column, changed: named at its
    leaf, as an index problem (the leaves and the tree hold)."""
    store = copy.deepcopy(small_log())
    store.shortcuts = shortcuts
    target = data.draw(st.sampled_from(["column", "subject", "ts_us"]))
    if target == "subject":
        idx, subject = data.draw(st.sampled_from(sorted(store.subject_rows)))
        at = data.draw(st.integers(0, len(subject) - 1))
        store.subject_rows.remove((idx, subject))
        store.subject_rows.add((idx, subject[:at] + chr(ord(subject[at]) ^ 1) + subject[at + 1:]))
        wanted: type[Problem] = SubjectRowMismatch
    elif target == "column":
        idx = data.draw(st.integers(0, 39))
        column = data.draw(st.sampled_from(["exchange_id", "client", "service", "operation", "rule"]))
        value = store.rows[idx][INDEX_ROW_FIELDS.index(column)]
        assert isinstance(value, str)
        at = data.draw(st.integers(0, len(value) - 1))
        changed = value[:at] + chr(ord(value[at]) ^ 1) + value[at + 1:]
        store.rows[idx] = with_column(store.rows[idx], column, changed)
        wanted = IndexColumnMismatch
    else:
        idx = data.draw(st.integers(0, 39))
        store.rows[idx] = with_column(store.rows[idx], "ts_us", store.rows[idx][1] ^ data.draw(DELTA))
        wanted = IndexColumnMismatch
    report = check(store)
    assert [(type(p), p.index) for p in report.problems] == [(wanted, idx)]


@settings(max_examples=100)
@given(which=st.sampled_from(KEPT), part=st.integers(2, 4), offset=OFFSET, delta=DELTA)
def test_any_changed_byte_of_a_kept_body_is_found(which: int, part: int, offset: int, delta: int) -> None:
    """A sealed body with any one byte changed does not open: named at its leaf."""
    store = copy.deepcopy(small_log())
    row = list(store.body_rows[which])
    sealed = row[part]
    assert isinstance(sealed, bytes)
    row[part] = _flip(sealed, offset % len(sealed), delta)
    store.body_rows[which] = tuple(row)  # type: ignore[assignment]
    report = check(store)
    assert [(type(p), p.index) for p in report.problems] == [(BodyUnreadable, which)]
