"""The data-subject report: who accessed one person's data, when, why and with what outcome, ready to
print. The person is named by the keyed hash of their personal id, made at the form handler
(``subject_lookup``); the clear id goes no further than that function.
"""

from __future__ import annotations

import time
from collections import Counter
from typing import Any

from starlette.responses import RedirectResponse, Response

from gateway.audit.query import signature_summary
from gateway.console import logquery
from gateway.console.labels import client_names
from gateway.console.logquery import Filters
from gateway.console.web import Ctx, PageRoute

__all__ = ["ROUTES"]

REPORT_LIMIT = 5000  # accesses listed: a printable report, not an export


def subject_form(ctx: Ctx) -> Response:
    return ctx.render("subject_form.html")


def subject_lookup(ctx: Ctx) -> Response:
    personal_id = ctx.form.get("personal_id", "").strip()
    if not personal_id:
        return RedirectResponse(f"{ctx.base}/subjects", 303)
    subject = ctx.data.subjects(personal_id)
    del personal_id
    return RedirectResponse(f"{ctx.base}/subjects/{subject}", 303)


def subject_report(ctx: Ctx) -> Response:
    subject = ctx.request.path_params["subject"].lower()
    filters = Filters.from_query({"subject": subject})
    if not filters.subject:
        return ctx.error(404, "error.no_subject")
    ctx.note.purpose, ctx.note.subjects = "data-subject report", (subject,)
    data = ctx.data
    names = client_names(data.config)
    disclosing = {r.name for r in data.rules if r.disclose_official}
    accesses: list[dict[str, Any]] = []
    for found in logquery.export_rows(data.engine, filters, limit=REPORT_LIMIT):
        record = found.record
        disclose = record.get("rule") in disclosing
        accesses.append({"index": found.index, "time": logquery.local_from_leaf(record.get("time")),
                         "organisation": names.get(record.get("client") or "", record.get("client")),
                         "official": record.get("userId") if disclose else None,
                         "withheld": bool(record.get("userId")) and not disclose,
                         "service": record.get("service") or record.get("operation"),
                         "purpose": record.get("purpose"), "outcome": record.get("outcome"),
                         "signature": signature_summary(record)})
    counts = Counter(a["organisation"] for a in accesses)
    signed = any(a["signature"] for a in accesses)  # the column only where a verdict exists
    return ctx.render("subject_report.html", subject=subject, accesses=accesses, counts=counts.most_common(),
                      signed=signed,
                      generated=logquery.local_text(time.time_ns() // 1000))


ROUTES = (
    PageRoute("/subjects", subject_form, "subjects", None),
    PageRoute("/subjects", subject_lookup, "subjects", None, ("POST",)),
    PageRoute("/subjects/{subject}", subject_report, "subjects", "subjects.report"),
)
