"""HTTP views of the delivery queue: deliveries, the dossier KPIs and Prometheus metrics.

``GET /deliveries/{id}`` answers the client that made the delivery, or an operator (a token with
the ``operator`` scope); listing, retrying, cancelling and replaying are for operators, the KPIs for
operators and holders of the ``stats`` scope. ``GET /metrics`` is Prometheus' text format: the
exchange, latency and audit instruments (gateway/metrics.py) and gauges computed from the database at
scrape time, so every process answers for the whole queue; it names services, clients and their
queues, so it too needs a token, with the ``metrics`` scope.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Request
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from gateway.bounds import MAX_INDEX, TEXT
from gateway.delivery import stats
from gateway.delivery.messages import portal_time
from gateway.delivery.store import STATES, DeliveryStore
from gateway.errors import InvalidRequest, UnknownService
from gateway.spine import act

__all__ = ["METRICS", "OPERATOR", "STATS", "QueueCollector", "router"]

OPERATOR = "operator"
STATS = "stats"
METRICS = "metrics"

router = APIRouter(tags=["Deliveries"])
Text = Annotated[str | None, Query(pattern=TEXT)]
DeliveryId = Annotated[str, Path(pattern=TEXT)]


def _runtime(request: Request) -> Any:
    return request.app.state.runtime


def _store(request: Request) -> DeliveryStore:
    return _runtime(request).deliveries.store  # type: ignore[no-any-return]


@router.get("/deliveries/{delivery_id}", summary="One delivery: state, attempts, last error, the "
            "upstream's answer")
def show(delivery_id: DeliveryId, request: Request) -> JSONResponse:
    with act(request, "deliveries.show", purpose=delivery_id) as a:  # any client: its own only
        found = _store(request).get(delivery_id)
        if found is None or (found["client"] != a.token.client_id and OPERATOR not in a.token.scopes):
            raise _NotFound(f"no delivery {delivery_id} that this client may see")
        return a.done(JSONResponse(found))


@router.get("/deliveries", summary="Deliveries, oldest first (operators)")
def listing(request: Request, state: str | None = None, service: Text = None, dossier: Text = None,
            flagged: bool = False,
            after: Annotated[int, Query(ge=0, le=MAX_INDEX)] = 0,
            limit: Annotated[int, Query(ge=1, le=1000)] = 100) -> JSONResponse:
    with act(request, "deliveries.list", OPERATOR, purpose=str(request.query_params) or None) as a:
        if state is not None and state not in STATES:
            raise InvalidRequest(f"state must be one of {', '.join(STATES)}")
        items = _store(request).find(state=state, service=service, dossier=dossier, flagged=flagged,
                                     after=after, limit=limit)
        more = len(items) == limit
        return a.done(JSONResponse({"items": items, "next": items[-1]["seq"] if more else None}))


@router.post("/deliveries/{delivery_id}/retry", summary="Queue a dead delivery again, due now")
def retry(delivery_id: DeliveryId, request: Request) -> JSONResponse:
    with act(request, "deliveries.retry", OPERATOR, purpose=delivery_id) as a:
        count = _store(request).retry(ids=[delivery_id], state=None)
        _runtime(request).deliveries.poke()
        return a.done(JSONResponse({"retried": count}))


@router.post("/deliveries/{delivery_id}/cancel", summary="Give up on a pending or dead delivery")
def cancel(delivery_id: DeliveryId, request: Request) -> JSONResponse:
    with act(request, "deliveries.cancel", OPERATOR, purpose=delivery_id) as a:
        return a.done(JSONResponse({"cancelled": _store(request).cancel(ids=[delivery_id])}))


@router.post("/deliveries/{delivery_id}/replay", summary="Send a delivered (or dead) delivery again, "
             "as a new delivery")
def replay(delivery_id: DeliveryId, request: Request) -> JSONResponse:
    with act(request, "deliveries.replay", OPERATOR, purpose=delivery_id) as a:
        created = _store(request).replay(ids=[delivery_id])
        _runtime(request).deliveries.poke()
        return a.done(JSONResponse({"created": created}, status_code=202 if created else 200))


StatsAgency = Annotated[str | None, Query(pattern=TEXT, description="an agency code, e.g. "
                                         "000.00.00.H60; with rollup, the current agency it rolls up "
                                         "into and every former agency that rolls up there")]
Period = Annotated[str, Query(description="month, quarter, year or all (Vietnamese time)")]
From = Annotated[str | None, Query(alias="from", description="from this date (2026-06, 2026-06-01, "
                                   "yyyyMMddHHmmss), inclusive")]
To = Annotated[str | None, Query(alias="to", description="to this date, exclusive")]
Rollup = Annotated[bool, Query(description="roll former agencies' figures up into the agency current "
                               "today that took their work over: a row per successor and period, "
                               "each naming the agencies it includes; without it, rows stay per "
                               "recorded agency, a former agency's marked former with its successor")]


@router.get("/stats/dossiers", tags=["Statistics"], summary="KPIs per agency and period: received, "
            "share online, resolved, share resolved on time")
def dossier_stats(request: Request, agency: StatsAgency = None, period: Period = "month",
                  start: From = None, end: To = None, rollup: Rollup = False) -> JSONResponse:
    with act(request, "stats.dossiers", OPERATOR, STATS, purpose=str(request.query_params) or None) as a:
        if period not in stats.PERIODS:
            raise InvalidRequest(f"period must be one of {', '.join(stats.PERIODS)}")
        items = stats.report(_store(request).reader, agency=agency, period=period,
                             start=moment(start, "from"), end=moment(end, "to"), rollup=rollup,
                             agencies=_runtime(request).config.agencies)
        return a.done(JSONResponse({"period": period, "from": start, "to": end, "rollup": rollup,
                                    "items": items}))


def moment(value: str | None, name: str) -> str | None:
    """``2026-06``, ``2026-06-01``, an ISO date-time or ``yyyyMMddHHmmss`` as a portal moment."""
    if value is None or value == "":
        return None
    text = value.strip()
    if len(text) == 4 and text.isdigit():
        text += "-01-01"
    elif len(text) == 7 and text[4] == "-":
        text += "-01"
    found = portal_time(text)
    if found is None:
        raise InvalidRequest(f"{name}: {value!r} is not a date (2026-06, 2026-06-01, yyyyMMddHHmmss)")
    return found


@router.get("/metrics", tags=["Operations"], summary="Prometheus metrics (scope metrics)",
            response_class=PlainTextResponse)
def metrics(request: Request) -> Response:
    from gateway.metrics import CONTENT_TYPE, StateCollector, scrape

    with act(request, "metrics", METRICS) as a:
        runtime = _runtime(request)
        body = scrape(QueueCollector(_store(request)),
                      StateCollector(runtime.engine, flows=runtime.flows is not None))
        return a.done(Response(body, media_type=CONTENT_TYPE))


class QueueCollector(Collector):
    """Queue depth, the age of the oldest pending delivery, attempts and dead letters, read from the
    database when scraped."""

    def __init__(self, store: DeliveryStore) -> None:
        self.store = store

    def collect(self) -> Iterator[Metric]:
        depth = GaugeMetricFamily("lienthong_deliveries", "Deliveries by service and state",
                                  labels=["service", "state"])
        attempts = GaugeMetricFamily("lienthong_delivery_attempts", "Attempts made, by service and "
                                     "the deliveries' state", labels=["service", "state"])
        dead = GaugeMetricFamily("lienthong_delivery_dead_letters", "Dead deliveries, by service",
                                 labels=["service"])
        for row in self.store.counts():
            depth.add_metric([row["service"], row["state"]], row["n"])
            attempts.add_metric([row["service"], row["state"]], row["attempts"])
            if row["state"] == "dead":
                dead.add_metric([row["service"]], row["n"])
        oldest = self.store.oldest_pending_us()
        age = GaugeMetricFamily("lienthong_delivery_oldest_pending_seconds",
                                "Age of the oldest pending delivery (0 when none)")
        age.add_metric([], max(0.0, time.time() - oldest / 1e6) if oldest else 0.0)
        yield from (depth, attempts, dead, age)


class _NotFound(UnknownService):
    title = "Not found"
    code = "Client.NotFound"
    type_slug = "not-found"


