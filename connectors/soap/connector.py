"""The generic SOAP connector: any document/literal SOAP 1.1 service, registered by WSDL or XSD.

A JSON call (``/r1/...``) is checked against the operation's input element and written as a SOAP
envelope by the schema (``gateway.xml.codec``: element order, namespaces, types, attributes and
repetition all come from it); the answer is read back by the output element into JSON. A call that
arrives from the SOAP face with the client's own envelope (``Call.content_type`` is XML or
multipart) is forwarded as it came: an audited pass-through. Its answer, when the service has a
schema, is read by it like any other (so the SOAP face writes it back by the same schema, echoing
the X-Road header, and a policy can minimise it); without a schema, or with attachments, the answer
goes back as the upstream sent it.

Catalog entry::

    - id: VN/GOV/000.00.00.G01/CSDLDC/XacThucThongTinCongDan
      connector: soap
      upstream: http://127.0.0.1:9101/dancu
      schema: population/dancu.wsdl            # WSDL, or XSD with options.operations (see contract.py)
      options:
        operations: [XacThucThongTinCongDan]    # which operations this service may call (default: its own)
        defaults: {MaDichVu: "1.001193"}        # fields the client may leave out
        fill: {MaYeuCau: id, MaCanBo: userId}   # fields taken from the exchange when left out
        xroad_headers: true                      # send X-Road headers (default: when the WSDL declares them)
        validate_response: true
        max_response_bytes: 10485760

The options are ``Options`` below; an unknown key, or a value of the wrong type, is refused when the
configuration is loaded (``lienthong check``).

Without a schema the service is a pure pass-through (SOAP clients only). Errors: 422 InvalidBody
naming each JSON path; a SOAP Fault from the upstream is ``UpstreamFault`` (code, string and detail
kept); an answer that breaks its schema, or is no SOAP at all, is ``UpstreamError`` (502) saying so.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

import httpx
from lxml import etree
from pydantic import ConfigDict, Field

from gateway.config import Service
from gateway.connector import Call, ConnectorContext, Reply
from gateway.errors import InvalidBody, UnknownService, UpstreamError, UpstreamFault
from gateway.identifiers import IdentifierError, ServiceId, SubsystemId, parse_client
from gateway.plugins import read_options
from gateway.soap import envelope as soap
from gateway.soap.faults import PassedFault
from gateway.upstream import send
from gateway.xml import safe
from gateway.xml.codec import TranslationError, untyped
from gateway.xml.contract import Contract, ContractOptions, Operation, allowed_operations, load_contract

__all__ = ["FillSource", "Options", "SoapConnector", "create", "is_soap"]

XML = "text/xml; charset=utf-8"
FillSource = Literal["id", "client", "userId", "issue", "representedParty"]
_FILL_SOURCES: dict[FillSource, str] = {
    "id": "X-Road-Id", "client": "X-Road-Client", "userId": "X-Road-UserId", "issue": "X-Road-Issue",
    "representedParty": "X-Road-Represented-Party"}


class Options(ContractOptions):
    """The ``soap`` connector's service options: the contract's (``schemas``, ``operations``) and
    how requests are completed and answers read."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    defaults: dict[str, Any] = Field({}, description="request fields the client may leave out, and "
                                     "their values")
    fill: dict[str, FillSource] = Field({}, description=(
        "request fields taken from the exchange when the client leaves them out: field: id, client, "
        "userId, issue or representedParty (the X-Road-Id, -Client, -UserId, -Issue, "
        "-Represented-Party headers)"))
    xroad_headers: bool | None = Field(None, description="send X-Road SOAP headers; by default when "
                                       "the WSDL binding declares them")
    validate_response: bool = Field(True, description="read a SOAP client's answer by the schema "
                                    "(pass-through calls); false: give it back as it came")
    max_response_bytes: int = Field(10_485_760, ge=1, description="the largest answer read")
    max_response_elements: int = Field(200_000, ge=1, description="the most elements in an answer")
    max_response_depth: int = Field(100, ge=1, description="the deepest nesting in an answer")


def is_soap(content_type: str) -> bool:
    kind = soap.media_type(content_type)
    return kind in soap.XML_TYPES or kind in soap.MULTIPART


def create(service: Service, context: ConnectorContext, options: Options | None = None) -> SoapConnector:
    """The connector for one service, its contract loaded and compiled now (start-up). ``options``:
    already read (the ``population`` connector's, with its defaults); else the service's."""
    if options is None:
        options = read_options(Options, service)
    contract = None
    if service.schema_:
        contract = load_contract(context.schemas_dir / service.schema_, options, base=context.schemas_dir)
    operations = allowed_operations(contract, service.operation_name, options)
    if contract is not None:
        fields = set().union(*(contract.operations[op].input.fields() for op in operations))
        stray = sorted((set(options.fill) | set(options.defaults)) - fields)
        if stray:
            raise ValueError(f"options.fill/defaults name {', '.join(stray)}, which no request of "
                             f"{', '.join(operations)} has")
    return SoapConnector(service, context.http, contract, operations, options)


class SoapConnector:
    forwards_soap: Literal[True] = True  # the SOAP face hands this connector the client's envelope as it came

    def __init__(self, service: Service, http: httpx.AsyncClient, contract: Contract | None,
                 operations: list[str], options: Options | None = None) -> None:
        self._service = service
        self._http = http
        self._url = service.upstream
        self._timeout = service.timeout
        self.contract = contract
        self.operations = operations
        if options is None:
            options = read_options(Options, service)
        self._defaults: dict[str, Any] = dict(options.defaults)
        self._fill: dict[str, FillSource] = dict(options.fill)
        self._xroad: bool | None = options.xroad_headers
        self._validate = options.validate_response
        self._limits = safe.Limits(max_bytes=options.max_response_bytes,
                                   max_elements=options.max_response_elements,
                                   max_depth=options.max_response_depth)

    async def aclose(self) -> None:
        """Nothing to close: the HTTP client is the gateway's, shared by every connector."""

    async def call(self, call: Call) -> Reply:
        if call.body and is_soap(call.content_type):
            return await self._pass_through(call)
        operation = self._operation(call.operation)
        wire = self.request(operation, call)
        headers = {"Content-Type": XML, "SOAPAction": f'"{operation.action}"'}
        response = await send(self._http, "POST", self._url, deadline=self._timeout, content=wire,
                              headers=headers)
        payload = self.reply(operation, response.status_code, response.content,
                             response.headers.get("content-type", ""))
        return Reply(payload=payload, wire_request=wire, wire_response=response.content)

    def _operation(self, name: str) -> Operation:
        if self.contract is None:
            raise UnknownService(f"{self._service.id} has no schema: it takes SOAP requests only "
                                 "(POST /soap), which it forwards as they are")
        if name not in self.operations:
            raise UnknownService(f"{self._service.id} offers {', '.join(self.operations)}, not {name}")
        return self.contract.operations[name]

    # -- JSON -> SOAP -> JSON (pure: no I/O) ------------------------------------------------------------

    def request(self, operation: Operation, call: Call) -> bytes:
        """The envelope for a JSON call; InvalidBody (422) listing every JSON path that is wrong."""
        payload = self._filled(operation, call)
        root, header, body = soap.build(operation.input.nsmap)
        if self._xroad if self._xroad is not None else operation.xroad:
            for element in xroad_header(call):
                header.append(element)
        else:
            root.remove(header)
        try:
            operation.input.to_xml(payload, body)
        except TranslationError as exc:
            raise InvalidBody(f"the {operation.name} request does not match the service's schema",
                              errors=exc.errors, status=422) from None
        return soap.serialise(root)

    def _filled(self, operation: Operation, call: Call) -> Any:
        payload = {} if call.payload is None and not call.body else call.payload
        if not isinstance(payload, dict) or not (self._defaults or self._fill):
            return payload
        fields = operation.input.fields()
        filled = {**{k: v for k, v in self._defaults.items() if k in fields}, **payload}
        for name, source in self._fill.items():
            value = _header(call.headers, _FILL_SOURCES[source])
            if filled.get(name) is None and value and name in fields:
                filled[name] = value
        return filled

    def reply(self, operation: Operation, status: int, content: bytes, content_type: str) -> Any:
        """The upstream's answer as JSON; UpstreamFault for a Fault, UpstreamError for anything broken."""
        node = self._answer(status, content, content_type)
        if node.tag == soap.FAULT:
            raise self._fault(node)
        if status >= 300:
            raise UpstreamError(f"{self._service.id} answered HTTP {status}", extra={"status": status})
        expected = operation.output
        if expected is None:
            return None
        if node.tag != expected.tag:
            raise UpstreamError(f"{self._service.id} answered {node.tag} where {expected.tag} was expected")
        try:
            return expected.to_json(node)
        except TranslationError as exc:
            where = "; ".join(f"{e['path']}: {e['message']}" for e in exc.errors[:5])
            raise UpstreamError(f"the {operation.name} answer of {self._service.id} breaks its own schema: "
                                f"{where}", extra={"errors": exc.errors}) from None

    def _answer(self, status: int, content: bytes, content_type: str) -> Any:
        try:
            data = content
            if soap.media_type(content_type) in soap.MULTIPART:
                data = soap.split_mime(content, content_type, self._limits.max_bytes)
            root = safe.parse(data, self._limits)
        except (safe.XmlRefused, InvalidBody, UpstreamError) as exc:
            raise UpstreamError(f"{self._service.id} answered HTTP {status} with no usable SOAP envelope: "
                                f"{exc}") from None
        except Exception as exc:  # a malformed MIME answer, an over-long one
            raise UpstreamError(f"{self._service.id} answered HTTP {status} with an unreadable body: "
                                f"{exc}") from None
        node = soap.body_of(root)
        if node is None:
            raise UpstreamError(f"{self._service.id} answered HTTP {status} without a SOAP Body")
        return node

    def _fault(self, node: Any) -> UpstreamFault:
        fault = soap.read_fault(node)
        return UpstreamFault(f"{self._service.id} answered a SOAP Fault: {fault.code} {fault.string}".strip(),
                             faultcode=fault.code, faultstring=fault.string,
                             faultdetail=self._detail(fault.detail))

    def _detail(self, detail: Any) -> Any:
        """Fault detail as JSON: elements the contract declares by their schema, others untyped."""
        if detail is None:
            return None
        out: dict[str, Any] = {}
        repeated: set[str] = set()
        for child in detail.iterchildren(tag=etree.Element):
            codec = self.contract.detail_element(child.tag) if self.contract is not None else None
            value: Any = None
            if codec is not None:
                try:
                    value = codec.to_json(child)
                except TranslationError:
                    codec = None
            if codec is None:
                value = untyped(child)
            local = etree.QName(child).localname
            key = local if local not in out or child.tag == local else child.tag
            if key in repeated:  # the same element a third time or more: one more value
                out[key].append(value)
            elif key in out:  # the same element again (a fault listing errors): every value, in order
                out[key] = [out[key], value]
                repeated.add(key)
            else:
                out[key] = value
        if out:
            return out
        return (detail.text or "").strip() or None

    # -- pass-through ---------------------------------------------------------------------------------

    async def _pass_through(self, call: Call) -> Reply:
        operation = None
        if self.contract is not None:
            operation = self._operation(call.operation)
        headers = {"Content-Type": call.content_type,
                   "SOAPAction": f'"{operation.action}"' if operation else '""'}
        response = await send(self._http, "POST", self._url, deadline=self._timeout, content=call.body,
                              headers=headers)
        content_type = response.headers.get("content-type", XML)
        node = self._answer(response.status_code, response.content, content_type)
        if node.tag == soap.FAULT:
            fault = soap.read_fault(node)
            what = f"{self._service.id} answered a SOAP Fault: {fault.code} {fault.string}".strip()
            raise PassedFault(what, faultcode=fault.code, faultstring=fault.string,
                              faultdetail=self._detail(fault.detail), envelope=response.content,
                              content_type=content_type)
        if response.status_code >= 300:
            raise UpstreamError(f"{self._service.id} answered HTTP {response.status_code}",
                                extra={"status": response.status_code})
        if (operation is not None and operation.output is not None and self._validate
                and soap.media_type(content_type) not in soap.MULTIPART):
            # Read by the schema: the SOAP face writes it back by the same schema (lossless), and the
            # policy can keep only the fields it lets leave, as for any JSON answer.
            payload = self.reply(operation, response.status_code, response.content, content_type)
            return Reply(payload=payload, wire_request=call.body, wire_response=response.content)
        return Reply(payload=response.content, content_type=content_type, wire_request=call.body,
                     wire_response=response.content)


def _header(headers: Mapping[str, str], name: str) -> str | None:
    value = headers.get(name)
    if value is None:
        lowered = name.lower()
        value = next((v for k, v in headers.items() if k.lower() == lowered), None)
    return value


def xroad_header(call: Call) -> list[Any]:
    """X-Road 4.0 header elements for a call the gateway makes on a client's behalf."""
    nsmap = {"xroad": soap.XROAD, "id": soap.IDEN}
    out = []
    client = _header(call.headers, "X-Road-Client")
    if client:
        try:
            who = parse_client(client)
        except IdentifierError:
            who = None
        if isinstance(who, SubsystemId):
            out.append(_identifier("client", "SUBSYSTEM", [who.instance, who.member_class, who.code,
                                                           who.subsystem], nsmap))
        elif who is not None:  # a member acting as itself
            out.append(_identifier("client", "MEMBER", [who.instance, who.member_class, who.code], nsmap))
    sid = ServiceId.parse(call.service.id)
    codes = [sid.instance, sid.member_class, sid.code, sid.subsystem, call.operation]
    if sid.version:
        codes.append(sid.version)
    out.append(_identifier("service", "SERVICE", codes, nsmap))
    for name, source in (("id", "X-Road-Id"), ("userId", "X-Road-UserId"), ("issue", "X-Road-Issue")):
        value = _header(call.headers, source)
        if value:
            node = etree.Element(f"{{{soap.XROAD}}}{name}", nsmap=nsmap)
            node.text = value
            out.append(node)
    version = etree.Element(f"{{{soap.XROAD}}}protocolVersion", nsmap=nsmap)
    version.text = "4.0"
    out.append(version)
    return out


def _identifier(name: str, object_type: str, codes: list[str], nsmap: dict[str, str]) -> Any:
    node = etree.Element(f"{{{soap.XROAD}}}{name}", nsmap=nsmap)
    node.set(f"{{{soap.IDEN}}}objectType", object_type)
    names = ["xRoadInstance", "memberClass", "memberCode", "subsystemCode"]
    names += ["serviceCode", "serviceVersion"] if object_type == "SERVICE" else []
    for code_name, value in zip(names, codes, strict=False):
        etree.SubElement(node, f"{{{soap.IDEN}}}{code_name}").text = value
    return node
