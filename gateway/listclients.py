"""``GET /listClients``: X-Road's list of service providers (PR-META section 2), from the catalog.

A plain ASGI app beside the FastAPI one, so that the call is authenticated and audited through the
pipeline (``Pipeline.answer``) like every other: protocol ``rest``, service ``listClients``. The
``clientList`` XML by default, PR-META's JSON when the request accepts ``application/json``;
``?xRoadInstance=`` picks the instance (this gateway's by default).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from urllib.parse import parse_qs

import orjson

from gateway.config import Config
from gateway.connector import Reply
from gateway.errors import MethodNotAllowed
from gateway.exchange import Exchange, Pipeline, Rendered, Result
from gateway.ids import new_id
from gateway.metadata import answered, client_list, client_list_json, client_list_xml
from gateway.problems import PROBLEM_TYPE, problem_bytes
from gateway.rest import Receive, Scope, Send, send_response

__all__ = ["LIST_CLIENTS", "ListClients"]

LIST_CLIENTS = "/listClients"


class ListClients:
    """``GET /listClients``, with a bearer token like any exchange."""

    def __init__(self, pipeline_of: Callable[[], Pipeline]) -> None:
        self._pipeline_of = pipeline_of

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        query = scope.get("query_string", b"").decode("latin-1")
        exchange = Exchange(id=new_id(), protocol="rest", received_us=time.time_ns() // 1000,
                            method=scope["method"], service_id="listClients", query=query,
                            authorization=headers.get("authorization"))
        pipeline = self._pipeline_of()
        as_json = "application/json" in headers.get("accept", "")

        def answer(ctx: Result) -> Result:
            return answered(ctx, "listClients", lambda: _list_clients(pipeline.config, ctx, as_json))

        await send_response(send, await pipeline.answer(exchange, answer, _render_list))


def _list_clients(config: Config, ctx: Result, as_json: bool) -> Reply:
    if ctx.exchange.method not in ("GET", "HEAD"):
        raise MethodNotAllowed("listClients is read with GET", headers={"Allow": "GET"})
    instance = (parse_qs(ctx.exchange.query).get("xRoadInstance") or [""])[0] or None
    items = client_list(config, instance)
    if as_json:
        return Reply(client_list_json(items))
    return Reply(client_list_xml(items), content_type="text/xml; charset=utf-8")


def _render_list(result: Result) -> Rendered:
    ex = result.exchange
    headers = [("x-road-id", ex.id)]
    if result.error is not None:
        err = result.error
        headers += [("content-type", PROBLEM_TYPE), ("x-road-error", err.code),
                    *((k.lower(), v) for k, v in err.headers.items())]
        return Rendered(err.status, headers, problem_bytes(err, instance=LIST_CLIENTS, exchange_id=ex.id))
    reply = result.reply
    assert reply is not None
    body = reply.payload if isinstance(reply.payload, bytes) else orjson.dumps(reply.payload)
    return Rendered(reply.status, [*headers, ("content-type", reply.content_type)], body)
