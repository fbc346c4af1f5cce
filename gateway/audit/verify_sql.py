"""The :class:`~gateway.audit.verify_store.VerifyStore` of a database (SQLite or PostgreSQL).

Plain driver queries for the pass over the whole log: tuples, no per-row SQLAlchemy work, and no
transaction held (on SQLite each query reads the latest commit; leaves are append-only). On SQLite
the store also offers the checks two shortcuts computed inside the database with its JSON functions.
"""

from __future__ import annotations

from collections.abc import Iterable
from types import TracebackType
from typing import Any, cast

import orjson
from sqlalchemy.engine import Engine

from gateway.audit import tree
from gateway.audit.checkpointer import StoredCheckpoint, stored_checkpoints
from gateway.audit.log import TreeHead
from gateway.audit.merkle import EMPTY_ROOT, NodeID
from gateway.audit.tree import as_bytes
from gateway.audit.verify_store import BodyRow, IndexRow

__all__ = ["SqlVerifyStore"]

_HEAD_SQL = "SELECT size, root FROM audit_head WHERE id = 1"
_BEYOND_SQL = "SELECT min(idx) FROM audit_leaves WHERE idx >= (SELECT size FROM audit_head WHERE id = 1)"
# {leaf} and {hash}: CAST(… AS BLOB) on SQLite, so that a value a hand edit stored as text still comes
# as its bytes (converted in C, not row by row here); PostgreSQL's bytea always does.
_LEAVES_SQL = "SELECT idx, {leaf} FROM audit_leaves WHERE idx >= ? AND idx < ? ORDER BY idx"
_INDEX_ROWS_SQL = ("SELECT idx, ts_us, exchange_id, client, service, operation, outcome, status, user_id, "
                   "purpose, rule, {leaf} FROM audit_leaves WHERE idx >= ? AND idx < ? ORDER BY idx")
_NODE_ROWS_SQL = "SELECT idx, {hash} FROM audit_nodes WHERE level = ? AND idx >= ? AND idx < ?"
_SUBJECTS_SQL = "SELECT idx, subject FROM audit_subjects WHERE idx >= ? AND idx < ?"
_BODIES_SQL = ("SELECT idx, key_id, request, response, upstream_request, upstream_response "
               "FROM audit_bodies WHERE idx >= ? AND idx < ?")
# The stored hashes of a run of nodes, concatenated, and how many of them are 32 bytes long (so that
# bytes moved from one row to its neighbour cannot hide in the concatenation).
_SQLITE_NODES_CONCAT_SQL = ("SELECT group_concat(hash, ''), sum(length(hash) = 32) FROM (SELECT hash "
                            "FROM audit_nodes WHERE level = ? AND idx >= ? AND idx < ? ORDER BY idx)")
_PG_NODES_CONCAT_SQL = ("SELECT string_agg(hash, ''::bytea ORDER BY idx), sum((length(hash) = 32)::int) "
                        "FROM audit_nodes WHERE level = ? AND idx >= ? AND idx < ?")
# SQLite: the rows whose columns and time, as a JSON array, are not the same array as the leaf's own
# values (one parse of each leaf, in C).
_SQLITE_SUSPECTS_SQL = """
    SELECT idx FROM audit_leaves WHERE idx >= ? AND idx < ? AND
    json_array(exchange_id, client, service, operation, outcome, status, user_id, purpose, rule,
               replace(datetime(ts_us / 1000000, 'unixepoch'), ' ', 'T') || '.'
               || substr(1000000 + ts_us % 1000000, 2) || 'Z')
    IS NOT json_extract(CAST(leaf AS TEXT), '$.id', '$.client', '$.service', '$.operation',
                        '$.outcome', '$.status', '$.userId', '$.purpose', '$.rule', '$.time')
    ORDER BY idx"""
# SQLite: the subjects of the leaves that name any. In canonical JSON a non-empty top-level subjects
# list is the only place these bytes can appear (a quote inside a string value is escaped).
_SQLITE_LISTED_SUBJECTS_SQL = """
    SELECT idx, json_extract(CAST(leaf AS TEXT), '$.subjects') FROM audit_leaves
    WHERE idx >= ? AND idx < ? AND instr(leaf, CAST('"subjects":["' AS BLOB)) > 0"""


class SqlVerifyStore:
    """The log in a database, over one raw driver connection; close it (or use ``with``)."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self._conn = engine.raw_connection()
        self._cursor: Any = self._conn.cursor()
        self._sqlite = engine.dialect.name == "sqlite"
        self._mark = "?" if engine.dialect.paramstyle == "qmark" else "%s"
        # psycopg: results in binary format, so that leaves and hashes travel as their bytes rather
        # than as hex text the server writes and the client decodes (the scan's fetch 2.5x faster).
        self._options = {"binary": True} if engine.dialect.driver == "psycopg" else {}
        self._errors: type[Exception] = engine.dialect.loaded_dbapi.Error
        cast_ = "CAST({} AS BLOB)" if self._sqlite else "{}"
        self._leaves_sql = _LEAVES_SQL.format(leaf=cast_.format("leaf"))
        self._index_rows_sql = _INDEX_ROWS_SQL.format(leaf=cast_.format("leaf"))
        self._node_rows_sql = _NODE_ROWS_SQL.format(hash=cast_.format("hash"))

    def __enter__(self) -> SqlVerifyStore:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def close(self) -> None:
        self._cursor.close()
        self._conn.close()

    def _all(self, sql: str, *params: int) -> list[tuple[Any, ...]]:
        self._cursor.execute(sql.replace("?", self._mark), params, **self._options)
        return list(self._cursor.fetchall())

    def head(self) -> TreeHead:
        size, root = self._all(_HEAD_SQL)[0]
        return TreeHead(int(size), as_bytes(root) if root is not None else EMPTY_ROOT)

    def first_beyond_head(self) -> int | None:
        (beyond,) = self._all(_BEYOND_SQL)[0]
        return None if beyond is None else int(beyond)

    def leaves(self, begin: int, end: int) -> list[tuple[int, bytes]]:
        return cast(list[tuple[int, bytes]], self._all(self._leaves_sql, begin, end))

    def joined_nodes(self, level: int, first: int, end: int) -> bytes | None:
        if self._sqlite:
            driver: Any = self._conn.driver_connection
            driver.text_factory = bytes  # group_concat of blobs is text to SQLite: take its bytes
            try:
                joined, whole = self._all(_SQLITE_NODES_CONCAT_SQL, level, first, end)[0]
            finally:
                driver.text_factory = str
        else:
            joined, whole = self._all(_PG_NODES_CONCAT_SQL, level, first, end)[0]
        return as_bytes(joined) if joined is not None and whole == end - first else None

    def nodes(self, level: int, first: int, end: int) -> dict[int, bytes]:
        return {int(idx): as_bytes(h) for idx, h in self._all(self._node_rows_sql, level, first, end)}

    def nodes_at(self, ids: Iterable[NodeID]) -> dict[tuple[int, int], bytes]:
        with self._engine.connect() as conn:
            return tree.load_nodes(conn, ids)

    def checkpoints(self) -> list[StoredCheckpoint]:
        return stored_checkpoints(self._engine)

    def index_rows(self, begin: int, end: int) -> list[IndexRow]:
        return cast(list[IndexRow], self._all(self._index_rows_sql, begin, end))

    def subjects(self, begin: int, end: int) -> list[tuple[int, str]]:
        return cast(list[tuple[int, str]], self._all(_SUBJECTS_SQL, begin, end))

    def bodies(self, begin: int, end: int) -> list[BodyRow]:
        return [(int(idx), str(key_id), _blob(a), _blob(b), _blob(c), _blob(d))
                for idx, key_id, a, b, c, d in self._all(_BODIES_SQL, begin, end)]

    def index_suspects(self, begin: int, end: int) -> list[int] | None:
        if not self._sqlite:
            return None
        try:
            return [idx for (idx,) in self._all(_SQLITE_SUSPECTS_SQL, begin, end)]
        except self._errors:  # some leaf is not JSON to SQLite: no shortcut
            return None

    def listed_subjects(self, begin: int, end: int) -> dict[int, object] | None:
        if not self._sqlite:
            return None
        try:
            rows = self._all(_SQLITE_LISTED_SUBJECTS_SQL, begin, end)
            return {idx: orjson.loads(text) for idx, text in rows}
        except (self._errors, orjson.JSONDecodeError):
            return None



def _blob(value: bytes | memoryview | str | None) -> bytes | None:
    return None if value is None else as_bytes(value)
