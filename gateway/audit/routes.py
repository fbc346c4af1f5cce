"""The auditor's view of the audit log, under ``/audit``.

Every route needs a bearer token from the gateway's token endpoint: ``audit.read`` for checkpoints,
entries, proofs and exports; ``audit.subject`` for a data subject's access report. Answers carry
hashes and roots in standard base64, as checkpoints do; refusals are problem+json.

An auditor does not have to trust these answers: a checkpoint is signed (check it with the log's
verifier key, ``verifierKey``, or for one signed before a key rotation a ``retiredVerifierKeys``
one), an entry comes with its inclusion proof to a signed checkpoint, and two checkpoints with a
consistency proof; :mod:`gateway.audit.merkle` verifies both.
"""

from __future__ import annotations

import base64
import csv
import io
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

import orjson
from fastapi import APIRouter, Path, Query, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse
from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool

from gateway.audit import query
from gateway.audit.checkpointer import StoredCheckpoint
from gateway.audit.query import Entry, Filters
from gateway.audit.service import AuditService
from gateway.bounds import MAX_INDEX, TEXT
from gateway.errors import ClientError, InvalidRequest
from gateway.spine import act

__all__ = ["READ", "SUBJECT", "router"]

READ = "audit.read"
SUBJECT = "audit.subject"

router = APIRouter(prefix="/audit", tags=["Audit"])


class NotFound(ClientError):
    status = 404
    title = "Not found"
    code = "Client.NotFound"
    type_slug = "not-found"


def _service(request: Request) -> AuditService:
    return request.app.state.audit  # type: ignore[no-any-return]


def _about(request: Request) -> str | None:
    """What a read asked for, for its audit record: the query, less any personal id in it."""
    kept = [f"{k}={v}" for k, v in request.query_params.multi_items() if k != "subject"]
    return "&".join(kept) or None


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _checkpoint_json(cp: StoredCheckpoint, service: AuditService) -> dict[str, Any]:
    return {"origin": service.origin, "size": cp.size, "root": _b64(cp.root), "note": cp.note.decode(),
            "verifierKey": service.checkpointer.vkey,
            "retiredVerifierKeys": [r.as_json() for r in service.retired]}


def _checkpoint_answer(request: Request, cp: StoredCheckpoint, service: AuditService) -> Response:
    if "text/plain" in request.headers.get("accept", ""):
        return Response(cp.note, media_type="text/plain; charset=utf-8")
    return JSONResponse(_checkpoint_json(cp, service))


# ------------------------------------------------------------------------------------ checkpoints

@router.get("/checkpoint", summary="The latest signed checkpoint",
            description="The newest checkpoint (C2SP signed note) as JSON, or the note itself with "
                        "`Accept: text/plain`. One is made if the log has none yet.")
def latest_checkpoint(request: Request) -> Response:
    with act(request, "audit.checkpoint", READ) as a:
        service = _service(request)
        cp = service.checkpointer.latest() or service.checkpointer.make()
        return a.done(_checkpoint_answer(request, cp, service))


@router.post("/checkpoint", summary="Sign a checkpoint of the log as it is now",
             description="Makes a checkpoint if the log grew since the last one, and returns the latest.")
def new_checkpoint(request: Request) -> Response:
    with act(request, "audit.checkpoint.new", READ) as a:
        service = _service(request)
        cp = service.checkpointer.make()
        a.purpose = f"size={cp.size}"
        return a.done(_checkpoint_answer(request, cp, service))


@router.get("/checkpoints", summary="Stored checkpoints, oldest first")
def checkpoints(request: Request, after: Annotated[int, Query(ge=-1, le=MAX_INDEX)] = -1,
                limit: Annotated[int, Query(ge=1, le=1000)] = 100) -> JSONResponse:
    with act(request, "audit.checkpoints", READ, purpose=_about(request)) as a:
        service = _service(request)
        items = [c for c in service.checkpointer.all() if c.size > after][:limit]
        return a.done(JSONResponse({"items": [_checkpoint_json(c, service) for c in items],
                                    "next": items[-1].size if len(items) == limit else None}))


# ---------------------------------------------------------------------------------------- entries

def _us(when: datetime | None) -> int | None:
    if when is None:
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)  # a time without an offset is read as UTC
    return int(when.timestamp() * 1_000_000)


def _filters(service: AuditService, *, since: datetime | None, until: datetime | None,
             client: str | None, service_id: str | None, operation: str | None,
             outcome: str | None, official: str | None, purpose: str | None,
             subject: str | None) -> Filters:
    return Filters(since_us=_us(since), until_us=_us(until), client=client, service=service_id,
                   operation=operation, outcome=outcome, official=official, purpose=purpose,
                   subject=service.subjects(subject) if subject else None)


Since = Annotated[datetime | None, Query(description="from this time (RFC 3339; UTC without an offset)")]
Until = Annotated[datetime | None, Query(description="before this time")]
Text = Annotated[str | None, Query(pattern=TEXT)]
ServiceQ = Annotated[str | None, Query(alias="service", pattern=TEXT, description="service id")]
Outcome = Annotated[Literal["ok", "refused", "failed"] | None, Query()]
Official = Annotated[str | None, Query(pattern=TEXT, description="the acting official (X-Road-UserId)")]
Purpose = Annotated[str | None, Query(pattern=TEXT, description="the purpose (X-Road-Issue), e.g. a "
                                                                "dossier code")]
Subject = Annotated[str | None, Query(description="a data subject's personal id; it is hashed with "
                                                  "the gateway's key on arrival, never stored")]


@router.get("/entries", summary="Leaves matching filters, in index order",
            description="Keyset pages: pass the answer's `next` as `after` for the next page.")
def entries(request: Request, since: Since = None, until: Until = None, client: Text = None,
            service_id: ServiceQ = None, operation: Text = None, outcome: Outcome = None,
            official: Official = None, purpose: Purpose = None, subject: Subject = None,
            after: Annotated[int | None, Query(ge=0, le=MAX_INDEX)] = None,
            limit: Annotated[int, Query(ge=1, le=query.MAX_PAGE)] = 100) -> JSONResponse:
    with act(request, "audit.entries", READ, purpose=_about(request)) as a:
        service = _service(request)
        filters = _filters(service, since=since, until=until, client=client, service_id=service_id,
                           operation=operation, outcome=outcome, official=official, purpose=purpose,
                           subject=subject)
        a.subjects = (filters.subject,) if filters.subject else ()
        found = query.search(service.log.engine, filters, after=after, limit=limit)
        return a.done(JSONResponse({"items": [e.as_json() for e in found],
                                    "next": found[-1].index if len(found) == limit else None}))


@router.get("/entries/{index}", summary="One leaf with its inclusion proof to a signed checkpoint",
            description="`checkpoint` names a stored checkpoint by its tree size; by default the "
                        "latest, or a new one if the latest does not include the leaf yet.")
def entry(request: Request, index: Annotated[int, Path(ge=0, le=MAX_INDEX)],
          checkpoint: Annotated[int | None, Query(ge=1, le=MAX_INDEX)] = None) -> JSONResponse:
    with act(request, "audit.entry", READ, purpose=f"index={index}") as a:
        service = _service(request)
        found = query.entry(service.log.engine, index)
        if found is None:
            raise NotFound(f"the log has no leaf {index}")
        if checkpoint is None:
            cp = service.checkpointer.covering(index)
        else:
            stored = service.checkpointer.at(checkpoint)
            if stored is None:
                raise NotFound(f"no checkpoint of size {checkpoint} is stored")
            cp = stored
        if index >= cp.size:
            raise InvalidRequest(f"leaf {index} is not in the checkpoint of size {cp.size}")
        proof = service.log.inclusion_proof(index, cp.size)
        return a.done(JSONResponse({**found.as_json(),
                                    "inclusionProof": {"leafIndex": index, "treeSize": cp.size,
                                                       "hashes": [_b64(h) for h in proof]},
                                    "checkpoint": _checkpoint_json(cp, service)}))


@router.get("/consistency", summary="Consistency proof between two tree sizes",
            description="Proves that the tree of `to` leaves extends the tree of `from` leaves. "
                        "`to` is the latest checkpoint's size by default. Checkpoints stored for "
                        "either size come with the answer.")
def consistency(request: Request, from_: Annotated[int, Query(alias="from", ge=1, le=MAX_INDEX)],
                to: Annotated[int | None, Query(ge=1, le=MAX_INDEX)] = None) -> JSONResponse:
    with act(request, "audit.consistency", READ, purpose=_about(request)) as a:
        service = _service(request)
        if to is None:
            latest = service.checkpointer.latest() or service.checkpointer.make()
            to = latest.size
        size = service.log.size()
        if not from_ <= to <= size:
            raise InvalidRequest(f"need 1 <= from <= to <= {size} (the log's size), got from={from_}, "
                                 f"to={to}")
        proof = service.log.consistency_proof(from_, to)
        ends = {}
        for name, n in (("from", from_), ("to", to)):
            cp = service.checkpointer.at(n)
            ends[name] = {"size": n, "root": _b64(service.log.root_at(n)),
                          "checkpoint": _checkpoint_json(cp, service) if cp else None}
        return a.done(JSONResponse({**ends, "hashes": [_b64(h) for h in proof]}))


# ----------------------------------------------------------------------------------------- export

_CSV_FIELDS = ("index", "time", "exchange_id", "protocol", "client", "official", "represented_party",
               "service", "operation", "purpose", "outcome", "status", "rule", "error", "total_us",
               "upstream_us", "request_sha256", "request_size", "response_sha256", "response_size",
               "subjects", "leaf_hash")


def _csv_row(e: Entry) -> list[Any]:
    r = e.record
    row = [e.index, r.get("time"), r.get("id"), r.get("protocol"), r.get("client"), r.get("userId"),
           r.get("representedParty"), r.get("service"), r.get("operation"), r.get("purpose"),
           r.get("outcome"), r.get("status"), r.get("rule"), r.get("error"),
           (r.get("timings") or {}).get("totalUs"), (r.get("timings") or {}).get("upstreamUs"),
           (r.get("request") or {}).get("sha256"), (r.get("request") or {}).get("size"),
           (r.get("response") or {}).get("sha256"), (r.get("response") or {}).get("size"),
           " ".join(r.get("subjects") or []), e.leaf_hash.hex()]
    return [_spreadsheet_safe(v) for v in row]


def _spreadsheet_safe(value: Any) -> Any:
    """A text cell a spreadsheet would run as a formula gets a leading apostrophe."""
    if isinstance(value, str) and value[:1] in ("=", "+", "-", "@", "\t", "\r"):
        return "'" + value
    return value


@router.get("/export", summary="Stream matching leaves as JSON Lines or CSV",
            description="JSON Lines: one entry per line, as `/audit/entries` gives them (the record "
                        "is the leaf's canonical JSON, parsed). CSV: one row per leaf, the record "
                        "flattened (cells that a spreadsheet would run as formulas start with ').")
def export(request: Request, format: Literal["jsonl", "csv"] = "jsonl", since: Since = None,
           until: Until = None, client: Text = None, service_id: ServiceQ = None,
           operation: Text = None, outcome: Outcome = None, official: Official = None,
           purpose: Purpose = None, subject: Subject = None) -> StreamingResponse:
    with act(request, "audit.export", READ, purpose=_about(request)) as a:
        service = _service(request)
        filters = _filters(service, since=since, until=until, client=client, service_id=service_id,
                           operation=operation, outcome=outcome, official=official, purpose=purpose,
                           subject=subject)
        a.subjects = (filters.subject,) if filters.subject else ()
        pages = query.scan(service.log.engine, filters)
        return a.done(_exported(pages, format))


def _exported(pages: Iterator[list[Entry]], format: str) -> StreamingResponse:

    async def body() -> AsyncIterator[bytes]:
        if format == "csv":
            yield _csv_lines([list(_CSV_FIELDS)])
        while True:
            page = await run_in_threadpool(next, pages, None)
            if page is None:
                return
            if format == "csv":
                yield _csv_lines([_csv_row(e) for e in page])
            else:
                yield b"".join(orjson.dumps(e.as_json()) + b"\n" for e in page)

    media = "text/csv; charset=utf-8" if format == "csv" else "application/jsonl"
    return StreamingResponse(body(), media_type=media, headers={
        "Content-Disposition": f'attachment; filename="audit.{format}"'})


def _csv_lines(rows: list[list[Any]]) -> bytes:
    out = io.StringIO()
    csv.writer(out, lineterminator="\r\n").writerows(rows)
    return out.getvalue().encode("utf-8")


# --------------------------------------------------------------------------------- data subjects

class SubjectQuery(BaseModel):
    model_config = ConfigDict(extra="forbid")

    subject: str = Field(min_length=1, max_length=64, description="the person's personal id "
                         "(số định danh cá nhân); hashed on arrival, never stored or logged")
    since: datetime | None = None
    until: datetime | None = None
    after: int | None = Field(None, ge=0, le=MAX_INDEX)
    limit: int = Field(1000, ge=1, le=query.MAX_PAGE)


@router.post("/subject-report", summary="Who accessed a person's data, when and why",
             description="Every exchange whose data subjects include this person: when, which agency "
                         "and system asked, which service, for what purpose, and the outcome; the "
                         "acting official only where the deciding policy rule discloses it; where the "
                         "request's signature was verified, the verdict (valid, reason, signer). The id "
                         "travels in the body so it never lands in a URL or an access log.")
def subject_report(request: Request, ask: SubjectQuery) -> JSONResponse:
    with act(request, "audit.subject-report", SUBJECT) as a:
        service = _service(request)
        filters = Filters(since_us=_us(ask.since), until_us=_us(ask.until),
                          subject=service.subjects(ask.subject))
        a.subjects = (filters.subject,) if filters.subject else ()
        found = query.search(service.log.engine, filters, after=ask.after, limit=ask.limit)
        disclosing = {r.name for r in request.app.state.runtime.pipeline.policy.rules
                      if r.disclose_official}
        names = _catalog_names(request)
        accesses = [_access(e, names, disclosing) for e in found]
        return a.done(JSONResponse({"accesses": accesses,
                                    "next": found[-1].index if len(found) == ask.limit else None}))


def _catalog_names(request: Request) -> dict[str, str]:
    config = request.app.state.runtime.config
    names: dict[str, str] = {}
    for member in config.members:
        names[member.id] = member.name
        for sub in member.subsystems:
            names[f"{member.id}/{sub.code}"] = sub.name
    for svc in config.services:
        names[svc.id] = svc.description
    return names


def _access(e: Entry, names: dict[str, str], disclosing: set[str]) -> dict[str, Any]:
    r = e.record
    client = r.get("client") or ""
    agency = "/".join(client.split("/")[:3]) if client.count("/") >= 3 else None
    access: dict[str, Any] = {
        "index": e.index,
        "time": r.get("time"),
        "agency": {"id": agency, "name": names.get(agency or "", "")},
        "system": {"id": client or None, "name": names.get(client, "")},
        "service": {"id": r.get("service"), "name": names.get(r.get("service") or "", "")},
        "operation": r.get("operation"),
        "purpose": r.get("purpose"),
        "outcome": r.get("outcome"),
    }
    if r.get("rule") in disclosing:
        access["official"] = r.get("userId")
    signature = query.signature_summary(r)
    if signature is not None:
        access["signature"] = signature
    return access
