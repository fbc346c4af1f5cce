"""A :class:`~gateway.audit.verify_store.VerifyStore` over plain Python lists and dicts: the checks
run against it without a database (tests build a log in memory and damage it one way at a time).

Every field is public and plain, so that a test edits storage the way a tamperer edits tables.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

import orjson

from gateway.audit.checkpointer import StoredCheckpoint
from gateway.audit.log import TreeHead
from gateway.audit.merkle import HASH_SIZE, NodeID
from gateway.audit.verify_store import BodyRow, IndexRow

__all__ = ["MemoryVerifyStore"]


@dataclass
class MemoryVerifyStore:
    """The tables of a log: ``rows`` the leaves with their index columns (by index), ``nodes`` the
    tree by (level, index), ``subject_rows`` (idx, subject) pairs, ``body_rows`` by index.

    With ``shortcuts``, the store answers :meth:`index_suspects` (every stored leaf of the range: a
    superset, as allowed) and :meth:`listed_subjects` (parsed here), as the SQLite store does, so
    that the checks' second path runs too.
    """

    head_size: int = 0
    head_root: bytes = b""
    rows: dict[int, IndexRow] = field(default_factory=dict)
    nodes_by_id: dict[tuple[int, int], bytes] = field(default_factory=dict)
    subject_rows: set[tuple[int, str]] = field(default_factory=set)
    body_rows: dict[int, BodyRow] = field(default_factory=dict)
    stored_checkpoints: list[StoredCheckpoint] = field(default_factory=list)
    shortcuts: bool = False

    def _indices(self, begin: int, end: int) -> list[int]:
        return sorted(idx for idx in self.rows if begin <= idx < end)

    def head(self) -> TreeHead:
        return TreeHead(self.head_size, self.head_root)

    def first_beyond_head(self) -> int | None:
        return min((idx for idx in self.rows if idx >= self.head_size), default=None)

    def leaves(self, begin: int, end: int) -> list[tuple[int, bytes]]:
        return [(idx, self.rows[idx][11]) for idx in self._indices(begin, end)]

    def joined_nodes(self, level: int, first: int, end: int) -> bytes | None:
        found = [self.nodes_by_id.get((level, idx)) for idx in range(first, end)]
        if any(h is None or len(h) != HASH_SIZE for h in found):
            return None
        return b"".join(h for h in found if h is not None)

    def nodes(self, level: int, first: int, end: int) -> dict[int, bytes]:
        return {idx: h for (lv, idx), h in self.nodes_by_id.items() if lv == level and first <= idx < end}

    def nodes_at(self, ids: Iterable[NodeID]) -> dict[tuple[int, int], bytes]:
        return {(lv, idx): self.nodes_by_id[(lv, idx)] for lv, idx in ids if (lv, idx) in self.nodes_by_id}

    def checkpoints(self) -> list[StoredCheckpoint]:
        return sorted(self.stored_checkpoints, key=lambda c: c.size)

    def index_rows(self, begin: int, end: int) -> list[IndexRow]:
        return [self.rows[idx] for idx in self._indices(begin, end)]

    def subjects(self, begin: int, end: int) -> list[tuple[int, str]]:
        return sorted(row for row in self.subject_rows if begin <= row[0] < end)

    def bodies(self, begin: int, end: int) -> list[BodyRow]:
        return [row for idx, row in sorted(self.body_rows.items()) if begin <= idx < end]

    def index_suspects(self, begin: int, end: int) -> list[int] | None:
        return self._indices(begin, end) if self.shortcuts else None

    def listed_subjects(self, begin: int, end: int) -> dict[int, object] | None:
        if not self.shortcuts:
            return None
        listed: dict[int, object] = {}
        for idx, leaf in self.leaves(begin, end):
            try:
                doc = orjson.loads(leaf)
            except orjson.JSONDecodeError:
                return None  # as SQLite's JSON functions fail on such a leaf
            subjects = doc.get("subjects") if isinstance(doc, dict) else None
            if isinstance(subjects, list) and subjects:
                listed[idx] = subjects
        return listed
