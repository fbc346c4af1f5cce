"""Official documents (edXML): the list with filters and the KPIs per agency, and one document's trace.

Read-only, for auditors and operators. What is shown is what the package's header says officially (its
number and notation, type, subject, dates, the organs and their names) and what the gateway did with it
(each recipient's copy, its delivery or pull, the statuses in the order accepted). Minimisation: the
signer is shown by position only, and the staff named in status messages (StaffInfo) and their
descriptions are never read; the attachments appear by name, type, size and digest, never opened.
"""

from __future__ import annotations

from typing import Any

from starlette.responses import Response

from gateway.console.logquery import local_text
from gateway.console.web import Ctx, PageRoute
from gateway.delivery.model import now_us
from gateway.delivery.routes import moment
from gateway.documents.stats import DOC_OUTCOMES, FINAL, DocumentFacts, due_end_us
from gateway.errors import InvalidRequest

__all__ = ["KPI_PERIODS", "ROUTES", "STATUS_CODES"]

KPI_PERIODS = ("day", "month", "quarter", "year", "all")
STATUS_CODES = ("01", "02", "03", "04", "05", "06", "13", "15", "16")  # with a label each
PAGE = 100


def _when(us: int | None) -> str:
    return "–" if us is None else local_text(us)


def _names(ctx: Ctx) -> dict[str, str]:
    return {m.id: m.name or m.id for m in ctx.config.members}


def _listed(doc: DocumentFacts) -> dict[str, Any]:
    return {"id": doc.id, "document_id": doc.document_id, "sender": doc.sender_organ,
            "sender_name": doc.header.sender_name, "subject": doc.header.subject, "code": doc.header.code,
            "recipients": [c.organ for c in doc.copies], "accepted": _when(doc.created_us),
            "due": doc.header.due_date.isoformat() if doc.header.due_date else "–", "outcome": doc.outcome}


def documents(ctx: Ctx) -> Response:
    q = ctx.query
    organ = q.get("organ", "").replace("\x00", "").strip()[:255]
    outcome = q.get("outcome", "")
    outcome = outcome if outcome in DOC_OUTCOMES else ""
    period = q.get("period", "month")
    period = period if period in KPI_PERIODS else "month"
    start, end = q.get("from", "").strip(), q.get("to", "").strip()
    try:
        first, last = moment(start, "from"), moment(end, "to")
    except InvalidRequest:
        ctx.note.error = "Client.InvalidRequest"
        return ctx.error(400, "documents.bad_date")
    ctx.note.purpose = " ".join(f"{k}={v}" for k, v in (("organ", organ), ("outcome", outcome),
                                                          ("from", start), ("to", end), ("period", period))
                                if v)
    found = ctx.data.document_list(organ=organ or None, outcome=outcome or None, start=first, end=last,
                                   limit=PAGE)
    kpis = ctx.data.document_kpis(period, first, last, organ or None, now_us())
    return ctx.render("documents.html", items=[_listed(d) for d in found], organ=organ, outcome=outcome,
                      outcomes=DOC_OUTCOMES, period=period, periods=KPI_PERIODS, start=start, end=end,
                      agencies=kpis["agencies"], totals=kpis["totals"], member_names=_names(ctx))


def document(ctx: Ctx) -> Response:
    doc_id = ctx.request.path_params["doc_id"]
    ctx.note.purpose = f"document {doc_id}"
    found = ctx.data.document_trace(doc_id) if len(doc_id) <= 32 and "\x00" not in doc_id else None
    if found is None:
        ctx.note.error = "Client.NotFound"
        return ctx.error(404, "documents.not_found")
    facts: DocumentFacts = found["facts"]
    header = facts.header
    names = dict(header.organ_names)
    due = due_end_us(header.due_date) if header.due_date is not None else None
    now = now_us()
    copies = []
    for c in facts.copies:
        on_time = None if due is None or c.answered_us is None else c.answered_us < due
        copies.append({"organ": c.organ, "name": names.get(c.organ, ""), "member": c.member, "mode": c.mode,
                       "outcome": c.outcome, "answer": c.answer, "answered": _when(c.answered_us),
                       "on_time": on_time,
                       "overdue": due is not None and c.answered_us is None and due <= now})
    messages = [{**m, "at": _when(m["created_us"]), "fetched": _when(m["fetched_us"]),
                 "confirmed": _when(m["confirmed_us"]), "known_code": m["statusCode"] in STATUS_CODES,
                 "delivered": _when(m["delivery"]["delivered_us"]) if m["delivery"] else "–"}
                for m in found["messages"]]
    summary = {"id": facts.id, "document_id": facts.document_id, "sender": facts.sender_organ,
               "sender_member": facts.sender_member, "accepted": _when(facts.created_us),
               "outcome": facts.outcome, "sha256": found["sha256"], "size": found["size"],
               **header.as_dict()}
    return ctx.render("document.html", doc=summary, copies=copies, messages=messages,
                      attachments=found["attachments"], member_names=_names(ctx), final=FINAL)


ROUTES = (
    PageRoute("/documents", documents, "documents", "documents"),
    PageRoute("/documents/{doc_id}", document, "documents", "documents.show"),
)
