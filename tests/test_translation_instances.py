"""Valid XML instances from XSD declarations, for the property tests; a schema-aware canonical form.

``instances(declaration)`` is a hypothesis strategy of lxml elements valid for an xmlschema
``XsdElement``: occurrences, choices, ``xs:all`` orders, substitution groups, wildcards, mixed
content, attributes (declared and wildcard), nil, and simple values in their lexical variety (white
space around collapsed values, ``1`` for true, ``+05`` for 5, exponents for doubles). Every instance
is checked with xmlschema, the reference validator, before use.

``canonical(element, declaration)`` is what "the same document" means in the round-trip properties:
names as ``{namespace}local`` (prefixes do not count), attributes as a set, element-only white space
dropped, mixed text kept exactly, and each simple value as xmlschema decodes it by its type (so
``1`` and ``true``, ``+05`` and ``5`` are the same value). It uses xmlschema only, never the code
under test.
"""

from __future__ import annotations

import base64
import datetime as dt
import string
from decimal import Decimal
from typing import Any

from hypothesis import strategies as st
from lxml import etree

XSD = "http://www.w3.org/2001/XMLSchema"
XSI = "http://www.w3.org/2001/XMLSchema-instance"
XSI_NIL = f"{{{XSI}}}nil"
ANY_NAMESPACES = ("urn:lienthong:test:any", "urn:lienthong:test:other", "")
MAX_REPEAT = 3
MAX_DEPTH = 5

_XML_TEXT = st.characters(codec="utf-8", exclude_categories=("Cs", "Cc", "Co"),
                          exclude_characters="\ufffe\uffff") | st.sampled_from(" \t\n\r")


def _b(name: str) -> str:
    return f"{{{XSD}}}{name}"


# --- simple values -------------------------------------------------------------------------------------

def _chain(xsd_type: Any) -> list[Any]:
    out = []
    t = xsd_type
    while t is not None:
        out.append(t)
        if t.is_global() and t.target_namespace == XSD:
            break
        if t.is_list() or t.is_union():
            break
        t = getattr(t, "base_type", None)
    return out


def _builtin(xsd_type: Any) -> Any:
    return _chain(xsd_type)[-1]


def _enumeration(xsd_type: Any) -> list[str] | None:
    for t in _chain(xsd_type):
        facet = t.get_facet(_b("enumeration")) if hasattr(t, "get_facet") else None
        if facet is not None:
            return [e.get("value") for e in facet]
    return None


def _pattern(xsd_type: Any) -> str | None:
    for t in _chain(xsd_type):
        patterns = getattr(t, "patterns", None)
        if patterns is not None and patterns.patterns:
            return str(patterns.patterns[0].pattern)
    return None


def _limits(xsd_type: Any) -> tuple[int, int | None]:
    low, high = 0, None
    for t in reversed(_chain(xsd_type)):
        for name in ("length", "minLength", "maxLength"):
            facet = t.get_facet(_b(name)) if hasattr(t, "get_facet") else None
            if facet is None:
                continue
            if name in ("length", "minLength"):
                low = max(low, facet.value)
            if name in ("length", "maxLength"):
                high = facet.value if high is None else min(high, facet.value)
    return low, high


def _spaced(text: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    """Values whose white space collapses: sometimes with spaces, tabs or newlines around them."""
    pad = st.sampled_from(["", "", "", " ", "\n  ", "\t"])
    return st.builds(lambda a, v, b: a + v + b, pad, text, pad)


_STRATEGIES: dict[int, tuple[Any, st.SearchStrategy[str]]] = {}


def lexical(xsd_type: Any) -> st.SearchStrategy[str]:
    """Lexical forms valid for a simple type (checked by xmlschema); built once per type."""
    known = _STRATEGIES.get(id(xsd_type))
    if known is None or known[0] is not xsd_type:
        strategy = _lexical(xsd_type).filter(lambda text: bool(xsd_type.is_valid(text)))
        known = _STRATEGIES[id(xsd_type)] = (xsd_type, strategy)
    return known[1]


def _lexical(xsd_type: Any) -> st.SearchStrategy[str]:
    builtin = _builtin(xsd_type)
    if builtin.is_list():
        item = lexical(builtin.item_type)
        low, high = _limits(xsd_type)
        return st.lists(item.map(str.strip).filter(lambda s: s != "" and " " not in s),
                        min_size=max(low, 0), max_size=high if high is not None else 4).map(" ".join)
    if builtin.is_union():
        return st.one_of([lexical(m) for m in builtin.member_types])
    enum = _enumeration(xsd_type)
    if enum is not None:
        return st.sampled_from(enum)
    pattern = _pattern(xsd_type)
    if pattern is not None:
        return st.from_regex(pattern, fullmatch=True)
    name = builtin.name
    primitive = builtin.primitive_type.name if hasattr(builtin, "primitive_type") else name
    low, high = _limits(xsd_type)
    if primitive == _b("string"):
        if name in (_b("string"), _b("anySimpleType")):
            return st.text(_XML_TEXT, min_size=low, max_size=high if high is not None else 12)
        if name == _b("normalizedString"):
            return st.text(_XML_TEXT, min_size=low, max_size=high if high is not None else 12)
        if name == _b("language"):
            return st.sampled_from(["vi", "en", "vi-VN", "en-GB"])
        word = st.text(string.ascii_letters + "0123456789_-.", min_size=1, max_size=8)
        if name in (_b("Name"), _b("NCName"), _b("ID"), _b("IDREF"), _b("ENTITY")):
            word = st.from_regex(r"[A-Za-z_][A-Za-z0-9_.\-]{0,7}", fullmatch=True)
        if name == _b("NMTOKEN"):
            return word
        return _spaced(st.lists(word, min_size=1, max_size=3).map(" ".join))
    if primitive == _b("boolean"):
        return _spaced(st.sampled_from(["true", "false", "1", "0"]))
    if primitive == _b("decimal"):
        lo = getattr(xsd_type, "min_value", None)
        hi = getattr(xsd_type, "max_value", None)
        if name.endswith(("nteger", "long", "int", "short", "byte", "Long", "Int", "Short", "Byte")):
            lo = int(lo) if lo is not None else -(2**70)
            hi = int(hi) if hi is not None else 2**70
            lo, hi = max(lo, -(2**70)), min(hi, 2**70)
            return _spaced(st.builds(_integer_text, st.integers(lo, hi), st.booleans()))
        places = _facet(xsd_type, "fractionDigits")
        total = _facet(xsd_type, "totalDigits")
        digits = st.integers(0, 4) if places is None else st.just(places)
        bound = Decimal(10) ** (min(total, 12) - (places or 0)) - 1 if total else Decimal(10**9)
        lo_d = max(Decimal(lo), -bound) if lo is not None else -bound
        hi_d = min(Decimal(hi), bound) if hi is not None else bound
        return _spaced(st.builds(lambda d, n: format(round(d, n), "f"),
                                 st.decimals(allow_nan=False, allow_infinity=False, min_value=lo_d,
                                             max_value=hi_d), digits))
    if primitive in (_b("float"), _b("double")):
        width = 32 if primitive == _b("float") else 64
        numbers = st.floats(allow_nan=False, allow_infinity=False, width=width)
        return _spaced(st.one_of(numbers.map(repr), numbers.map(lambda f: f"{f:E}"),
                                 st.sampled_from(["INF", "-INF", "NaN", "1E3", "-0", ".5"])))
    if primitive == _b("date"):
        return st.builds(lambda d, tz: d.isoformat() + tz, st.dates(dt.date(1, 1, 1), dt.date(9999, 12, 31)),
                         st.sampled_from(["", "Z", "+07:00", "-05:30"]))
    if primitive == _b("dateTime"):
        return st.builds(lambda d, tz: d.replace(microsecond=0).isoformat() + tz,
                         st.datetimes(dt.datetime(1900, 1, 1), dt.datetime(2100, 1, 1)),
                         st.sampled_from(["", "Z", "+07:00"]))
    if primitive == _b("time"):
        return st.builds(lambda t, tz: t.replace(microsecond=0).isoformat() + tz, st.times(),
                         st.sampled_from(["", "Z"]))
    if primitive == _b("gYear"):
        return st.integers(1000, 2999).map(str)
    if primitive == _b("duration"):
        return st.from_regex(r"P[0-9]{1,2}Y([0-9]{1,2}M)?(T[0-9]{1,2}H)?", fullmatch=True)
    if primitive == _b("base64Binary"):
        return st.binary(max_size=12).map(lambda b: base64.b64encode(b).decode())
    if primitive == _b("hexBinary"):
        return st.binary(max_size=12).map(lambda b: b.hex().upper())
    if primitive == _b("anyURI"):
        return st.sampled_from(["http://example.org/a", "urn:x:y", "relative/path", ""])
    return st.text(string.ascii_letters, min_size=1, max_size=8)


def _facet(xsd_type: Any, name: str) -> Any:
    for t in _chain(xsd_type):
        facet = t.get_facet(_b(name)) if hasattr(t, "get_facet") else None
        if facet is not None:
            return facet.value
    return None


def _integer_text(value: int, plus: bool) -> str:
    return f"+{value}" if plus and value >= 0 else str(value)


# --- elements -----------------------------------------------------------------------------------------

def instances(declaration: Any) -> st.SearchStrategy[Any]:
    """Valid instances of a global element declaration (as lxml elements)."""
    schema = declaration.schema

    @st.composite
    def build(draw: Any) -> Any:
        node = _element(draw, declaration, None, 0)
        assert schema.is_valid(node), (etree.tostring(node), list(schema.iter_errors(node))[:2])
        return node

    return build()


def _element(draw: Any, decl: Any, parent: Any, depth: int) -> Any:
    node = etree.Element(decl.name) if parent is None else etree.SubElement(parent, decl.name)
    xsd_type = decl.type
    if decl.nillable and draw(st.integers(0, 9)) == 0:
        node.set(XSI_NIL, draw(st.sampled_from(["true", "1"])))
        if xsd_type.is_complex():
            _attributes(draw, xsd_type, node)
        return node
    if xsd_type.is_simple():
        node.text = draw(lexical(xsd_type)) if decl.fixed is None else decl.fixed
        return node
    _attributes(draw, xsd_type, node)
    if xsd_type.name == _b("anyType"):
        _untyped_content(draw, node, depth)
        return node
    if xsd_type.has_simple_content():
        node.text = draw(lexical(xsd_type.content))
        return node
    if xsd_type.content is None or xsd_type.is_empty():
        return node
    children = _group(draw, xsd_type.content, node, depth)
    del children
    if xsd_type.mixed:
        texts = st.text(_XML_TEXT, max_size=6)
        node.text = draw(texts) or None
        for child in node:
            child.tail = draw(texts) or None
    return node


def _attributes(draw: Any, xsd_type: Any, node: Any) -> None:
    for key, attribute in xsd_type.attributes.items():
        if key is None:
            if draw(st.booleans()):
                for ns in ANY_NAMESPACES:
                    name = f"{{{ns}}}extra" if ns else "extra"
                    if attribute.is_matching(name) and name not in xsd_type.attributes:
                        node.set(name, draw(st.text(_XML_TEXT, max_size=6)))
                        break
            continue
        if attribute.use == "prohibited":
            continue
        if attribute.use == "required" or draw(st.booleans()):
            value = attribute.fixed if attribute.fixed is not None else draw(lexical(attribute.type))
            node.set(attribute.name, value)


def _count(draw: Any, particle: Any, depth: int) -> int:
    low = particle.min_occurs
    high = particle.max_occurs if particle.max_occurs is not None else low + MAX_REPEAT
    high = min(high, low + MAX_REPEAT)
    if depth >= MAX_DEPTH:
        high = low
    return draw(st.integers(low, high))


def _group(draw: Any, group: Any, node: Any, depth: int) -> None:
    for _ in range(_count(draw, group, depth)):
        _group_once(draw, group, node, depth)


def _group_once(draw: Any, group: Any, node: Any, depth: int) -> None:
    items = list(group)
    if group.model == "choice":
        if not items:
            return
        items = [draw(st.sampled_from(items))]
    elif group.model == "all":
        items = draw(st.permutations(items))
    for item in items:
        kind = type(item).__name__
        if kind == "XsdGroup":
            _group(draw, item, node, depth)
        elif kind == "XsdAnyElement":
            for _ in range(_count(draw, item, depth)):
                _wildcard_element(draw, item, node, depth)
        else:
            for _ in range(_count(draw, item, depth)):
                members = [m for m in [item, *_substitutes(item)] if not m.abstract]
                _element(draw, draw(st.sampled_from(members)), node, depth + 1)


def _substitutes(decl: Any) -> list[Any]:
    groups = getattr(decl.maps, "substitution_groups", {}) or {}
    out: list[Any] = []
    todo = [decl.name]
    while todo:
        for member in sorted(groups.get(todo.pop(), ()), key=lambda m: m.name):
            if member not in out:
                out.append(member)
                todo.append(member.name)
    return out


def _wildcard_element(draw: Any, wildcard: Any, node: Any, depth: int) -> None:
    maps = wildcard.maps
    for ns in ANY_NAMESPACES:
        name = f"{{{ns}}}w{draw(st.integers(0, 2))}" if ns else f"w{draw(st.integers(0, 2))}"
        if wildcard.is_matching(name) and name not in maps.elements:
            child = etree.SubElement(node, name)
            _untyped_content(draw, child, depth + 1)
            return
    raise AssertionError("no test namespace fits the wildcard")


def _untyped_content(draw: Any, node: Any, depth: int) -> None:
    if draw(st.booleans()):
        node.set("k", draw(st.text(_XML_TEXT, max_size=4)))
    texts = st.text(_XML_TEXT, max_size=6)
    node.text = draw(texts) or None
    if depth < MAX_DEPTH:
        for _ in range(draw(st.integers(0, 2))):
            child = etree.SubElement(node, f"{{{ANY_NAMESPACES[1]}}}u")
            _untyped_content(draw, child, depth + 1)
            child.tail = draw(texts) or None


# --- canonical form --------------------------------------------------------------------------------------

def canonical(node: Any, decl: Any) -> Any:
    """The document as values: names, attribute set, children, simple values typed by xmlschema."""
    attributes = _canonical_attributes(node, decl.type if decl is not None else None)
    if decl is None:  # untyped (a wildcard without declaration, xs:anyType content)
        return (node.tag, attributes, _untyped_children(node))
    if node.get(XSI_NIL) in ("true", "1"):
        return (node.tag, attributes, "nil")
    xsd_type = decl.type
    if xsd_type.is_simple():
        return (node.tag, attributes, _value(xsd_type, node.text or ""))
    if xsd_type.name == _b("anyType"):
        return (node.tag, attributes, _untyped_children(node))
    if xsd_type.has_simple_content():
        return (node.tag, attributes, _value(xsd_type.content, node.text or ""))
    declared = _declared(xsd_type.content) if xsd_type.content is not None else {}
    content: list[Any] = []
    if xsd_type.mixed and node.text:
        content.append(node.text)
    for child in node.iterchildren(tag=etree.Element):
        child_decl = declared.get(child.tag)
        if child_decl is None and child.tag in decl.maps.elements and _wild(xsd_type.content):
            child_decl = decl.maps.elements[child.tag]
        content.append(canonical(child, child_decl))
        if xsd_type.mixed and child.tail:
            content.append(child.tail)
    return (node.tag, attributes, tuple(content))


def _wild(group: Any) -> bool:
    for item in group:
        kind = type(item).__name__
        if kind == "XsdAnyElement" and item.process_contents != "skip":
            return True
        if kind == "XsdGroup" and _wild(item):
            return True
    return False


def _declared(group: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for item in group:
        kind = type(item).__name__
        if kind == "XsdGroup":
            out.update(_declared(item))
        elif kind == "XsdElement":
            out[item.name] = item
            for member in _substitutes(item):
                out[member.name] = member
    return out


def _canonical_attributes(node: Any, xsd_type: Any) -> frozenset[tuple[str, Any]]:
    out = []
    declared = xsd_type.attributes if xsd_type is not None and xsd_type.is_complex() else {}
    for name, value in node.attrib.items():
        if name == XSI_NIL:
            continue
        attribute = declared.get(name) if declared else None
        out.append((name, _value(attribute.type, value) if attribute is not None else value))
    return frozenset(out)


def _untyped_children(node: Any) -> tuple[Any, ...]:
    content: list[Any] = []
    if node.text:
        content.append(node.text)
    for child in node.iterchildren(tag=etree.Element):
        content.append(canonical(child, None))
        if child.tail:
            content.append(child.tail)
    return tuple(content)


def _value(xsd_type: Any, text: str) -> Any:
    value = xsd_type.decode(text)
    return _plain(value)


def _plain(value: Any) -> Any:
    if isinstance(value, list):
        return tuple(_plain(v) for v in value)
    if isinstance(value, float):
        return "NaN" if value != value else repr(value)
    if isinstance(value, Decimal):
        return value.normalize() if value == value else "NaN"
    return value
