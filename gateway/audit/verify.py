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

The report names each problem with the first leaf index it concerns. Pure reading: nothing is
written, so it can run beside a serving gateway (it checks the head as it was when it started).
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
from dataclasses import dataclass, field
from itertools import groupby, pairwise
from typing import Any, NamedTuple

import orjson
import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from gateway.audit import tree
from gateway.audit.bodies import PARTS, BodyKeyError, BodyVault
from gateway.audit.checkpoint import Checkpoint, NoteError, Verifier, open_note
from gateway.audit.checkpointer import stored_checkpoints
from gateway.audit.log import TreeHead, index_columns
from gateway.audit.merkle import EMPTY_ROOT, Frontier, ProofError, check_consistency, leaf_hashes
from gateway.audit.record import leaf_time
from gateway.audit.tree import as_bytes
from gateway.storage.tables import audit_head, audit_leaves

CHUNK = 1 << 14
PARALLEL_FROM = 100_000  # leaves: below this a second process costs more than it saves
MAX_PROBLEMS = 50
_MAX_LOCATED = 10_000  # bad leaves remembered, to tell a node's own damage from its leaves'

Progress = Callable[[int, int], None]  # (leaves done, leaves in all)


@dataclass(frozen=True, slots=True)
class Problem:
    """One thing found wrong; ``index`` is the first leaf it concerns, when one can be named."""

    index: int | None
    what: str

    def __str__(self) -> str:
        return f"leaf {self.index}: {self.what}" if self.index is not None else self.what


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

    @property
    def ok(self) -> bool:
        return not self.problems

    def add(self, index: int | None, what: str) -> None:
        if len(self.problems) < MAX_PROBLEMS:
            self.problems.append(Problem(index, what))
        else:
            self.more_problems += 1
        if index is not None and (self.first_bad_index is None or index < self.first_bad_index):
            self.first_bad_index = index

    def bad_leaf_in(self, begin: int, end: int) -> int | None:
        """The first located bad leaf in [begin, end), if any."""
        i = bisect.bisect_left(self.bad_leaves, begin)
        return self.bad_leaves[i] if i < len(self.bad_leaves) and self.bad_leaves[i] < end else None


@dataclass(frozen=True, slots=True)
class _Claim:
    """A checkpoint to hold the log against, and where it came from."""

    source: str
    checkpoint: Checkpoint


def verify_log(engine: Engine, *, verifiers: Sequence[Verifier], origin: str,
               notes: Iterable[tuple[str, bytes]] = (), vault: BodyVault | None = None,
               indexes: bool = True, parallel: bool = True, progress: Progress | None = None) -> Report:
    """Check the whole log in ``engine`` (see the module docstring); ``notes`` are extra signed
    checkpoints, each with a label saying where it came from (a file, a witness).

    Without ``indexes``, the index columns, the data-subject index and kept bodies are not checked:
    the leaves, the tree, the head and the checkpoints still are (about twice as fast). With
    ``parallel``, a large log's indexes are checked by a second process while this one recomputes
    the tree (they read the database side by side; nothing is written).
    """
    with engine.connect() as conn:
        head = _head(conn)
    report = Report(head=head)
    claims = _claims(engine, verifiers, origin, notes, report)
    sizes = sorted({c.checkpoint.size for c in claims})
    if indexes and parallel and head.size >= PARALLEL_FROM and (os.cpu_count() or 1) > 1:
        context = multiprocessing.get_context("spawn")  # never fork a process that may hold threads
        # The index check costs more than the tree: two workers take a half each, beside this one.
        half = head.size // 2 // CHUNK * CHUNK
        parts = [(0, half), (half, head.size)]
        with ProcessPoolExecutor(len(parts), mp_context=context) as pool:
            url = engine.url.render_as_string(hide_password=False)
            checked = [pool.submit(_index_worker, url, lo, hi, vault) for lo, hi in parts]
            roots = _scan_tree(engine, head, sizes, report, progress)
            for (lo, hi), future in zip(parts, checked, strict=True):
                try:
                    found = future.result()
                except (BrokenProcessPool, OSError):  # no worker after all: check them here
                    found = check_indexes(engine, hi, vault, begin=lo)
                _merge(report, found)
    else:
        roots = _scan_tree(engine, head, sizes, report, progress)
        if indexes:
            _merge(report, check_indexes(engine, head.size, vault))
    with engine.connect() as conn:
        _check_head(conn, head, report)
        _check_checkpoints(conn, claims, roots, report)
    return report


def _head(conn: Connection) -> TreeHead:
    row = conn.execute(sa.select(audit_head.c.size, audit_head.c.root).where(audit_head.c.id == 1)).one()
    return TreeHead(int(row.size), as_bytes(row.root) if row.root is not None else EMPTY_ROOT)


# -------------------------------------------------------------------------------------- checkpoints

def _claims(engine: Engine, verifiers: Sequence[Verifier], origin: str,
            notes: Iterable[tuple[str, bytes]], report: Report) -> list[_Claim]:
    claims: list[_Claim] = []
    seen: set[bytes] = set()
    for stored in stored_checkpoints(engine):
        source = f"database checkpoint {stored.size}"
        claim = _open(source, stored.note, verifiers, origin, report)
        if claim is None:
            continue
        if (claim.checkpoint.size, claim.checkpoint.root) != (stored.size, stored.root):
            report.add(None, f"{source}: the row's size or root differs from its signed note")
        seen.add(stored.note)
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
        return _Claim(source, open_note(note, verifiers, origin=origin))
    except NoteError as exc:
        report.add(None, f"{source}: refused: {exc}")
        return None


def _check_checkpoints(conn: Connection, claims: list[_Claim], roots: dict[int, bytes],
                       report: Report) -> None:
    by_size: dict[int, list[_Claim]] = defaultdict(list)
    for claim in claims:
        by_size[claim.checkpoint.size].append(claim)
    good: list[tuple[int, bytes]] = []
    last_good, failed = 0, 0
    for size in sorted(by_size):
        group = by_size[size]
        if len({c.checkpoint.root for c in group}) > 1:
            report.add(None, f"fork: signed checkpoints give different roots for size {size} ("
                       + ", ".join(f"{c.source}: {c.checkpoint.root.hex()[:16]}…" for c in group) + ")")
        if size > report.leaves and report.leaves < report.head.size:
            report.add(report.leaves, f"{group[0].source} covers {size} leaves but only the first "
                       f"{report.leaves} are in place")  # the scan stopped at a gap, named there
            continue
        if size > report.leaves:
            # Leaves were removed: at the end, or inside with the later ones renumbered and the tree
            # rebuilt to match. The leaves cannot say which: the range starts at the last checkpoint
            # that holds, the first place a removal can be.
            located = report.bad_leaf_in(last_good, report.leaves)
            report.add(located if located is not None else last_good,
                       f"{group[0].source} covers {size} leaves but the log has only {report.leaves}: "
                       f"leaves were removed in [{last_good}, {report.leaves}), after the last "
                       f"checkpoint that holds ({last_good}), or from {report.leaves} on")
            continue
        held = [c for c in group if c.checkpoint.root == roots[size]]
        for claim in group:
            if claim in held:
                continue
            failed += 1
            if failed == 1:
                located = report.bad_leaf_in(last_good, size)
                report.add(located if located is not None else last_good,
                           f"{claim.source}: the first {size} leaves no longer give its root (a leaf "
                           f"in [{last_good}, {size}) was changed, removed, reordered or added)")
        if held:
            report.checkpoints += len(held)
            good.append((size, roots[size]))
            last_good = size
    if failed > 1:
        report.add(None, f"{failed - 1} later checkpoint(s) fail the same way")
    for (size1, root1), (size2, root2) in pairwise(good):
        if size1 == 0:
            continue
        try:
            check_consistency(size1, size2, root1, root2, tree.consistency_proof(conn, size1, size2))
        except (ProofError, tree.MissingNodeError) as exc:
            report.add(size1, f"the stored tree gives no valid consistency proof from checkpoint "
                       f"{size1} to {size2}: {exc}")


# ------------------------------------------------------------------------------------- the leaves

class _Scan:
    """State of the pass over the leaves: the recomputed tree and what was found bad so far."""

    def __init__(self, report: Report, checkpoint_sizes: list[int]) -> None:
        self.report = report
        self.frontier = Frontier()
        self.roots: dict[int, bytes] = {0: EMPTY_ROOT}
        self.pending_sizes = [s for s in checkpoint_sizes if s > 0]

    def bad_leaf(self, index: int, what: str) -> None:
        bad = self.report.bad_leaves
        if len(bad) < _MAX_LOCATED and index not in bad[-64:]:  # a leaf is flagged a few times at most
            bisect.insort(bad, index)
        self.report.add(index, what)

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


class _Raw:
    """Plain driver queries for the pass over the whole log: tuples, no per-row SQLAlchemy work, and
    no transaction held (on SQLite each query reads the latest commit; leaves are append-only)."""

    def __init__(self, engine: Engine) -> None:
        self._conn = engine.raw_connection()
        self._cursor: Any = self._conn.cursor()
        self._sqlite = engine.dialect.name == "sqlite"
        self._mark = "?" if engine.dialect.paramstyle == "qmark" else "%s"
        # psycopg: results in binary format, so that leaves and hashes travel as their bytes rather
        # than as hex text the server writes and the client decodes (the scan's fetch 2.5x faster).
        self._options = {"binary": True} if engine.dialect.driver == "psycopg" else {}
        self.errors: type[Exception] = engine.dialect.loaded_dbapi.Error

    def all(self, sql: str, *params: int) -> list[tuple[Any, ...]]:
        self._cursor.execute(sql.replace("?", self._mark), params, **self._options)
        return list(self._cursor.fetchall())

    def node_hashes(self, level: int, first: int, end: int) -> bytes | None:
        """The stored hashes of nodes [first, end) of a level, concatenated in index order by the
        database (one value to compare instead of a row per node); None unless there are as many
        hashes as nodes, each 32 bytes."""
        if self._sqlite:
            driver: Any = self._conn.driver_connection
            driver.text_factory = bytes  # group_concat of blobs is text to SQLite: take its bytes
            try:
                joined, whole = self.all(_SQLITE_NODES_CONCAT_SQL, level, first, end)[0]
            finally:
                driver.text_factory = str
        else:
            joined, whole = self.all(_PG_NODES_CONCAT_SQL, level, first, end)[0]
        return as_bytes(joined) if joined is not None and whole == end - first else None

    def close(self) -> None:
        self._cursor.close()
        self._conn.close()


_LEAVES_SQL = ("SELECT idx, ts_us, exchange_id, client, service, operation, outcome, status, user_id, "
               "purpose, rule, leaf FROM audit_leaves WHERE idx >= ? AND idx < ? ORDER BY idx")
_LEAF_SQL = "SELECT idx, leaf FROM audit_leaves WHERE idx >= ? AND idx < ?"
# SQLite: the rows whose columns, time and subject rows, as a JSON array, are not the same array as
# the leaf's own values (one parse of each leaf, in C).
_SQLITE_SUSPECTS_SQL = """
    SELECT idx FROM audit_leaves WHERE idx >= ? AND idx < ? AND
    json_array(exchange_id, client, service, operation, outcome, status, user_id, purpose, rule,
               replace(datetime(ts_us / 1000000, 'unixepoch'), ' ', 'T') || '.'
               || substr(1000000 + ts_us % 1000000, 2) || 'Z')
    IS NOT json_extract(CAST(leaf AS TEXT), '$.id', '$.client', '$.service', '$.operation',
                        '$.outcome', '$.status', '$.userId', '$.purpose', '$.rule', '$.time')"""
# SQLite: the subjects of the leaves that name any. In canonical JSON a non-empty top-level subjects
# list is the only place these bytes can appear (a quote inside a string value is escaped).
_SQLITE_LISTED_SUBJECTS_SQL = """
    SELECT idx, json_extract(CAST(leaf AS TEXT), '$.subjects') FROM audit_leaves
    WHERE idx >= ? AND idx < ? AND instr(leaf, CAST('"subjects":["' AS BLOB)) > 0"""
_LEAVES_ONLY_SQL = "SELECT idx, leaf FROM audit_leaves WHERE idx >= ? AND idx < ? ORDER BY idx"
_SUBJECTS_SQL = "SELECT idx, subject FROM audit_subjects WHERE idx >= ? AND idx < ?"
_BODIES_SQL = ("SELECT idx, key_id, request, response, upstream_request, upstream_response "
               "FROM audit_bodies WHERE idx >= ? AND idx < ?")
# The stored hashes of a run of nodes, concatenated, and how many of them are 32 bytes long (so that
# bytes moved from one row to its neighbour cannot hide in the concatenation).
_SQLITE_NODES_CONCAT_SQL = ("SELECT group_concat(hash, ''), sum(length(hash) = 32) FROM (SELECT hash "
                            "FROM audit_nodes WHERE level = ? AND idx >= ? AND idx < ? ORDER BY idx)")
_PG_NODES_CONCAT_SQL = ("SELECT string_agg(hash, ''::bytea ORDER BY idx), sum((length(hash) = 32)::int) "
                        "FROM audit_nodes WHERE level = ? AND idx >= ? AND idx < ?")
_NODE_ROWS_SQL = "SELECT idx, hash FROM audit_nodes WHERE level = ? AND idx >= ? AND idx < ?"


def _scan_tree(engine: Engine, head: TreeHead, checkpoint_sizes: list[int], report: Report,
               progress: Progress | None) -> dict[int, bytes]:
    """Every leaf hash and the whole tree, against the stored nodes; the roots at the given sizes."""
    scan = _Scan(report, checkpoint_sizes)
    raw = _Raw(engine)
    try:
        begin = 0
        while begin < head.size:
            end = min(begin + CHUNK, head.size)
            rows = raw.all(_LEAVES_ONLY_SQL, begin, end)
            present = _contiguous(rows, begin, end, report)
            _check_nodes(raw, scan.extend(_leaf_hashes([r[1] for r in rows[:present]])), scan)
            report.leaves = begin + present
            if progress is not None:
                progress(report.leaves, head.size)
            if present < end - begin:
                break  # a leaf is missing: every later index is off, and the tree with it
            begin = end
    finally:
        raw.close()
    report.root = scan.frontier.root()
    return scan.roots


@dataclass(frozen=True, slots=True)
class IndexFindings:
    """What the index check found: its problems, the leaves it located, the bodies that matched."""

    problems: list[Problem]
    more_problems: int
    bad_leaves: list[int]
    bodies: int


def check_indexes(engine: Engine, size: int, vault: BodyVault | None, *, begin: int = 0) -> IndexFindings:
    """The index columns, data-subject rows and kept bodies of the leaves stored at [begin, size)
    against the leaves themselves (a missing leaf is the tree scan's to report).

    On SQLite one query per chunk compares, inside the database, each row's columns and subject
    rows with its leaf, and names only the rows that differ (or may: a value cut to its column's
    width); those get the exact check here. Elsewhere, every row gets it.
    """
    report = Report(head=TreeHead(size, EMPTY_ROOT))
    scan = _Scan(report, [])
    raw = _Raw(engine)
    prefilter = engine.dialect.name == "sqlite"
    try:
        for first in range(begin, size, CHUNK):
            end = min(first + CHUNK, size)
            suspects = _suspects(raw, first, end) if prefilter else None
            if suspects is None:
                _check_rows(raw, raw.all(_LEAVES_SQL, first, end), scan, subjects=True)
            else:
                rows = [row for lo, hi in _runs(suspects) for row in raw.all(_LEAVES_SQL, lo, hi + 1)]
                _check_rows(raw, rows, scan, subjects=False)
                _check_subjects(raw, first, end, scan)
            _check_bodies(raw, first, end, vault, scan)
    finally:
        raw.close()
    return IndexFindings(report.problems, report.more_problems, report.bad_leaves, report.bodies)


def _suspects(raw: _Raw, begin: int, end: int) -> list[int] | None:
    """The rows in [begin, end) whose columns or subject rows may disagree with their leaf, by
    SQLite's JSON functions; None if SQLite could not read some leaf as JSON (check them all)."""
    try:
        return [idx for (idx,) in raw.all(_SQLITE_SUSPECTS_SQL, begin, end)]
    except raw.errors:
        return None


def _runs(indices: list[int]) -> Iterator[tuple[int, int]]:
    """Sorted indices as runs of consecutive ones, (first, last)."""
    for _, group in groupby(enumerate(indices), key=lambda pair: pair[1] - pair[0]):
        run = [idx for _, idx in group]
        yield run[0], run[-1]


def _index_worker(url: str, begin: int, end: int, vault: BodyVault | None) -> IndexFindings:
    """check_indexes of leaves [begin, end) in a worker process, over its own connection."""
    from gateway.storage.db import create_engine

    engine = create_engine(url)
    try:
        return check_indexes(engine, end, vault, begin=begin)
    finally:
        engine.dispose()


def _merge(report: Report, found: IndexFindings) -> None:
    for problem in found.problems:
        report.add(problem.index, problem.what)
    report.more_problems += found.more_problems
    report.bad_leaves = sorted(set(report.bad_leaves) | set(found.bad_leaves))[:_MAX_LOCATED]
    report.bodies += found.bodies


def _leaf_hashes(leaves: list[Any]) -> list[bytes]:
    try:
        return leaf_hashes(leaves)
    except TypeError:  # text where a hand edit stored text (SQLite)
        return leaf_hashes(as_bytes(leaf) for leaf in leaves)


def _prefix(rows: Sequence[tuple[Any, ...]], begin: int) -> int:
    """How many rows from ``begin`` on have the expected index."""
    if rows and rows[0][0] == begin and rows[-1][0] == begin + len(rows) - 1:
        return len(rows)  # indices are unique and sorted: first and last in place means all are
    return next((i for i, row in enumerate(rows) if row[0] != begin + i), len(rows))


def _contiguous(rows: Sequence[tuple[Any, ...]], begin: int, end: int, report: Report) -> int:
    """How many rows from ``begin`` on have the expected index; reports the first gap."""
    count = _prefix(rows, begin)
    if count < len(rows):
        report.add(begin + count, f"missing (the next stored leaf is {rows[count][0]})")
    elif count < end - begin:
        report.add(begin + count, "missing (the head says the log has more leaves)")
    return count


def _check_rows(raw: _Raw, rows: list[tuple[Any, ...]], scan: _Scan, *, subjects: bool) -> None:
    """Each leaf parses, and its index columns (and subject rows) agree with it."""
    if not rows:
        return
    stored: dict[int, set[str]] = defaultdict(set)
    if subjects:
        for idx, subject in raw.all(_SUBJECTS_SQL, rows[0][0], rows[-1][0] + 1):
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
            scan.bad_leaf(idx, f"is not a readable leaf document ({type(exc).__name__}: {exc})")
            continue
        if columns != row[2:11] or when != leaf_time(row[1]):
            _compare_columns(row, doc, scan)
        if subjects and (listed or idx in stored) and set(listed) != stored.get(idx, set()):
            scan.bad_leaf(idx, "the data-subject index disagrees with the leaf's subjects")


def _check_subjects(raw: _Raw, begin: int, end: int, scan: _Scan) -> None:
    """The subject rows of leaves [begin, end) are exactly the subjects their leaves name."""
    stored: dict[int, set[str]] = defaultdict(set)
    for idx, subject in raw.all(_SUBJECTS_SQL, begin, end):
        stored[idx].add(subject)
    try:
        listed = {idx: orjson.loads(text) for idx, text in raw.all(_SQLITE_LISTED_SUBJECTS_SQL, begin, end)}
    except (raw.errors, orjson.JSONDecodeError):
        listed = None  # some leaf is not JSON at all: read the leaves themselves
    if listed is None:
        listed = {}
        for idx, leaf in raw.all(_LEAF_SQL, begin, end):
            doc = _document(leaf, idx, scan)
            if doc is not None and isinstance(doc.get("subjects"), list) and doc["subjects"]:
                listed[idx] = doc["subjects"]
    def agrees(idx: int) -> bool:
        names = listed.get(idx) or []
        return isinstance(names, list) and set(names) == stored.get(idx, set())

    wrong = [idx for idx in sorted(stored.keys() | listed.keys()) if not agrees(idx)]
    orphans = [idx for idx in wrong if idx not in listed]
    if orphans:  # subject rows of a leaf that is not there: the missing leaf is the tree scan's to name
        present = {idx for lo, hi in _runs(orphans) for (idx, _) in raw.all(_LEAF_SQL, lo, hi + 1)}
        wrong = [idx for idx in wrong if idx in listed or idx in present]
    for idx in wrong:
        scan.bad_leaf(idx, "the data-subject index disagrees with the leaf's subjects")


def _document(leaf: Any, idx: int, scan: _Scan) -> dict[str, Any] | None:
    try:
        doc = orjson.loads(as_bytes(leaf))
    except orjson.JSONDecodeError as exc:
        scan.bad_leaf(idx, f"is not a readable leaf document ({exc})")
        return None
    if not isinstance(doc, dict):
        scan.bad_leaf(idx, "is not a readable leaf document (not a JSON object)")
        return None
    return doc


def _compare_columns(row: tuple[Any, ...], doc: dict[str, Any], scan: _Scan) -> None:
    """The slow path: which index columns disagree, allowing for values cut to the column's width."""
    names = ("exchange_id", "client", "service", "operation", "outcome", "status", "user_id",
             "purpose", "rule")
    expected = index_columns(doc)
    wrong = [name for name, value in zip(names, row[2:11], strict=True) if expected[name] != value]
    if doc["time"] != leaf_time(row[1]):
        wrong.append("ts_us")
    if wrong:
        scan.bad_leaf(row[0], "the index columns " + ", ".join(wrong) + " disagree with the leaf")


def _check_bodies(raw: _Raw, begin: int, end: int, vault: BodyVault | None, scan: _Scan) -> None:
    """Kept bodies open under the body key and match the digests in their leaves."""
    rows = raw.all(_BODIES_SQL, begin, end)
    if not rows or vault is None:
        return
    leaves = dict(raw.all(_LEAF_SQL, begin, end))
    wanted = {"request": ("request",), "response": ("response",),
              "upstream_request": ("upstream", "request"), "upstream_response": ("upstream", "response")}
    for row in rows:
        idx = row[0]
        doc = _document(leaves[idx], idx, scan) if idx in leaves else None
        if doc is None:
            continue
        sealed = _SealedRow(row[1], *(None if v is None else as_bytes(v) for v in row[2:6]))
        try:
            bodies = vault.open(str(doc.get("id")), sealed)
        except BodyKeyError as exc:
            scan.bad_leaf(idx, f"kept bodies: {exc}")
            continue
        for part in PARTS:
            digest: Any = doc
            for key in wanted[part]:
                digest = digest.get(key) if isinstance(digest, dict) else None
            body = getattr(bodies, part)
            if body is None and digest is None:
                continue
            if body is None or digest != {"sha256": hashlib.sha256(body).hexdigest(), "size": len(body)}:
                scan.bad_leaf(idx, f"the kept {part} does not match the digest in the leaf")
                break
        else:
            scan.report.bodies += 1


class _SealedRow(NamedTuple):
    key_id: str
    request: bytes | None
    response: bytes | None
    upstream_request: bytes | None
    upstream_response: bytes | None


def _check_nodes(raw: _Raw, completed: dict[int, tuple[int, list[bytes]]], scan: _Scan) -> None:
    """The stored perfect nodes equal the recomputed ones (one range read per level)."""
    for level, (first, mine) in sorted(completed.items()):
        end = first + len(mine)
        if raw.node_hashes(level, first, end) == b"".join(mine):
            continue
        stored = {idx: as_bytes(h) for idx, h in raw.all(_NODE_ROWS_SQL, level, first, end)}
        for index, recomputed in enumerate(mine, start=first):
            found = stored.get(index)
            if found == recomputed:
                continue
            begin, stop = index << level, (index + 1) << level
            if level == 0:
                scan.bad_leaf(index, "is not in the tree's storage" if found is None else
                              "does not hash to the tree's stored leaf hash: the leaf was changed, "
                              "replaced or moved, or the stored node was")
            elif not scan.covers_bad_leaf(begin, stop):
                what = "is missing" if found is None else "differs from the one the leaves give"
                scan.report.add(begin, f"stored tree node ({level}, {index}) over leaves [{begin}, "
                                f"{stop}) {what}")


def _check_head(conn: Connection, head: TreeHead, report: Report) -> None:
    if report.leaves == head.size and report.root != head.root:
        report.add(None, f"the head's root {head.root.hex()} is not the root of the stored leaves "
                   f"{report.root.hex()}")
    beyond = conn.execute(sa.select(sa.func.min(audit_leaves.c.idx)).where(
        audit_leaves.c.idx >= sa.select(audit_head.c.size).where(audit_head.c.id == 1)
        .scalar_subquery())).scalar()
    if beyond is not None:
        report.add(int(beyond), "stored beyond the head's size: added outside the sequencer")
