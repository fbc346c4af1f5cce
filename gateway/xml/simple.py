"""Simple XSD types, compiled: XML text <-> JSON value, with the type's lexical space and facets.

One ``Simple`` per simple type, built once from xmlschema's component. ``decode`` reads an element's
or attribute's text (white space normalised as the type says) and gives the JSON value; ``encode``
takes a JSON value and gives the text, which is then checked by the same ``decode``, so that nothing
invalid is ever written. Both note ``{"path", "message"}`` in an error list instead of raising, until
the list holds ``MAX_ERRORS``: then ``note`` raises ``TooManyErrors`` (the codec stops there).

JSON values by type (docs/translation.md): ``xs:boolean`` true/false; the integer types a number
(a string of digits beyond 2^53, where I-JSON and JavaScript numbers stop being exact);
``xs:float``/``xs:double`` a number
(``"INF"``, ``"-INF"``, ``"NaN"`` as strings); ``xs:decimal`` a string (exact); lists an array;
``xs:QName`` ``"{namespace}local"``; everything else (strings, dates, durations, binary, URIs, unions)
the text.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from decimal import Decimal, InvalidOperation
from typing import Any

from xmlschema import XMLSchemaValidationError
from xmlschema.validators import XsdList, XsdUnion
from xmlschema.validators.facets import (
    XsdEnumerationFacets,
    XsdMaxLengthFacet,
    XsdMinLengthFacet,
    XsdPatternFacets,
)

__all__ = ["MAX_ERRORS", "NOT_XML", "Errors", "Simple", "TooManyErrors", "compile_simple", "note"]

XSD = "http://www.w3.org/2001/XMLSchema"
Errors = list[dict[str, str]]
MAX_ERRORS = 50  # a hostile message must not make its fault detail (or 422) as long as itself
SAFE_INTEGER = 2**53 - 1  # I-JSON (RFC 7493): integers beyond are not exact in every JSON reader

NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")
_INTEGER = re.compile(r"[+-]?[0-9]+\Z")
_DECIMAL = re.compile(r"[+-]?([0-9]+(\.[0-9]*)?|\.[0-9]+)\Z")
_FLOAT = re.compile(r"([+-]?([0-9]+(\.[0-9]*)?|\.[0-9]+)([Ee][+-]?[0-9]+)?|[+-]?INF|NaN)\Z")
_SPACES = re.compile(r"[ \t\n\r]+")
_SPECIAL_FLOATS = {"INF": "INF", "+INF": "INF", "-INF": "-INF", "NaN": "NaN"}
_INF = float("inf")
_INTEGER_TYPES = {f"{{{XSD}}}{n}" for n in (
    "integer", "long", "int", "short", "byte", "nonNegativeInteger", "positiveInteger",
    "nonPositiveInteger", "negativeInteger", "unsignedLong", "unsignedInt", "unsignedShort",
    "unsignedByte")}
_LEXICAL_AS_STRING = {f"{{{XSD}}}{n}" for n in ("anySimpleType", "anyAtomicType", "untypedAtomic")}


def collapse(text: str) -> str:
    return _SPACES.sub(" ", text).strip(" ")


def replace(text: str) -> str:
    return text.replace("\t", " ").replace("\n", " ").replace("\r", " ")


_WHITESPACE: dict[str | None, Callable[[str], str]] = {
    "collapse": collapse, "replace": replace, "preserve": lambda text: text, None: lambda text: text}


class TooManyErrors(Exception):
    """MAX_ERRORS problems are listed: whoever started the translation stops and reports those."""


def note(errors: Errors, path: str, message: str) -> None:
    """List a problem; every one goes through here, so the cap holds wherever it is found."""
    errors.append({"path": path, "message": message})
    if len(errors) >= MAX_ERRORS:
        raise TooManyErrors


class Simple:
    """A compiled simple type. Subclasses decide the JSON shape; this one is text in, text out."""

    kind = "text"
    __slots__ = ("checks", "name", "normalise", "patterns", "to_python")

    def __init__(self, name: str, normalise: Callable[[str], str], patterns: list[Any],
                 checks: list[tuple[Callable[[Any], bool], Any]],
                 to_python: Callable[[str], Any] | None = None) -> None:
        self.name = name
        self.normalise = normalise
        self.patterns = patterns  # XsdPatternFacets, one per derivation step: all must match
        self.checks = checks  # (quick test, xmlschema facet for the message) on the typed value
        self.to_python = to_python

    # -- XML -> JSON --------------------------------------------------------------------------------

    def decode(self, text: str, path: str, errors: Errors, node: Any = None) -> Any:
        text = self.normalise(text)
        value = self.value(text, path, errors, node)
        if value is _BAD:
            return None
        return self.json(text, value)

    def value(self, text: str, path: str, errors: Errors, node: Any = None) -> Any:
        """The typed value of already-normalised text after every facet, or _BAD (error noted)."""
        for facet in self.patterns:
            if not any(p.match(text) for p in facet.patterns):
                note(errors, path, f"{text!r} does not match the pattern of {self.name}")
                return _BAD
        value = self.parse(text, path, errors, node)
        if value is _BAD:
            return _BAD
        for passes, facet in self.checks:
            if not passes(value):
                note(errors, path, _reason(facet, value, self.name))
                return _BAD
        return value

    def parse(self, text: str, path: str, errors: Errors, node: Any) -> Any:
        if self.to_python is None:
            return text
        try:
            return self.to_python(text)
        except (ValueError, TypeError, ArithmeticError, LookupError, XMLSchemaValidationError):
            note(errors, path, f"{text!r} is not a valid {self.name}")
            return _BAD

    def json(self, text: str, value: Any) -> Any:
        return text

    # -- JSON -> XML ----------------------------------------------------------------------------------

    def encode(self, value: Any, path: str, errors: Errors, node: Any = None) -> str | None:
        text = self.text(value, path, errors)
        if text is None:
            return None
        if NOT_XML.search(text):
            note(errors, path, "contains characters XML cannot carry")
            return None
        before = len(errors)
        self.value(self.normalise(text), path, errors, node)
        return text if len(errors) == before else None

    def text(self, value: Any, path: str, errors: Errors) -> str | None:
        if isinstance(value, str):
            return value
        note(errors, path, f"must be a string ({self.name})")
        return None


class _Bad:
    def __repr__(self) -> str:
        return "<invalid>"


_BAD: Any = _Bad()


class Boolean(Simple):
    kind = "boolean"
    __slots__ = ()

    def parse(self, text: str, path: str, errors: Errors, node: Any) -> Any:
        if text in ("true", "1"):
            return True
        if text in ("false", "0"):
            return False
        note(errors, path, f"{text!r} is not a boolean (true, false, 1, 0)")
        return _BAD

    def json(self, text: str, value: Any) -> Any:
        return value

    def text(self, value: Any, path: str, errors: Errors) -> str | None:
        if isinstance(value, bool):
            return "true" if value else "false"
        note(errors, path, "must be true or false")
        return None


class Integer(Simple):
    kind = "integer"
    __slots__ = ()

    def parse(self, text: str, path: str, errors: Errors, node: Any) -> Any:
        if _INTEGER.match(text):
            return int(text)
        note(errors, path, f"{text!r} is not an integer ({self.name})")
        return _BAD

    def json(self, text: str, value: Any) -> Any:
        return value if -SAFE_INTEGER <= value <= SAFE_INTEGER else str(value)

    def text(self, value: Any, path: str, errors: Errors) -> str | None:
        if isinstance(value, int) and not isinstance(value, bool):
            return str(value)
        if isinstance(value, str) and _INTEGER.match(value):
            return value  # beyond 2^53 integers travel as strings
        note(errors, path, f"must be an integer ({self.name})")
        return None


class Decimal_(Simple):
    kind = "decimal"
    __slots__ = ()

    def parse(self, text: str, path: str, errors: Errors, node: Any) -> Any:
        if _DECIMAL.match(text):
            try:
                return Decimal(text)
            except InvalidOperation:
                pass
        note(errors, path, f"{text!r} is not a decimal number ({self.name})")
        return _BAD

    def text(self, value: Any, path: str, errors: Errors) -> str | None:
        if isinstance(value, str):
            return value
        if isinstance(value, int) and not isinstance(value, bool):
            return str(value)
        if isinstance(value, float) and value == value and value not in (float("inf"), float("-inf")):
            return format(Decimal(repr(value)), "f")
        note(errors, path, f"must be a decimal number as a string ({self.name})")
        return None


class Float(Simple):
    kind = "float"
    __slots__ = ()

    def parse(self, text: str, path: str, errors: Errors, node: Any) -> Any:
        if _FLOAT.match(text):
            special = _SPECIAL_FLOATS.get(text)
            return float(special.replace("INF", "inf").replace("NaN", "nan")) if special else float(text)
        note(errors, path, f"{text!r} is not a floating-point number ({self.name})")
        return _BAD

    def json(self, text: str, value: Any) -> Any:
        if value != value:
            return "NaN"
        if value in (_INF, -_INF):  # INF, or a number beyond the type's range that rounds to it
            return "INF" if value > 0 else "-INF"
        return value

    def text(self, value: Any, path: str, errors: Errors) -> str | None:
        if isinstance(value, int | float) and not isinstance(value, bool):
            number = float(value)
            if number != number:
                return "NaN"
            if number in (float("inf"), float("-inf")):
                return "INF" if number > 0 else "-INF"
            return repr(number)
        if isinstance(value, str) and value in _SPECIAL_FLOATS:
            return value
        note(errors, path, f"must be a number, or \"INF\", \"-INF\", \"NaN\" ({self.name})")
        return None


class QName(Simple):
    """``prefix:local`` in XML, ``{namespace}local`` in JSON; the prefix is found or declared."""

    kind = "qname"
    __slots__ = ()

    def parse(self, text: str, path: str, errors: Errors, node: Any) -> Any:
        prefix, _, local = text.rpartition(":")
        namespace = (node.nsmap if node is not None else {}).get(prefix or None)
        if prefix and namespace is None:
            note(errors, path, f"the prefix of {text!r} is not declared")
            return _BAD
        return f"{{{namespace}}}{local}" if namespace else local

    def json(self, text: str, value: Any) -> Any:
        return value

    def encode(self, value: Any, path: str, errors: Errors, node: Any = None) -> str | None:
        """``node`` here is the element being written: the prefix must be in scope there."""
        match = _CLARK.fullmatch(value) if isinstance(value, str) else None
        if match is None:
            note(errors, path, f"must be a name as \"{{namespace}}local\" ({self.name})")
            return None
        namespace, local = match.group(1), match.group(2)
        if not namespace:
            return local
        scope = node.nsmap if node is not None else {}
        prefix = next((p for p, uri in scope.items() if uri == namespace and p), None)
        if not prefix:
            note(errors, path, f"no prefix is declared for {namespace}")
            return None
        return f"{prefix}:{local}"


_CLARK = re.compile(r"(?:\{([^{}]*)\})?([^\W\d][\w.\-]*)")


class List(Simple):
    kind = "list"
    __slots__ = ("item",)

    def __init__(self, name: str, item: Simple, patterns: list[Any],
                 checks: list[tuple[Callable[[Any], bool], Any]]) -> None:
        super().__init__(name, collapse, patterns, checks)
        self.item = item

    def parse(self, text: str, path: str, errors: Errors, node: Any) -> Any:
        items = _Items()
        for i, part in enumerate(text.split(" ") if text else []):
            value = self.item.value(self.item.normalise(part), f"{path}[{i}]", errors, node)
            if value is _BAD:
                return _BAD
            items.append(value)
            items.parts.append(part)
        return items

    def json(self, text: str, value: Any) -> Any:
        return [self.item.json(part, item) for part, item in zip(value.parts, value, strict=True)]

    def text(self, value: Any, path: str, errors: Errors) -> str | None:
        if not isinstance(value, list):
            note(errors, path, f"must be an array ({self.name})")
            return None
        parts = []
        for i, item in enumerate(value):
            part = self.item.text(item, f"{path}[{i}]", errors)
            if part is None:
                return None
            if not part.strip() or _SPACES.search(part.strip()):
                note(errors, f"{path}[{i}]", "list items cannot be empty or hold spaces")
                return None
            parts.append(part.strip())
        return " ".join(parts)


class _Items(list[Any]):
    """A list's typed items, as a restriction's facets see them (length counts items, an enumeration
    compares whole lists), with the text of each for the JSON."""

    __slots__ = ("parts",)

    def __init__(self) -> None:
        super().__init__()
        self.parts: list[str] = []


class Union(Simple):
    """A union's value is its text: which member type reads it is the reader's business."""

    kind = "union"
    __slots__ = ("members",)

    def __init__(self, name: str, members: list[Simple], patterns: list[Any],
                 checks: list[tuple[Callable[[Any], bool], Any]]) -> None:
        super().__init__(name, collapse, patterns, checks)
        self.members = members

    def parse(self, text: str, path: str, errors: Errors, node: Any) -> Any:
        for member in self.members:
            attempt: Errors = []
            value = member.value(member.normalise(text), path, attempt, node)
            if value is not _BAD:
                return value
        note(errors, path, f"{text!r} is not a valid {self.name}")
        return _BAD

    def text(self, value: Any, path: str, errors: Errors) -> str | None:
        if isinstance(value, bool):
            return "true" if value else "false"
        if isinstance(value, int | float):
            return str(value)
        return super().text(value, path, errors)


# --- compiling ---------------------------------------------------------------------------------------

def _local(name: str | None) -> str:
    if not name:
        return "value"
    return name.rsplit("}", 1)[-1]


def _passes(facet: Any) -> Callable[[Any], bool]:
    """A quick yes/no for the common facets; xmlschema's own facet decides (and words) the rest."""
    if isinstance(facet, XsdEnumerationFacets):
        allowed = list(facet.enumeration)
        return lambda value: value in allowed
    limit = getattr(facet, "value", None)
    if isinstance(facet, XsdMinLengthFacet) and isinstance(limit, int):
        return lambda value: not isinstance(value, str | list) or len(value) >= limit
    if isinstance(facet, XsdMaxLengthFacet) and isinstance(limit, int):
        return lambda value: not isinstance(value, str | list) or len(value) <= limit

    def slow(value: Any) -> bool:
        try:
            facet(value)
        except XMLSchemaValidationError:
            return False
        return True
    return slow


def _reason(facet: Any, value: Any, name: str) -> str:
    try:
        facet(value)
    except XMLSchemaValidationError as exc:
        return str(exc.reason or exc.message)
    return f"{value!r} is not a valid {name}"


def _facets(xsd_type: Any) -> tuple[Any, list[Any], list[tuple[Callable[[Any], bool], Any]]]:
    """Walk the restriction chain to the built-in type, or to the list or union type a restriction
    narrows: (that type, pattern facets, other checks). A restriction's facets apply to the whole
    list (``xs:length`` counts items) or to the union's value."""
    patterns: list[Any] = []
    checks: list[tuple[Callable[[Any], bool], Any]] = []
    builtin = xsd_type
    while not (builtin.is_global() and builtin.target_namespace == XSD):
        if getattr(builtin, "patterns", None) is not None:
            patterns.append(builtin.patterns)
        checks.extend((_passes(v), v) for v in getattr(builtin, "validators", ())
                      if not isinstance(v, XsdPatternFacets))
        # is_list()/is_union() are also true of a restriction of one, which has no item or member types
        if isinstance(builtin, XsdList | XsdUnion):
            break
        builtin = builtin.base_type
    return builtin, patterns, checks


def compile_simple(xsd_type: Any) -> Simple:
    """The compiled form of an xmlschema simple type (atomic, list or union)."""
    name = _local(xsd_type.name) if xsd_type.name else "value"
    base, patterns, checks = _facets(xsd_type)
    if base.is_list():
        item = compile_simple(base.item_type)
        return List(name, item, patterns, checks)
    if base.is_union():
        members = [compile_simple(m) for m in base.member_types]
        return Union(name, members, patterns, checks)
    # built-in atomic: its own facets (ranges of xs:int, the pattern of xs:language) apply too
    if getattr(base, "patterns", None) is not None:
        patterns.append(base.patterns)
    checks.extend((_passes(v), v) for v in getattr(base, "validators", ())
                  if not isinstance(v, XsdPatternFacets))
    white = getattr(xsd_type, "white_space", None) or getattr(base, "white_space", None)
    normalise = _WHITESPACE.get(white, collapse)
    primitive = base.primitive_type.name if hasattr(base, "primitive_type") else base.name
    if base.name in _INTEGER_TYPES:
        return Integer(name, collapse, patterns, checks)
    if primitive == f"{{{XSD}}}boolean":
        return Boolean(name, collapse, patterns, checks)
    if primitive == f"{{{XSD}}}decimal":
        return Decimal_(name, collapse, patterns, checks)
    if primitive in (f"{{{XSD}}}float", f"{{{XSD}}}double"):
        return Float(name, collapse, patterns, checks)
    if primitive in (f"{{{XSD}}}QName", f"{{{XSD}}}NOTATION"):
        return QName(name, collapse, patterns, [])
    if primitive == f"{{{XSD}}}string" or base.name in _LEXICAL_AS_STRING:
        return Simple(name, normalise, patterns, checks)
    return Simple(name, normalise, patterns, checks, base.to_python)
