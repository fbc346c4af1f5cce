"""A simulator of a provincial document-management system: it receives edXML packages and status
messages pushed by the gateway, and sends its own through the gateway.

Routes::

    POST /edxml[?to=OrganId]   a package or a status message (QCVN 102:2016), read with the gateway's
                               own codec: {"status": "OK", "duplicate": bool, "kind", "documentId"};
                               the same bytes for the same organ again are kept once (a repeated
                               delivery changes nothing); unreadable -> HTTP 400 {"status": "FAIL",
                               "error": code, "message"}
    GET  /_sim/documents       {"total", "items"}: what it holds, in the order it arrived, each once:
                               to, kind, documentId, from, statusCode, sha256, xroadClient
    POST /_sim/send            {"url": the gateway's document service URL, "token": a bearer token,
                               "document": base64 edXML} -> sends it through the gateway and answers
                               {"status": HTTP status, "body": the gateway's JSON answer}
    GET|POST /_sim/mode        the failure switches of connectors.rest.simulator.Faults ("error_code"
                               answers HTTP 503 {"status": "FAIL", "error": "busy"})
    GET  /_sim/received, POST /_sim/reset   every arrival as it came; reset also forgets the documents

Run alone: ``python -m connectors.dms.simulator --port 9111``.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import binascii
import hashlib
from typing import Any

import httpx
import orjson
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from connectors.rest.simulator import ASGIApp, Faults, json_response
from gateway.edxml import EdxmlError, Package, parse_message
from gateway.simulation import Recorder

__all__ = ["create_app", "main", "send_through"]


class _Office:
    """What the system holds: each (organ, message bytes) once, in arrival order."""

    def __init__(self) -> None:
        self.items: list[dict[str, Any]] = []
        self._seen: set[tuple[str, str]] = set()

    def reset(self) -> None:
        self.items.clear()
        self._seen.clear()

    def keep(self, to: str, sha256: str, item: dict[str, Any]) -> bool:
        """False when these bytes for this organ are held already."""
        if (to, sha256) in self._seen:
            return False
        self._seen.add((to, sha256))
        self.items.append(item)
        return True


async def send_through(request: Request) -> Response:
    """``POST /_sim/send``: the system sends a document or status through the gateway."""
    try:
        order = orjson.loads(await request.body())
        url, token = str(order["url"]), str(order["token"])
        document = base64.b64decode(order["document"], validate=True)
    except (ValueError, KeyError, TypeError, binascii.Error) as exc:
        return json_response({"error": "invalid_send", "message": str(exc)}, 400)
    async with httpx.AsyncClient(timeout=30) as client:
        answer = await client.post(url, content=document, headers={
            "Authorization": f"Bearer {token}", "Content-Type": "application/xml"})
    try:
        body: Any = answer.json()
    except ValueError:
        body = answer.text
    return json_response({"status": answer.status_code, "body": body})


def create_app(seed: int = 2026) -> ASGIApp:
    office = _Office()
    recorder = Recorder()
    faults = Faults(recorder, error_answer=(503, orjson.dumps({"status": "FAIL", "error": "busy"})))

    async def receive(request: Request) -> Response:
        body = await request.body()
        to = request.query_params.get("to", "")
        client = request.headers.get("x-road-client", "")
        recorder.add("edxml", body, to=to, xroadClient=client)
        try:
            message = await asyncio.to_thread(parse_message, body)
        except EdxmlError as err:
            return json_response({"status": "FAIL", "error": err.code, "message": str(err)}, 400)
        sha256 = hashlib.sha256(body).hexdigest()
        if isinstance(message, Package):
            with message:
                item = {"kind": "package", "documentId": message.header.document_id,
                        "from": message.header.from_.organ_id,
                        "attachments": [a.sha256 for a in message.attachments]}
        else:
            item = {"kind": "status", "documentId": message.response_for.document_id,
                    "from": message.from_.organ_id, "statusCode": message.status_code}
        item.update(to=to, sha256=sha256, xroadClient=client)
        new = office.keep(to, sha256, item)
        return json_response({"status": "OK", "duplicate": not new, "kind": item["kind"],
                              "documentId": item["documentId"]})

    async def documents(request: Request) -> Response:
        return json_response({"total": len(office.items), "items": office.items})

    app = Starlette(routes=[Route("/edxml", receive, methods=["POST"]),
                            Route("/_sim/documents", documents, methods=["GET"]),
                            Route("/_sim/send", send_through, methods=["POST"]),
                            *faults.routes(reset=office.reset), *recorder.routes()])
    return faults.wrap(app)


def main(argv: list[str] | None = None, factory: Any = create_app, name: str = "dms") -> None:
    from gateway.simulation import serve

    parser = argparse.ArgumentParser(description=f"the {name} simulator on loopback")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args(argv)
    asyncio.run(serve([(name, factory(), args.host, args.port)]))


if __name__ == "__main__":
    main()
