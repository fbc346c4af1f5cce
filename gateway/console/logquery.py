"""Searching the audit log's index columns, a page at a time, newest first.

A search names any of: a time range, client, service, operation, outcome, acting official, purpose
and data subject. The data subject is always a keyed hash (``SubjectHasher``): the console hashes a
personal id typed in at the form handler and only the hash travels further (URL, query, audit).
Pages are keyset pages over the leaf index (``before``), so a page costs the same at any depth.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, fields, replace
from datetime import datetime
from typing import Any
from urllib.parse import urlencode
from zoneinfo import ZoneInfo

import orjson
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from gateway.audit import query
from gateway.audit.log import StoredLeaf
from gateway.audit.merkle import leaf_hash
from gateway.audit.tree import as_bytes
from gateway.bounds import index
from gateway.storage.tables import audit_leaves, audit_subjects

__all__ = ["OUTCOMES", "VN_TZ", "Filters", "Row", "export_rows", "parse_local", "search"]

VN_TZ = ZoneInfo("Asia/Ho_Chi_Minh")
OUTCOMES = ("ok", "refused", "failed")
_HEX64 = re.compile(r"[0-9a-f]{64}")
PAGE = 50
CONSOLE_CLIENT = "console"  # the client name of the console's own audit records
DAY_US = 86_400_000_000


def parse_local(text: str | None) -> int | None:
    """A ``datetime-local`` value (``2026-06-09T08:30``) or a date, in Vietnamese time, as
    microseconds since the epoch; None when empty or not a date."""
    text = (text or "").strip()
    if not text:
        return None
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=VN_TZ)
    return int(moment.timestamp() * 1_000_000)


def local_text(ts_us: int, seconds: bool = True) -> str:
    """How the console shows a moment: Vietnamese time (UTC+7)."""
    moment = datetime.fromtimestamp(ts_us / 1_000_000, VN_TZ)
    return moment.strftime("%Y-%m-%d %H:%M:%S" if seconds else "%Y-%m-%dT%H:%M")


def local_from_leaf(text: str | None) -> str:
    """A leaf's time (RFC 3339, UTC) as the console shows moments."""
    if not text:
        return "–"
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return text
    return moment.astimezone(VN_TZ).strftime("%Y-%m-%d %H:%M:%S")


@dataclass(frozen=True, slots=True)
class Filters:
    start: str = ""  # datetime-local text, Vietnamese time
    end: str = ""
    client: str = ""
    service: str = ""
    operation: str = ""
    outcome: str = ""
    official: str = ""
    purpose: str = ""
    subject: str = ""  # the keyed hash, 64 hex digits; never a personal id
    console: bool = False  # include the console's own records (always when client is "console")
    before: int | None = None  # keyset: only leaves with a smaller index

    @classmethod
    def from_query(cls, query: Mapping[str, str]) -> Filters:
        def text(name: str, width: int = 512) -> str:  # without NUL, which PostgreSQL's text refuses
            return (query.get(name) or "").replace("\x00", "").strip()[:width]

        subject = text("subject", 64).lower()
        outcome = text("outcome")
        return cls(start=text("from", 32), end=text("to", 32), client=text("client", 255),
                   service=text("service", 255), operation=text("operation", 128),
                   outcome=outcome if outcome in OUTCOMES else "", official=text("official", 255),
                   purpose=text("purpose"), subject=subject if _HEX64.fullmatch(subject) else "",
                   console=query.get("console") in ("1", "on", "true"),
                   before=index(query.get("before")))

    def params(self, **changes: Any) -> dict[str, str]:
        """The filters as URL parameters (only those set)."""
        f = replace(self, **changes)
        names = {"start": "from", "end": "to"}
        out = {}
        for spec in fields(f):
            value = getattr(f, spec.name)
            if value is True:
                out[spec.name] = "1"
            elif value not in ("", None, False):
                out[names.get(spec.name, spec.name)] = str(value)
        return out

    def url(self, path: str, **changes: Any) -> str:
        params = self.params(**changes)
        return f"{path}?{urlencode(params)}" if params else path

    def describe(self) -> str:
        """A short account of the search for the console's own audit record (hashes only)."""
        return " ".join(f"{k}={v}" for k, v in self.params(before=None).items())[:512]

    def for_audit(self) -> query.Filters:
        """The same search in the terms of ``gateway.audit.query`` (without the page)."""
        start, end = parse_local(self.start), parse_local(self.end)
        if end is not None and len(self.end.strip()) == 10:
            end += DAY_US
        return query.Filters(since_us=start, until_us=end, client=self.client or None,
                             service=self.service or None, operation=self.operation or None,
                             outcome=self.outcome or None, official=self.official or None,
                             purpose=self.purpose or None, subject=self.subject or None)

    @property
    def with_console(self) -> bool:
        return self.console or self.client == CONSOLE_CLIENT

    @property
    def any(self) -> bool:
        return bool(self.params(before=None))

    def where(self) -> list[sa.ColumnElement[bool]]:
        t = audit_leaves
        conds: list[sa.ColumnElement[bool]] = []
        start, end = parse_local(self.start), parse_local(self.end)
        if start is not None:
            conds.append(t.c.ts_us >= start)
        if end is not None:
            if len(self.end.strip()) == 10:  # a date alone: the whole day
                end += DAY_US
            conds.append(t.c.ts_us < end)
        for column, value in ((t.c.client, self.client), (t.c.service, self.service),
                              (t.c.operation, self.operation), (t.c.outcome, self.outcome),
                              (t.c.user_id, self.official), (t.c.purpose, self.purpose)):
            if value:
                conds.append(column == value)
        if not self.with_console:
            conds.append(sa.or_(t.c.client.is_(None), t.c.client != CONSOLE_CLIENT))
        if self.subject:
            conds.append(t.c.idx.in_(sa.select(audit_subjects.c.idx)
                                     .where(audit_subjects.c.subject == self.subject)))
        if self.before is not None:
            conds.append(t.c.idx < self.before)
        return conds


@dataclass(frozen=True, slots=True)
class Row:
    idx: int
    exchange_id: str
    ts_us: int
    client: str | None
    official: str | None
    purpose: str | None
    service: str | None
    operation: str | None
    outcome: str
    status: int
    rule: str | None
    leaf: bytes

    @property
    def time(self) -> str:
        return local_text(self.ts_us)

    @property
    def doc(self) -> dict[str, Any]:
        return orjson.loads(self.leaf)  # type: ignore[no-any-return]

    @property
    def leaf_hash(self) -> str:
        return leaf_hash(self.leaf).hex()

    @classmethod
    def of(cls, leaf: StoredLeaf) -> Row:
        return cls(leaf.idx, leaf.exchange_id, leaf.ts_us, leaf.client, leaf.user_id, leaf.purpose,
                   leaf.service, leaf.operation, leaf.outcome, leaf.status, leaf.rule, leaf.leaf)


def _row(r: sa.Row[Any]) -> Row:
    return Row(idx=int(r.idx), exchange_id=r.exchange_id, ts_us=int(r.ts_us), client=r.client,
               official=r.user_id, purpose=r.purpose, service=r.service, operation=r.operation,
               outcome=r.outcome, status=int(r.status), rule=r.rule, leaf=as_bytes(r.leaf))


def search(engine: Engine, filters: Filters, limit: int = PAGE) -> tuple[list[Row], int | None]:
    """One page of matching leaves, newest first, and the ``before`` of the next page (None at the
    end)."""
    query = (sa.select(audit_leaves).where(*filters.where())
             .order_by(audit_leaves.c.idx.desc()).limit(limit + 1))
    with engine.connect() as conn:
        rows = [_row(r) for r in conn.execute(query)]
    more = len(rows) > limit
    rows = rows[:limit]
    return rows, (rows[-1].idx if more and rows else None)


def get(engine: Engine, idx: int) -> Row | None:
    with engine.connect() as conn:
        r = conn.execute(sa.select(audit_leaves).where(audit_leaves.c.idx == idx)).first()
    return _row(r) if r is not None else None


def export_rows(engine: Engine, filters: Filters, limit: int = 1_000_000,
                size: int | None = None) -> Iterator[query.Entry]:
    """Every matching leaf among the first ``size`` (the log as it was when asked; not the export's
    own audit record), oldest first, read a page at a time by the audit log's own query module
    (``gateway.audit.query.scan``), so that an export from the console equals one from ``/audit``."""
    sent = 0
    for page in query.scan(engine, filters.for_audit()):
        for entry in page:
            if sent >= limit or (size is not None and entry.index >= size):
                return
            if not filters.with_console and entry.record.get("client") == CONSOLE_CLIENT:
                continue
            yield entry
            sent += 1


# The columns of /audit/export?format=csv, in its order.
CSV_COLUMNS = ("index", "time", "exchange_id", "protocol", "client", "official", "represented_party",
               "service", "operation", "purpose", "outcome", "status", "rule", "error", "total_us",
               "upstream_us", "request_sha256", "request_size", "response_sha256", "response_size",
               "subjects", "leaf_hash")


def csv_record(entry: query.Entry) -> list[Any]:
    r = entry.record
    timings, request, response = r.get("timings") or {}, r.get("request") or {}, r.get("response") or {}
    row = [entry.index, r.get("time"), r.get("id"), r.get("protocol"), r.get("client"), r.get("userId"),
           r.get("representedParty"), r.get("service"), r.get("operation"), r.get("purpose"),
           r.get("outcome"), r.get("status"), r.get("rule"), r.get("error"), timings.get("totalUs"),
           timings.get("upstreamUs"), request.get("sha256"), request.get("size"), response.get("sha256"),
           response.get("size"), " ".join(r.get("subjects") or []), entry.leaf_hash.hex()]
    return [spreadsheet_safe(v) for v in row]


def spreadsheet_safe(value: Any) -> Any:
    """A text cell that a spreadsheet would run as a formula gets a leading apostrophe."""
    if isinstance(value, str) and value[:1] in ("=", "+", "-", "@", "\t", "\r"):
        return "'" + value
    return value
