"""The SOAP entry point: a SOAP 1.1 face of the gateway for systems that speak only SOAP.

- ``POST /soap/{service-id}``: plain SOAP clients; X-Road headers optional (when present, their
  ``service`` must be the path's);
- ``POST /soap``: X-Road 4.0 clients; the envelope's header names ``client``, ``service``, ``id``,
  ``userId``, ``issue``, ``protocolVersion`` and ``representedParty``;
- ``GET /soap/{service-id}?wsdl``: the service's WSDL, its address pointing here.

Authentication is the REST face's: the OAuth bearer token in the HTTP ``Authorization`` header, and
the X-Road ``client`` header (a subsystem id, or a member's) in the role of ``X-Road-Client``. The entry point
reads the envelope (hardened parser, X-Road checks: ``gateway.soap.envelope``), builds the same
``Exchange`` as REST (protocol ``soap``, the operation named by the body's element) and runs the
same ``Pipeline``. It hands the pipeline a ``decode``: after authorisation, the body element is read
by the operation's schema into JSON, which a JSON connector receives as its payload; a connector that
``forwards_soap`` (the ``soap`` connector) receives the client's envelope as it came, an audited
pass-through. The answer goes back by the operation's output schema into a SOAP response that echoes
the X-Road header (plus ``requestHash``); every failure is a SOAP Fault with an X-Road style code,
HTTP 500 as SOAP 1.1 asks, never an HTML page.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, quote

import orjson
import structlog
from lxml import etree
from pydantic import ValidationError

from gateway.arrival import Arrival, exchange_id
from gateway.config import Config, Service
from gateway.connector import forwards_soap
from gateway.errors import (
    GatewayError,
    InvalidBody,
    MethodNotAllowed,
    ServerError,
    UnknownService,
    UpstreamError,
)
from gateway.exchange import Decoded, Exchange, Pipeline, Rendered, Result
from gateway.logs import stack
from gateway.paths import encode, split_raw
from gateway.public import public_base
from gateway.rest import Receive, Scope, Send, read_body, send_response
from gateway.soap import envelope as soap
from gateway.soap.faults import (
    InconsistentHeaders,
    InvalidContentType,
    InvalidSoap,
    InvalidSoapBody,
    PassedFault,
)
from gateway.soap.metadata import SoapMetadata
from gateway.xml import safe
from gateway.xml.codec import TranslationError
from gateway.xml.contract import (
    Contract,
    Operation,
    SchemaError,
    allowed_operations,
    contract_options,
    load_contract,
)

__all__ = ["PREFIX", "SoapEntry", "fault_for", "is_soap_path"]

log = structlog.get_logger("lienthong.soap")

PREFIX = "/soap"
XML = "text/xml; charset=utf-8"
LT = "urn:lienthong:fault"


def is_soap_path(path: str) -> bool:
    return path == PREFIX or path.startswith(PREFIX + "/")


@dataclass(frozen=True, slots=True)
class Face:
    """What the SOAP face knows of one service: its contract, and which operations it may call."""

    contract: Contract | None
    operations: tuple[str, ...]


class SoapEntry:
    def __init__(self, config: Config, pipeline_of: Callable[[], Pipeline], max_body: Callable[[], int],
                 schemas: Path, limits: safe.Limits | None = None) -> None:
        self._config = config
        self._pipeline_of = pipeline_of
        self._max_body = max_body
        self._schemas = schemas
        self._limits = limits
        self.faces: dict[str, Face] = {}
        for service in config.services:  # every schema compiled now, once: start-up
            self.faces[service.id] = self._build_face(service)
        self.metadata = SoapMetadata(config, self.faces)  # listMethods, allowedMethods, getWsdl

    def _build_face(self, service: Service) -> Face:
        schema = service.schema_
        if not schema or not schema.lower().endswith((".wsdl", ".xsd")):
            return Face(None, ())
        try:
            options = contract_options(service.options)
            contract = load_contract(self._schemas / schema, options, base=self._schemas)
            operations = allowed_operations(contract, service.operation_name, options)
        except (SchemaError, ValidationError) as exc:
            raise SchemaError(f"service {service.id}: {exc}") from None
        return Face(contract, tuple(operations))

    def limits(self) -> safe.Limits:
        return self._limits or safe.Limits(max_bytes=self._max_body())

    # -- ASGI -----------------------------------------------------------------------------------------------

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await self._serve(scope, receive, send)
        except Exception as exc:  # a bug here must still answer SOAP, never an HTML 500 page
            log.error("soap_entry_crashed", error=type(exc).__name__, path=scope.get("path"),
                      frames=stack(exc))
            err = ServerError(f"the gateway failed unexpectedly ({type(exc).__name__}) while "
                              f"answering {scope.get('method')} {scope.get('path')}; the error is logged")
            await send_response(send, Rendered(500, [("content-type", XML)], fault_for(err, None, None)))

    async def _serve(self, scope: Scope, receive: Receive, send: Send) -> None:
        arrival = Arrival.read(scope)
        raw = scope.get("raw_path") or quote(scope["path"], safe="/").encode()
        raw_service = raw.decode("latin-1").split("?", 1)[0][len(PREFIX):].strip("/")
        path_error: GatewayError | None = None
        try:  # the same segment rules as /r1 (gateway/paths.py): no encoded '/', no dot segment
            service_path = "/".join(split_raw(raw_service, "the service in the path"))
        except GatewayError as err:
            service_path, path_error = raw_service[:255], err
        if scope["method"] in ("GET", "HEAD"):
            rendered = self._get(scope, service_path) if path_error is None else \
                Rendered(path_error.status, [("content-type", XML)], fault_for(path_error, None, None))
            await send_response(send, rendered)
            return
        received_us = time.time_ns() // 1000
        service_id, body = service_path or PREFIX, b""
        pipeline = self._pipeline_of()
        parsed: soap.Envelope | None = None
        try:
            if path_error is not None:
                raise path_error
            if scope["method"] != "POST":
                raise MethodNotAllowed("SOAP requests are POSTed (GET ?wsdl for the WSDL)",
                                       headers={"Allow": "GET, POST"})
            body = await read_body(receive, self._max_body())
            try:
                parsed = soap.read(body, arrival.content_type, self.limits(), xroad=not service_path)
            except GatewayError:
                raise
            except Exception as exc:  # an input the reader did not foresee: refused, audited, logged
                log.error("soap_read_failed", error=type(exc).__name__, frames=stack(exc))
                raise InvalidSoap("the request could not be read as a SOAP message") from exc
            arrival, service_id = self._from_header(parsed, service_path, arrival, service_id)
        except GatewayError as err:
            refused = Exchange.arrived(arrival, id=exchange_id(arrival.xroad_id), protocol="soap",
                                       method=scope["method"], received_us=received_us,
                                       service_id=service_id, body=body)
            rendered = await pipeline.refuse(refused, err, functools.partial(self.render, None))
            await send_response(send, rendered)
            return
        xid = exchange_id(parsed.xroad.id, arrival.xroad_id)
        answer = self.metadata.answer(pipeline, parsed, service_id)
        if answer is not None:  # an X-Road metaservice (gateway/soap/metadata.py)
            asked = Exchange.arrived(arrival, id=xid, protocol="soap", method=scope["method"],
                                     received_us=received_us, service_id=service_id, body=body)
            rendered = await pipeline.answer(asked, answer, functools.partial(self.render, parsed))
            await send_response(send, rendered)
            return
        operation: str | None = None
        face = self.faces.get(service_id)
        if face is not None and face.contract is not None:
            found = face.contract.by_input.get(parsed.body.tag)
            operation = found.name if found is not None else etree.QName(parsed.body).localname
        exchange = Exchange.arrived(
            arrival, id=xid, protocol="soap", method=scope["method"], received_us=received_us,
            service_id=service_id, body=body, operation=operation,
            decode=functools.partial(self.decode, parsed, body, arrival.content_type))
        rendered = await pipeline.run(exchange, functools.partial(self.render, parsed))
        await send_response(send, rendered)

    @staticmethod
    def _from_header(parsed: soap.Envelope, service_path: str, arrival: Arrival,
                     service_id: str) -> tuple[Arrival, str]:
        """The exchange's fields from the X-Road header, which wins over HTTP headers."""
        header = parsed.xroad
        if header.service is not None:
            named = header.service.service_id
            if service_path and named != service_path:
                raise InconsistentHeaders(f"the SOAP header names service {named}, the path {service_path}")
            service_id = named
        said = {name: value for name, value in (
            ("client_header", header.client.subsystem_id if header.client is not None else None),
            ("user_id", header.user_id), ("issue", header.issue),
            ("represented_party", header.represented_party)) if value}
        return replace(arrival, **said), service_id

    # -- the pipeline's parse step: the body, by schema ------------------------------------------------------

    def decode(self, parsed: soap.Envelope, body: bytes, content_type: str, service: Service,
               operation: str) -> Decoded:
        """The body by the operation's schema; a connector that forwards SOAP gets the bytes as they came."""
        face = self.faces.get(service.id) or Face(None, ())
        connector = self._pipeline_of().connectors.get(service.id)
        forwards = forwards_soap(connector)
        if face.contract is None:
            if forwards:
                return Decoded(None, body, content_type)
            raise UnknownService(f"{service.id} has no WSDL or XSD, so it cannot be called over SOAP")
        found = face.contract.by_input.get(parsed.body.tag)
        if found is None:
            raise InvalidSoapBody(f"{parsed.body.tag} is not the request of any operation of {service.id}")
        if found.name not in face.operations:
            raise UnknownService(f"{service.id} offers {', '.join(face.operations)}, not {found.name}")
        if parsed.multipart and not forwards:
            raise InvalidContentType(f"{service.id} takes no attachments: send a plain SOAP message")
        try:
            payload = found.input.to_json(parsed.body)
        except TranslationError as exc:
            raise InvalidBody(f"the {found.name} request does not match the service's schema",
                              errors=exc.errors) from None
        if forwards:
            return Decoded(payload, body, content_type)
        return Decoded(payload, orjson.dumps(payload), "application/json")

    # -- rendering -----------------------------------------------------------------------------------------

    def render(self, parsed: soap.Envelope | None, result: Result) -> Rendered:
        ex = result.exchange
        # X-Road's requestHash (base64 SHA-512 of the SOAP message as received), as in the echoed header
        request_hash = parsed.request_hash if parsed is not None else soap.hash_of(ex.body)
        headers = [("x-road-id", ex.id), ("x-road-request-hash", request_hash)]
        if result.error is not None:
            err = result.error
            headers.extend((k.lower(), v) for k, v in err.headers.items())
            if isinstance(err, PassedFault):
                return Rendered(500, [*headers, ("content-type", err.content_type or XML)], err.envelope)
            echo = (soap.echo_header(parsed.xroad, None) if parsed is not None and parsed.xroad.present
                    else None)
            return Rendered(500, [*headers, ("content-type", XML)], fault_for(err, ex.id, echo))
        reply = result.reply
        assert reply is not None
        for name, value in reply.headers.items():
            headers.append((name.lower(), value))
        if isinstance(reply.payload, bytes | bytearray):  # a pass-through: the upstream's own envelope
            return Rendered(reply.status, [*headers, ("content-type", reply.content_type)],
                            bytes(reply.payload))
        if reply.status >= 300:
            raise UpstreamError(f"{ex.service_id} answered HTTP {reply.status}",
                                extra={"status": reply.status, "answer": reply.payload})
        assert parsed is not None and result.service is not None
        operation = self._operation(result.service, result.operation)
        if operation.output is None:
            return Rendered(202, headers, b"")
        root, header, body = soap.build(operation.output.nsmap)
        if parsed.xroad.present:
            for element in soap.echo_header(parsed.xroad, parsed.request_hash):
                header.append(element)
        else:
            root.remove(header)
        try:
            operation.output.to_xml(reply.payload, body)
        except TranslationError as exc:
            where = "; ".join(f"{e['path']}: {e['message']}" for e in exc.errors[:5])
            raise UpstreamError(f"the answer of {result.service.id} does not fit the {operation.name} "
                                f"response schema: {where}", extra={"errors": exc.errors}) from None
        return Rendered(200, [*headers, ("content-type", XML)], soap.serialise(root))

    def _operation(self, service: Service, name: str | None) -> Operation:
        face = self.faces.get(service.id)
        if face is None or face.contract is None or name is None or name not in face.contract.operations:
            raise UpstreamError(f"{service.id} answered JSON that has no SOAP form here")
        return face.contract.operations[name]

    # -- WSDL -------------------------------------------------------------------------------------------

    def _get(self, scope: Scope, service_path: str) -> Rendered:
        query = parse_qs(scope.get("query_string", b"").decode("latin-1"), keep_blank_values=True)
        face = self.faces.get(service_path)
        if "wsdl" not in query and "WSDL" not in query:
            err: GatewayError = MethodNotAllowed("POST SOAP requests here; GET ?wsdl for the WSDL",
                                                 headers={"Allow": "GET, POST"})
            return Rendered(405, [("allow", "GET, POST"), ("content-type", XML)], fault_for(err, None, None))
        if face is None or face.contract is None:
            err = UnknownService(f"no service {service_path} with a WSDL is registered here")
            return Rendered(404, [("content-type", XML)], fault_for(err, None, None))
        # The configured public address, never the request's Host: a caller must not be able to
        # make the gateway publish a WSDL that points clients elsewhere.
        address = f"{public_base(self._config)}{PREFIX}{encode(service_path.split('/'))}"
        return Rendered(200, [("content-type", XML)], face.contract.publish(address))


def fault_for(err: GatewayError, exchange_id: str | None, header: list[Any] | None) -> bytes:
    """A gateway error as a SOAP 1.1 Fault: its X-Road style code and its detail, the exchange id in
    ``xroad:faultDetail`` as X-Road does, and what else the error carries (schema errors with their
    paths, the rule that refused, an upstream's own fault) under ``urn:lienthong:fault``."""
    code, text = err.code, err.detail
    extra = dict(err.extra)
    if "faultcode" in extra and extra.get("faultcode"):
        code = str(extra.pop("faultcode"))
        text = str(extra.pop("faultstring", "") or text)
    details = []
    if exchange_id:
        node = etree.Element(f"{{{soap.XROAD}}}faultDetail", nsmap={"xroad": soap.XROAD})
        node.text = exchange_id
        details.append(node)
    for item in extra.pop("errors", None) or []:
        node = etree.Element(f"{{{LT}}}error", nsmap={"lt": LT})
        node.set("path", str(item.get("path", "")))
        node.text = str(item.get("message", ""))
        details.append(node)
    for key, value in extra.items():
        if value is None or not key.isidentifier():
            continue
        node = etree.Element(f"{{{LT}}}{key}", nsmap={"lt": LT})
        node.text = value if isinstance(value, str) else orjson.dumps(value, default=str).decode()
        details.append(node)
    return soap.fault_envelope(code, text, details, header=header)
