"""The exchange log: search, its CSV and JSON Lines exports, one entry with its proof, and the
checkpoints with the consistency between any two.

A personal id typed into the search form is hashed at the form handler (``log_search``) with the
gateway's subject key, and only the hash goes on: into the redirect URL, the search, the audit
record. The clear id is never logged, stored or put in a URL.
"""

from __future__ import annotations

import time

from starlette.responses import RedirectResponse, Response

from gateway.bounds import index
from gateway.console import logquery
from gateway.console.logquery import Filters
from gateway.console.web import Ctx, PageRoute, csv_stream, json_block, jsonl_stream, streaming

__all__ = ["ROUTES"]


def log_page(ctx: Ctx) -> Response:
    filters = Filters.from_query(ctx.query)
    rows, next_before = logquery.search(ctx.data.engine, filters)
    ctx.note.purpose = filters.describe() or "all"
    if filters.subject:
        ctx.note.subjects = (filters.subject,)
    here = f"{ctx.base}/log"
    return ctx.render(
        "log.html", filters=filters, rows=rows, outcomes=logquery.OUTCOMES,
        services=[s.id for s in ctx.config.services],
        next_url=filters.url(here, before=next_before) if next_before is not None else None,
        first_url=filters.url(here, before=None) if filters.before is not None else None,
        csv_url=filters.url(f"{here}/export.csv", before=None),
        jsonl_url=filters.url(f"{here}/export.jsonl", before=None))


def log_search(ctx: Ctx) -> Response:
    """The search form: the personal id, if any, is hashed here and only its hash goes on."""
    form = dict(ctx.form)
    personal_id = form.pop("personal_id", "").strip()
    if personal_id:
        form["subject"] = ctx.data.subjects(personal_id)
    del personal_id
    filters = Filters.from_query(form)
    return RedirectResponse(filters.url(f"{ctx.base}/log", before=None), 303)


def _export(ctx: Ctx, kind: str) -> Response:
    filters = Filters.from_query(ctx.query)
    ctx.note.purpose = f"export {kind}: {filters.describe() or 'all'}"
    if filters.subject:
        ctx.note.subjects = (filters.subject,)
    rows = logquery.export_rows(ctx.data.engine, filters, size=ctx.data.audit.log.size())
    stamp = time.strftime("%Y%m%d-%H%M%S")
    if kind == "csv":
        return streaming(csv_stream(rows), "text/csv; charset=utf-8", f"lienthong-audit-{stamp}.csv")
    return streaming(jsonl_stream(rows), "application/x-ndjson", f"lienthong-audit-{stamp}.jsonl")


def export_csv(ctx: Ctx) -> Response:
    return _export(ctx, "csv")


def export_jsonl(ctx: Ctx) -> Response:
    return _export(ctx, "jsonl")


def entry(ctx: Ctx) -> Response:
    data = ctx.data
    idx = index(ctx.request.path_params["idx"])  # not Starlette's int: it fails on 4,301 digits
    row = data.entry(idx) if idx is not None else None
    ctx.note.purpose = f"entry {idx}"
    if row is None:
        return ctx.error(404, "error.no_entry")
    doc = row.doc
    ctx.note.subjects = tuple(doc.get("subjects") or ())
    bundle = data.proof(row)
    same = [logquery.Row.of(leaf) for leaf in data.audit.log.by_exchange(row.exchange_id)
            if leaf.idx != row.idx]
    return ctx.render("entry.html", row=row, doc=doc, bundle=bundle, proof_json=json_block(bundle.as_json()),
                      rule=data.rule(row.rule), same=same, leaf_text=row.leaf.decode("utf-8", "replace"))


def checkpoints(ctx: Ctx) -> Response:
    data = ctx.data
    views = data.checkpoints()
    consistency = None
    first, second = ctx.query.get("first", ""), ctx.query.get("second", "")
    size1, size2 = index(first), index(second)
    if size1 is not None and size2 is not None:
        consistency = data.consistency(size1, size2)
        ctx.note.purpose = f"consistency {first} {second}"
    return ctx.render("checkpoints.html", checkpoints=views, vkey=data.vkey, origin=data.audit.origin,
                      consistency=consistency, first=first, second=second)


ROUTES = (
    PageRoute("/log", log_page, "log", "log.search"),
    PageRoute("/log", log_search, "log", None, ("POST",)),
    PageRoute("/log/export.csv", export_csv, "log", "log.export.csv"),
    PageRoute("/log/export.jsonl", export_jsonl, "log", "log.export.jsonl"),
    PageRoute("/log/{idx}", entry, "log", "log.entry"),  # after the exports, which it would match
    PageRoute("/checkpoints", checkpoints, "checkpoints", "checkpoints"),
)
