"""SOAP 1.1 messages: reading one (plain or MIME multipart), its X-Road header, and writing them back.

Pure: bytes in, values out (or a ``gateway.soap.faults`` error naming what is wrong, in X-Road's
codes), so both directions test without sockets. Used by the SOAP entry point, the ``soap``
connector and its simulator.

The X-Road checks follow the X-Road message protocol 4.0 and its reference security server: exactly
one body element, whose local name starts with the service code (``getState``, ``getStateRequest``);
``client``, ``service``, ``id`` and ``protocolVersion`` present once each, the version ``4.x``;
identifiers with an ``objectType`` and the codes that type needs.
"""

from __future__ import annotations

import base64
import email.parser
import email.policy
import hashlib
from dataclasses import dataclass, field
from typing import Any

from lxml import etree

from gateway.errors import PayloadTooLarge
from gateway.soap.faults import (
    ClientFault,
    DuplicateHeaderField,
    InconsistentHeaders,
    InvalidClientIdentifier,
    InvalidContentType,
    InvalidProtocolVersion,
    InvalidServiceIdentifier,
    InvalidSoap,
    InvalidSoapBody,
    InvalidXml,
    MimeParsingFailed,
    MissingBody,
    MissingHeader,
    MissingHeaderField,
    MissingSoap,
)
from gateway.xml import safe

__all__ = ["Envelope", "Identifier", "XRoadHeader", "build", "fault_envelope", "read", "read_fault",
           "split_mime"]

SOAP = "http://schemas.xmlsoap.org/soap/envelope/"
SOAP12 = "http://www.w3.org/2003/05/soap-envelope"
XROAD = "http://x-road.eu/xsd/xroad.xsd"
IDEN = "http://x-road.eu/xsd/identifiers"
REPR = "http://x-road.eu/xsd/representation.xsd"
ENVELOPE = f"{{{SOAP}}}Envelope"
HEADER = f"{{{SOAP}}}Header"
BODY = f"{{{SOAP}}}Body"
FAULT = f"{{{SOAP}}}Fault"
XML_TYPES = ("text/xml", "application/soap+xml", "application/xml")
MULTIPART = ("multipart/related", "multipart/mixed")
SHA512 = "http://www.w3.org/2001/04/xmlenc#sha512"
_CODES = ("xRoadInstance", "memberClass", "memberCode", "subsystemCode", "serviceCode", "serviceVersion")
_HEADER_FIELDS = ("client", "service", "id", "userId", "issue", "protocolVersion")


@dataclass(frozen=True, slots=True)
class Identifier:
    object_type: str
    instance: str
    member_class: str
    member_code: str
    subsystem: str | None = None
    service_code: str | None = None
    version: str | None = None

    @property
    def subsystem_id(self) -> str:
        """``INSTANCE/CLASS/MEMBER[/SUBSYSTEM]``: the client as the gateway names clients."""
        base = f"{self.instance}/{self.member_class}/{self.member_code}"
        return f"{base}/{self.subsystem}" if self.subsystem else base

    @property
    def service_id(self) -> str:
        """``INSTANCE/CLASS/MEMBER[/SUBSYSTEM]/SERVICE[/VERSION]``."""
        out = f"{self.subsystem_id}/{self.service_code}"
        return f"{out}/{self.version}" if self.version else out


@dataclass(frozen=True, slots=True)
class XRoadHeader:
    client: Identifier | None = None
    service: Identifier | None = None
    id: str | None = None
    user_id: str | None = None
    issue: str | None = None
    protocol_version: str | None = None
    represented_party: str | None = None
    elements: tuple[Any, ...] = ()  # the X-Road header elements as they came, for the echo

    @property
    def present(self) -> bool:
        return bool(self.elements)


@dataclass(frozen=True, slots=True)
class Envelope:
    root: Any
    header: Any  # the Header element or None
    body: Any  # the single element in the Body
    xroad: XRoadHeader = field(default_factory=XRoadHeader)
    soap: bytes = b""  # the SOAP part's bytes (the whole body unless multipart)
    multipart: bool = False

    @property
    def request_hash(self) -> str:
        """X-Road's requestHash: base64 SHA-512 of the SOAP message as received."""
        return hash_of(self.soap)


def hash_of(data: bytes) -> str:
    """Base64 SHA-512, X-Road's request hash."""
    return base64.b64encode(hashlib.sha512(data).digest()).decode()


def media_type(content_type: str) -> str:
    return content_type.split(";", 1)[0].strip().lower()


def split_mime(data: bytes, content_type: str, limit: int) -> bytes:
    """The SOAP part of a MIME multipart message (the ``start`` part, else the first).

    Every part is checked as X-Road's decoder checks it: a part whose header is broken is refused
    (``Client.MimeParsingFailed``), a part with no ``Content-Type`` and a SOAP part that is not
    ``text/xml`` (or XOP) are ``Client.InvalidContentType``, a message with no part at all is
    ``Client.MissingSoap``; a Content-Type (the request's) that cannot be parsed at all is
    ``Client.InvalidSoap``."""
    if len(data) > limit:
        raise PayloadTooLarge(f"the body is larger than the {limit} bytes this gateway accepts")
    head = b"Content-Type: " + content_type.encode("latin-1", "replace") + b"\r\nMIME-Version: 1.0\r\n\r\n"
    message = _parse_mime(head, data)
    if not message.is_multipart():
        if message.get_boundary() is None:
            raise InvalidSoap("the multipart message has no boundary")
        raise MissingSoap("the multipart message has no parts, so no SOAP message")
    broken = [d for d in message.defects if type(d).__name__ in (
        "StartBoundaryNotFoundDefect", "CloseBoundaryNotFoundDefect", "MultipartInvariantViolationDefect",
        "NoBoundaryInMultipartDefect")]
    if broken:
        raise InvalidSoap(f"the multipart message is malformed: {type(broken[0]).__name__}")
    parts = list(message.iter_parts())
    if not parts:
        raise MissingSoap("the multipart message has no parts, so no SOAP message")
    for number, part in enumerate(parts, 1):
        _check_part(part, number)
    start = message.get_param("start", header="content-type")
    root = parts[0]
    if isinstance(start, str) and start:
        wanted = start.strip().strip("<>")
        root = next((p for p in parts if str(p.get("content-id", "")).strip().strip("<>") == wanted), root)
    part_type = root.get_content_type()
    if root.is_multipart() or part_type not in (*XML_TYPES, "application/xop+xml"):
        raise InvalidContentType(f"the multipart message's SOAP part is {part_type}, not text/xml")
    payload = root.get_payload(decode=True)
    if not isinstance(payload, bytes) or not payload.strip():
        raise InvalidSoap("the multipart message's SOAP part is empty")
    return payload


def _parse_mime(head: bytes, data: bytes) -> Any:
    """The parsed message; a header the email package cannot parse is the client's error.

    Its header parser raises (``IndexError`` on ``multipart/related; boundary=XX; 0*``, for one)
    instead of noting a defect, and which exceptions it may raise is not documented: any of them is
    the fault for a malformed message when the request's own Content-Type is to blame, else the
    fault for a broken part header."""
    try:
        return _mime_parser().parsebytes(head + data)
    except Exception as exc:
        if not _parses(head):  # the SOAP face's words for a request it cannot read at all
            raise InvalidSoap("the request could not be read as a SOAP message") from exc
        raise MimeParsingFailed("a part of the multipart message has a header that cannot be parsed") \
            from exc


def _parses(head: bytes) -> bool:
    try:
        _mime_parser().parsebytes(head)
    except Exception:
        return False
    return True


def _mime_parser() -> email.parser.BytesParser:
    return email.parser.BytesParser(policy=email.policy.HTTP)


_HEADER_DEFECTS = ("MissingHeaderBodySeparatorDefect", "InvalidHeaderDefect", "HeaderMissingRequiredValue",
                   "NonPrintableDefect", "InvalidMultipartContentTransferEncodingDefect")


def _check_part(part: Any, number: int) -> None:
    broken = [type(d).__name__ for d in part.defects if type(d).__name__ in _HEADER_DEFECTS]
    if broken:
        raise MimeParsingFailed(f"part {number} of the multipart message has a broken header ({broken[0]})")
    if part.get("content-type") is None:
        raise InvalidContentType(f"part {number} of the multipart message has no Content-Type")


def read(data: bytes, content_type: str, limits: safe.Limits, *, xroad: bool) -> Envelope:
    """A request's envelope; with ``xroad`` the X-Road header is required and checked in full."""
    kind = media_type(content_type)
    multipart = kind in MULTIPART
    if not data.strip():
        if multipart:  # X-Road: an empty multipart request has no SOAP part
            raise MissingSoap("the multipart request is empty: it has no SOAP part")
        raise InvalidSoap("the request is empty: a SOAP envelope was expected")
    if multipart:
        soap = split_mime(data, content_type, limits.max_bytes)
    elif kind in XML_TYPES or not kind:
        soap = data
    else:
        raise InvalidContentType(f"a SOAP request is text/xml (or multipart/related), not {kind}")
    root = parse(soap, limits)
    if root.tag == f"{{{SOAP12}}}Envelope":
        raise InvalidSoap("SOAP 1.2 is not supported here: send a SOAP 1.1 envelope")
    if root.tag != ENVELOPE:
        raise InvalidSoap(f"the document is {etree.QName(root).localname}, not a SOAP 1.1 Envelope")
    header = body = None
    for child in root.iterchildren(tag=etree.Element):
        if child.tag == HEADER and header is None and body is None:
            header = child
        elif child.tag == BODY and body is None:
            body = child
        else:
            raise InvalidSoap(f"unexpected {etree.QName(child).localname} in the SOAP Envelope")
    if body is None:
        raise MissingBody("the SOAP Envelope has no Body")
    children = list(body.iterchildren(tag=etree.Element))
    if len(children) != 1:
        raise InvalidSoapBody(f"the SOAP Body must hold exactly one element, not {len(children)}")
    element = children[0]
    if element.tag == FAULT:
        code = (element.findtext("faultcode") or "").strip()
        raise ClientFault(f"a SOAP Fault is not a request (it says {code[:64]!r})", faultcode=code)
    header_info = read_xroad(header, required=xroad)
    if header_info.service is not None and header_info.service.service_code:
        local = etree.QName(element).localname
        if not local.startswith(header_info.service.service_code):
            raise InconsistentHeaders(f"the service code {header_info.service.service_code} does not match "
                                      f"the body element {local}")
    return Envelope(root=root, header=header, body=element, xroad=header_info, soap=soap,
                    multipart=multipart)


def parse(data: bytes, limits: safe.Limits) -> Any:
    try:
        return safe.parse(data, limits)
    except safe.XmlRefused as exc:
        if exc.kind == "too-large":
            raise PayloadTooLarge(str(exc)) from None
        raise InvalidSoap(str(exc)) from None


def read_xroad(header: Any, *, required: bool) -> XRoadHeader:
    if header is None:
        if required:
            raise MissingHeader("the SOAP message has no Header with the X-Road fields")
        return XRoadHeader()
    found: dict[str, Any] = {}
    represented = None
    elements = []
    for child in header.iterchildren(tag=etree.Element):
        qname = etree.QName(child)
        if qname.namespace == REPR and qname.localname == "representedParty":
            if represented is not None:
                raise DuplicateHeaderField("the SOAP header has representedParty twice")
            represented = _party(child)
            elements.append(child)
            continue
        if qname.namespace != XROAD:
            continue
        elements.append(child)
        name = qname.localname
        if name in _HEADER_FIELDS or name == "requestHash":
            if name in found:
                raise DuplicateHeaderField(f"the SOAP header has {name} twice")
            found[name] = child
    if not elements:
        if required:
            raise MissingHeaderField("the SOAP header has none of the X-Road fields (client, service, id, "
                                     "protocolVersion)")
        return XRoadHeader()
    version = _text(found.get("protocolVersion"))
    if "protocolVersion" not in found and required:
        raise MissingHeaderField("the SOAP header has no protocolVersion")
    if version is not None and not version.startswith("4."):
        raise InvalidProtocolVersion(f"protocol version {version!r} is not supported (4.x is)")
    for name in ("client", "service", "id") if required else ():
        if name not in found:
            raise MissingHeaderField(f"the SOAP header has no {name}")
    client = _identifier(found["client"], ("MEMBER", "SUBSYSTEM"), InvalidClientIdentifier) \
        if "client" in found else None
    service = _identifier(found["service"], ("SERVICE",), InvalidServiceIdentifier) \
        if "service" in found else None
    message_id = _text(found.get("id"))  # present, but may be empty: the gateway then numbers it
    return XRoadHeader(client=client, service=service, id=message_id, user_id=_text(found.get("userId")),
                       issue=_text(found.get("issue")), protocol_version=version,
                       represented_party=represented, elements=tuple(elements))


def _text(node: Any) -> str | None:
    if node is None:
        return None
    return (node.text or "").strip()


def _party(node: Any) -> str:
    party_class = _text(node.find(f"{{{REPR}}}partyClass"))
    code = _text(node.find(f"{{{REPR}}}partyCode"))
    if not code:
        raise MissingHeaderField("representedParty has no partyCode")
    return f"{party_class}/{code}" if party_class else code


def _identifier(node: Any, types: tuple[str, ...], error: type[Exception]) -> Identifier:
    name = etree.QName(node).localname
    object_type = node.get(f"{{{IDEN}}}objectType")
    if object_type is None:  # X-Road's parser: the header is not valid XML for its schema
        raise InvalidXml(f"{name} has no objectType")
    if object_type not in types:
        raise InvalidXml(f"{name} has objectType {object_type[:32]!r}; expected {' or '.join(types)}")
    codes: dict[str, str] = {}
    for child in node.iterchildren(tag=etree.Element):
        qname = etree.QName(child)
        if qname.namespace != IDEN or qname.localname not in _CODES:
            raise error(f"{name} has an unexpected element {qname.localname}")
        if qname.localname in codes:
            raise error(f"{name} has {qname.localname} twice")
        value = (child.text or "").strip()
        if not value:
            raise error(f"{name}'s {qname.localname} is empty")
        codes[qname.localname] = value
    needed = ["xRoadInstance", "memberClass", "memberCode"]
    if object_type == "SUBSYSTEM":
        needed.append("subsystemCode")
    if object_type == "SERVICE":
        needed.append("serviceCode")
    missing = [n for n in needed if n not in codes]
    if missing:
        raise error(f"{name} ({object_type}) lacks {', '.join(missing)}")
    if object_type == "MEMBER" and "subsystemCode" in codes:
        raise error(f"{name} is a MEMBER but names a subsystem")
    return Identifier(object_type, codes["xRoadInstance"], codes["memberClass"], codes["memberCode"],
                      codes.get("subsystemCode"), codes.get("serviceCode"), codes.get("serviceVersion"))


# --- writing -------------------------------------------------------------------------------------------

def build(nsmap: dict[str, str] | None = None) -> tuple[Any, Any, Any]:
    """An empty envelope: (Envelope, Header, Body). Prefixes in ``nsmap`` are declared on the root."""
    root = etree.Element(ENVELOPE, nsmap={"SOAP-ENV": SOAP, **(nsmap or {})})
    header = etree.SubElement(root, HEADER)
    body = etree.SubElement(root, BODY)
    return root, header, body


def serialise(root: Any) -> bytes:
    wire: bytes = etree.tostring(root, xml_declaration=True, encoding="utf-8")
    return wire


def fault_envelope(code: str, text: str, details: list[Any] | None = None, *,
                   header: list[Any] | None = None) -> bytes:
    """A SOAP 1.1 Fault. ``details`` are elements for ``<detail>``; ``header`` elements are echoed."""
    root = etree.Element(ENVELOPE, nsmap={"SOAP-ENV": SOAP})
    if header:
        head = etree.SubElement(root, HEADER)
        for element in header:
            head.append(_copy(element))
    body = etree.SubElement(root, BODY)
    fault = etree.SubElement(body, FAULT)
    etree.SubElement(fault, "faultcode").text = code
    etree.SubElement(fault, "faultstring").text = _xml_safe(text)
    if details:
        holder = etree.SubElement(fault, "detail")
        for element in details:
            holder.append(element)
    return serialise(root)


def _copy(element: Any) -> Any:
    import copy

    duplicate = copy.deepcopy(element)
    duplicate.tail = None
    return duplicate


def _xml_safe(text: str) -> str:
    return "".join(c if c in "\t\n\r" or (" " <= c <= "\ud7ff") or ("\ue000" <= c <= "\ufffd") else "?"
                   for c in text)


def echo_header(xroad: XRoadHeader, request_hash: str | None) -> list[Any]:
    """The response header X-Road asks for: the request's fields, then the requestHash."""
    out = [_copy(e) for e in xroad.elements if etree.QName(e).localname != "requestHash"]
    if request_hash is not None:
        node = etree.Element(f"{{{XROAD}}}requestHash", nsmap={"xroad": XROAD}, algorithmId=SHA512)
        node.text = request_hash
        out.append(node)
    return out


@dataclass(frozen=True, slots=True)
class Fault:
    code: str
    string: str
    actor: str | None
    detail: Any  # the <detail> element or None


def read_fault(node: Any) -> Fault:
    code = (node.findtext("faultcode") or "").strip()
    text = (node.findtext("faultstring") or "").strip()
    actor = node.findtext("faultactor")
    return Fault(code, text, actor.strip() if actor else None, node.find("detail"))


def body_of(root: Any) -> Any:
    """The first element of an envelope's Body (None if there is none, or no envelope)."""
    if root.tag != ENVELOPE:
        return None
    body = root.find(BODY)
    if body is None:
        return None
    return next(body.iterchildren(tag=etree.Element), None)
