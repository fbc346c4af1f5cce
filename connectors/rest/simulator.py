"""A tiny JSON API standing in for any REST upstream, and the failure switches every simulator shares.

Routes::

    POST /echo          what it got: method, path, query, content type, the X-Road headers (and the
                        W3C traceparent), the body
    GET  /items         {"total": n, "items": [...]}, five synthetic citizens to start with
    GET  /items/{id}    one item, or 404 {"error": "not_found", ...}
    POST /items         stores a JSON object, answers 201 with it and its new id
    GET  /text          a plain-text greeting, for clients of upstreams that do not answer JSON
    GET|POST /_sim/mode the failure switches (below), plus {"record": bool} to stop recording echoes
    GET  /_sim/received, POST /_sim/reset   what arrived; reset also clears the switches and items

``POST /echo`` is what the benchmark hits, so it is served by a raw ASGI function before any routing.

``Faults`` (used by the ``dvcqg`` and ``onestop`` simulators too) wraps a simulator's ASGI app and
obeys ``POST /_sim/mode`` with ``{"delay_ms": int, "fail": null | "http500" | "error_code" | "drop" |
"garbage", "times": null | int}``: ``delay_ms`` delays every answer; ``fail`` answers every request
(or only the next ``times`` ones) with HTTP 500, with the simulator's own application error, with
no answer at all (the connection is closed), or with a body that claims to be JSON and is not.
Requests under ``/_sim/`` are never delayed nor failed.

"drop" closes the TCP connection from inside the app. ASGI offers no way to do that (an app that
raises or returns without answering gets a 500 from uvicorn), so ``Faults`` reaches uvicorn's
transport through the ``receive`` callable, a bound method of uvicorn's request cycle whose
``transport`` attribute is the connection; once closed, uvicorn sees the client gone and sends
nothing. Under another server (or uvicorn's trace-level message logger, which wraps ``receive``)
the transport is out of reach and "drop" degrades to a truncated answer: a Content-Length promised
and never delivered, which clients also report as a lost connection.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

import orjson
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from connectors import synthetic
from gateway.simulation import Recorder

__all__ = ["FAIL_MODES", "Faults", "create_app", "json_response", "read_body", "respond"]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

FAIL_MODES = ("http500", "error_code", "drop", "garbage")
GARBAGE = b'{"error_code": "00", "result": [{"MaHoSo": "\xff\xfe<html><body>Service Unavailable'
HTTP500 = (b"<html><head><title>500 Internal Server Error</title></head>"
           b"<body>Internal Server Error</body></html>")


def json_response(data: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(orjson.dumps(data), status_code=status, headers=headers, media_type="application/json")


async def read_body(receive: Receive) -> bytes:
    """The whole request body from raw ASGI ``receive``."""
    message = await receive()
    body = message.get("body", b"")
    if not message.get("more_body"):
        return bytes(body)
    chunks = [body]
    while message.get("more_body"):
        message = await receive()
        chunks.append(message.get("body", b""))
    return b"".join(chunks)


async def respond(send: Send, status: int, body: bytes,
                  content_type: bytes = b"application/json") -> None:
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", content_type),
                            (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})


class Faults:
    """The failure switches of ``/_sim/mode``: a delay before every answer and one way to fail."""

    def __init__(self, recorder: Recorder, error_answer: tuple[int, bytes]) -> None:
        self._recorder = recorder
        self._error_answer = error_answer
        self.delay_ms = 0
        self.fail: str | None = None
        self.times: int | None = None

    def state(self) -> dict[str, Any]:
        return {"delay_ms": self.delay_ms, "fail": self.fail, "times": self.times}

    def reset(self) -> None:
        self.delay_ms, self.fail, self.times = 0, None, None

    def configure(self, changes: dict[str, Any]) -> None:
        """Apply ``delay_ms``, ``fail`` and ``times`` from ``changes``; ValueError changes nothing."""
        delay, fail, times = (changes.get("delay_ms", self.delay_ms), changes.get("fail", self.fail),
                              changes.get("times", None if "fail" in changes else self.times))
        if not isinstance(delay, int) or isinstance(delay, bool) or delay < 0:
            raise ValueError("delay_ms must be a whole number of milliseconds, 0 or more")
        if fail is not None and fail not in FAIL_MODES:
            raise ValueError(f"fail must be null or one of {', '.join(FAIL_MODES)}")
        if times is not None and (not isinstance(times, int) or isinstance(times, bool) or times < 1):
            raise ValueError("times must be null (always) or a number of requests, 1 or more")
        self.delay_ms, self.fail, self.times = delay, fail, times

    def _take(self) -> str | None:
        fail = self.fail
        if fail is not None and self.times is not None:
            self.times -= 1
            if self.times <= 0:
                self.fail, self.times = None, None
        return fail

    def routes(self, extra: Callable[[dict[str, Any]], dict[str, Any]] | None = None,
               reset: Callable[[], None] | None = None) -> list[Route]:
        """``/_sim/mode``; ``extra`` takes the simulator's own keys (ValueError for unknown ones) and
        returns its switches; ``reset`` (for ``/_sim/reset``) clears the simulator's state."""
        own = ("delay_ms", "fail", "times")

        async def mode(request: Request) -> Response:
            if request.method == "POST":
                before = (self.delay_ms, self.fail, self.times)
                try:
                    changes = orjson.loads(await request.body())
                    if not isinstance(changes, dict):
                        raise ValueError("the mode is a JSON object")
                    self.configure({k: v for k, v in changes.items() if k in own})
                    rest = {k: v for k, v in changes.items() if k not in own}
                    if rest and extra is None:
                        raise ValueError(f"unknown switches: {', '.join(sorted(rest))}")
                except ValueError as exc:  # orjson.JSONDecodeError is a ValueError
                    return json_response({"error": "invalid_mode", "message": str(exc)}, 400)
                if extra is not None:
                    try:
                        return json_response({**self.state(), **extra(rest)})
                    except ValueError as exc:  # refused as a whole: the failure switches too
                        self.delay_ms, self.fail, self.times = before
                        return json_response({"error": "invalid_mode", "message": str(exc)}, 400)
            return json_response({**self.state(), **(extra({}) if extra else {})})

        async def reset_all(request: Request) -> Response:
            self.reset()
            self._recorder.clear()
            if reset is not None:
                reset()
            return json_response({"ok": True})

        return [Route("/_sim/mode", mode, methods=["GET", "POST"]),
                Route("/_sim/reset", reset_all, methods=["POST"])]

    def wrap(self, app: ASGIApp) -> ASGIApp:
        """``app`` behind the switches: untouched while they are off and for ``/_sim/`` paths."""

        async def faulty(scope: Scope, receive: Receive, send: Send) -> None:
            if scope["type"] != "http" or scope["path"].startswith("/_sim/") or (
                    not self.delay_ms and self.fail is None):
                await app(scope, receive, send)
                return
            if self.delay_ms:
                await asyncio.sleep(self.delay_ms / 1000)
            fail = self._take()
            if fail is None:
                await app(scope, receive, send)
                return
            body = await read_body(receive)
            self._recorder.add("fault", body, fail=fail, method=scope["method"], path=scope["path"])
            if fail == "drop":
                await _drop(receive, send)
            elif fail == "http500":
                await respond(send, 500, HTTP500, b"text/html; charset=utf-8")
            elif fail == "garbage":
                await respond(send, 200, GARBAGE, b"application/json; charset=utf-8")
            else:
                status, answer = self._error_answer
                await respond(send, status, answer)

        return faulty


async def _drop(receive: Receive, send: Send) -> None:
    transport = getattr(getattr(receive, "__self__", None), "transport", None)
    if transport is None:  # not uvicorn: promise a body and never send it
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", b"1000")]})
        await send({"type": "http.response.body", "body": b'{"error_code":', "more_body": True})
        return
    transport.abort()
    # Wait until uvicorn has noticed, so that it does not answer 500 for us.
    while (await receive())["type"] != "http.disconnect":
        pass


_TRACE = (b"traceparent", b"tracestate")  # W3C trace context, where the gateway traces


def _seed_items(seed: int) -> dict[str, dict[str, Any]]:
    items = {}
    for number, person in enumerate(synthetic.people(5, seed), start=1):
        items[str(number)] = {"id": number, "hoVaTen": person.ho_va_ten, "soDinhDanh": person.so_dinh_danh,
                              "gioiTinh": person.gioi_tinh, "ngaySinh": person.ngay_sinh,
                              "thuongTru": person.thuong_tru}
    return items


def create_app(seed: int = 2026) -> ASGIApp:
    """The echo/items API, behind the failure switches."""
    recorder = Recorder()
    items = _seed_items(seed)
    switches = {"record": True}
    faults = Faults(recorder, error_answer=(400, orjson.dumps(
        {"error": "simulated", "error_code": "99", "message": "Lỗi nghiệp vụ giả lập"})))

    async def echo(scope: Scope, receive: Receive, send: Send) -> None:
        body = await read_body(receive)
        xroad = {name.decode("latin-1"): value.decode("latin-1")
                 for name, value in scope["headers"] if name.startswith(b"x-road-") or name in _TRACE}
        content_type = next((value.decode("latin-1") for name, value in scope["headers"]
                             if name == b"content-type"), "")
        head = orjson.dumps({"method": scope["method"], "path": scope["path"],
                             "query": scope["query_string"].decode("latin-1"),
                             "contentType": content_type, "headers": xroad})
        try:
            orjson.loads(body or b"null")
            answer = head[:-1] + b',"json":' + (body or b"null") + b"}"
        except orjson.JSONDecodeError:
            answer = head[:-1] + b',"text":' + orjson.dumps(body.decode("utf-8", "replace")) + b"}"
        if switches["record"]:
            recorder.add("echo", body, headers=xroad)
        await respond(send, 200, answer)

    async def list_items(request: Request) -> Response:
        return json_response({"total": len(items), "items": list(items.values())})

    async def get_item(request: Request) -> Response:
        item = items.get(request.path_params["id"])
        if item is None:
            return json_response({"error": "not_found",
                                  "message": f"Không tìm thấy mục {request.path_params['id']}"}, 404)
        return json_response(item)

    async def add_item(request: Request) -> Response:
        body = await request.body()
        recorder.add("items.add", body)
        try:
            item = orjson.loads(body)
        except orjson.JSONDecodeError:
            item = None
        if not isinstance(item, dict):
            return json_response({"error": "invalid_body", "message": "Cần một đối tượng JSON"}, 422)
        number = max((int(key) for key in items), default=0) + 1
        stored = {**item, "id": number}
        items[str(number)] = stored
        return json_response(stored, 201, headers={"Location": f"/items/{number}"})

    async def text(request: Request) -> Response:
        return Response("Xin chào từ hệ thống giả lập", media_type="text/plain; charset=utf-8")

    def extra(changes: dict[str, Any]) -> dict[str, Any]:
        for key, value in changes.items():
            if key != "record" or not isinstance(value, bool):
                raise ValueError(f"unknown switch {key!r} (the REST simulator knows record: bool)")
            switches["record"] = value
        return dict(switches)

    def reset() -> None:
        items.clear()
        items.update(_seed_items(seed))
        switches["record"] = True

    routes = [Route("/items", list_items, methods=["GET"]), Route("/items", add_item, methods=["POST"]),
              Route("/items/{id}", get_item, methods=["GET"]), Route("/text", text, methods=["GET"]),
              *faults.routes(extra, reset), *recorder.routes()]
    routed = Starlette(routes=routes)

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"] == "/echo" and scope["method"] == "POST":
            await echo(scope, receive, send)
        else:
            await routed(scope, receive, send)

    return faults.wrap(app)
