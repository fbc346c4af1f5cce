"""HTTP views of the joint procedures: ``GET /flows/{id}`` and ``GET /flows?dossier=CODE``.

A flow is shown to the client that filed it (the one-stop system, with the ``Location`` its 202
gave) and to operators (a token with the ``operator`` scope); any other client gets 404, as if it
did not exist. Each call runs on the spine (gateway/spine.py): authenticated, audited.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query, Request
from fastapi.responses import JSONResponse

from gateway.bounds import TEXT
from gateway.delivery.routes import OPERATOR
from gateway.errors import InvalidRequest, UnknownService
from gateway.flows.engine import FlowEngine
from gateway.flows.store import FlowRow
from gateway.spine import act

__all__ = ["router"]

STATES = ("running", "waiting", "completed", "rejected", "failed")
FlowId = Annotated[str, Path(pattern=TEXT)]
Text = Annotated[str | None, Query(pattern=TEXT)]

router = APIRouter(tags=["Joint procedures"])


class _NotFound(UnknownService):
    title = "Not found"
    code = "Client.NotFound"
    type_slug = "not-found"


def _engine(request: Request) -> FlowEngine:
    engine: FlowEngine | None = request.app.state.runtime.flows
    if engine is None:
        raise _NotFound("this gateway runs no joint procedures")
    return engine


def _may_see(flow: FlowRow, client: str, scopes: frozenset[str]) -> bool:
    return flow.client == client or OPERATOR in scopes


@router.get("/flows/{flow_id}", summary="One joint procedure: its state and every step's")
def show(flow_id: FlowId, request: Request) -> JSONResponse:
    with act(request, "flows.show", purpose=flow_id) as a:
        flow = _engine(request).store.get(flow_id)
        if flow is None or not _may_see(flow, a.token.client_id, a.token.scopes):
            raise _NotFound(f"no flow {flow_id} that this client may see")
        return a.done(JSONResponse(flow.view()))


@router.get("/flows", summary="Joint procedures by dossier code or state (the filer's own; "
            "operators: all)")
def listing(request: Request, dossier: Text = None, state: str | None = None,
            limit: Annotated[int, Query(ge=1, le=1000)] = 100) -> JSONResponse:
    with act(request, "flows.list", purpose=str(request.query_params) or None) as a:
        if state is not None and state not in STATES:
            raise InvalidRequest(f"state must be one of {', '.join(STATES)}")
        if dossier is None and OPERATOR not in a.token.scopes:
            raise InvalidRequest("name the dossier (?dossier=CODE); listing every flow is for operators")
        found = _engine(request).store.find(dossier=dossier, state=state, limit=limit)
        items = [f.view() for f in found if _may_see(f, a.token.client_id, a.token.scopes)]
        return a.done(JSONResponse({"items": items}))
