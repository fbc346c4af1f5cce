"""The REST entry point, in the X-Road REST protocol's style.

``{METHOD} /r1/{instance}/{class}/{member}/{subsystem}/{service}[/{path}]`` with a bearer token and
the X-Road headers. A plain ASGI app: this is the hot path, so it reads the request itself and skips
the web framework's routing and validation (about a third of the cost here); the rest of the
gateway's endpoints live in the FastAPI app beside it.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import time
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any
from urllib.parse import quote

import orjson

from gateway import metadata
from gateway.arrival import Arrival, exchange_id
from gateway.errors import GatewayError, UnknownService
from gateway.exchange import Exchange, Pipeline, Rendered, Result
from gateway.paths import encode, split_raw
from gateway.problems import PROBLEM_TYPE, problem_bytes
from gateway.spool import Spool, Spooled, body_chunks, streamed

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]

PREFIX = "/r1/"


@functools.lru_cache(maxsize=4096)  # clients call a few paths again and again; bounded for the others
def split_path(raw_path: str) -> tuple[str, str]:
    """``/r1/VN/GOV/code/SUB/Service[/v1]/rest`` (raw, percent-encoded) -> (service id, the rest of
    the path as opaque segments encoded again, gateway/paths.py).

    The service part is five segments, or six when the sixth looks like a version (``v1``). Each
    segment is decoded on its own, so an encoded ``/`` can neither make nor hide a segment."""
    parts = split_raw(raw_path[len(PREFIX):])
    if len(parts) < 5 or not all(parts[:5]):
        raise UnknownService("the path must name a service: /r1/INSTANCE/CLASS/MEMBER/SUBSYSTEM/"
                             "SERVICE[/PATH]")
    n = 6 if len(parts) > 5 and _is_version(parts[5]) else 5
    rest = parts[n:]
    return "/".join(parts[:n]), "" if rest == [""] else encode(rest)


def _is_version(segment: str) -> bool:
    return len(segment) > 1 and segment[0] == "v" and segment[1:].replace(".", "").isdigit()


def request_hash(ex: Exchange) -> str:
    """``X-Road-Request-Hash`` as the X-Road REST message protocol (r1, section 4.3) defines it:
    base64 of SHA-512(SHA-512(headers) + SHA-512(body)), or of SHA-512(headers) when there is no
    body. "Headers" is the request as the gateway read it, serialised like X-Road's ``RestRequest``:
    the method, CRLF, ``/r1/{service id}{path}[?query]``, CRLF, then ``name:value`` CRLF for each
    X-Road header the exchange carries, in this order: x-road-client (as sent), x-road-id (sent or
    generated), x-road-userid, x-road-issue, x-road-represented-party. The audit record keeps the
    body's own SHA-256 (docs/audit.md); this hash binds the answer to the whole request."""
    query = f"?{ex.query}" if ex.query else ""
    lines = [ex.method, f"{PREFIX}{ex.service_id}{ex.path}{query}"]
    for name, value in (("x-road-client", ex.client_header), ("x-road-id", ex.id),
                        ("x-road-userid", ex.user_id), ("x-road-issue", ex.issue),
                        ("x-road-represented-party", ex.represented_party)):
        if value is not None:
            lines.append(f"{name}:{value}")
    digest = hashlib.sha512("".join(f"{line}\r\n" for line in lines).encode("utf-8")).digest()
    if ex.spooled is not None:  # its SHA-512 was computed as it was read (gateway/spool.py)
        digest = hashlib.sha512(digest + ex.spooled.sha512).digest()
    elif ex.body:
        digest = hashlib.sha512(digest + hashlib.sha512(ex.body).digest()).digest()
    return base64.b64encode(digest).decode("ascii")


def render(result: Result) -> Rendered:
    ex = result.exchange
    headers = [("x-road-id", ex.id), ("x-road-request-hash", request_hash(ex))]
    if result.error is not None:
        err = result.error
        body = problem_bytes(err, instance=f"{PREFIX}{ex.service_id}{ex.path}", exchange_id=ex.id)
        headers.append(("content-type", PROBLEM_TYPE))
        # X-Road REST r1 section 4.6: the error arose in the gateway (not the provider), so say so
        # and name its type; the detail is in the body.
        headers.append(("x-road-error", err.code))
        headers.extend((k.lower(), v) for k, v in err.headers.items())
        return Rendered(err.status, headers, body)
    reply = result.reply
    assert reply is not None
    spooled = reply.payload if isinstance(reply.payload, Spooled) else None  # a large fetched package
    if spooled is not None:
        body = b""
    elif isinstance(reply.payload, bytes | bytearray):
        body = bytes(reply.payload)
    else:
        body = orjson.dumps(reply.payload)
    headers.append(("content-type", reply.content_type))
    headers.extend((k.lower(), v) for k, v in reply.headers.items())
    return Rendered(reply.status, headers, body, spooled)


class RestEntry:
    def __init__(self, pipeline_of: Callable[[], Pipeline], max_body: Callable[[], int],
                 spool_of: Callable[[str], Spool | None] | None = None) -> None:
        self._pipeline_of = pipeline_of
        self._max_body = max_body
        self._spool_of = spool_of  # the services whose large bodies go to disk (document services)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        received_us = time.time_ns() // 1000
        arrival = Arrival.read(scope)
        raw = scope.get("raw_path")
        path = raw.decode("latin-1").split("?", 1)[0] if raw else quote(scope["path"], safe="/")
        error: GatewayError | None = None
        service_id, rest, body = "", "", b""
        spooled: Spooled | None = None
        try:
            service_id, rest = split_path(path)
            spool = self._spool_of(service_id) if self._spool_of is not None else None
            if spool is None:
                body = await read_body(receive, self._max_body())
            else:
                body, spooled = await spool.read(receive, self._max_body())
        except GatewayError as err:
            error = err
            service_id = service_id or path[len(PREFIX):][:255]
        exchange = Exchange.arrived(
            arrival, id=exchange_id(arrival.xroad_id), protocol="rest", method=scope["method"],
            received_us=received_us, service_id=service_id, path=rest, body=body,
            query=scope.get("query_string", b"").decode("latin-1"), spooled=spooled)
        pipeline = self._pipeline_of()
        answer = metadata.rest_answer(pipeline, exchange) if error is None else None
        if error is not None:
            rendered = await pipeline.refuse(exchange, error, render)
        elif answer is not None:  # an X-Road metaservice: listMethods, allowedMethods, getOpenAPI
            rendered = await pipeline.answer(exchange, answer, render)
        else:
            rendered = await pipeline.run(exchange, render)
        if spooled is not None:  # stored by now, or refused; an exception leaves it to the GC
            spooled.close()  # (an unnamed file: nothing is left on disk either way)
        try:
            await send_response(send, rendered)
        finally:
            if rendered.spooled is not None:  # a fetched package's file, sent (or the client left)
                rendered.spooled.close()


async def read_body(receive: Receive, limit: int) -> bytes:
    """A request's whole body, in memory (``PayloadTooLarge`` past ``limit`` bytes)."""
    return b"".join([chunk async for chunk in body_chunks(receive, limit, "this gateway accepts")])


async def send_response(send: Send, rendered: Rendered) -> None:
    headers = [(k.encode("latin-1"), v.encode("latin-1")) for k, v in rendered.headers]
    headers.append((b"content-length", str(rendered.size).encode()))
    await send({"type": "http.response.start", "status": rendered.status, "headers": headers})
    if rendered.spooled is None:
        await send({"type": "http.response.body", "body": rendered.body})
        return
    async for piece in streamed(rendered.spooled):  # a large answer from its file, a piece at a time
        await send({"type": "http.response.body", "body": piece, "more_body": True})
    await send({"type": "http.response.body", "body": b""})
