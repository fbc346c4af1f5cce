"""The document exchange's KPIs per agency and period, and what they are made of: each document's
fate at each recipient (docs/documents.md, "KPIs").

For one recipient organ, a document's copy is

- ``received`` (exchanged electronically) when the recipient has it through the gateway: a pushed
  copy whose delivery (or an operator's replay of it) is ``delivered`` with an answer under 400, a
  pulled copy the recipient confirmed, or either kind once the recipient sent a status about the
  document other than 02;
- ``refused`` when the recipient sent status 02 (refused), whatever the delivery did;
- ``failed`` when its delivery is a dead letter, cancelled, or answered 4xx/5xx and kept;
- ``inTransit`` otherwise (not yet handed over, retrying, pulled and not confirmed).

A document is ``electronic`` when every copy is received; else ``refused`` when a copy is, else
``failed`` when a copy is, else ``inTransit``. The electronic share is ``electronic / (electronic +
refused + failed)``: documents still in transit are not decided yet.

A copy is **answered** by the recipient's first final status about the document (02 refused, 06 done,
15 recall agreed), at the moment the gateway accepted that status (never the sender-written
Timestamp). A copy of a document with a ``DueDate`` is answered **on time** when that moment is before
the end of the due day in Vietnamese time; ``overdue`` when it is not answered and the due day has
ended. ``onTimeShare`` is ``answeredOnTime / (answeredOnTime + answeredLate + overdue)``.

Figures are per organ (the edXML ``OrganId``, with the member that answers for it) and period (a day
``2026-11-21``, a month, a quarter, a year or ``all``, in Vietnamese time), by the moment the gateway
accepted the package: a sender's figures by its documents', a recipient's by its copies' (the same
moment). The DueDate and the other header facts are read from the stored package's header (its first
bytes, parsed with the hardened parser's options; the attachments are never read), once per document
and process.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any

import orjson
import sqlalchemy as sa
from lxml import etree
from sqlalchemy.engine import Connection, Engine

from gateway.delivery.messages import VIETNAM
from gateway.delivery.tables import deliveries
from gateway.documents.bodies import BodyFile
from gateway.documents.tables import document_messages, document_parts, documents
from gateway.edxml.codec import NS
from gateway.flows.stats import DAY_US, PERIODS, agency_of, bucket, moment_us
from gateway.ratelimit import VN_OFFSET
from gateway.xml import safe

__all__ = ["DOC_OUTCOMES", "FINAL", "OUTCOMES", "PERIODS", "RECEIVED", "SENT", "Copy", "DocumentFacts",
           "Header", "due_end_us", "header_of", "load", "of_agency", "report", "trace", "window"]

FINAL = ("02", "06", "15")  # refused, done, recall agreed: the recipient's handling ended
REFUSED = "02"
OUTCOMES = ("received", "refused", "failed", "inTransit")
DOC_OUTCOMES = ("electronic", "refused", "failed", "inTransit")
HEAD_BYTES = 32_768  # a header is a few KiB; a longer one is read from the whole package
_CACHE_MAX = 50_000


@dataclass(frozen=True, slots=True)
class Header:
    """What the KPIs and the console read from a package's header (no signer's or staff's name)."""

    subject: str = ""
    code: str = ""
    type_name: str = ""
    promulgation_date: str = ""
    place: str = ""
    due_date: date | None = None
    priority: str | None = None
    sender_name: str = ""
    organ_names: tuple[tuple[str, str], ...] = ()  # (OrganId, OrganName) of the recipients
    signer_position: str = ""

    def as_dict(self) -> dict[str, Any]:
        return {"subject": self.subject, "code": self.code, "type": self.type_name,
                "promulgationDate": self.promulgation_date, "place": self.place,
                "dueDate": self.due_date.isoformat() if self.due_date else None, "priority": self.priority,
                "senderName": self.sender_name, "signerPosition": self.signer_position}


_headers: dict[str, Header] = {}
_headers_lock = threading.Lock()


def _q(name: str) -> str:
    return f"{{{NS}}}{name}"


def _text(e: Any, *path: str) -> str:
    for name in path:
        if e is None:
            return ""
        e = e.find(_q(name))
    return "" if e is None else (e.text or "").strip()


def header_of(body: bytes) -> Header | None:
    """The facts of a stored package's header, or None when ``body`` ends before the header does."""
    parser = etree.XMLPullParser(events=("end",), tag=_q("MessageHeader"), **safe.PARSER_OPTIONS)
    found = None
    try:
        for start in range(0, len(body), HEAD_BYTES):
            parser.feed(body[start:start + HEAD_BYTES])
            found = next((e for _, e in parser.read_events()), None)
            if found is not None:
                break
    except etree.XMLSyntaxError:
        return None
    if found is None:
        return None
    due = _text(found, "DueDate")
    try:
        due_date = datetime.strptime(due, "%Y/%m/%d").date() if due else None
    except ValueError:
        due_date = None
    return Header(
        subject=_text(found, "Subject"),
        code=f"{_text(found, 'Code', 'CodeNumber')}/{_text(found, 'Code', 'CodeNotation')}",
        type_name=_text(found, "DocumentType", "TypeName"),
        promulgation_date=_text(found, "PromulgationInfo", "PromulgationDate"),
        place=_text(found, "PromulgationInfo", "Place"), due_date=due_date,
        priority=_text(found, "OtherInfo", "Priority") or None,
        sender_name=_text(found, "From", "OrganName"),
        organ_names=tuple((_text(t, "OrganId"), _text(t, "OrganName")) for t in found.iterfind(_q("To"))),
        signer_position=_text(found, "SignerInfo", "Position"))


def _headers_of(conn: Connection, ids: Sequence[str]) -> dict[str, Header]:
    with _headers_lock:
        out = {i: _headers[i] for i in ids if i in _headers}
    missing = [i for i in ids if i not in out]
    aside = BodyFile.beside(conn.engine) if missing else None
    for start in range(0, len(missing), 500):
        chunk = missing[start:start + 500]
        rows = conn.execute(sa.select(documents.c.id, documents.c.sha256,
                                      sa.func.substr(documents.c.body, 1, HEAD_BYTES))
                            .where(documents.c.id.in_(chunk))).all()
        for doc_id, sha256, head in rows:
            found = header_of(bytes(head or b"") or _elsewhere(conn, aside, doc_id, sha256, HEAD_BYTES))
            if found is None:  # a header longer than the first bytes: the whole package
                body = conn.execute(sa.select(documents.c.body).where(documents.c.id == doc_id)).scalar_one()
                # a package stored in parts: its header is in the first (1 MiB), or it is unreadable
                found = header_of(bytes(body) or _elsewhere(conn, aside, doc_id, sha256)) or Header()
            out[doc_id] = found
    with _headers_lock:
        if len(_headers) > _CACHE_MAX:
            _headers.clear()
        _headers.update({i: out[i] for i in missing if i in out})
    return out


def _elsewhere(conn: Connection, aside: BodyFile | None, doc_id: str, sha256: str,
               most: int | None = None) -> bytes:
    """The start of a package whose row holds no bytes: from the bodies file (bodies.py), or its
    first part; ``most`` bytes of it."""
    if aside is not None:
        found = aside.get(sha256) if most is None else aside.head(sha256, most)
        if found is not None:
            return found
    return _first_part(conn, doc_id, most)


def _first_part(conn: Connection, doc_id: str, most: int | None = None) -> bytes:
    """The start of a package stored in parts (tables.py): its first piece, or ``most`` bytes of it."""
    data = document_parts.c.data
    piece = conn.execute(sa.select(data if most is None else sa.func.substr(data, 1, most)).where(
        document_parts.c.document == doc_id, document_parts.c.n == 0)).scalar()
    return bytes(piece) if piece is not None else b""


def due_end_us(due: date) -> int:
    """The end of a due day in Vietnamese time (the next day's 00:00 there), µs since the epoch."""
    midnight = datetime.combine(due + timedelta(days=1), datetime.min.time(), tzinfo=VIETNAM)
    return int(midnight.timestamp()) * 1_000_000


@dataclass
class Copy:
    """One recipient's copy of a document, with what became of it."""

    message: str
    organ: str
    member: str
    mode: str  # push | pull
    state: str  # the message's own state (pending, queued, fetched, confirmed)
    delivery_id: str | None
    delivery_state: str | None = None
    response_status: int | None = None
    delivered_us: int | None = None
    fetched_us: int | None = None
    confirmed_us: int | None = None
    statuses: list[str] = field(default_factory=list)  # the recipient's status codes, in order
    answered_us: int | None = None  # the first final status's acceptance
    answer: str | None = None  # its code

    @property
    def outcome(self) -> str:
        if REFUSED in self.statuses:
            return "refused"
        if self.statuses or self.state == "confirmed" or (
                self.delivery_state == "delivered" and (self.response_status or 200) < 400):
            return "received"
        if self.delivery_state in ("dead", "cancelled") or (
                self.delivery_state == "delivered" and (self.response_status or 200) >= 400):
            return "failed"
        return "inTransit"


@dataclass
class DocumentFacts:
    id: str
    document_id: str
    sender_organ: str
    sender_member: str
    created_us: int
    header: Header
    copies: list[Copy] = field(default_factory=list)

    @property
    def outcome(self) -> str:
        outcomes = {c.outcome for c in self.copies}
        if outcomes == {"received"}:
            return "electronic"
        for kind in ("refused", "failed"):
            if kind in outcomes:
                return kind
        return "inTransit"


def load(conn: Connection, *conds: Any, limit: int | None = None, newest_first: bool = False
         ) -> list[DocumentFacts]:
    """The documents matching ``conds`` (on the ``documents`` table) with every copy's fate."""
    d = documents.c
    order = (d.created_us.desc(), d.id) if newest_first else (d.created_us, d.id)
    query = (sa.select(d.id, d.document_id, d.sender_organ, d.client, d.created_us).where(*conds)
             .order_by(*order))
    if limit is not None:
        query = query.limit(limit)
    rows = conn.execute(query).all()
    ids = [r.id for r in rows]
    headers = _headers_of(conn, ids)
    found = {r.id: DocumentFacts(r.id, r.document_id, r.sender_organ, agency_of(r.client), r.created_us,
                                 headers.get(r.id, Header())) for r in rows}
    m = document_messages.c
    copies: dict[tuple[str, str], Copy] = {}
    wanted: dict[str, Copy] = {}
    for start in range(0, len(ids), 500):
        chunk = ids[start:start + 500]
        for r in conn.execute(sa.select(m.document, m.id, m.kind, m.from_organ, m.to_organ, m.member,
                                        m.service, m.status_code, m.state, m.delivery_id, m.created_us,
                                        m.fetched_us, m.confirmed_us)
                              .where(m.document.in_(chunk)).order_by(m.seq)):
            if r.kind == "package":
                copy = Copy(r.id, r.to_organ, r.member, "pull" if r.service is None else "push", r.state,
                            r.delivery_id, fetched_us=r.fetched_us, confirmed_us=r.confirmed_us)
                copies[(r.document, r.to_organ)] = copy
                found[r.document].copies.append(copy)
                if r.delivery_id is not None:
                    wanted[r.delivery_id] = copy
                continue
            answering = copies.get((r.document, r.from_organ))
            if answering is None or r.status_code is None:  # the sender's own (a recall)
                continue
            answering.statuses.append(r.status_code)
            if r.status_code in FINAL and answering.answered_us is None:
                answering.answered_us, answering.answer = r.created_us, r.status_code
    _deliveries(conn, wanted)
    return list(found.values())


def _rank(state: str, status: int | None) -> int:
    """Which of a copy's deliveries (the first and its replays) tells its fate: one that got there,
    else one still going, else the rest."""
    if state == "delivered" and (status or 200) < 400:
        return 3
    return 2 if state == "pending" else 1


def _deliveries(conn: Connection, wanted: dict[str, Copy]) -> None:
    """Each pushed copy's delivery state: its own delivery's, or an operator's replay of it (and of
    that replay…) when that one tells more (``_rank``)."""
    d = deliveries.c
    owner = dict(wanted)  # delivery id -> its copy, replays included
    frontier, by_id, depth = list(wanted), True, 0
    while frontier and depth < 8:  # a replay of a replay of …: a handful at most
        found = []
        for start in range(0, len(frontier), 500):
            chunk = frontier[start:start + 500]
            key = d.id if by_id else d.replay_of
            for dr in conn.execute(sa.select(d.id, d.state, d.response_status, d.delivered_us, d.replay_of)
                                   .where(key.in_(chunk)).order_by(d.seq)):
                copy = owner[dr.id if by_id else dr.replay_of]
                owner[dr.id] = copy
                found.append(dr.id)
                if copy.delivery_state is None or _rank(dr.state, dr.response_status) >= _rank(
                        copy.delivery_state, copy.response_status):
                    copy.delivery_state, copy.response_status, copy.delivered_us = (
                        dr.state, dr.response_status, dr.delivered_us)
        frontier, by_id, depth = found, False, depth + 1


def _share(part: int, whole: int) -> float | None:
    return round(part / whole, 4) if whole else None


SENT = ("sent", "electronic", "refused", "failed", "inTransit")
RECEIVED = ("received", "receivedElectronic", "withDueDate", "answered", "answeredOnTime", "answeredLate",
            "overdue")


@dataclass
class _Figures:
    counts: dict[str, int] = field(default_factory=lambda: dict.fromkeys((*SENT, *RECEIVED), 0))

    def add(self, other: _Figures) -> None:
        for k, v in other.counts.items():
            self.counts[k] += v

    def as_dict(self) -> dict[str, Any]:
        c = self.counts
        decided = c["electronic"] + c["refused"] + c["failed"]
        due = c["answeredOnTime"] + c["answeredLate"] + c["overdue"]
        return {**c, "electronicShare": _share(c["electronic"], decided),
                "onTimeShare": _share(c["answeredOnTime"], due)}


def _day(us: int) -> int:
    return (us + VN_OFFSET * 1_000_000) // DAY_US


def of_agency(agency: str) -> Any:
    """The documents an organ or a member sent or received a copy of (a condition on ``documents``)."""
    m = document_messages.c
    return sa.or_(documents.c.sender_organ == agency,
                  documents.c.client.startswith(f"{agency}/", autoescape=True),
                  sa.exists().where(m.document == documents.c.id, m.kind == "package",
                                    sa.or_(m.to_organ == agency, m.member == agency)))


def window(start: str | None, end: str | None) -> list[Any]:
    """Conditions on ``documents``: accepted from ``start`` (inclusive) to ``end`` (exclusive), portal
    moments in Vietnamese time."""
    conds = []
    first, last = moment_us(start), moment_us(end)
    if first is not None:
        conds.append(documents.c.created_us >= first)
    if last is not None:
        conds.append(documents.c.created_us < last)
    return conds


def report(engine: Engine, *, period: str = "month", start: str | None = None, end: str | None = None,
           agency: str | None = None, now_us: int) -> dict[str, Any]:
    """``{"agencies": [...], "totals": [...]}``: per organ and period, and per period over every
    organ (a document counted once as sent, each copy once as received). ``start`` (inclusive) and
    ``end`` (exclusive) are portal moments (``yyyyMMddHHmmss``, Vietnamese time); ``agency`` an
    OrganId or a member id; ``now_us`` the moment after which an unanswered due copy is overdue."""
    if period not in PERIODS:
        raise ValueError(f"period must be one of {', '.join(PERIODS)}")
    conds = window(start, end)
    if agency is not None:
        conds.append(of_agency(agency))
    with engine.connect() as conn:
        found = load(conn, *conds)
    table: dict[tuple[str, str], tuple[str, _Figures]] = {}
    totals: dict[str, _Figures] = {}

    def figures(organ: str, member: str, when: str) -> _Figures:
        return table.setdefault((organ, when), (member, _Figures()))[1]

    def mine(organ: str, member: str) -> bool:
        return agency is None or agency in (organ, member)

    for doc in found:
        when = bucket(_day(doc.created_us), period)
        total = totals.setdefault(when, _Figures())
        outcome = doc.outcome
        if mine(doc.sender_organ, doc.sender_member):
            for f in (figures(doc.sender_organ, doc.sender_member, when), total):
                f.counts["sent"] += 1
                f.counts[outcome] += 1
        due = due_end_us(doc.header.due_date) if doc.header.due_date is not None else None
        for copy in doc.copies:
            if not mine(copy.organ, copy.member):
                continue
            for f in (figures(copy.organ, copy.member, when), total):
                c = f.counts
                c["received"] += 1
                c["receivedElectronic"] += copy.outcome == "received"
                if due is None:
                    continue
                c["withDueDate"] += 1
                if copy.answered_us is not None:
                    c["answered"] += 1
                    c["answeredOnTime" if copy.answered_us < due else "answeredLate"] += 1
                elif due <= now_us:
                    c["overdue"] += 1
    if agency is not None:  # the totals of what the filter kept
        totals = {}
        for (_, when), (_, f) in table.items():
            totals.setdefault(when, _Figures()).add(f)
    return {"agencies": [{"organ": k[0], "member": table[k][0], "period": k[1], **table[k][1].as_dict()}
                         for k in sorted(table)],
            "totals": [{"period": k, **totals[k].as_dict()} for k in sorted(totals)]}


def trace(conn: Connection, document: str) -> dict[str, Any] | None:
    """One document as the console shows it: its facts, each recipient's copy and every message
    (the package's copies and the statuses) in the order accepted, with their deliveries."""
    facts = load(conn, documents.c.id == document)
    if not facts:
        return None
    doc = facts[0]
    row = conn.execute(sa.select(documents.c.attachments, documents.c.sha256, documents.c.size)
                       .where(documents.c.id == document)).one()
    m = document_messages.c
    messages = conn.execute(sa.select(m.id, m.kind, m.from_organ, m.to_organ, m.member, m.service,
                                      m.status_code, m.state, m.delivery_id, m.created_us, m.fetched_us,
                                      m.confirmed_us, m.sha256, m.size)
                            .where(m.document == document).order_by(m.seq)).all()
    ids = [r.delivery_id for r in messages if r.delivery_id is not None]
    sent = {r.id: r for r in conn.execute(
        sa.select(deliveries.c.id, deliveries.c.state, deliveries.c.attempts, deliveries.c.delivered_us,
                  deliveries.c.response_status).where(deliveries.c.id.in_(ids)))} if ids else {}
    steps = []
    for r in messages:
        d = sent.get(r.delivery_id) if r.delivery_id is not None else None
        steps.append({"id": r.id, "kind": r.kind, "from": r.from_organ, "to": r.to_organ, "member": r.member,
                      "mode": "pull" if r.service is None else "push", "service": r.service,
                      "statusCode": r.status_code, "state": r.state, "created_us": r.created_us,
                      "fetched_us": r.fetched_us, "confirmed_us": r.confirmed_us, "sha256": r.sha256,
                      "size": r.size, "delivery": None if d is None else {
                          "id": d.id, "state": d.state, "attempts": d.attempts,
                          "delivered_us": d.delivered_us, "responseStatus": d.response_status}})
    return {"facts": doc, "attachments": orjson.loads(row.attachments), "sha256": row.sha256,
            "size": row.size, "messages": steps}
