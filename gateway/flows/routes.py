"""HTTP views of the joint procedures: ``GET /flows/{id}``, ``GET /flows?dossier=CODE`` and their KPIs,
``GET /stats/flows`` (operators and holders of the ``stats`` scope, as ``/stats/dossiers``).

A flow is shown to the client that filed it (the one-stop system, with the ``Location`` its 202
gave) and to operators (a token with the ``operator`` scope); any other client gets 404, as if it
did not exist. Each call runs on the spine (gateway/spine.py): authenticated, audited.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query, Request
from fastapi.responses import JSONResponse

from gateway.bounds import TEXT
from gateway.delivery.model import now_us
from gateway.delivery.routes import OPERATOR, STATS, moment
from gateway.errors import InvalidRequest, UnknownService
from gateway.flows import stats
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
        engine = _engine(request)
        return a.done(JSONResponse({**flow.view(), "notifications": engine.notifications(flow)}))


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


Period = Annotated[str, Query(description="day, month, quarter, year or all (Vietnamese time)")]
From = Annotated[str | None, Query(alias="from", description="from this date (2026-06, 2026-06-01, "
                                   "yyyyMMddHHmmss), inclusive")]
To = Annotated[str | None, Query(alias="to", description="to this date, exclusive")]
FlowName = Annotated[str | None, Query(pattern=TEXT, description="a flow kind (khai-sinh-3-trong-1)")]
Agency = Annotated[str | None, Query(pattern=TEXT, description="an agency (a member id, "
                                     "VN/GOV/000.00.00.G15): its steps, and the flows that sent it one")]


@router.get("/stats/flows", tags=["Statistics"], summary="Joint procedures' KPIs per flow kind, step "
            "and agency: started, completed, rejected, overdue, median and p90 times, share within "
            "the legal limit")
def flow_stats(request: Request, period: Period = "month", start: From = None, end: To = None,
               flow: FlowName = None, agency: Agency = None) -> JSONResponse:
    with act(request, "stats.flows", OPERATOR, STATS, purpose=str(request.query_params) or None) as a:
        if period not in stats.PERIODS:
            raise InvalidRequest(f"period must be one of {', '.join(stats.PERIODS)}")
        runtime = request.app.state.runtime
        engine: FlowEngine | None = runtime.flows
        limits = {n: f.legal_limit for n, f in engine.flows.flows.items()} if engine is not None else {}
        found = stats.report(runtime.engine, period=period, start=moment(start, "from"),
                             end=moment(end, "to"), flow=flow, agency=agency, limits=limits,
                             now_us=now_us())
        return a.done(JSONResponse({"period": period, "from": start, "to": end, **found}))
