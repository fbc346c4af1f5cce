"""Parsing XML that strangers send: no DTD, no entities, no network, bounded size, depth and count.

Every XML document that enters the gateway (a SOAP request, an upstream's answer) goes through
``parse``. What it refuses, and how fast:

- a document over ``Limits.max_bytes``: before any parsing;
- any DTD, internal or external (``<!DOCTYPE``): billion laughs, quadratic blow-up, external
  entities (``file:``, ``http:``) and external DTDs all need one. libxml2 runs with entity
  substitution, DTD loading and network access off, so even a DTD that slips past the byte scan
  (another encoding) is read without expanding or fetching anything, then refused;
- more than ``Limits.max_elements`` elements or ``Limits.max_depth`` levels: a document whose
  ``<`` count could exceed the element limit is parsed incrementally and abandoned as soon as it
  crosses either limit, so memory stays bounded by the limits, not by the body size;
- any processing instruction (``<?target ...?>``, anywhere, before or after the root included; the
  XML declaration is not one): SOAP 1.1 section 3 forbids them in a SOAP message, and no document
  the gateway reads (SOAP requests, upstream answers, WSDL and XSD) needs one. They used to be
  dropped silently, so a pass-through forwarded them verbatim; now the document is refused.

Refusals raise ``XmlRefused`` with a ``kind`` (``malformed``, ``dtd``, ``too-large``, ``too-deep``,
``too-many-elements``, ``processing-instruction``) that entry points and connectors map to their
own errors.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any

from lxml import etree

__all__ = ["PARSER_OPTIONS", "Limits", "XmlRefused", "parse", "refuse_pis", "refused_syntax"]

_CHUNK = 65536


@dataclass(frozen=True, slots=True)
class Limits:
    max_bytes: int = 1_048_576
    max_depth: int = 64
    max_elements: int = 20_000


class XmlRefused(ValueError):
    """The document was not parsed; ``kind`` says why, the message says where."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind


# The hardened settings: shared with every reader that must parse as ``parse`` does, incrementally
# too (gateway/edxml streams attachments through a pull parser with them).
PARSER_OPTIONS: dict[str, Any] = dict(resolve_entities=False, no_network=True, load_dtd=False,
                                dtd_validation=False, huge_tree=False, remove_comments=True,
                                remove_pis=False, collect_ids=False, strip_cdata=True)
_local = threading.local()


def _parser() -> etree.XMLParser:
    parser: etree.XMLParser | None = getattr(_local, "parser", None)
    if parser is None:
        parser = _local.parser = etree.XMLParser(**PARSER_OPTIONS)
    return parser


def parse(data: bytes, limits: Limits = Limits()) -> Any:
    """The document's root element, or ``XmlRefused``."""
    if len(data) > limits.max_bytes:
        raise XmlRefused("too-large", f"the XML document is {len(data)} bytes, over the limit of "
                                      f"{limits.max_bytes}")
    if b"<!DOCTYPE" in data or b"<!ENTITY" in data:
        raise XmlRefused("dtd", "XML with a document type declaration (DTD) is refused")
    if not data.strip():
        raise XmlRefused("malformed", "the XML document is empty")
    tags = data.count(b"<")
    if tags > limits.max_elements:
        root = _parse_counting(data, limits)
    else:
        try:
            root = etree.fromstring(data, _parser())
        except etree.XMLSyntaxError as exc:
            raise refused_syntax(exc) from None
        if tags > limits.max_depth:
            _check_depth(root, limits.max_depth)
    if root.getroottree().docinfo.doctype:
        raise XmlRefused("dtd", "XML with a document type declaration (DTD) is refused")
    refuse_pis(root)
    return root


def refuse_pis(root: Any) -> None:
    """Refuse a processing instruction inside the root, or beside it (before or after)."""
    found = next(root.iter(etree.ProcessingInstruction), None)
    if found is None:
        found = next((n for n in (*root.itersiblings(preceding=True), *root.itersiblings())
                      if n.tag is etree.ProcessingInstruction), None)
    if found is not None:
        target = str(found.target)[:40]
        raise XmlRefused("processing-instruction", f"XML with a processing instruction (<?{target} ...?>) "
                         "is refused: SOAP 1.1 forbids them in a message")


def refused_syntax(exc: etree.XMLSyntaxError) -> XmlRefused:
    """lxml's syntax error as the refusal it means (too deep, a DTD or entity, malformed)."""
    message = str(exc.msg if getattr(exc, "msg", None) else exc)
    if "Excessive depth" in message or "Maximum nesting" in message:
        return XmlRefused("too-deep", f"the XML document nests too deeply: {message}")
    if "ntity" in message or "DOCTYPE" in message or "DTD" in message:
        return XmlRefused("dtd", f"XML with entities or a DTD is refused: {message}")
    return XmlRefused("malformed", f"the XML document is not well-formed: {message}")


def _check_depth(root: Any, max_depth: int) -> None:
    depth = 0
    for event, _ in etree.iterwalk(root, events=("start", "end")):
        if event == "start":
            depth += 1
            if depth > max_depth:
                raise XmlRefused("too-deep", f"the XML document nests deeper than {max_depth} levels")
        else:
            depth -= 1


def _parse_counting(data: bytes, limits: Limits) -> Any:
    """Parse in chunks, counting elements and depth from the parser's events, and stop early."""
    parser = etree.XMLPullParser(events=("start", "end"), **PARSER_OPTIONS)
    count = depth = 0
    try:
        for offset in range(0, len(data), _CHUNK):
            parser.feed(data[offset:offset + _CHUNK])
            for event, _ in parser.read_events():
                if event == "start":
                    count += 1
                    depth += 1
                    if count > limits.max_elements:
                        raise XmlRefused("too-many-elements", "the XML document has more than "
                                                              f"{limits.max_elements} elements")
                    if depth > limits.max_depth:
                        raise XmlRefused("too-deep",
                                         f"the XML document nests deeper than {limits.max_depth} levels")
                else:
                    depth -= 1
        root = parser.close()
    except etree.XMLSyntaxError as exc:
        raise refused_syntax(exc) from None
    return root
