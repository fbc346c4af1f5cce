"""A simulator of the national document exchange platform (the Government Office's trục liên thông
văn bản quốc gia), as agencies' systems reach it through its SDK: send a document or a status, list
the pending ones, get one, update a status.

Routes::

    POST /sendDocument[?to=OrganId]   an edXML package or status message: kept in the pending list
                                      of each recipient organ (``to``, else the package's To organs,
                                      or the sender of the document a status answers) ->
                                      {"status": "OK", "docId", "duplicate"}; the same bytes for the
                                      same organ again are kept once; unreadable -> HTTP 400
                                      {"status": "FAIL", "error", "message"}
    POST /updateStatus                an edXML status message from a recipient: the document leaves
                                      that organ's pending list and the status goes to the document's
                                      sender -> {"status": "OK", "docId"}
    GET  /getPendingDocs?organId=     {"status": "OK", "data": [{"docId", "kind", "documentId",
                                      "from", "statusCode"}]}: what the organ has not got yet
    GET  /getDocument?organId=&docId= the edXML bytes (and the entry counts as got), or HTTP 404
    GET  /_sim/documents              every entry, in arrival order
    POST /_sim/send                   as connectors.dms.simulator: send through the gateway
    GET|POST /_sim/mode, GET /_sim/received, POST /_sim/reset   as every simulator

Run alone: ``python -m connectors.document_platform.simulator --port 9112``.
"""

from __future__ import annotations

import asyncio
import hashlib
from dataclasses import dataclass, field
from typing import Any

import orjson
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from connectors.dms.simulator import main as run
from connectors.dms.simulator import send_through
from connectors.rest.simulator import ASGIApp, Faults, json_response
from gateway.edxml import EdxmlError, Package, StatusMessage, parse_message
from gateway.simulation import Recorder

__all__ = ["create_app"]


@dataclass
class _Entry:
    doc_id: int
    organ: str
    kind: str
    document_id: str
    sender: str
    status_code: str | None
    sha256: str
    body: bytes = field(repr=False)
    got: bool = False

    def view(self) -> dict[str, Any]:
        out: dict[str, Any] = {"docId": self.doc_id, "organId": self.organ, "kind": self.kind,
                               "documentId": self.document_id, "from": self.sender, "sha256": self.sha256,
                               "got": self.got}
        if self.status_code is not None:
            out["statusCode"] = self.status_code
        return out


class _Platform:
    def __init__(self) -> None:
        self.entries: list[_Entry] = []
        self.senders: dict[str, str] = {}  # DocumentId -> the organ that sent it

    def reset(self) -> None:
        self.entries.clear()
        self.senders.clear()

    def keep(self, organ: str, message: Package | StatusMessage, body: bytes) -> tuple[_Entry, bool]:
        sha256 = hashlib.sha256(body).hexdigest()
        for entry in self.entries:
            if entry.organ == organ and entry.sha256 == sha256:
                return entry, False
        if isinstance(message, Package):
            kind, document_id = "package", message.header.document_id
            sender, code = message.header.from_.organ_id, None
            self.senders.setdefault(document_id, sender)
        else:
            kind, document_id = "status", message.response_for.document_id
            sender, code = message.from_.organ_id, message.status_code
        entry = _Entry(len(self.entries) + 1, organ, kind, document_id, sender, code, sha256, body)
        self.entries.append(entry)
        return entry, True


async def _read(body: bytes) -> Package | StatusMessage | Response:
    try:
        return await asyncio.to_thread(parse_message, body)
    except EdxmlError as err:
        return json_response({"status": "FAIL", "error": err.code, "message": str(err)}, 400)


def create_app(seed: int = 2026) -> ASGIApp:
    platform = _Platform()
    recorder = Recorder()
    faults = Faults(recorder, error_answer=(503, orjson.dumps({"status": "FAIL", "error": "busy"})))

    async def send_document(request: Request) -> Response:
        body = await request.body()
        to = request.query_params.get("to")
        recorder.add("sendDocument", body, to=to, xroadClient=request.headers.get("x-road-client", ""))
        message = await _read(body)
        if isinstance(message, Response):
            return message
        if isinstance(message, Package):
            message.close()
            organs = [to] if to else [o.organ_id for o in message.header.to]
        else:
            organs = [to] if to else [message.response_for.organ_id]
        kept = [platform.keep(organ, message, body) for organ in organs]
        return json_response({"status": "OK", "docId": kept[0][0].doc_id,
                              "duplicate": not any(new for _, new in kept)})

    async def update_status(request: Request) -> Response:
        body = await request.body()
        recorder.add("updateStatus", body)
        message = await _read(body)
        if isinstance(message, Response):
            return message
        if not isinstance(message, StatusMessage):
            message.close()
            return json_response({"status": "FAIL", "error": "not-a-status",
                                  "message": "updateStatus takes a status message"}, 400)
        answered = message.response_for
        for entry in platform.entries:
            if entry.organ == message.from_.organ_id and entry.document_id == answered.document_id:
                entry.got = True
        sender = platform.senders.get(answered.document_id, answered.organ_id)
        entry, _ = platform.keep(sender, message, body)
        return json_response({"status": "OK", "docId": entry.doc_id})

    async def pending(request: Request) -> Response:
        organ = request.query_params.get("organId", "")
        return json_response({"status": "OK", "data": [e.view() for e in platform.entries
                                                       if e.organ == organ and not e.got]})

    async def get_document(request: Request) -> Response:
        organ = request.query_params.get("organId", "")
        wanted = request.query_params.get("docId", "")
        for entry in platform.entries:
            if entry.organ == organ and str(entry.doc_id) == wanted:
                entry.got = True
                return Response(entry.body, media_type="application/xml")
        return json_response({"status": "FAIL", "error": "not_found",
                              "message": f"no document {wanted} for {organ}"}, 404)

    async def everything(request: Request) -> Response:
        return json_response({"total": len(platform.entries), "items": [e.view() for e in platform.entries]})

    app = Starlette(routes=[Route("/sendDocument", send_document, methods=["POST"]),
                            Route("/updateStatus", update_status, methods=["POST"]),
                            Route("/getPendingDocs", pending, methods=["GET"]),
                            Route("/getDocument", get_document, methods=["GET"]),
                            Route("/_sim/documents", everything, methods=["GET"]),
                            Route("/_sim/send", send_through, methods=["POST"]),
                            *faults.routes(reset=platform.reset), *recorder.routes()])
    return faults.wrap(app)


if __name__ == "__main__":
    run(factory=create_app, name="document_platform")
