"""Schema-driven XML <-> JSON translation, compiled once per element declaration.

``compile_element(xsd_element)`` turns xmlschema's view of a global element into a tree of small
objects that translate in both directions and validate as they go; no schema work happens per call.
The JSON convention (docs/translation.md) in one paragraph: an element of simple type is its value
(``simple.py``); an element of complex type is an object whose keys are its attributes
(``"@name"``) and child elements (the local name; ``"{namespace}local"`` only where two children
share a local name), with ``"$"`` for simple content; an element that may repeat is always an
array; absent optional elements are absent keys; ``xsi:nil`` is ``null``. Where a flat object
would lose the order of children (mixed content, repeated model groups, a name used twice in one
content model, several wildcards), the content is ``"#content"``: a list, in document order, of
one-key objects and (mixed content) strings. Elements a wildcard admits go under ``"#any"`` as
one-key objects ``{"{namespace}local": value}``, typed when the schema declares them, untyped
otherwise (an untyped element is its text, or an object of ``"@attr"`` and ``"#content"``).

Content models are matched greedily: XSD's Unique Particle Attribution rule guarantees one
element of look-ahead always suffices, which is also how XSD processors match.
"""

from __future__ import annotations

import contextlib
from typing import Any

from lxml import etree

from gateway.xml.simple import MAX_ERRORS, NOT_XML, Errors, Simple, TooManyErrors, compile_simple, note

__all__ = ["MAX_ERRORS", "Compiler", "Element", "TranslationError", "compile_element", "untyped"]

XSD = "http://www.w3.org/2001/XMLSchema"
XSI = "http://www.w3.org/2001/XMLSchema-instance"
XSI_NIL = f"{{{XSI}}}nil"
XSI_TYPE = f"{{{XSI}}}type"
_XSI_IGNORED = {f"{{{XSI}}}schemaLocation", f"{{{XSI}}}noNamespaceSchemaLocation"}
ANY = "#any"
CONTENT = "#content"
TEXT = "$"
NIL = "#nil"


class TranslationError(ValueError):
    """The message does not fit its schema; ``errors`` lists ``{"path", "message"}`` items."""

    def __init__(self, message: str, errors: Errors) -> None:
        super().__init__(message)
        self.errors = errors


_ABSENT: Any = object()


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def _step(path: str, tag: str, index: int | None = None) -> str:
    return f"{path}/{_local(tag)}" + (f"[{index}]" if index is not None else "")


def _key_path(path: str, key: str, index: int | None = None) -> str:
    return f"{path}.{key}" + (f"[{index}]" if index is not None else "")


def _blank(text: str | None) -> bool:
    return text is None or not text.strip()


# --- particles ---------------------------------------------------------------------------------------

class Particle:
    __slots__ = ("emptiable", "first", "max", "min", "wild")

    def __init__(self, min_occurs: int, max_occurs: int | None) -> None:
        self.min = min_occurs
        self.max = max_occurs  # None: unbounded
        self.first: frozenset[str] = frozenset()
        self.wild: tuple[Wildcard, ...] = ()
        self.emptiable = min_occurs == 0

    def starts(self, tag: str) -> bool:
        return tag in self.first or any(w.admits(tag) for w in self.wild)

    def more(self, count: int) -> bool:
        return self.max is None or count < self.max


class ElementParticle(Particle):
    """One element declaration in a content model (with its substitution group members)."""

    __slots__ = ("elements", "head", "key", "keys")

    def __init__(self, head: Element, members: list[Element], min_occurs: int,
                 max_occurs: int | None) -> None:
        super().__init__(min_occurs, max_occurs)
        self.head = head
        self.elements = {e.tag: e for e in members}
        self.first = frozenset(self.elements)
        self.key = _local(head.tag)
        self.keys: dict[str, str] = {tag: _local(tag) for tag in self.elements}  # tag -> JSON key


class Wildcard(Particle):
    """``xs:any``: which names it admits, and how it reads what it admits."""

    __slots__ = ("compiler", "component", "process")

    def __init__(self, component: Any, compiler: Compiler) -> None:
        super().__init__(component.min_occurs, component.max_occurs)
        self.component = component
        self.process = component.process_contents
        self.compiler = compiler
        self.wild = (self,)

    def admits(self, tag: str) -> bool:
        return bool(self.component.is_matching(tag))

    def element(self, tag: str, path: str, errors: Errors) -> Element | None:
        """The declaration to read ``tag`` with, None for untyped content."""
        if self.process == "skip":
            return None
        declared = self.compiler.global_element(tag)
        if declared is None and self.process == "strict":
            note(errors, path, f"{_local(tag)} has no declaration, and the wildcard here is strict")
        return declared


class Group(Particle):
    __slots__ = ("items", "model")

    def __init__(self, model: str, items: list[Particle], min_occurs: int, max_occurs: int | None) -> None:
        super().__init__(min_occurs, max_occurs)
        self.model = model
        self.items = items
        first: set[str] = set()
        wild: list[Wildcard] = []
        if model == "sequence":
            content_empty = True
            for item in items:
                first |= item.first
                wild.extend(item.wild)
                if not item.emptiable:
                    content_empty = False
                    break
        else:
            for item in items:
                first |= item.first
                wild.extend(item.wild)
            content_empty = (any(i.emptiable for i in items) if model == "choice"
                             else all(i.emptiable for i in items)) if items else True
        self.first = frozenset(first)
        self.wild = tuple(wild)
        self.emptiable = min_occurs == 0 or content_empty

    def element_particles(self) -> list[ElementParticle]:
        out: list[ElementParticle] = []
        for item in self.items:
            if isinstance(item, ElementParticle):
                out.append(item)
            elif isinstance(item, Group):
                out.extend(item.element_particles())
        return out

    def wildcards(self) -> list[Wildcard]:
        out: list[Wildcard] = []
        for item in self.items:
            if isinstance(item, Wildcard):
                out.append(item)
            elif isinstance(item, Group):
                out.extend(item.wildcards())
        return out

    def groups(self) -> list[Group]:
        out: list[Group] = [self]
        for item in self.items:
            if isinstance(item, Group):
                out.extend(item.groups())
        return out


class _Mismatch(Exception):
    def __init__(self, pos: int, expected: Particle | None) -> None:
        self.pos = pos
        self.expected = expected


Assignment = list[tuple[Particle, int]]


def match(group: Group, tags: list[str]) -> tuple[Assignment, set[int]]:
    """Which particle each child takes, and which repeatable particles the content went through.

    Raises _Mismatch at the first child (or the end) that the content model does not allow."""
    out: Assignment = []
    visited: set[int] = set()
    pos = _match_particle(group, tags, 0, out, visited)
    if pos < len(tags):
        raise _Mismatch(pos, None)
    return out, visited


def _match_particle(p: Particle, tags: list[str], pos: int, out: Assignment, visited: set[int]) -> int:
    n = len(tags)
    count = 0
    if isinstance(p, Group):
        while p.more(count) and pos < n and p.starts(tags[pos]):
            new = _match_once(p, tags, pos, out, visited)
            if new == pos:
                break
            pos = new
            count += 1
        if count == 0:
            if not p.emptiable:
                raise _Mismatch(pos, p)
            if p.min > 0:
                _match_once(p, tags, pos, out, visited)  # the empty iteration the model asks for
        elif count < p.min and not p.emptiable:
            raise _Mismatch(pos, p)
        return pos
    visited.add(id(p))
    while p.more(count) and pos < n and p.starts(tags[pos]):
        out.append((p, pos))
        pos += 1
        count += 1
    if count < p.min:
        raise _Mismatch(pos, p)
    return pos


def _match_once(g: Group, tags: list[str], pos: int, out: Assignment, visited: set[int]) -> int:
    if g.model == "sequence":
        for item in g.items:
            pos = _match_particle(item, tags, pos, out, visited)
        return pos
    if g.model == "choice":
        if pos < len(tags):
            for item in g.items:
                if item.starts(tags[pos]):
                    return _match_particle(item, tags, pos, out, visited)
        for item in g.items:
            if item.emptiable:
                return _match_particle(item, tags, pos, out, visited)
        raise _Mismatch(pos, g)
    # all: each particle at most once (XSD 1.0), in any order
    seen: set[int] = set()
    while pos < len(tags):
        for item in g.items:
            if id(item) not in seen and item.starts(tags[pos]):
                seen.add(id(item))
                pos = _match_particle(item, tags, pos, out, visited)
                break
        else:
            break
    for item in g.items:
        if id(item) not in seen:
            if not item.emptiable:
                raise _Mismatch(pos, item)
            visited.add(id(item))
    return pos


def _expected(p: Particle | None) -> str:
    if p is None:
        return "the end of the content"
    names = sorted(_local(t) for t in p.first)
    if p.wild:
        names.append("any element")
    return ", ".join(names) if names else "nothing"


def _mismatch_message(m: _Mismatch, tags: list[str]) -> str:
    found = _local(tags[m.pos]) if m.pos < len(tags) else None
    expected = _expected(m.expected)
    if found is None:
        return f"is incomplete: expected {expected}"
    return f"has {found} where {expected} was expected"


# --- types ---------------------------------------------------------------------------------------------

class Attribute:
    __slots__ = ("fixed", "key", "required", "simple", "tag")

    def __init__(self, tag: str, simple: Simple, required: bool, fixed: str | None) -> None:
        self.tag = tag
        self.key = "@" + _local(tag)
        self.simple = simple
        self.required = required
        self.fixed = fixed


class Complex:
    """A complex type: attributes, and empty, simple, element-only or mixed content."""

    __slots__ = ("any_attribute", "attributes", "by_tag", "content", "flat_keys", "keys_to_tags",
                 "model", "name", "ordered", "plain", "plain_tags", "simple", "wildcard")

    def __init__(self, name: str) -> None:
        self.name = name
        self.attributes: dict[str, Attribute] = {}  # JSON key -> attribute
        self.by_tag: dict[str, Attribute] = {}
        self.any_attribute: Any = None
        self.content = "empty"  # empty | simple | elements | mixed | any
        self.simple: Simple | None = None
        self.model: Group | None = None
        self.ordered = False
        self.flat_keys: dict[str, ElementParticle] = {}
        self.keys_to_tags: dict[str, tuple[str, ElementParticle]] = {}
        self.wildcard: Wildcard | None = None
        # The common case, a sequence of plain elements: (key, element, min, max) in schema order, and
        # tag -> position. Set when it applies; both directions then skip the general matcher.
        self.plain: tuple[tuple[str, Element, int, int | None], ...] | None = None
        self.plain_tags: dict[str, int] = {}

    # -- XML -> JSON -------------------------------------------------------------------------------------

    def decode(self, node: Any, path: str, errors: Errors) -> Any:
        if self.content == "any":  # xs:anyType: untyped, attributes and all
            return _generic_decode(node, path, errors, {})
        out: dict[str, Any] = {}
        self._decode_attributes(node, path, out, errors)
        if self.content == "simple":
            assert self.simple is not None
            if len(node):
                note(errors, path, f"{self.name} has text content only, no child elements")
            out[TEXT] = self.simple.decode(node.text or "", path, errors, node)
            return out
        children = list(node.iterchildren(tag=etree.Element))
        mixed = self.content == "mixed"
        if not mixed and (not _blank(node.text) or any(not _blank(c.tail) for c in children)):
            note(errors, path, f"{self.name} has child elements only, no text")
        if self.content == "empty" or self.model is None:
            if children:
                note(errors, _step(path, children[0].tag), f"{self.name} has no child elements")
            return out
        if self.plain is not None:
            fast = self._decode_plain(children, path, out, errors)
            if fast is not None:
                return fast
        tags = [c.tag for c in children]
        try:
            assignment, visited = match(self.model, tags)
        except _Mismatch as m:
            note(errors, path if m.pos >= len(tags) else _step(path, tags[m.pos]),
                  f"{self.name} {_mismatch_message(m, tags)}")
            return out
        if self.ordered:
            content: list[Any] = []
            if mixed and node.text:
                content.append(node.text)
            for particle, i in assignment:
                child = children[i]
                content.append(self._decode_child(particle, child, path, i, errors))
                if mixed and child.tail:
                    content.append(child.tail)
            out[CONTENT] = content
            return out
        counters: dict[str, int] = {}
        for particle, i in assignment:
            child = children[i]
            if isinstance(particle, ElementParticle):
                key = particle.keys[child.tag]
                if particle.max == 1:
                    out[key] = particle.elements[child.tag].decode(child, _step(path, child.tag), errors)
                else:
                    n = counters.get(key, 0)
                    counters[key] = n + 1
                    out.setdefault(key, []).append(
                        particle.elements[child.tag].decode(child, _step(path, child.tag, n + 1), errors))
            else:
                out.setdefault(ANY, []).append(self._decode_child(particle, child, path, i, errors))
        for key, particle in self.flat_keys.items():
            if particle.max != 1 and key not in out and id(particle) in visited:
                out[key] = []
        return out

    def _decode_plain(self, children: list[Any], path: str, out: dict[str, Any],
                      errors: Errors) -> dict[str, Any] | None:
        """A plain sequence read in one pass; None (nothing decoded) when the children are out of
        order or miscounted, for the general matcher to say precisely what is wrong."""
        plain = self.plain
        assert plain is not None
        tags = self.plain_tags
        at = 0
        counts = [0] * len(plain)
        for child in children:
            index = tags.get(child.tag)
            if index is None or index < at:
                return None
            for skipped in range(at, index):
                if counts[skipped] < plain[skipped][2]:
                    return None
            at = index
            key, element, _, most = plain[index]
            counts[index] += 1
            if most == 1:
                if counts[index] > 1:
                    return None
                out[key] = element.decode(child, f"{path}/{element.name}", errors)
            else:
                if most is not None and counts[index] > most:
                    return None
                out.setdefault(key, []).append(
                    element.decode(child, f"{path}/{element.name}[{counts[index]}]", errors))
        for index in range(at, len(plain)):
            if counts[index] < plain[index][2]:
                return None
        for (key, _, _, most), count in zip(plain, counts, strict=True):
            if most != 1 and not count:
                out[key] = []
        return out

    def _decode_child(self, particle: Particle, child: Any, path: str, i: int, errors: Errors) -> Any:
        where = _step(path, child.tag)
        if isinstance(particle, ElementParticle):
            return {particle.keys[child.tag]: particle.elements[child.tag].decode(child, where, errors)}
        assert isinstance(particle, Wildcard)
        declared = particle.element(child.tag, where, errors)
        if declared is not None:
            return {child.tag: declared.decode(child, where, errors)}
        return {child.tag: _generic_decode(child, where, errors, {})}

    def _decode_attributes(self, node: Any, path: str, out: dict[str, Any], errors: Errors) -> None:
        seen = 0
        for tag, text in node.attrib.items():
            attribute = self.by_tag.get(tag)
            if attribute is not None:
                seen += attribute.required
                if attribute.fixed is not None and attribute.simple.normalise(text) != attribute.fixed:
                    note(errors, f"{path}/@{_local(tag)}", f"must be {attribute.fixed!r}")
                out[attribute.key] = attribute.simple.decode(text, f"{path}/@{_local(tag)}", errors, node)
            elif tag.startswith(f"{{{XSI}}}"):
                if tag == XSI_TYPE:
                    note(errors, path, "xsi:type (type substitution) is not supported")
                elif tag not in _XSI_IGNORED and tag != XSI_NIL:
                    note(errors, path, f"attribute {tag} is not allowed")
            elif self.any_attribute is not None and self.any_attribute.is_matching(tag):
                out["@" + (tag if tag.startswith("{") else "{}" + tag)] = text
            else:
                note(errors, f"{path}/@{_local(tag)}",
                      f"attribute {_local(tag)} is not allowed on {self.name}")
        if seen < sum(a.required for a in self.attributes.values()):
            for attribute in self.attributes.values():
                if attribute.required and attribute.tag not in node.attrib:
                    note(errors, path, f"attribute {_local(attribute.tag)} is required")

    # -- JSON -> XML -------------------------------------------------------------------------------------

    def encode(self, value: Any, node: Any, path: str, errors: Errors) -> None:
        if self.content == "any":
            _generic_encode(value, node, path, errors)
            return
        if not isinstance(value, dict):
            note(errors, path, f"must be an object ({self.name})")
            return
        rest = self._encode_attributes(value, node, path, errors)
        if self.content == "simple":
            assert self.simple is not None
            if TEXT in rest:
                node.text = self.simple.encode(rest.pop(TEXT), _key_path(path, TEXT), errors, node)
            else:
                node.text = self.simple.encode("", _key_path(path, TEXT), errors, node)
        elif self.content == "empty" or self.model is None:
            pass
        elif self.ordered:
            self._encode_ordered(rest, node, path, errors)
        else:
            self._encode_flat(rest, node, path, errors)
        for key in rest:
            note(errors, _key_path(path, key), f"is not a field of {self.name}")

    def _encode_attributes(self, value: dict[str, Any], node: Any, path: str,
                           errors: Errors) -> dict[str, Any]:
        rest: dict[str, Any] = {}
        for key, item in value.items():
            if not key.startswith("@"):
                rest[key] = item
                continue
            attribute = self.attributes.get(key)
            where = _key_path(path, key)
            if attribute is not None:
                text = attribute.simple.encode(item, where, errors, node)
                if text is not None:
                    if attribute.fixed is not None and attribute.simple.normalise(text) != attribute.fixed:
                        note(errors, where, f"must be {attribute.fixed!r}")
                    node.set(attribute.tag, text)
            elif self.any_attribute is not None and key.startswith("@{"):
                tag = key[1:].removeprefix("{}")
                if not isinstance(item, str):
                    note(errors, where, "must be a string")
                elif not _valid_attribute_name(tag) or not self.any_attribute.is_matching(tag):
                    note(errors, where, f"attribute {tag} is not allowed on {self.name}")
                else:
                    node.set(tag, item)
            else:
                note(errors, where, f"is not an attribute of {self.name}")
        for attribute in self.attributes.values():
            if attribute.required and attribute.key not in value:
                note(errors, _key_path(path, attribute.key), "is required")
        return rest

    def _encode_flat(self, rest: dict[str, Any], node: Any, path: str, errors: Errors) -> None:
        assert self.model is not None
        if self.plain is None:
            _encode_group(self, self.model, rest, node, path, errors)
            return
        for key, element, least, most in self.plain:
            value = rest.pop(key, _ABSENT)
            where = f"{path}.{key}"
            if value is _ABSENT:
                if least > 0:
                    note(errors, where, "is required")
            elif most == 1:
                element.encode(value, node, where, errors)
            elif not isinstance(value, list):
                note(errors, where, "must be an array")
            else:
                if len(value) < least:
                    note(errors, where, f"needs at least {least} items")
                if most is not None and len(value) > most:
                    note(errors, where, f"takes at most {most} items")
                for i, member in enumerate(value):
                    element.encode(member, node, f"{where}[{i}]", errors)

    def _encode_ordered(self, rest: dict[str, Any], node: Any, path: str, errors: Errors) -> None:
        assert self.model is not None
        content = rest.pop(CONTENT, [])
        where = _key_path(path, CONTENT)
        if not isinstance(content, list):
            note(errors, where, "must be an array")
            return
        mixed = self.content == "mixed"
        tags: list[str] = []
        items: list[tuple[int, str, Any]] = []
        for i, item in enumerate(content):
            if isinstance(item, str):
                if not mixed:
                    note(errors, f"{where}[{i}]", f"{self.name} has no text content")
                continue
            if not isinstance(item, dict) or len(item) != 1:
                note(errors, f"{where}[{i}]", "must be a one-key object (or, in mixed content, a string)")
                continue
            ((key, value),) = item.items()
            tag = self._tag_of(key)
            tags.append(tag)
            items.append((i, tag, value))
        try:
            assignment, _ = match(self.model, tags)
        except _Mismatch as m:
            at = items[m.pos][0] if m.pos < len(items) else len(content)
            note(errors, f"{where}[{at}]", f"{self.name} {_mismatch_message(m, tags)}")
            return
        particles = iter(assignment)
        last = None
        for i, item in enumerate(content):
            if isinstance(item, str):
                if mixed:
                    if last is None:
                        node.text = (node.text or "") + item
                    else:
                        last.tail = (last.tail or "") + item
                continue
            if not isinstance(item, dict) or len(item) != 1:
                continue
            particle, _ = next(particles)
            last = self._encode_item(item, node, f"{where}[{i}]", errors, particle)

    def _tag_of(self, key: str) -> str:
        known = self.keys_to_tags.get(key)
        if known is not None:
            return known[0]
        return key[2:] if key.startswith("{}") else key

    def _encode_item(self, item: Any, node: Any, path: str, errors: Errors, particle: Particle) -> Any:
        if not isinstance(item, dict) or len(item) != 1:
            note(errors, path, "must be a one-key object")
            return None
        ((key, value),) = item.items()
        tag = self._tag_of(key)
        where = _key_path(path, key)
        if isinstance(particle, ElementParticle):
            element = particle.elements.get(tag)
            if element is None:
                note(errors, where, f"{key} is not allowed here")
                return None
            return element.encode(value, node, where, errors)
        assert isinstance(particle, Wildcard)
        if not _valid_tag(tag) or not particle.admits(tag):
            note(errors, where, f"{key} is not an element this wildcard admits")
            return None
        declared = particle.element(tag, where, errors)
        if declared is not None:
            return declared.encode(value, node, where, errors)
        child = etree.SubElement(node, tag)
        _generic_encode(value, child, where, errors)
        return child


def _encode_group(owner: Complex, group: Group, rest: dict[str, Any], node: Any, path: str,
                  errors: Errors) -> None:
    """Flat form: write the group's particles from the object's keys, in the schema's order."""
    if group.model == "choice":
        present = [item for item in group.items if _present(item, rest)]
        if len(present) > 1:
            names = ", ".join(_particle_names(item) for item in present)
            note(errors, path, f"takes only one of {names}")
            for key in (k for item in present for k in _keys(item)):
                rest.pop(key, None)  # they are fields: said once, not again as unknown keys
            return
        if not present:
            if group.emptiable:
                return
            names = ", ".join(_particle_names(item) for item in group.items)
            note(errors, path, f"needs one of {names}")
            return
        _encode_particle(owner, present[0], rest, node, path, errors)
        return
    items = group.items
    if group.model == "all":
        order = {key: n for n, key in enumerate(rest)}
        items = sorted(items, key=lambda item: min((order.get(k, len(order)) for k in _keys(item)),
                                                   default=len(order)))
    for item in items:
        if isinstance(item, Group) and item.emptiable and not _present(item, rest):
            continue
        _encode_particle(owner, item, rest, node, path, errors)


def _encode_particle(owner: Complex, item: Particle, rest: dict[str, Any], node: Any, path: str,
                     errors: Errors) -> None:
    if isinstance(item, Group):
        _encode_group(owner, item, rest, node, path, errors)
        return
    if isinstance(item, Wildcard):
        _encode_wildcard(owner, item, rest, node, path, errors)
        return
    assert isinstance(item, ElementParticle)
    keys = [key for key in item.keys.values() if key in rest]
    if not keys:
        if item.min > 0:
            note(errors, _key_path(path, item.key), "is required")
        return
    if len(keys) > 1:
        note(errors, path, f"takes only one of {', '.join(keys)}")
        for other in keys[1:]:
            rest.pop(other)  # a field, said once, not again as an unknown key
    key = keys[0]
    value = rest.pop(key)
    tag = next(t for t, k in item.keys.items() if k == key)
    element = item.elements[tag]
    if item.max == 1:
        element.encode(value, node, _key_path(path, key), errors)
        return
    if not isinstance(value, list):
        note(errors, _key_path(path, key), "must be an array")
        return
    if len(value) < item.min:
        note(errors, _key_path(path, key), f"needs at least {item.min} items")
    if item.max is not None and len(value) > item.max:
        note(errors, _key_path(path, key), f"takes at most {item.max} items")
    for i, member in enumerate(value):
        element.encode(member, node, _key_path(path, key, i), errors)


def _encode_wildcard(owner: Complex, item: Wildcard, rest: dict[str, Any], node: Any, path: str,
                     errors: Errors) -> None:
    """Flat form (at most one wildcard): the "#any" items, where the wildcard sits in the model."""
    items = rest.pop(ANY, [])
    where = _key_path(path, ANY)
    if not isinstance(items, list):
        note(errors, where, "must be an array of one-key objects")
        return
    if len(items) < item.min:
        note(errors, where, f"needs at least {item.min} items")
    if item.max is not None and len(items) > item.max:
        note(errors, where, f"takes at most {item.max} items")
    for i, member in enumerate(items):
        owner._encode_item(member, node, _key_path(path, ANY, i), errors, item)


def _keys(item: Particle) -> list[str]:
    if isinstance(item, ElementParticle):
        return list(item.keys.values())
    if isinstance(item, Group):
        return [k for p in item.items for k in _keys(p)]
    return [ANY]


def _present(item: Particle, rest: dict[str, Any]) -> bool:
    return any(key in rest for key in _keys(item))


def _particle_names(item: Particle) -> str:
    keys = _keys(item)
    return keys[0] if len(keys) == 1 else "(" + ", ".join(keys) + ")"


# --- untyped content (xs:anyType, wildcards without declarations) -------------------------------------

def _generic_decode(node: Any, path: str, errors: Errors, out: dict[str, Any]) -> Any:
    for tag, text in node.attrib.items():
        out["@" + tag] = text
    children = list(node.iterchildren(tag=etree.Element))
    if not children and not out:
        return node.text or ""
    content: list[Any] = []
    if node.text:
        content.append(node.text)
    for child in children:
        content.append({child.tag: _generic_decode(child, _step(path, child.tag), errors, {})})
        if child.tail:
            content.append(child.tail)
    if content:
        out[CONTENT] = content
    return out


def untyped(node: Any) -> Any:
    """An element as untyped JSON (its text, or ``"@attr"`` and ``"#content"``): no schema needed."""
    return _generic_decode(node, "", [], {})


def _generic_encode(value: Any, node: Any, path: str, errors: Errors) -> None:
    if isinstance(value, str):
        _text(node, value, path, errors)
        return
    if not isinstance(value, dict):
        note(errors, path, "must be a string or an object (untyped XML content)")
        return
    rest = {}
    for key, item in value.items():
        if key.startswith("@"):
            tag = key[1:]
            if not isinstance(item, str) or not _valid_attribute_name(tag):
                note(errors, _key_path(path, key), "must be a string attribute with a valid name")
            else:
                node.set(tag, item)
        else:
            rest[key] = item
    _generic_encode_content(rest, node, path, errors)


def _generic_encode_content(rest: dict[str, Any], node: Any, path: str, errors: Errors) -> None:
    content = rest.pop(CONTENT, [])
    for key in list(rest):
        note(errors, _key_path(path, key), "untyped content holds only \"@attributes\" and \"#content\"")
        rest.pop(key)
    if not isinstance(content, list):
        note(errors, _key_path(path, CONTENT), "must be an array")
        return
    last = None
    for i, item in enumerate(content):
        where = _key_path(path, CONTENT, i)
        if isinstance(item, str):
            if _text_ok(item, where, errors):
                if last is None:
                    node.text = (node.text or "") + item
                else:
                    last.tail = (last.tail or "") + item
        elif isinstance(item, dict) and len(item) == 1:
            ((tag, child_value),) = item.items()
            if not _valid_tag(tag):
                note(errors, where, f"{tag!r} is not an element name")
                continue
            last = etree.SubElement(node, tag)
            _generic_encode(child_value, last, _key_path(where, tag), errors)
        else:
            note(errors, where, "must be a string or a one-key object")


def _text(node: Any, text: str, path: str, errors: Errors) -> None:
    if _text_ok(text, path, errors):
        node.text = text


def _text_ok(text: str, path: str, errors: Errors) -> bool:
    if NOT_XML.search(text):
        note(errors, path, "contains characters XML cannot carry")
        return False
    return True


def _valid_tag(tag: str) -> bool:
    try:
        etree.QName(tag)
    except ValueError:
        return False
    return True


def _valid_attribute_name(tag: str) -> bool:
    return _valid_tag(tag) and not tag.startswith(f"{{{XSI}}}") and not tag.startswith("xmlns")


# --- elements ----------------------------------------------------------------------------------------

class Element:
    """One element declaration: its tag, whether it may be nil, and how its content translates."""

    __slots__ = ("complex", "fixed", "name", "nillable", "nsmap", "simple", "tag")

    def __init__(self, tag: str, nillable: bool, fixed: str | None) -> None:
        self.tag = tag
        self.name = _local(tag)
        self.nillable = nillable
        self.fixed = fixed
        self.simple: Simple | None = None
        self.complex: Complex | None = None
        self.nsmap: dict[str, str] = {}

    # -- the public face: whole documents ---------------------------------------------------------------

    def to_json(self, node: Any) -> Any:
        """The JSON value of ``node`` (an element this declaration describes); TranslationError if
        it breaks the schema."""
        errors: Errors = []
        path = "/" + self.name
        try:
            if node.tag != self.tag:
                note(errors, path, f"expected element {self.tag}, found {node.tag}")
            value = self.decode(node, path, errors)
        except TooManyErrors:
            pass
        if errors:
            raise TranslationError(f"{self.name} does not match its schema", errors)
        return value

    def to_xml(self, value: Any, parent: Any = None) -> Any:
        """The element for the JSON ``value`` (a child of ``parent`` if given); TranslationError
        naming the JSON path of every problem."""
        errors: Errors = []
        node = None
        with contextlib.suppress(TooManyErrors):
            node = self.encode(value, parent, "$", errors, root=True)
        if errors or node is None:
            if parent is not None and node is not None:
                parent.remove(node)
            raise TranslationError(f"the JSON does not match {self.name}", errors)
        return node

    def fields(self) -> frozenset[str]:
        """The JSON keys this element's object may have (empty for a simple or untyped element)."""
        c = self.complex
        if c is None or c.content == "any":
            return frozenset()
        keys = set(c.attributes) | set(c.flat_keys)
        if c.ordered:
            keys.add(CONTENT)
        if c.content == "simple":
            keys.add(TEXT)
        if c.wildcard is not None:
            keys.add(ANY)
        return frozenset(keys)

    def check(self, value: Any) -> Errors:
        """The problems ``to_xml`` would report (an empty list when ``value`` is valid)."""
        try:
            self.to_xml(value)
        except TranslationError as exc:
            return exc.errors
        return []

    # -- the recursive parts ------------------------------------------------------------------------------

    def decode(self, node: Any, path: str, errors: Errors) -> Any:
        nil = node.get(XSI_NIL)
        if nil is not None and nil.strip() in ("true", "1"):
            if not self.nillable:
                note(errors, path, f"{self.name} cannot be nil")
            if len(node) or not _blank(node.text):
                note(errors, path, f"{self.name} is nil and so must be empty")
            others = {t: v for t, v in node.attrib.items() if not t.startswith(f"{{{XSI}}}")}
            if not others:
                return None
            out: dict[str, Any] = {NIL: True}
            if self.complex is not None:
                self.complex._decode_attributes(node, path, out, errors)
            return out
        if self.simple is not None:
            for tag in node.attrib:
                if tag == XSI_TYPE:
                    note(errors, path, "xsi:type (type substitution) is not supported")
                elif not tag.startswith(f"{{{XSI}}}"):
                    note(errors, f"{path}/@{_local(tag)}", f"attribute {_local(tag)} is not allowed")
            if len(node):
                note(errors, path, f"{self.name} holds a value, not child elements")
                return None
            value = self.simple.decode(node.text or "", path, errors, node)
            if self.fixed is not None and self.simple.normalise(node.text or "") != self.fixed:
                note(errors, path, f"must be {self.fixed!r}")
            return value
        assert self.complex is not None
        return self.complex.decode(node, path, errors)

    def encode(self, value: Any, parent: Any, path: str, errors: Errors, root: bool = False) -> Any:
        if parent is None:
            node = etree.Element(self.tag, nsmap=self.nsmap or None)
        elif root and self.nsmap:
            node = etree.SubElement(parent, self.tag, nsmap=self.nsmap)
        else:
            node = etree.SubElement(parent, self.tag)
        if value is None or (isinstance(value, dict) and value.get(NIL) is True):
            if not self.nillable:
                note(errors, path, "must not be null")
                return node
            node.set(XSI_NIL, "true")
            if isinstance(value, dict) and self.complex is not None:
                attributes = {k: v for k, v in value.items() if k != NIL}
                self.complex._encode_attributes(attributes, node, path, errors)
            return node
        if self.simple is not None:
            text = self.simple.encode(value, path, errors, node)
            if text is not None:
                if self.fixed is not None and self.simple.normalise(text) != self.fixed:
                    note(errors, path, f"must be {self.fixed!r}")
                node.text = text
            return node
        assert self.complex is not None
        self.complex.encode(value, node, path, errors)
        return node


# --- compiling -----------------------------------------------------------------------------------------

class Compiler:
    """Compiles xmlschema components, once each (recursive types share their compiled form)."""

    def __init__(self, maps: Any = None, prefixes: dict[str, str] | None = None) -> None:
        self.maps = maps
        self.prefixes = prefixes or {}
        self._elements: dict[int, Element] = {}
        self._types: dict[int, Complex] = {}
        self._simple: dict[int, Simple] = {}
        self._globals: dict[str, Element | None] = {}

    def global_element(self, tag: str) -> Element | None:
        if tag not in self._globals:
            component = self.maps.elements.get(tag) if self.maps is not None else None
            self._globals[tag] = self.element(component) if component is not None else None
        return self._globals[tag]

    def element(self, component: Any) -> Element:
        done = self._elements.get(id(component))
        if done is not None:
            return done
        fixed = component.fixed
        element = Element(component.name, bool(component.nillable), fixed)
        self._elements[id(component)] = element
        xsd_type = component.type
        if xsd_type.is_simple():
            element.simple = self.simple(xsd_type)
        else:
            element.complex = self.complex(xsd_type, element.name)
        return element

    def simple(self, xsd_type: Any) -> Simple:
        done = self._simple.get(id(xsd_type))
        if done is None:
            done = self._simple[id(xsd_type)] = compile_simple(xsd_type)
        return done

    def complex(self, xsd_type: Any, owner: str) -> Complex:
        done = self._types.get(id(xsd_type))
        if done is not None:
            return done
        name = _local(xsd_type.name) if xsd_type.name else owner
        codec = Complex(name)
        self._types[id(xsd_type)] = codec
        for key, component in xsd_type.attributes.items():
            if key is None:
                codec.any_attribute = component
                continue
            attribute = Attribute(component.name, self.simple(component.type),
                                  component.use == "required", component.fixed)
            codec.by_tag[attribute.tag] = attribute
        locals_ = [_local(t) for t in codec.by_tag]
        for attribute in codec.by_tag.values():
            if locals_.count(_local(attribute.tag)) > 1:
                attribute.key = "@" + attribute.tag
            codec.attributes[attribute.key] = attribute
        if xsd_type.name == f"{{{XSD}}}anyType":
            codec.content = "any"
            return codec
        if xsd_type.has_simple_content():
            codec.content = "simple"
            codec.simple = self.simple(xsd_type.content)
            return codec
        content = xsd_type.content
        if content is None or (xsd_type.is_empty() and not xsd_type.mixed):
            codec.content = "empty"
            return codec
        codec.content = "mixed" if xsd_type.mixed else "elements"
        model = self.group(content)
        codec.model = model
        self._layout(codec, model)
        return codec

    def group(self, component: Any) -> Group:
        items: list[Particle] = []
        for item in component:
            kind = type(item).__name__
            if kind == "XsdElement":
                items.append(self._element_particle(item))
            elif kind == "XsdAnyElement":
                items.append(Wildcard(item, self))
            elif kind == "XsdGroup":
                inner = self.group(item)
                if item.min_occurs == 1 and item.max_occurs == 1 and inner.model == component.model \
                        and inner.model != "all":
                    items.extend(inner.items)  # a group reference in the same model: splice it in
                else:
                    items.append(inner)
            else:  # pragma: no cover - xmlschema has no other particle kinds
                raise ValueError(f"unsupported particle {kind}")
        return Group(component.model, items, component.min_occurs, component.max_occurs)

    def _element_particle(self, component: Any) -> ElementParticle:
        head = self.element(component)
        members: list[Element] = []
        if not component.abstract:
            members.append(head)
        for member in self._substitutes(component):
            compiled = self.element(member)
            if compiled.tag not in {m.tag for m in members}:
                members.append(compiled)
        return ElementParticle(head, members, component.min_occurs, component.max_occurs)

    def _substitutes(self, component: Any) -> list[Any]:
        groups = getattr(component.maps, "substitution_groups", None) if hasattr(component, "maps") else None
        if not groups:
            return []
        out: list[Any] = []
        todo = [component.name]
        while todo:
            for member in sorted(groups.get(todo.pop(), ()), key=lambda m: m.name):
                if member not in out:
                    out.append(member)
                    todo.append(member.name)
        return [m for m in out if not m.abstract]

    @staticmethod
    def _layout(codec: Complex, model: Group) -> None:
        """Flat object or ordered ``#content`` list, and the JSON key of every child element."""
        particles = model.element_particles()
        wildcards = model.wildcards()
        tags = [tag for p in particles for tag in p.keys]
        by_local: dict[str, set[str]] = {}
        for tag in tags:
            by_local.setdefault(_local(tag), set()).add(tag)
        unqualified_wildcard = any(w.admits("x-lienthong-probe") for w in wildcards)
        for p in particles:
            for tag in p.keys:
                clash = len(by_local[_local(tag)]) > 1 or (unqualified_wildcard and tag.startswith("{"))
                p.keys[tag] = tag if clash else _local(tag)
            p.key = p.keys.get(p.head.tag, next(iter(p.keys.values()), p.key))
        used: dict[str, int] = {}
        for p in particles:
            for key in p.keys.values():
                used[key] = used.get(key, 0) + 1
        ordered = (codec.content == "mixed"
                   or any(g.max != 1 for g in model.groups())
                   or any(n > 1 for n in used.values())
                   or any(p.max != 1 and len(p.elements) > 1 for p in particles)
                   or len(wildcards) > 1)
        codec.ordered = ordered
        for p in particles:
            for tag, key in p.keys.items():
                codec.keys_to_tags[key] = (tag, p)
        if not ordered:
            codec.flat_keys = {p.key: p for p in particles}
            codec.wildcard = wildcards[0] if wildcards else None
            simple_sequence = (model.model == "sequence" and model.min == 1 and model.max == 1
                               and not wildcards
                               and all(isinstance(i, ElementParticle) and len(i.elements) == 1
                                       for i in model.items))
            if simple_sequence:
                codec.plain = tuple((p.key, next(iter(p.elements.values())), p.min, p.max)
                                    for p in particles)
                codec.plain_tags = {next(iter(p.elements)): n for n, p in enumerate(particles)}


def compile_element(component: Any, compiler: Compiler | None = None) -> Element:
    """The compiled form of a global element declaration, with the prefixes its documents use."""
    compiler = compiler or Compiler(getattr(component, "maps", None))
    element = compiler.element(component)
    element.nsmap = _prefixes(element, component)
    return element


def _prefixes(element: Element, component: Any) -> dict[str, str]:
    """A prefix for every namespace the element's documents can use: the schema's own where it has one."""
    namespaces: list[str] = []
    seen: set[int] = set()

    def add(tag: str) -> None:
        if tag.startswith("{"):
            ns = tag[1:].split("}", 1)[0]
            if ns and ns not in namespaces:
                namespaces.append(ns)

    def walk(e: Element) -> None:
        if id(e) in seen:
            return
        seen.add(id(e))
        add(e.tag)
        c = e.complex
        if c is None or id(c) in seen:
            return
        seen.add(id(c))
        for a in c.by_tag.values():
            add(a.tag)
        if c.model is not None:
            for p in c.model.element_particles():
                for member in p.elements.values():
                    walk(member)

    walk(element)
    declared: dict[str, str] = {}
    schema = getattr(component, "schema", None)
    for prefix, uri in (getattr(schema, "namespaces", None) or {}).items():
        if prefix and uri and uri not in declared and not prefix.startswith("xml"):
            declared[uri] = prefix
    out: dict[str, str] = {}
    for i, ns in enumerate(namespaces):
        if ns == "http://www.w3.org/XML/1998/namespace":
            continue
        prefix = declared.get(ns) or f"ns{i}"
        while prefix in out:
            prefix = f"{prefix}{i}"
        out[prefix] = ns
    return out
