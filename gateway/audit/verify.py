"""``audit verify``: recompute the whole log from storage and hold it against every checkpoint.

What is checked, in one pass over the leaves in index order (chunks of a power of two)::

    leaves       indices contiguous from 0; each leaf's index columns and data-subject rows agree
                 with the leaf itself (so searches and citizens' reports cannot be steered)
    tree         every leaf hash and every stored perfect node equals the one recomputed from the
                 leaves (the proofs the auditor API serves are built from these nodes)
    head         the sequencer's size and root are the recomputed ones; no leaf lies beyond it
    checkpoints  each stored or given checkpoint is signed by a trusted key for this log's origin,
                 names a size the log still has, and its root is the recomputed root at that size;
                 two signed roots for one size are a fork; consecutive checkpoints are consistent
                 by a proof built from the stored nodes
    bodies       kept bodies open under the body key and match the digests in their leaves

The checks are functions over a :class:`~gateway.audit.verify_store.VerifyStore` (:func:`verify`);
:func:`verify_log` runs them over a database, a large log's index checks in worker processes. Each
problem is a type from :mod:`gateway.audit.verify_problems` carrying its evidence, with the first leaf
index it concerns. Pure reading: nothing is written, so it can run beside a serving gateway (it checks
the head as it was when it started).
"""

from __future__ import annotations

import bisect
import hashlib
import multiprocessing
import os
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from contextlib import ExitStack
from dataclasses import dataclass, field
from itertools import groupby, pairwise
from typing import Any, NamedTuple

import orjson
from sqlalchemy.engine import Engine

from gateway.audit.bodies import PARTS, BodyKeyError, BodyVault
from gateway.audit.checkpoint import Checkpoint, NoteError, Verifier, open_signed
from gateway.audit.checkpointer import StoredCheckpoint
from gateway.audit.log import TreeHead, index_columns
from gateway.audit.merkle import (
    EMPTY_ROOT,
    Frontier,
    ProofError,
    check_consistency,
    consistency_proof_nodes,
    leaf_hashes,
    nodes_to_fetch,
    proof_from_nodes,
)
from gateway.audit.record import leaf_time
from gateway.audit.tree import MissingNodeError
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
from gateway.audit.verify_sql import SqlVerifyStore
from gateway.audit.verify_store import IndexRow, VerifyStore

CHUNK = 1 << 14
PARALLEL_FROM = 100_000  # leaves: below this a second process costs more than it saves
MAX_PROBLEMS = 50
_MAX_LOCATED = 10_000  # bad leaves remembered, to tell a node's own damage from its leaves'
_COLUMNS = ("exchange_id", "client", "service", "operation", "outcome", "status", "user_id", "purpose",
            "rule")  # the index columns, in IndexRow order from its third field

Progress = Callable[[int, int], None]  # (leaves done, leaves in all)


@dataclass(frozen=True, slots=True)
class SignedBy:
    """Which trusted keys signed a checkpoint that was opened (a stored one or a given note)."""

    source: str
    size: int
    keys: tuple[str, ...]  # the verifier keys whose signatures on the note verify

    def as_json(self) -> dict[str, Any]:
        return {"source": self.source, "size": self.size, "keys": list(self.keys)}


@dataclass
class Report:
    head: TreeHead
    leaves: int = 0  # contiguous leaves found from index 0
    root: bytes = EMPTY_ROOT  # recomputed over those leaves
    checkpoints: int = 0  # checkpoints that held (signature, size and root)
    bodies: int = 0  # kept bodies that opened and matched their leaves
    problems: list[Problem] = field(default_factory=list)
    more_problems: int = 0  # found beyond MAX_PROBLEMS
    first_bad_index: int | None = None  # the lowest index any problem names, listed or not
    bad_leaves: list[int] = field(default_factory=list)  # located bad leaves, ascending
    signed_by: list[SignedBy] = field(default_factory=list)  # each opened checkpoint's keys

    @property
    def ok(self) -> bool:
        return not self.problems

    def add(self, problem: Problem) -> None:
        if len(self.problems) < MAX_PROBLEMS:
            self.problems.append(problem)
        else:
            self.more_problems += 1
        index = problem.index
        if index is not None and (self.first_bad_index is None or index < self.first_bad_index):
            self.first_bad_index = index

    def bad_leaf_in(self, begin: int, end: int) -> int | None:
        """The first located bad leaf in [begin, end), if any."""
        i = bisect.bisect_left(self.bad_leaves, begin)
        return self.bad_leaves[i] if i < len(self.bad_leaves) and self.bad_leaves[i] < end else None


@dataclass(frozen=True, slots=True)
class IndexFindings:
    """What the index check found: its problems, the leaves it located, the bodies that matched."""

    problems: list[Problem]
    more_problems: int
    bad_leaves: list[int]
    bodies: int


# Hands the index checks of a log of this many leaves elsewhere (worker processes) and returns how to
# collect their findings, or None to have them run here after the tree.
Offload = Callable[[int], Callable[[], list[IndexFindings]] | None]


@dataclass(frozen=True, slots=True)
class _Claim:
    """A checkpoint to hold the log against, and where it came from."""

    source: str
    checkpoint: Checkpoint


def verify_log(engine: Engine, *, verifiers: Sequence[Verifier], origin: str,
               notes: Iterable[tuple[str, bytes]] = (), vault: BodyVault | None = None,
               indexes: bool = True, parallel: bool = True, progress: Progress | None = None) -> Report:
    """:func:`verify` over the database in ``engine``. With ``parallel``, a large log's indexes are
    checked by two worker processes while this one recomputes the tree (they read the database side
    by side; nothing is written)."""
    with ExitStack() as stack:
        store = stack.enter_context(SqlVerifyStore(engine))

        def offload(size: int) -> Callable[[], list[IndexFindings]] | None:
            if not parallel or size < PARALLEL_FROM or (os.cpu_count() or 1) < 2:
                return None
            return _in_workers(engine, store, size, vault, stack)

        return verify(store, verifiers=verifiers, origin=origin, notes=notes, vault=vault,
                      indexes=indexes, progress=progress, offload=offload)


def verify(store: VerifyStore, *, verifiers: Sequence[Verifier], origin: str,
           notes: Iterable[tuple[str, bytes]] = (), vault: BodyVault | None = None,
           indexes: bool = True, progress: Progress | None = None, offload: Offload | None = None) -> Report:
    """Check the whole log in ``store`` (see the module docstring); ``notes`` are extra signed
    checkpoints, each with a label saying where it came from (a file, a witness).

    Without ``indexes``, the index columns, the data-subject index and kept bodies are not checked:
    the leaves, the tree, the head and the checkpoints still are (about twice as fast).
    """
    head = store.head()
    report = Report(head=head)
    claims = open_claims(store.checkpoints(), verifiers, origin, notes, report)
    sizes = sorted({c.checkpoint.size for c in claims})
    collect = offload(head.size) if indexes and offload is not None else None
    roots = scan_tree(store, head, sizes, report, progress)
    if indexes:
        for found in collect() if collect is not None else [check_indexes(store, head.size, vault)]:
            _merge(report, found)
    check_head(store, head, report)
    check_checkpoints(store, claims, roots, report)
    return report


def _in_workers(engine: Engine, store: VerifyStore, size: int, vault: BodyVault | None,
                stack: ExitStack) -> Callable[[], list[IndexFindings]]:
    """Start the index checks of [0, size) in two worker processes (a half each: they cost more than
    the tree); the pool lives as long as ``stack``."""
    context = multiprocessing.get_context("spawn")  # never fork a process that may hold threads
    half = size // 2 // CHUNK * CHUNK
    parts = [(0, half), (half, size)]
    pool = stack.enter_context(ProcessPoolExecutor(len(parts), mp_context=context))
    url = engine.url.render_as_string(hide_password=False)
    futures = [pool.submit(_index_worker, url, lo, hi, vault) for lo, hi in parts]

    def collect() -> list[IndexFindings]:
        found: list[IndexFindings] = []
        for (lo, hi), future in zip(parts, futures, strict=True):
            try:
                found.append(future.result())
            except (BrokenProcessPool, OSError):  # no worker after all: check them here
                found.append(check_indexes(store, hi, vault, begin=lo))
        return found

    return collect


def _index_worker(url: str, begin: int, end: int, vault: BodyVault | None) -> IndexFindings:
    """check_indexes of leaves [begin, end) in a worker process, over its own connection."""
    from gateway.storage.db import create_engine

    engine = create_engine(url)
    try:
        with SqlVerifyStore(engine) as store:
            return check_indexes(store, end, vault, begin=begin)
    finally:
        engine.dispose()


def _merge(report: Report, found: IndexFindings) -> None:
    for problem in found.problems:
        report.add(problem)
    report.more_problems += found.more_problems
    report.bad_leaves = sorted(set(report.bad_leaves) | set(found.bad_leaves))[:_MAX_LOCATED]
    report.bodies += found.bodies


# -------------------------------------------------------------------------------------- checkpoints

def open_claims(stored: Iterable[StoredCheckpoint], verifiers: Sequence[Verifier], origin: str,
                notes: Iterable[tuple[str, bytes]], report: Report) -> list[_Claim]:
    """The stored checkpoints and the given notes that are signed checkpoints of this log; each
    refused one, or a stored row that is not its note, is reported."""
    claims: list[_Claim] = []
    seen: set[bytes] = set()
    for row in stored:
        source = f"database checkpoint {row.size}"
        claim = _open(source, row.note, verifiers, origin, report)
        if claim is None:
            continue
        signed = claim.checkpoint
        if (signed.size, signed.root) != (row.size, row.root):
            report.add(CheckpointRowMismatch(source, row.size, row.root, signed.size, signed.root))
        seen.add(row.note)
        claims.append(claim)
    for source, note in notes:
        if note in seen:
            continue  # the same signed bytes already stand in the list
        seen.add(note)
        claim = _open(source, note, verifiers, origin, report)
        if claim is not None:
            claims.append(claim)
    return claims


def _open(source: str, note: bytes, verifiers: Sequence[Verifier], origin: str,
          report: Report) -> _Claim | None:
    try:
        checkpoint, signers = open_signed(note, verifiers, origin=origin)
    except NoteError as exc:
        report.add(CheckpointRefused(source, type(exc).__name__, str(exc)))
        return None
    report.signed_by.append(SignedBy(source, checkpoint.size, tuple(v.vkey() for v in signers)))
    return _Claim(source, checkpoint)


def check_checkpoints(store: VerifyStore, claims: list[_Claim], roots: dict[int, bytes],
                      report: Report) -> None:
    """Each claim against the roots recomputed at its size (``roots``, from :func:`scan_tree`), and
    consecutive good ones against each other by a consistency proof from the stored nodes."""
    by_size: dict[int, list[_Claim]] = defaultdict(list)
    for claim in claims:
        by_size[claim.checkpoint.size].append(claim)
    good: list[tuple[int, bytes]] = []
    last_good = 0
    failed: list[int] = []
    for size in sorted(by_size):
        group = by_size[size]
        if len({c.checkpoint.root for c in group}) > 1:
            report.add(Fork(size, tuple((c.source, c.checkpoint.root) for c in group)))
        if size > report.leaves and report.leaves < report.head.size:
            # the scan stopped at a gap, named there
            report.add(CheckpointPastGap(report.leaves, group[0].source, size))
            continue
        if size > report.leaves:
            # Leaves were removed: at the end, or inside with the later ones renumbered and the tree
            # rebuilt to match. The leaves cannot say which: the range starts at the last checkpoint
            # that holds, the first place a removal can be.
            located = report.bad_leaf_in(last_good, report.leaves)
            report.add(LeavesRemoved(located if located is not None else last_good, group[0].source,
                                     size, last_good, report.leaves))
            continue
        held = [c for c in group if c.checkpoint.root == roots[size]]
        for claim in group:
            if claim in held:
                continue
            failed.append(size)
            if len(failed) == 1:
                located = report.bad_leaf_in(last_good, size)
                report.add(CheckpointRootMismatch(located if located is not None else last_good,
                                                  claim.source, size, last_good, claim.checkpoint.root,
                                                  roots[size]))
        if held:
            report.checkpoints += len(held)
            good.append((size, roots[size]))
            last_good = size
    if len(failed) > 1:
        report.add(MoreCheckpointsFail(tuple(failed[1:])))
    for (size1, root1), (size2, root2) in pairwise(good):
        if size1 == 0:
            continue
        try:
            check_consistency(size1, size2, root1, root2, _consistency_proof(store, size1, size2))
        except (ProofError, MissingNodeError) as exc:
            report.add(InconsistentCheckpoints(size1, size2, str(exc)))


def _consistency_proof(store: VerifyStore, size1: int, size2: int) -> list[bytes]:
    """The RFC 9162 consistency proof from ``size1`` to ``size2`` leaves, from the stored nodes."""
    refs = consistency_proof_nodes(size1, size2)
    wanted = nodes_to_fetch(refs)
    found = store.nodes_at(wanted)
    for level, index in wanted:
        if (level, index) not in found:
            raise MissingNodeError(level, index)
    return proof_from_nodes(refs, lambda level, index: found[(level, index)])


def check_head(store: VerifyStore, head: TreeHead, report: Report) -> None:
    """The head's root is the recomputed one, and no leaf lies beyond the head."""
    if report.leaves == head.size and report.root != head.root:
        report.add(HeadMismatch(head.size, head.root, report.root))
    beyond = store.first_beyond_head()
    if beyond is not None:
        report.add(BeyondHead(beyond))


# ------------------------------------------------------------------------------------- the tree

class _Scan:
    """State of the pass over the leaves: the recomputed tree and what was found bad so far."""

    def __init__(self, report: Report, checkpoint_sizes: list[int]) -> None:
        self.report = report
        self.frontier = Frontier()
        self.roots: dict[int, bytes] = {0: EMPTY_ROOT}
        self.pending_sizes = [s for s in checkpoint_sizes if s > 0]

    def bad_leaf(self, problem: Problem) -> None:
        """Report a problem of one leaf, and remember the leaf (to locate the tree's problems)."""
        bad, index = self.report.bad_leaves, problem.index
        # A leaf is flagged a few times at most: the last few entries catch a repeat.
        if index is not None and len(bad) < _MAX_LOCATED and index not in bad[-64:]:
            bisect.insort(bad, index)
        self.report.add(problem)

    def covers_bad_leaf(self, begin: int, end: int) -> bool:
        return self.report.bad_leaf_in(begin, end) is not None

    def extend(self, hashes: list[bytes]) -> dict[int, tuple[int, list[bytes]]]:
        """Add leaf hashes to the recomputed tree, noting the root at every checkpoint size; return
        the perfect nodes they completed: by level, the first index and the hashes in index order."""
        by_level: dict[int, tuple[int, list[bytes]]] = {}
        done = 0
        while done < len(hashes):
            stop = len(hashes)
            if self.pending_sizes and self.pending_sizes[0] - self.frontier.size < stop - done:
                stop = done + self.pending_sizes[0] - self.frontier.size
            for level, first, nodes in self.frontier.extend_levels(hashes[done:stop]):
                by_level.setdefault(level, (first, []))[1].extend(nodes)
            done = stop
            while self.pending_sizes and self.pending_sizes[0] == self.frontier.size:
                self.roots[self.pending_sizes.pop(0)] = self.frontier.root()
        return by_level


def scan_tree(store: VerifyStore, head: TreeHead, checkpoint_sizes: list[int], report: Report,
              progress: Progress | None = None) -> dict[int, bytes]:
    """Every leaf hash and the whole tree, against the stored nodes; the roots at the given sizes."""
    scan = _Scan(report, checkpoint_sizes)
    begin = 0
    while begin < head.size:
        end = min(begin + CHUNK, head.size)
        rows = store.leaves(begin, end)
        present = _contiguous(rows, begin, end, report)
        _check_nodes(store, scan.extend(leaf_hashes([r[1] for r in rows[:present]])), scan)
        report.leaves = begin + present
        if progress is not None:
            progress(report.leaves, head.size)
        if present < end - begin:
            break  # a leaf is missing: every later index is off, and the tree with it
        begin = end
    report.root = scan.frontier.root()
    return scan.roots


def _prefix(rows: Sequence[tuple[Any, ...]], begin: int) -> int:
    """How many rows from ``begin`` on have the expected index."""
    if rows and rows[0][0] == begin and rows[-1][0] == begin + len(rows) - 1:
        return len(rows)  # indices are unique and sorted: first and last in place means all are
    return next((i for i, row in enumerate(rows) if row[0] != begin + i), len(rows))


def _contiguous(rows: Sequence[tuple[Any, ...]], begin: int, end: int, report: Report) -> int:
    """How many rows from ``begin`` on have the expected index; reports the first gap."""
    count = _prefix(rows, begin)
    if count < len(rows):
        report.add(Gap(begin + count, int(rows[count][0])))
    elif count < end - begin:
        report.add(Gap(begin + count, None))
    return count


def _check_nodes(store: VerifyStore, completed: dict[int, tuple[int, list[bytes]]], scan: _Scan) -> None:
    """The stored perfect nodes equal the recomputed ones (one range read per level)."""
    for level, (first, mine) in sorted(completed.items()):
        end = first + len(mine)
        if store.joined_nodes(level, first, end) == b"".join(mine):
            continue
        stored = store.nodes(level, first, end)
        for node, computed in enumerate(mine, start=first):
            found = stored.get(node)
            if found == computed:
                continue
            begin = node << level
            if level == 0:
                scan.bad_leaf(LeafNotInTree(node, computed) if found is None
                              else LeafHashMismatch(node, found, computed))
            elif not scan.covers_bad_leaf(begin, (node + 1) << level):
                scan.report.add(NodeMissing(begin, level, node, computed) if found is None
                                else NodeMismatch(begin, level, node, found, computed))


# ------------------------------------------------------------------------ index columns, subjects

def check_indexes(store: VerifyStore, size: int, vault: BodyVault | None, *, begin: int = 0) -> IndexFindings:
    """The index columns, data-subject rows and kept bodies of the leaves stored at [begin, size)
    against the leaves themselves (a missing leaf is the tree scan's to report).

    Where the store names the rows that may differ (SQLite compares each row's columns with its
    leaf inside the database), only those get the exact check, and the subject rows are checked
    apart; otherwise every row gets it, with its subject rows.
    """
    report = Report(head=TreeHead(size, EMPTY_ROOT))
    scan = _Scan(report, [])
    for first in range(begin, size, CHUNK):
        end = min(first + CHUNK, size)
        suspects = store.index_suspects(first, end)
        if suspects is None:
            _check_rows(store, store.index_rows(first, end), scan, subjects=True)
        else:
            rows = [row for lo, hi in _runs(suspects) for row in store.index_rows(lo, hi + 1)]
            _check_rows(store, rows, scan, subjects=False)
            _check_subjects(store, first, end, scan)
        _check_bodies(store, first, end, vault, scan)
    return IndexFindings(report.problems, report.more_problems, report.bad_leaves, report.bodies)


def _runs(indices: list[int]) -> Iterator[tuple[int, int]]:
    """Sorted indices as runs of consecutive ones, (first, last)."""
    for _, group in groupby(enumerate(indices), key=lambda pair: pair[1] - pair[0]):
        run = [idx for _, idx in group]
        yield run[0], run[-1]


def _check_rows(store: VerifyStore, rows: Sequence[IndexRow], scan: _Scan, *, subjects: bool) -> None:
    """Each leaf parses, and its index columns (and subject rows) agree with it."""
    if not rows:
        return
    stored: dict[int, set[str]] = defaultdict(set)
    if subjects:
        for idx, subject in store.subjects(rows[0][0], rows[-1][0] + 1):
            stored[idx].add(subject)
    for row in rows:
        idx = row[0]
        doc = _document(row[11], idx, scan)
        if doc is None:
            continue
        try:
            columns = (doc["id"], doc["client"], doc["service"], doc["operation"], doc["outcome"],
                       doc["status"], doc["userId"], doc["purpose"], doc["rule"])
            when, listed = doc["time"], doc["subjects"]
        except (KeyError, TypeError) as exc:
            scan.bad_leaf(UnreadableLeaf(idx, f"{type(exc).__name__}: {exc}"))
            continue
        if columns != row[2:11] or when != leaf_time(row[1]):
            _compare_columns(row, doc, scan)
        if subjects and (listed or idx in stored) and not _agrees(listed, stored.get(idx, set())):
            _subjects_disagree(idx, listed, stored.get(idx, set()), scan)


def _agrees(listed: object, stored: set[str]) -> bool:
    """A leaf's ``subjects`` value names exactly the stored subject rows (the fast path: sets)."""
    try:
        return isinstance(listed, list) and set(listed) == stored
    except TypeError:  # an unhashable member: not a name
        return False


def _subjects_disagree(idx: int, listed: object, stored: set[str], scan: _Scan) -> None:
    scan.bad_leaf(SubjectRowMismatch(idx, _names(listed) or (), tuple(sorted(stored))))


def _names(listed: object) -> tuple[str, ...] | None:
    """A leaf's subjects, sorted; None if they are not a list of names."""
    if isinstance(listed, list) and all(isinstance(name, str) for name in listed):
        return tuple(sorted(set(listed)))
    return None


def _check_subjects(store: VerifyStore, begin: int, end: int, scan: _Scan) -> None:
    """The subject rows of leaves [begin, end) are exactly the subjects their leaves name."""
    stored: dict[int, set[str]] = defaultdict(set)
    for idx, subject in store.subjects(begin, end):
        stored[idx].add(subject)
    listed = store.listed_subjects(begin, end)
    if listed is None:  # no shortcut: read the leaves themselves (an unreadable one is _check_rows')
        listed = {}
        for idx, leaf in store.leaves(begin, end):
            doc = _parsed(leaf)
            if isinstance(doc, dict) and isinstance(doc.get("subjects"), list) and doc["subjects"]:
                listed[idx] = doc["subjects"]
    wrong = [idx for idx in sorted(stored.keys() | listed.keys())
             if not _agrees(listed.get(idx) or [], stored.get(idx, set()))]
    orphans = [idx for idx in wrong if idx not in listed]
    if orphans:  # subject rows of a leaf that is not there: the missing leaf is the tree scan's to name
        present = {idx for lo, hi in _runs(orphans) for (idx, _) in store.leaves(lo, hi + 1)}
        wrong = [idx for idx in wrong if idx in listed or idx in present]
    for idx in wrong:
        _subjects_disagree(idx, listed.get(idx) or [], stored.get(idx, set()), scan)


def _parsed(leaf: bytes) -> Any:
    try:
        return orjson.loads(leaf)
    except orjson.JSONDecodeError as exc:
        return exc


def _document(leaf: bytes, idx: int, scan: _Scan) -> dict[str, Any] | None:
    """The leaf as a document; reported as unreadable if it is not one."""
    doc = _parsed(leaf)
    if isinstance(doc, orjson.JSONDecodeError):
        scan.bad_leaf(UnreadableLeaf(idx, str(doc)))
        return None
    if not isinstance(doc, dict):
        scan.bad_leaf(UnreadableLeaf(idx, "not a JSON object"))
        return None
    return doc


def _compare_columns(row: IndexRow, doc: dict[str, Any], scan: _Scan) -> None:
    """The slow path: which index columns disagree, allowing for values cut to the column's width."""
    expected = index_columns(doc)
    for name, found in zip(_COLUMNS, row[2:11], strict=True):
        if expected[name] != found:
            scan.bad_leaf(IndexColumnMismatch(row[0], name, expected[name], found))
    if doc["time"] != leaf_time(row[1]):
        scan.bad_leaf(IndexColumnMismatch(row[0], "ts_us", doc["time"], row[1]))


# ------------------------------------------------------------------------------------------ bodies

_DIGEST_AT = {"request": ("request",), "response": ("response",),
              "upstream_request": ("upstream", "request"), "upstream_response": ("upstream", "response")}


class _SealedRow(NamedTuple):
    key_id: str
    request: bytes | None
    response: bytes | None
    upstream_request: bytes | None
    upstream_response: bytes | None


def _check_bodies(store: VerifyStore, begin: int, end: int, vault: BodyVault | None, scan: _Scan) -> None:
    """Kept bodies open under the body key and match the digests in their leaves."""
    rows = store.bodies(begin, end)
    if not rows or vault is None:
        return
    leaves = dict(store.leaves(begin, end))
    for row in rows:
        idx = row[0]
        doc = _document(leaves[idx], idx, scan) if idx in leaves else None
        if doc is None:
            continue
        try:
            bodies = vault.open(str(doc.get("id")), _SealedRow(*row[1:]))
        except BodyKeyError as exc:
            scan.bad_leaf(BodyUnreadable(idx, str(exc)))
            continue
        for part in PARTS:
            digest: Any = doc
            for key in _DIGEST_AT[part]:
                digest = digest.get(key) if isinstance(digest, dict) else None
            body = getattr(bodies, part)
            if body is None and digest is None:
                continue
            computed = None if body is None else {"sha256": hashlib.sha256(body).hexdigest(),
                                                  "size": len(body)}
            if digest != computed:
                scan.bad_leaf(BodyMismatch(idx, part, digest, computed))
                break
        else:
            scan.report.bodies += 1
