"""The Merkle tree in the database: reading the few stored nodes that a proof, a root or the tree's
right edge needs (O(log n) point reads, in one query). The sequencer (``log.py``) writes them.

The hashing and the proof shapes are :mod:`gateway.audit.merkle`'s; this module only fetches and
stores.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from gateway.audit.merkle import (
    EMPTY_ROOT,
    Frontier,
    NodeID,
    consistency_proof_nodes,
    hash_range,
    inclusion_proof_nodes,
    nodes_to_fetch,
    proof_from_nodes,
    range_nodes,
)
from gateway.storage.tables import audit_nodes


class MissingNodeError(LookupError):
    """A node the tree must have is not in storage (removed, or never written)."""

    def __init__(self, level: int, index: int) -> None:
        super().__init__(f"tree node ({level}, {index}) is missing from storage")
        self.level = level
        self.index = index


def as_bytes(value: bytes | memoryview | str) -> bytes:
    """A stored binary value as bytes; SQLite hands back text where a hand edit stored text."""
    return value.encode() if isinstance(value, str) else bytes(value)


def load_nodes(conn: Connection, ids: Iterable[NodeID]) -> dict[tuple[int, int], bytes]:
    """The stored hashes of these nodes, by (level, index); absent ones are left out."""
    wanted = sorted(set(ids))
    if not wanted:
        return {}
    c = audit_nodes.c
    where = sa.or_(*(sa.and_(c.level == level, c.idx == index) for level, index in wanted))
    return {(r.level, r.idx): as_bytes(r.hash) for r in conn.execute(sa.select(c.level, c.idx, c.hash)
                                                                  .where(where))}


class _Get:
    """``get_node`` for the merkle module over nodes already loaded; a gap raises MissingNodeError."""

    __slots__ = ("_found",)

    def __init__(self, found: dict[tuple[int, int], bytes]) -> None:
        self._found = found

    def __call__(self, level: int, index: int) -> bytes:
        try:
            return self._found[(level, index)]
        except KeyError:
            raise MissingNodeError(level, index) from None


def frontier_from(size: int, rows: Iterable[tuple[int, int, Any]]) -> Frontier:
    """The right edge of a tree of ``size`` leaves from its stored nodes, as (level, idx, hash) rows."""
    return Frontier.from_nodes(size, _Get({(int(level), int(idx)): as_bytes(h) for level, idx, h in rows}))


def root_at(conn: Connection, size: int) -> bytes:
    """The root of the tree as it was at ``size`` leaves (any size up to the current one)."""
    if size == 0:
        return EMPTY_ROOT
    ids = range_nodes(0, size)
    get = _Get(load_nodes(conn, ids))
    return hash_range([get(level, index) for level, index in ids])


def inclusion_proof(conn: Connection, index: int, size: int) -> list[bytes]:
    """The RFC 9162 inclusion proof of leaf ``index`` in the tree of ``size`` leaves."""
    refs = inclusion_proof_nodes(index, size)
    return proof_from_nodes(refs, _Get(load_nodes(conn, nodes_to_fetch(refs))))


def consistency_proof(conn: Connection, size1: int, size2: int) -> list[bytes]:
    """The RFC 9162 consistency proof from the tree of ``size1`` leaves to that of ``size2``."""
    if size1 == size2:
        return []
    refs = consistency_proof_nodes(size1, size2)
    return proof_from_nodes(refs, _Get(load_nodes(conn, nodes_to_fetch(refs))))
