"""The population database connector: the client sends JSON, the upstream hears SOAP 1.1, JSON comes back.

One connector serves one operation of the population database's WSDL (``service.operation_name``:
``XacThucThongTinCongDan``, ``XacMinhThongTinNhanThan`` or ``TraCuuThongTinCongDan``), chosen by the
catalog, never by the client, so that a service published for verification cannot be turned into a
lookup. Everything is prepared once, in ``create``: zeep reads the WSDL from the local file (remote
loads refused), and xmlschema's reading of the same file gives the checks that a client's JSON and the
upstream's answer must pass. A call then does no schema work beyond walking those prepared checks:

    JSON payload --check--> zeep renders the request element --httpx--> upstream
    upstream bytes --lxml (hardened)--> Fault? --zeep parses the output element--> check --> JSON

Replies are shaped by the schema's output element, not by zeep's convenience unwrapping: the verify
answer ``KetQuaXacThucResponse/TonTai`` is ``{"TonTai": true}``, a repeated element is always a list
and an absent optional element is left out.
"""

from __future__ import annotations

import base64
import datetime as dt
import functools
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any, NamedTuple

import httpx
import zeep
import zeep.exceptions
import zeep.helpers
from lxml import etree
from xmlschema import XMLSchemaValidationError
from xmlschema.extras.wsdl import Wsdl11Document
from xmlschema.validators import XsdAnyElement, XsdElement, XsdGroup
from xmlschema.validators.facets import (
    XsdEnumerationFacets,
    XsdMaxLengthFacet,
    XsdMinLengthFacet,
    XsdPatternFacets,
)
from zeep.transports import Transport

from connectors.population import WSDL
from gateway.config import Service
from gateway.connector import Call, ConnectorContext, Reply
from gateway.errors import (
    InvalidBody,
    UpstreamError,
    UpstreamFault,
)
from gateway.upstream import send

__all__ = ["DEFAULT_SCHEMA", "Operation", "PopulationConnector", "create", "load_operation"]

DEFAULT_SCHEMA = WSDL
SOAP_ENV = "http://schemas.xmlsoap.org/soap/envelope/"
XSD = "http://www.w3.org/2001/XMLSchema"
_ENVELOPE = f"{{{SOAP_ENV}}}Envelope"
_BODY = f"{{{SOAP_ENV}}}Body"
_FAULT = f"{{{SOAP_ENV}}}Fault"

_PARSER = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False, huge_tree=False)

Errors = list[dict[str, str]]
Check = Callable[[Any, str, Errors], None]


def create(service: Service, context: ConnectorContext) -> PopulationConnector:
    """The connector for one population database service, its WSDL read and compiled now."""
    wsdl = context.schemas_dir / (service.schema_ or DEFAULT_SCHEMA)
    operation = load_operation(wsdl, service.operation_name,
                               check_reply=bool(service.options.get("validate_response", True)))
    return PopulationConnector(service, context.http, operation)


class PopulationConnector:
    def __init__(self, service: Service, http: httpx.AsyncClient, operation: Operation) -> None:
        self._http = http
        self._url = service.upstream
        self._timeout = service.timeout
        self._operation = operation
        self._headers = {"Content-Type": "text/xml; charset=utf-8", "SOAPAction": operation.soap_action}
        self._defaults: dict[str, Any] = dict(service.options.get("defaults") or {})

    async def call(self, call: Call) -> Reply:
        envelope = self._operation.request(self._fill(call))
        response = await send(self._http, "POST", self._url, deadline=self._timeout, content=envelope,
                              headers=self._headers)
        answer = self._operation.reply(response.status_code, response.content)
        return Reply(payload=answer, wire_request=envelope, wire_response=response.content)

    async def aclose(self) -> None:
        """Nothing to close: the HTTP client is the gateway's, shared by every connector."""

    def _fill(self, call: Call) -> Any:
        """The client's JSON with what the gateway knows filled in where the client left it out."""
        payload = call.payload
        if not isinstance(payload, dict):
            return payload  # the schema check says what is wrong with it
        known = {"MaYeuCau": call.exchange_id, "MaCanBo": _header(call.headers, "X-Road-UserId")}
        filled = {**self._defaults, **payload}
        for name, value in known.items():
            if filled.get(name) is None and value and name in self._operation.request_fields:
                filled[name] = value
        return filled


def _header(headers: Mapping[str, str], name: str) -> str | None:
    value = headers.get(name)
    if value is None:
        lowered = name.lower()
        value = next((v for k, v in headers.items() if k.lower() == lowered), None)
    return value


@functools.lru_cache(maxsize=64)
def load_operation(wsdl: Path, name: str, *, check_reply: bool = True) -> Operation:
    """Read the WSDL once and prepare everything one operation needs per call.

    Services that share a WSDL and operation share the result: it is immutable.
    """
    if not wsdl.is_file():
        raise ValueError(f"population connector: no WSDL at {wsdl}")
    settings = zeep.Settings(strict=True, xml_huge_tree=False, forbid_dtd=True, forbid_entities=True,
                             forbid_external=True)
    # zeep annotates ``transport`` as a class; it takes an instance.
    document: Any = zeep.wsdl.Document(str(wsdl), _LocalFilesOnly(), settings=settings)  # type: ignore[arg-type]
    operations = {op_name: op for binding in document.bindings.values()
                  for op_name, op in getattr(binding, "_operations", {}).items()}
    if name not in operations:
        raise ValueError(f"population connector: {wsdl.name} has no operation {name!r} "
                         f"(it has {', '.join(sorted(operations))})")
    zeep_op = operations[name]
    elements: Any = Wsdl11Document(str(wsdl), allow="local", defuse="always"  # type: ignore[no-untyped-call]
                                   ).schema.maps.elements
    request_decl = elements[zeep_op.input.body.qname.text]
    reply_decl = elements[zeep_op.output.body.qname.text]
    compiler = _Compiler()
    return Operation(
        name=name,
        soap_action=f'"{zeep_op.soapaction or ""}"',
        input_element=zeep_op.input.body,
        output_element=zeep_op.output.body,
        output_tag=zeep_op.output.body.qname.text,
        types=document.types,
        check_request=compiler.element(request_decl),
        check_reply=compiler.element(reply_decl) if check_reply else None,
        request_fields=frozenset(e.local_name for e, _ in _particles(request_decl.type.content)),
    )


class _LocalFilesOnly(Transport):
    """zeep's loader, refusing anything that is not a local file: schemas never come from the network."""

    def __init__(self) -> None:
        super().__init__()  # type: ignore[no-untyped-call]

    def _load_remote_data(self, url: str) -> bytes:
        raise ValueError(f"refusing to fetch {url}: the gateway reads schemas from local files only")


@dataclass(frozen=True, slots=True)
class Operation:
    """One WSDL operation, compiled: turns JSON into the request envelope and the answer into JSON.

    Pure: no I/O, so both directions test without sockets.
    """

    name: str
    soap_action: str
    input_element: Any  # zeep.xsd.Element
    output_element: Any
    output_tag: str
    types: Any  # zeep's schema, for parsing fault details
    check_request: Check
    check_reply: Check | None
    request_fields: frozenset[str]

    def request(self, payload: Any) -> bytes:
        """The SOAP envelope carrying ``payload``; InvalidBody (422) naming each bad field."""
        errors: Errors = []
        self.check_request(payload, "$", errors)
        if errors:
            raise InvalidBody(f"the {self.name} request does not match the population database schema",
                              errors=errors, status=422)
        envelope = etree.Element(_ENVELOPE, nsmap={"soapenv": SOAP_ENV})
        body = etree.SubElement(envelope, _BODY)
        try:
            # The checks above hold the payload to the schema, so zeep renders the plain dict: the
            # same XML as from its value objects (a test pins that), without building them (~20%).
            self.input_element.render(body, payload)
        except (zeep.exceptions.Error, TypeError, ValueError) as exc:  # the checks above should prevent it
            raise InvalidBody(f"the {self.name} request cannot be written as XML: {exc}",
                              errors=[{"path": "$", "message": str(exc)}], status=422) from exc
        wire: bytes = etree.tostring(envelope, encoding="utf-8", xml_declaration=True)
        return wire

    def reply(self, status: int, content: bytes) -> Any:
        """The upstream's answer as JSON; UpstreamFault for a SOAP Fault, UpstreamError otherwise."""
        try:
            root = etree.fromstring(content, _PARSER)
        except etree.XMLSyntaxError as exc:
            raise UpstreamError(f"the population database answered HTTP {status} with no SOAP envelope "
                                f"({exc})") from exc
        node = _body_child(root)
        if node is not None and node.tag == _FAULT:
            raise self._fault(node)
        if status != 200:
            raise UpstreamError(f"the population database answered HTTP {status}")
        if node is None or node.tag != self.output_tag:
            found = "nothing" if node is None else node.tag
            raise UpstreamError(f"the population database answered {found} where {self.output_tag} "
                                "was expected")
        try:
            value = _serialize(self.output_element.parse(node, self.types))
        except (zeep.exceptions.Error, ValueError, TypeError) as exc:
            raise UpstreamError(f"the population database's {self.name} answer breaks its schema: {exc}"
                                ) from exc
        if self.check_reply is not None:
            errors: Errors = []
            self.check_reply(value, "$", errors)
            if errors:
                where = "; ".join(f"{e['path']}: {e['message']}" for e in errors[:5])
                raise UpstreamError(f"the population database's {self.name} answer breaks its schema: "
                                    f"{where}")
        return _jsonable(value)

    def _fault(self, fault: Any) -> UpstreamFault:
        code = (fault.findtext("faultcode") or "").strip()
        text = (fault.findtext("faultstring") or "").strip()
        detail = fault.find("detail")
        return UpstreamFault(f"the population database refused the request: {code} {text}".strip(),
                             faultcode=code, faultstring=text,
                             faultdetail=None if detail is None else self._detail(detail))

    def _detail(self, detail: Any) -> Any:
        """Fault detail as JSON: elements the WSDL declares by its schema, others as plain text."""
        out: dict[str, Any] = {}
        for child in detail.iterchildren(tag=etree.Element):
            name = etree.QName(child).localname
            try:
                value = _jsonable(_serialize(self.types.get_element(child.tag).parse(child, self.types)))
            except (zeep.exceptions.Error, ValueError, TypeError):
                value = _plain(child)
            out[name] = value
        return out or ((detail.text or "").strip() or None)


def _body_child(root: Any) -> Any:
    if root.tag != _ENVELOPE:
        return None
    body = root.find(_BODY)
    if body is None:
        return None
    return next(body.iterchildren(tag=etree.Element), None)


def _plain(node: Any) -> Any:
    children = list(node.iterchildren(tag=etree.Element))
    if not children:
        return (node.text or "").strip()
    return {etree.QName(c).localname: _plain(c) for c in children}


def _serialize(value: Any) -> Any:
    """zeep's value objects as plain dicts and lists."""
    return zeep.helpers.serialize_object(value, dict)  # type: ignore[no-untyped-call]


def _jsonable(value: Any) -> Any:
    """zeep's Python values as JSON values: absent elements left out, dates ISO, decimals as text."""
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_jsonable(v) for v in value]
    if isinstance(value, str | bool | int | float) or value is None:
        return value
    if isinstance(value, dt.date | dt.time):
        return value.isoformat()
    if isinstance(value, bytes):
        return base64.b64encode(value).decode()
    return str(value)  # Decimal, durations, QNames


# --- checks compiled from the schema ----------------------------------------------------------------

_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")


class _Field(NamedTuple):
    required: bool
    min_occurs: int
    max_occurs: int | None  # None: unbounded; anything but 1 means a JSON array
    check: Check


class _Object:
    """A complex type: a JSON object whose members are the type's child elements and attributes."""

    __slots__ = ("fields", "name")

    def __init__(self, name: str) -> None:
        self.name = name
        self.fields: dict[str, _Field] = {}

    def __call__(self, value: Any, path: str, errors: Errors) -> None:
        if not isinstance(value, dict):
            errors.append({"path": path, "message": f"must be an object ({self.name})"})
            return
        fields = self.fields
        for key in value:
            if key not in fields:
                errors.append({"path": f"{path}.{key}", "message": f"is not a field of {self.name}"})
        for key, field in fields.items():
            item = value.get(key)
            where = f"{path}.{key}"
            if item is None:
                if field.required:
                    errors.append({"path": where, "message": "is required"})
            elif field.max_occurs == 1:
                field.check(item, where, errors)
            elif not isinstance(item, list):
                errors.append({"path": where, "message": "must be an array"})
            else:
                _check_count(item, field, where, errors)
                for i, member in enumerate(item):
                    field.check(member, f"{where}[{i}]", errors)


def _check_count(items: list[Any], field: _Field, where: str, errors: Errors) -> None:
    if field.required and len(items) < field.min_occurs:
        errors.append({"path": where, "message": f"needs at least {field.min_occurs} items"})
    if field.max_occurs is not None and len(items) > field.max_occurs:
        errors.append({"path": where, "message": f"takes at most {field.max_occurs} items"})


class _Simple:
    """A simple type: the JSON type its values take, then the XSD facets (pattern, length, enumeration)."""

    __slots__ = ("accepts", "expected", "facets", "lexical")

    def __init__(self, accepts: tuple[type, ...], expected: str, facets: list[Callable[[Any], None]],
                 lexical: Callable[[str], bool] | None) -> None:
        self.accepts = accepts
        self.expected = expected
        self.facets = [(_passes(facet), facet) for facet in facets]
        self.lexical = lexical

    def __call__(self, value: Any, path: str, errors: Errors) -> None:
        if not isinstance(value, self.accepts) or (isinstance(value, bool) and bool not in self.accepts):
            errors.append({"path": path, "message": f"must be {self.expected}"})
            return
        if isinstance(value, str):
            if _NOT_XML.search(value):
                errors.append({"path": path, "message": "contains characters XML cannot carry"})
                return
            if self.lexical is not None and not self.lexical(value):
                errors.append({"path": path, "message": f"must be {self.expected}"})
                return
        elif self.accepts is _DATES:
            return  # a date zeep parsed from the answer: its text was lexically right already
        for passes, facet in self.facets:
            if not passes(value):
                errors.append({"path": path, "message": _reason(facet, value)})
                return


def _passes(facet: Callable[[Any], None]) -> Callable[[Any], bool]:
    """A quick yes/no for the common facets; xmlschema's own facet still words the refusal."""
    if isinstance(facet, XsdPatternFacets):
        patterns = list(facet.patterns)
        return lambda value: any(p.match(value) for p in patterns)
    if isinstance(facet, XsdEnumerationFacets):
        allowed = list(facet.enumeration)
        return lambda value: value in allowed
    limit = getattr(facet, "value", None)
    if isinstance(facet, XsdMinLengthFacet) and isinstance(limit, int):
        return lambda value: not isinstance(value, str) or len(value) >= limit
    if isinstance(facet, XsdMaxLengthFacet) and isinstance(limit, int):
        return lambda value: not isinstance(value, str) or len(value) <= limit
    return lambda value: not _reason(facet, value)


def _reason(facet: Callable[[Any], None], value: Any) -> str:
    try:
        facet(value)
    except XMLSchemaValidationError as exc:
        return str(exc.reason or exc.message)
    return ""


_DATES = (str, dt.date, dt.time)
_KINDS: dict[type, tuple[tuple[type, ...], str]] = {
    str: ((str,), "a string"),
    bool: ((bool,), "true or false"),
    int: ((int,), "an integer"),
    Decimal: ((int, float, Decimal), "a number"),
    float: ((int, float, Decimal), "a number"),
}


class _Compiler:
    """Turns xmlschema's components into plain checks, once; recursive types share one check."""

    def __init__(self) -> None:
        self._done: dict[int, Check] = {}

    def element(self, element: Any) -> Check:
        return self.type(element.type, element.local_name)

    def type(self, xsd_type: Any, owner: str) -> Check:
        """The check for ``xsd_type``; ``owner`` (the element's name) names it in messages if anonymous."""
        done = self._done.get(id(xsd_type))
        if done is not None:
            return done
        if xsd_type.is_simple():
            check: Check = self._simple(xsd_type)
            self._done[id(xsd_type)] = check
            return check
        if xsd_type.has_simple_content() or xsd_type.mixed:
            raise ValueError(f"population connector: {xsd_type.name}: text content beside child "
                             "elements or attributes is not supported")
        obj = _Object(etree.QName(xsd_type.name).localname if xsd_type.name else owner)
        self._done[id(xsd_type)] = obj
        for child, required in _particles(xsd_type.content):
            obj.fields[child.local_name] = _Field(required, child.min_occurs, child.max_occurs,
                                                  self.type(child.type, child.local_name))
        for attribute in xsd_type.attributes.values():
            if attribute.local_name:
                obj.fields[attribute.local_name] = _Field(attribute.use == "required", 0, 1,
                                                          self.type(attribute.type, attribute.local_name))
        return obj

    def _simple(self, xsd_type: Any) -> _Simple:
        if xsd_type.is_list() or xsd_type.is_union():
            return _Simple((str,), f"a valid {xsd_type.name or 'value'}", [], xsd_type.is_valid)
        facets: list[Callable[[Any], None]] = []
        builtin = xsd_type
        while not (builtin.is_global() and builtin.target_namespace == XSD):
            if builtin.patterns is not None:
                facets.append(builtin.patterns)
            facets.extend(builtin.validators)
            builtin = builtin.base_type
        facets.extend(builtin.validators)
        accepts, expected = _KINDS.get(builtin.python_type,
                                       (_DATES, f"a valid {etree.QName(builtin.name).localname}"))
        lexical = builtin.is_valid if accepts is _DATES else None
        return _Simple(accepts, expected, facets, lexical)


def _particles(group: Any, optional: bool = False) -> Iterator[tuple[Any, bool]]:
    """A model group's elements, flattened, each with whether the JSON must have it."""
    if group is None:
        return
    if group.max_occurs != 1:
        raise ValueError("population connector: repeated model groups are not supported")
    optional = optional or group.min_occurs == 0 or group.model == "choice"
    for item in group:
        if isinstance(item, XsdGroup):
            yield from _particles(item, optional)
        elif isinstance(item, XsdElement):
            yield item, not optional and item.min_occurs > 0
        elif isinstance(item, XsdAnyElement):
            raise ValueError("population connector: xs:any wildcards are not supported")
