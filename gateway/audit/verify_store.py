"""What ``audit verify`` reads, as a protocol: the checks (``verify.py``) are pure functions over it.

Two implementations: :class:`gateway.audit.verify_sql.SqlVerifyStore` (the database, SQLite and
PostgreSQL) and :class:`gateway.audit.verify_memory.MemoryVerifyStore` (plain lists and dicts, for
tests). A store only fetches: it never judges, and never hands over a hash it computed itself, so
that a lying store cannot make a damaged log verify.

Ranges are half-open, ``[begin, end)``, over leaf indices (or node indices on one level). Rows come
as plain tuples in the field order below (a million named tuples would cost the scan its speed).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Protocol

from gateway.audit.checkpointer import StoredCheckpoint
from gateway.audit.log import TreeHead
from gateway.audit.merkle import NodeID

__all__ = ["BODY_ROW_FIELDS", "INDEX_ROW_FIELDS", "BodyRow", "IndexRow", "VerifyStore"]

# A leaf with its index columns: idx, ts_us, exchange_id, client, service, operation, outcome,
# status, user_id, purpose, rule, leaf.
IndexRow = tuple[int, int, str, str | None, str | None, str | None, str, int, str | None, str | None,
                 str | None, bytes]
INDEX_ROW_FIELDS = ("idx", "ts_us", "exchange_id", "client", "service", "operation", "outcome", "status",
                    "user_id", "purpose", "rule", "leaf")

# A leaf's kept bodies, sealed: idx, key_id, request, response, upstream_request, upstream_response.
BodyRow = tuple[int, str, bytes | None, bytes | None, bytes | None, bytes | None]
BODY_ROW_FIELDS = ("idx", "key_id", "request", "response", "upstream_request", "upstream_response")


class VerifyStore(Protocol):
    """The stored log, read-only."""

    def head(self) -> TreeHead:
        """The sequencer's size and root."""
        ...

    def first_beyond_head(self) -> int | None:
        """The lowest leaf index stored at or past the head's size *now* (leaves appended by a
        serving gateway since :meth:`head` move the head with them, so they are not counted)."""
        ...

    def leaves(self, begin: int, end: int) -> Sequence[tuple[int, bytes]]:
        """The stored leaves in [begin, end) as (idx, leaf), by index; gaps left out."""
        ...

    def joined_nodes(self, level: int, first: int, end: int) -> bytes | None:
        """The stored hashes of nodes [first, end) of ``level`` concatenated in index order, or None
        unless every one of them is stored and 32 bytes long (a fast path: one value to compare)."""
        ...

    def nodes(self, level: int, first: int, end: int) -> dict[int, bytes]:
        """The stored nodes [first, end) of ``level``, by index."""
        ...

    def nodes_at(self, ids: Iterable[NodeID]) -> dict[tuple[int, int], bytes]:
        """The stored nodes among ``ids``, by (level, index); absent ones left out."""
        ...

    def checkpoints(self) -> Sequence[StoredCheckpoint]:
        """Every stored checkpoint, by size."""
        ...

    def index_rows(self, begin: int, end: int) -> Sequence[IndexRow]:
        """The stored leaves in [begin, end) with their index columns, by index."""
        ...

    def subjects(self, begin: int, end: int) -> Sequence[tuple[int, str]]:
        """The data-subject rows (idx, subject) of leaves [begin, end)."""
        ...

    def bodies(self, begin: int, end: int) -> Sequence[BodyRow]:
        """The kept bodies of leaves [begin, end)."""
        ...

    def index_suspects(self, begin: int, end: int) -> list[int] | None:
        """A shortcut: the leaves in [begin, end) whose index columns may disagree with the leaf (a
        superset is fine), ascending; None: no shortcut, check every row with its subject rows."""
        ...

    def listed_subjects(self, begin: int, end: int) -> dict[int, object] | None:
        """A shortcut: the ``subjects`` value of each leaf in [begin, end) that names any; None: no
        shortcut (the checks parse the leaves)."""
        ...
