"""``GET /stats/documents``: the document exchange's KPIs per agency (OrganId and member) and period,
for operators and holders of the ``stats`` scope (as ``/stats/flows``); docs/documents.md, "KPIs"."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse

from gateway.bounds import TEXT
from gateway.delivery.model import now_us
from gateway.delivery.routes import OPERATOR, STATS, moment
from gateway.documents import stats
from gateway.errors import InvalidRequest
from gateway.spine import act

__all__ = ["router"]

router = APIRouter(tags=["Statistics"])

Period = Annotated[str, Query(description="day, month, quarter, year or all (Vietnamese time)")]
From = Annotated[str | None, Query(alias="from", description="from this date (2026-11, 2026-11-01, "
                                   "yyyyMMddHHmmss), inclusive")]
To = Annotated[str | None, Query(alias="to", description="to this date, exclusive")]
Agency = Annotated[str | None, Query(pattern=TEXT, description="an organ (OrganId, 000.00.00.H60) or a "
                                     "member (VN/GOV/000.00.00.H60): its documents sent and received")]


@router.get("/stats/documents", summary="Official documents' KPIs per agency and period: sent, "
            "received, answered on time, share exchanged electronically")
def document_stats(request: Request, period: Period = "month", start: From = None, end: To = None,
                   agency: Agency = None) -> JSONResponse:
    with act(request, "stats.documents", OPERATOR, STATS, purpose=str(request.query_params) or None) as a:
        if period not in stats.PERIODS:
            raise InvalidRequest(f"period must be one of {', '.join(stats.PERIODS)}")
        found = stats.report(request.app.state.runtime.engine, period=period, start=moment(start, "from"),
                             end=moment(end, "to"), agency=agency, now_us=now_us())
        return a.done(JSONResponse({"period": period, "from": start, "to": end, **found}))
