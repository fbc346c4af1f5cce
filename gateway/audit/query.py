"""Finding leaves for auditors: filters over the index columns beside the leaves, keyset pages in
index order, and each leaf as the auditor sees it (its record, its leaf hash, its index).

The index columns only find leaves; what is shown is always the leaf itself, and ``audit verify``
checks that the columns and the data-subject index agree with the leaves.
"""

from __future__ import annotations

import base64
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import orjson
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from gateway.audit.log import COLUMN_WIDTHS
from gateway.audit.merkle import leaf_hash
from gateway.audit.tree import as_bytes
from gateway.storage.tables import audit_leaves, audit_subjects

MAX_PAGE = 1000


@dataclass(frozen=True, slots=True)
class Filters:
    """What an auditor asks for; every given field must match (``subject`` is a keyed hash)."""

    since_us: int | None = None  # inclusive
    until_us: int | None = None  # exclusive
    client: str | None = None
    service: str | None = None
    operation: str | None = None
    outcome: str | None = None
    official: str | None = None  # X-Road-UserId
    purpose: str | None = None  # X-Road-Issue
    subject: str | None = None  # SubjectHasher(personal id)


@dataclass(frozen=True, slots=True)
class Entry:
    index: int
    leaf: bytes

    @property
    def record(self) -> dict[str, Any]:
        return orjson.loads(self.leaf)  # type: ignore[no-any-return]

    @property
    def leaf_hash(self) -> bytes:
        return leaf_hash(self.leaf)

    def as_json(self) -> dict[str, Any]:
        return {"index": self.index, "leafHash": base64.b64encode(self.leaf_hash).decode(),
                "record": self.record}


def _select(filters: Filters, after: int | None, limit: int) -> sa.Select[Any]:
    c = audit_leaves.c
    query = sa.select(c.idx, c.leaf)
    if filters.subject is not None:
        query = query.join(audit_subjects, audit_subjects.c.idx == c.idx).where(
            audit_subjects.c.subject == filters.subject)
    for column, value in (("client", filters.client), ("service", filters.service),
                          ("operation", filters.operation), ("outcome", filters.outcome),
                          ("user_id", filters.official), ("purpose", filters.purpose)):
        if value is not None:
            width = COLUMN_WIDTHS.get(column)
            query = query.where(c[column] == (value[:width] if width else value))
    if filters.since_us is not None:
        query = query.where(c.ts_us >= filters.since_us)
    if filters.until_us is not None:
        query = query.where(c.ts_us < filters.until_us)
    if after is not None:
        query = query.where(c.idx > after)
    return query.order_by(c.idx).limit(limit)


def search(engine: Engine, filters: Filters, *, after: int | None = None,
           limit: int = 100) -> list[Entry]:
    """Up to ``limit`` matching leaves with an index above ``after``, in index order."""
    with engine.connect() as conn:
        rows = conn.execute(_select(filters, after, min(limit, MAX_PAGE))).all()
    entries = [Entry(int(r.idx), as_bytes(r.leaf)) for r in rows]
    # A long value was cut in its column: keep only the leaves whose own value matches.
    return [e for e in entries if _matches_whole(e, filters)] if _has_long(filters) else entries


def scan(engine: Engine, filters: Filters, *, page: int = MAX_PAGE) -> Iterator[list[Entry]]:
    """Every matching leaf, a page at a time (each page its own short read)."""
    after: int | None = None
    while True:
        with engine.connect() as conn:
            rows = conn.execute(_select(filters, after, page)).all()
        if not rows:
            return
        entries = [Entry(int(r.idx), as_bytes(r.leaf)) for r in rows]
        yield [e for e in entries if _matches_whole(e, filters)] if _has_long(filters) else entries
        if len(rows) < page:
            return
        after = int(rows[-1].idx)


def entry(engine: Engine, index: int) -> Entry | None:
    with engine.connect() as conn:
        row = conn.execute(sa.select(audit_leaves.c.idx, audit_leaves.c.leaf)
                           .where(audit_leaves.c.idx == index)).first()
    return Entry(int(row.idx), as_bytes(row.leaf)) if row is not None else None


_LEAF_KEYS = {"client": "client", "service": "service", "operation": "operation",
              "official": "userId", "purpose": "purpose"}
_COLUMNS = {"client": "client", "service": "service", "operation": "operation",
            "official": "user_id", "purpose": "purpose"}


def _has_long(filters: Filters) -> bool:
    return any(value is not None and len(value) > COLUMN_WIDTHS[_COLUMNS[name]]
               for name, value in ((n, getattr(filters, n)) for n in _COLUMNS))


def _matches_whole(e: Entry, filters: Filters) -> bool:
    record = e.record
    return all(getattr(filters, name) is None or record.get(key) == getattr(filters, name)
               for name, key in _LEAF_KEYS.items())


def signature_summary(record: dict[str, Any]) -> dict[str, Any] | None:
    """What a data subject's report shows of an exchange's signature verdict (the leaf's
    ``signature``, docs/signatures.md#the-record): valid or not, the reason, and the signer's subject
    as the certificate names it; None when nothing asked for a signature. The signer is shown even
    where the rule withholds the acting official: a signature is evidence that travels with the
    document, its certificate included."""
    verdict = record.get("signature")
    if not isinstance(verdict, dict):
        return None
    signer = verdict.get("signer")
    return {"valid": verdict.get("valid") is True, "reason": verdict.get("reason"),
            "signer": signer.get("subject") if isinstance(signer, dict) else None}
