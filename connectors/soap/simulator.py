"""A simulator of SOAP upstreams: a real SOAP 1.1 server that answers any document/literal request.

How it answers a request whose body element is ``{ns}name``:

- **replay**: with a folder of example responses (``responses=``), the envelope in
  ``nameResponse.xml`` (``fooResponse.xml`` for a ``fooRequest``; or ``name.answer``), its X-Road
  header replaced by the request's own (a recorded HTTP answer, ``nameResponse.txt`` starting with
  ``HTTP/``, is replayed as it is: MIME multipart answers with attachments), plus
  ``requestHash``, as the X-Road protocol asks of a provider;
- **echo**: otherwise ``{ns}nameResponse`` holding a copy of the request element's content, with the
  X-Road header echoed the same way.

``GET /?wsdl`` serves the WSDL given with ``wsdl=`` (its address pointed here). What arrived is kept
by a ``Recorder`` (``GET /_sim/received``, ``POST /_sim/reset``). Tests steer failures with
``POST /_sim/mode`` ``{"delay_ms": int, "fail": "fault" | "http500" | "garbage" | "invalid" |
"empty" | null}`` or per request with the same names in the query string:

- ``fault``: a SOAP Fault (``soap:Server``, with a ``detail``), HTTP 500;
- ``http500``: HTTP 500 with a plain-text body; ``garbage``: HTTP 200 that is not XML;
- ``invalid``: the usual answer with an element its schema does not allow; ``empty``: HTTP 200, no body.

``python -m connectors.soap.simulator --port 9105 [--responses DIR] [--wsdl FILE]`` runs one.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import copy
import hashlib
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from lxml import etree
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from gateway.errors import GatewayError
from gateway.simulation import Recorder
from gateway.soap import envelope as soap
from gateway.xml import safe

__all__ = ["SoapSimulator", "create_app", "main"]

XML = "text/xml; charset=utf-8"
FAILURES = ("fault", "http500", "garbage", "invalid", "empty")


@dataclass(frozen=True, slots=True)
class Mode:
    delay_ms: int = 0
    fail: str | None = None

    @classmethod
    def parse(cls, values: dict[str, Any], base: Mode) -> Mode:
        unknown = set(values) - {"delay_ms", "fail"}
        if unknown:
            raise ValueError(f"unknown switches: {', '.join(sorted(unknown))}")
        mode = base
        if "delay_ms" in values:
            delay = values["delay_ms"]
            delay = int(delay) if isinstance(delay, str) and delay.isdigit() else delay
            if not isinstance(delay, int) or isinstance(delay, bool) or not 0 <= delay <= 600_000:
                raise ValueError("delay_ms must be an integer from 0 to 600000")
            mode = replace(mode, delay_ms=delay)
        if "fail" in values:
            fail = values["fail"] or None
            if fail is not None and fail not in FAILURES:
                raise ValueError(f"fail must be one of {', '.join(FAILURES)} or null")
            mode = replace(mode, fail=fail)
        return mode


class SoapSimulator:
    def __init__(self, *, responses: Path | None = None, wsdl: Path | None = None) -> None:
        self.responses = responses
        self.wsdl = wsdl.read_bytes() if wsdl is not None else None
        self.recorder = Recorder()
        self.mode = Mode()
        self._templates: dict[str, Any] = {}

    # -- answers (pure) --------------------------------------------------------------------------------

    def answer(self, request: soap.Envelope, mode: Mode) -> tuple[int, bytes, str]:
        """(HTTP status, body, content type) for a request."""
        if mode.fail == "fault":
            return 500, self._fault(request), XML
        if mode.fail == "http500":
            return 500, b"internal error", "text/plain"
        if mode.fail == "garbage":
            return 200, b"this is not XML", "text/plain"
        if mode.fail == "empty":
            return 200, b"", XML
        template = self._template(etree.QName(request.body).localname) if self.responses is not None else None
        if isinstance(template, tuple):  # a recorded HTTP answer (MIME multipart): replayed as it is
            return 200, template[1], template[0]
        root = self._replay(request, template) if template is not None else None
        if root is None:
            root = self._echo(request)
        if mode.fail == "invalid":
            body = soap.body_of(root)
            if body is not None:
                etree.SubElement(body, "unexpected").text = "not in the schema"
        return 200, soap.serialise(root), XML

    def _template(self, name: str) -> Any:
        if name not in self._templates:
            assert self.responses is not None
            found = None
            stem = name.removesuffix("Request")
            for candidate in (f"{name}Response.xml", f"{stem}Response.xml", f"{name}.answer",
                              f"{stem}Response.txt"):
                path = self.responses / candidate
                if not path.is_file():
                    continue
                data = path.read_bytes()
                if data.startswith(b"HTTP/"):
                    found = _recorded(data)
                else:
                    try:
                        found = safe.parse(data)
                    except safe.XmlRefused:
                        found = None
                break
            self._templates[name] = found
        return self._templates[name]

    def _replay(self, request: soap.Envelope, template: Any) -> Any:
        root = copy.deepcopy(template)
        header = root.find(soap.HEADER)
        if request.xroad.present:
            if header is None:
                header = etree.Element(soap.HEADER)
                root.insert(0, header)
            for child in list(header):
                if etree.QName(child).namespace in (soap.XROAD, soap.REPR):
                    header.remove(child)
            for element in soap.echo_header(request.xroad, _hash(request.soap)):
                header.append(element)
        return root

    def _echo(self, request: soap.Envelope) -> Any:
        root, header, body = soap.build()
        if request.xroad.present:
            for element in soap.echo_header(request.xroad, _hash(request.soap)):
                header.append(element)
        else:
            root.remove(header)
        qname = etree.QName(request.body)
        answer = etree.SubElement(body, f"{{{qname.namespace}}}{qname.localname}Response"
                                  if qname.namespace else f"{qname.localname}Response")
        answer.text = request.body.text
        for child in request.body:
            answer.append(copy.deepcopy(child))
        return root

    @staticmethod
    def _fault(request: soap.Envelope) -> bytes:
        detail = etree.Element("{urn:lienthong:simulator}reason")
        detail.text = "the simulator was told to fail"
        header = soap.echo_header(request.xroad, None) if request.xroad.present else None
        return soap.fault_envelope("SOAP-ENV:Server", "Simulated failure", [detail], header=header)

    # -- HTTP ---------------------------------------------------------------------------------------------

    async def soap(self, request: Request) -> Response:
        if request.method == "GET":
            return self._wsdl(request)
        body = await request.body()
        try:
            mode = Mode.parse(dict(request.query_params), self.mode) if request.query_params else self.mode
        except ValueError as exc:
            return PlainTextResponse(str(exc), status_code=400)
        content_type = request.headers.get("content-type", XML)
        try:
            parsed = soap.read(body, content_type, safe.Limits(max_bytes=50_000_000), xroad=False)
        except GatewayError as err:
            self.recorder.add("invalid", body, content_type=content_type,
                              soap_action=request.headers.get("soapaction"))
            return Response(soap.fault_envelope("SOAP-ENV:Client", err.detail), status_code=500,
                            media_type=XML)
        self.recorder.add(etree.QName(parsed.body).localname, body, content_type=content_type,
                          soap_action=request.headers.get("soapaction"),
                          x_road_id=parsed.xroad.id)
        if mode.delay_ms:
            await asyncio.sleep(mode.delay_ms / 1000)
        status, answer, media = self.answer(parsed, mode)
        return Response(answer, status_code=status, headers={"content-type": media})

    def _wsdl(self, request: Request) -> Response:
        if "wsdl" not in request.query_params or self.wsdl is None:
            return PlainTextResponse("POST SOAP 1.1 requests here", status_code=405,
                                     headers={"Allow": "POST"})
        root = safe.parse(self.wsdl, safe.Limits(max_bytes=50_000_000, max_elements=1_000_000))
        for node in root.iter("{http://schemas.xmlsoap.org/wsdl/soap/}address"):
            node.set("location", str(request.url.replace(query="")))
        return Response(soap.serialise(root), media_type=XML)

    async def switch(self, request: Request) -> Response:
        if request.method == "POST":
            try:
                values = await request.json()
                if not isinstance(values, dict):
                    raise ValueError("send a JSON object")
                self.mode = Mode.parse(values, self.mode)
            except ValueError as exc:
                return JSONResponse({"error": str(exc)}, status_code=400)
        return JSONResponse({"delay_ms": self.mode.delay_ms, "fail": self.mode.fail})

    def app(self) -> Starlette:
        return Starlette(routes=[
            Route("/_sim/mode", self.switch, methods=["GET", "POST"]),
            *self.recorder.routes(),
            Route("/{path:path}", self.soap, methods=["GET", "POST"]),
        ])


def _recorded(data: bytes) -> tuple[str, bytes]:
    """A recorded HTTP answer (status line, headers, body): its content type and body."""
    head, _, body = data.replace(b"\r\n", b"\n").partition(b"\n\n")
    content_type = XML
    for line in head.split(b"\n")[1:]:
        name, _, value = line.decode("latin-1").partition(":")
        if name.strip().lower() == "content-type":
            content_type = value.strip()
    return content_type, body


def _hash(data: bytes) -> str:
    return base64.b64encode(hashlib.sha512(data).digest()).decode()


def create_app(seed: int = 2026, *, responses: Path | None = None, wsdl: Path | None = None) -> Starlette:
    """The SOAP simulator as an ASGI app (``seed`` is accepted for the entry point's signature)."""
    return SoapSimulator(responses=responses, wsdl=wsdl).app()


def main(argv: list[str] | None = None) -> None:
    import uvicorn

    parser = argparse.ArgumentParser(description="Serve a simulated SOAP upstream on loopback.")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--responses", type=Path, help="folder of example responses to replay")
    parser.add_argument("--wsdl", type=Path, help="WSDL to serve at ?wsdl")
    args = parser.parse_args(argv)
    uvicorn.run(create_app(responses=args.responses, wsdl=args.wsdl), host=args.host, port=args.port,
                log_level="warning", access_log=False, lifespan="off", http="httptools")


if __name__ == "__main__":
    main()
