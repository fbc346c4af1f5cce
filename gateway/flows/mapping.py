"""Pure helpers a flow's steps are built with: dotted paths, request shapes and conditions.

Nothing here does I/O or runs code from a definition: a path is split on dots, a request is built
by walking a parsed shape, a condition is one of a closed vocabulary evaluated by plain functions.

- ``resolve(data, "a.0.b")``: the value at a dotted path (lists by index), or ``MISSING``.
- ``parse_source`` / ``parse_shape``: a step's ``input`` as written in YAML, turned into ``Source``
  nodes; ``build_request(shape, scope)`` makes the request from the joint dossier and the results of
  the steps before, refusing a missing required source with ``MissingSource`` naming it.
- ``parse_condition``: ``{path: …, equals: …}``, ``all``/``any``/``not`` and the rest (docs/flows.md);
  ``Condition.holds(scope)``.

Definition mistakes raise ``DefinitionError`` carrying where in the written value they are (its
``loc``), so the loader can name the line. Run-time problems with the data raise ``MissingSource``
or ``EvaluationError``.
"""

from __future__ import annotations

import abc
import enum
import math
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any, Literal

__all__ = [
    "MISSING", "All", "Any_", "Compare", "Condition", "DefinitionError", "EvaluationError", "Fields",
    "FromPath", "Items", "MissingSource", "Not", "Present", "Ref", "Scope", "Source", "Value", "Young",
    "anniversary", "build_request", "parse_condition", "parse_ref", "parse_shape", "parse_source",
    "required_reads", "resolve", "younger_than",
]

Loc = tuple[str | int, ...]


class _Missing(enum.Enum):
    MISSING = "missing"

    def __repr__(self) -> str:
        return "MISSING"


# A path that leads nowhere: distinct from a JSON null that is there.
MISSING = _Missing.MISSING


class DefinitionError(ValueError):
    """A mistake in what a definition says, at ``loc`` inside the value being parsed."""

    def __init__(self, loc: Loc, message: str) -> None:
        super().__init__(message)
        self.loc = loc
        self.message = message


class MissingSource(ValueError):
    """A required source of a request is absent from the dossier or the earlier steps' results."""

    def __init__(self, path: str, target: str) -> None:
        super().__init__(f"{target or 'the request'}: {path} is missing")
        self.path = path
        self.target = target


class EvaluationError(ValueError):
    """A condition cannot be decided on this data (a birth date that is not a date, say)."""

    def __init__(self, path: str, message: str) -> None:
        super().__init__(f"{path}: {message}")
        self.path = path


# --- dotted paths -------------------------------------------------------------------------------

def resolve(data: Any, path: str | tuple[str, ...]) -> Any:
    """The value at a dotted path (``a.0.b``: lists by index), or ``MISSING`` where it leads nowhere."""
    node = data
    for part in path.split(".") if isinstance(path, str) else path:
        if isinstance(node, Mapping):
            if part not in node:
                return MISSING
            node = node[part]
        elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
        else:
            return MISSING
    return node


ROOTS = ("dossier", "steps", "flow", "event")
Root = Literal["dossier", "steps", "flow", "event"]
# What a notification (``notify:``, docs/flows.md) reads besides the dossier and the steps' answers:
# the flow itself and the event it tells of. Closed sets, so a misspelt field is refused at load.
FLOW_FIELDS = frozenset({"id", "name", "title", "state", "client", "location", "started", "deadline",
                         "finished", "overdue"})
EVENT_FIELDS = frozenset({"at", "step", "description", "service", "agency", "state", "time", "started",
                          "deadline", "reason"})


@dataclass(frozen=True)
class Ref:
    """A source path: ``dossier.X.Y`` (the joint dossier), ``steps.<id>.<field>`` (an earlier
    step's answer), or, in a notification, ``flow.<field>`` and ``event.<field>``."""

    text: str
    root: Root
    parts: tuple[str, ...]  # after the root

    @property
    def step(self) -> str:
        return self.parts[0] if self.root == "steps" else ""

    @property
    def field_path(self) -> tuple[str, ...]:
        """Inside the dossier, or inside the step's answer."""
        return self.parts[1:] if self.root == "steps" else self.parts


def parse_ref(text: Any, loc: Loc = ()) -> Ref:
    if not isinstance(text, str):
        raise DefinitionError(loc, f"{text!r} is not a path such as dossier.Tre.HoTen or "
                              "steps.khai_sinh.SoDinhDanh")
    parts = tuple(text.split("."))
    root = parts[0]
    if root not in ROOTS or any(not p or p != p.strip() for p in parts):
        raise DefinitionError(loc, f"{text!r} is not a path such as dossier.Tre.HoTen or "
                              "steps.khai_sinh.SoDinhDanh (write a literal as {{value: …}})")
    if len(parts) < (3 if root == "steps" else 2):
        raise DefinitionError(loc, f"{text!r}: name a field: " + (
            "steps.<step id>.<field>" if root == "steps" else f"{root}.<field>"))
    known = FLOW_FIELDS if root == "flow" else EVENT_FIELDS if root == "event" else None
    if known is not None and (parts[1] not in known or len(parts) > 2):
        raise DefinitionError(loc, f"{text!r}: {root}. reads one of {', '.join(sorted(known))}")
    return Ref(text, _ROOT[root], parts[1:])


_ROOT: dict[str, Root] = {"dossier": "dossier", "steps": "steps", "flow": "flow", "event": "event"}


@dataclass(frozen=True)
class Scope:
    """What sources and conditions read: the joint dossier, the answers of the steps that ran (by
    step id), the flow's start day (for ages), and for a notification the flow and its event."""

    dossier: Any
    steps: Mapping[str, Any] = field(default_factory=dict)
    today: date = field(default_factory=date.today)
    flow: Mapping[str, Any] = field(default_factory=dict)
    event: Mapping[str, Any] = field(default_factory=dict)

    def get(self, ref: Ref) -> Any:
        roots = {"dossier": self.dossier, "steps": self.steps, "flow": self.flow, "event": self.event}
        return resolve(roots[ref.root], ref.parts)


# --- request shapes ------------------------------------------------------------------------------

class Source(abc.ABC):
    """One value of a request: where it comes from, and whether it is there at all (``when``)."""

    when: Condition | None = None
    loc: Loc = ()

    def build(self, scope: Scope, target: str) -> Any:
        """The value, or ``MISSING`` to leave it out."""
        if self.when is not None and not self.when.holds(scope):
            return MISSING
        return self._build(scope, target)

    @abc.abstractmethod
    def _build(self, scope: Scope, target: str) -> Any:
        """The value itself, the condition having held."""

    def refs(self) -> Iterator[tuple[Loc, Ref]]:
        """Every path it reads, with where it is written (for the loader's checks)."""
        if self.when is not None:
            yield from self.when.refs()  # parsed with this source's own location: already absolute


@dataclass(frozen=True)
class FromPath(Source):
    ref: Ref
    optional: bool = False
    when: Condition | None = None
    loc: Loc = ()
    # ``map: {value as text: what to write}``: a code table (a state to the portal's status code);
    # a value the table lacks is missing, as an absent path is.
    table: tuple[tuple[str, Any], ...] | None = None

    def _build(self, scope: Scope, target: str) -> Any:
        value = scope.get(self.ref)
        if self.table is not None and value is not MISSING:
            key = value if isinstance(value, str) else str(value).lower() if isinstance(value, bool) \
                else str(value)
            value = dict(self.table).get(key, MISSING)
        if value is MISSING and not self.optional:
            raise MissingSource(self.ref.text, target)
        return _copy(value)  # the request is the caller's to change; the dossier stays as it was

    def refs(self) -> Iterator[tuple[Loc, Ref]]:
        yield from super().refs()
        yield self.loc, self.ref


@dataclass(frozen=True)
class Value(Source):
    value: Any
    when: Condition | None = None
    loc: Loc = ()

    def _build(self, scope: Scope, target: str) -> Any:
        return _copy(self.value)


@dataclass(frozen=True)
class Fields(Source):
    fields: tuple[tuple[str, Source], ...]
    when: Condition | None = None
    loc: Loc = ()

    def _build(self, scope: Scope, target: str) -> Any:
        out = {}
        for name, source in self.fields:
            value = source.build(scope, f"{target}.{name}" if target else name)
            if value is not MISSING:
                out[name] = value
        return out

    def refs(self) -> Iterator[tuple[Loc, Ref]]:
        yield from super().refs()
        for _, source in self.fields:
            yield from source.refs()


@dataclass(frozen=True)
class Items(Source):
    items: tuple[Source, ...]
    when: Condition | None = None
    loc: Loc = ()

    def _build(self, scope: Scope, target: str) -> Any:
        built = (item.build(scope, f"{target}.{i}") for i, item in enumerate(self.items))
        return [value for value in built if value is not MISSING]

    def refs(self) -> Iterator[tuple[Loc, Ref]]:
        yield from super().refs()
        for item in self.items:
            yield from item.refs()


# A mapping with one of these keys is a source written out; any other mapping is a nested object.
_FORM_KEYS = frozenset({"from", "value", "fields", "when", "optional", "map"})


def parse_source(raw: Any, loc: Loc = ()) -> Source:
    """A source as written: ``dossier.X`` / ``steps.id.F`` (required), ``{from: PATH, optional:
    true}``, ``{value: LITERAL}``, a nested mapping or list of sources, or ``{fields: {…}}``; any
    written form may add ``when: CONDITION`` (left out when it does not hold)."""
    if isinstance(raw, str):
        return FromPath(parse_ref(raw, loc), loc=loc)
    if isinstance(raw, list):
        return Items(tuple(parse_source(item, (*loc, i)) for i, item in enumerate(raw)), loc=loc)
    if not isinstance(raw, dict):
        raise DefinitionError(loc, f"{raw!r}: a source is a path (dossier.X, steps.id.F), "
                              "{value: …}, {from: …}, or a mapping or list of sources")
    if not _FORM_KEYS & raw.keys():
        return Fields(_parse_fields(raw, loc), loc=loc)
    unknown = sorted(str(k) for k in raw.keys() - _FORM_KEYS)
    if unknown:
        raise DefinitionError((*loc, unknown[0]), f"unknown key {unknown[0]!r} beside "
                              f"{'/'.join(sorted(_FORM_KEYS & raw.keys()))} (nest output fields "
                              "under fields:)")
    kinds = [k for k in ("from", "value", "fields") if k in raw]
    if len(kinds) != 1:
        raise DefinitionError(loc, "write exactly one of from, value or fields")
    when = parse_condition(raw["when"], (*loc, "when")) if "when" in raw else None
    optional = raw.get("optional", False)
    if not isinstance(optional, bool) or ("optional" in raw and kinds != ["from"]):
        raise DefinitionError((*loc, "optional"), "optional: true|false goes with from: only")
    if kinds == ["from"]:
        table = _table(raw["map"], (*loc, "map")) if "map" in raw else None
        return FromPath(parse_ref(raw["from"], (*loc, "from")), optional, when, loc, table)
    if "map" in raw:
        raise DefinitionError((*loc, "map"), "map: {value: code} goes with from: only")
    if kinds == ["value"]:
        return Value(_json_literal(raw["value"], (*loc, "value")), when, loc)
    if not isinstance(raw["fields"], dict) or not raw["fields"]:
        raise DefinitionError((*loc, "fields"), "fields: is a mapping of output field -> source")
    return Fields(_parse_fields(raw["fields"], (*loc, "fields")), when, loc)


def _table(raw: Any, loc: Loc) -> tuple[tuple[str, Any], ...]:
    """``map:`` as written: text or number keys (compared as text) to JSON literals."""
    if not isinstance(raw, dict) or not raw:
        raise DefinitionError(loc, "map: is a mapping of value -> what to write ({done: '4'})")
    out = []
    for key, value in raw.items():
        if isinstance(key, bool):
            key = str(key).lower()
        if not isinstance(key, str | int):
            raise DefinitionError(loc, f"map: {key!r} is not a text or number key")
        out.append((str(key), _json_literal(value, (*loc, str(key)))))
    return tuple(out)


def _parse_fields(raw: dict[Any, Any], loc: Loc) -> tuple[tuple[str, Source], ...]:
    out = []
    for name, value in raw.items():
        if not isinstance(name, str) or not name:
            raise DefinitionError(loc, f"{name!r} is not a field name")
        out.append((name, parse_source(value, (*loc, name))))
    return tuple(out)


def parse_shape(raw: Any, loc: Loc = ()) -> Fields:
    """A step's ``input``: a mapping of request field -> source."""
    if not isinstance(raw, dict):
        raise DefinitionError(loc, "input is a mapping of request field -> source")
    return Fields(_parse_fields(raw, loc), loc=loc)


def required_reads(source: Source) -> Iterator[tuple[Loc, Ref]]:
    """The paths a shape reads without ``optional: true`` (conditions aside): those a request
    cannot be built without."""
    if isinstance(source, FromPath):
        if not source.optional:
            yield source.loc, source.ref
    elif isinstance(source, Fields):
        for _, inner in source.fields:
            yield from required_reads(inner)
    elif isinstance(source, Items):
        for inner in source.items:
            yield from required_reads(inner)


def build_request(shape: Fields, scope: Scope) -> dict[str, Any]:
    """The request a step sends; MissingSource names a required path that is absent, EvaluationError
    a condition that cannot be decided."""
    built = shape.build(scope, "")
    return built if isinstance(built, dict) else {}


def _json_literal(value: Any, loc: Loc) -> Any:
    """A literal as JSON has it: YAML's dates become ISO text; anything else not JSON is refused."""
    if isinstance(value, datetime | date):
        return value.isoformat()
    if value is None or isinstance(value, str | bool | int):
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise DefinitionError(loc, f"{value!r} is not a JSON number")
        return value
    if isinstance(value, list):
        return [_json_literal(v, (*loc, i)) for i, v in enumerate(value)]
    if isinstance(value, dict) and all(isinstance(k, str) for k in value):
        return {k: _json_literal(v, (*loc, k)) for k, v in value.items()}
    raise DefinitionError(loc, f"{value!r} is not a JSON value")


def _copy(value: Any) -> Any:
    # Literals are shared by every flow of a definition, dossiers by every step: hand out copies.
    if isinstance(value, list):
        return [_copy(v) for v in value]
    if isinstance(value, dict):
        return {k: _copy(v) for k, v in value.items()}
    return value


# --- conditions ----------------------------------------------------------------------------------

class Condition(abc.ABC):
    """A test on the scope: one of the closed vocabulary below, never code."""

    loc: Loc = ()

    @abc.abstractmethod
    def holds(self, scope: Scope) -> bool:
        """Whether the test holds for this scope."""

    @abc.abstractmethod
    def refs(self) -> Iterator[tuple[Loc, Ref]]:
        """Every path it reads, with where it is written."""


_ISO_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
Op = Literal["equals", "not_equals", "in", "lt", "le", "gt", "ge"]
_ORDER: dict[str, Any] = {"lt": lambda a, b: a < b, "le": lambda a, b: a <= b,
                          "gt": lambda a, b: a > b, "ge": lambda a, b: a >= b}


def _same(a: Any, b: Any) -> bool:
    # JSON's true is not 1: Python's == says it is.
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool) and a == b
    return bool(a == b)


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _as_date(value: Any) -> date | None:
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, date):
        return value
    if isinstance(value, str) and _ISO_DATE.match(value):
        try:
            return date.fromisoformat(value)
        except ValueError:
            return None
    return None


@dataclass(frozen=True)
class Compare(Condition):
    ref: Ref
    op: Op
    operand: Any
    loc: Loc = ()

    def holds(self, scope: Scope) -> bool:
        value = scope.get(self.ref)
        if self.op == "equals":
            return value is not MISSING and _same(value, self.operand)
        if self.op == "not_equals":
            return value is MISSING or not _same(value, self.operand)
        if self.op == "in":
            return value is not MISSING and any(_same(value, o) for o in self.operand)
        if value is MISSING or value is None:
            return False
        if _number(self.operand):
            if not _number(value):
                raise EvaluationError(self.ref.text, f"{value!r} is not a number to compare with "
                                      f"{self.operand!r}")
            return bool(_ORDER[self.op](value, self.operand))
        day = _as_date(value)
        if day is None:
            raise EvaluationError(self.ref.text, f"{value!r} is not a date (YYYY-MM-DD)")
        return bool(_ORDER[self.op](day, self.operand))

    def refs(self) -> Iterator[tuple[Loc, Ref]]:
        yield (*self.loc, "path"), self.ref


@dataclass(frozen=True)
class Present(Condition):
    ref: Ref
    present: bool
    loc: Loc = ()

    def holds(self, scope: Scope) -> bool:
        value = scope.get(self.ref)
        return (value is not MISSING and value is not None) == self.present

    def refs(self) -> Iterator[tuple[Loc, Ref]]:
        yield (*self.loc, "path"), self.ref


def anniversary(birth: date, years: int) -> date:
    """The day one born on ``birth`` turns ``years`` old: born on 29 February, 1 March in a common
    year (the day before, 28 February, they are still the younger age)."""
    year = birth.year + years
    if year > date.max.year:
        return date.max
    try:
        return birth.replace(year=year)
    except ValueError:
        return date(year, 3, 1)


def younger_than(birth: date, years: int, day: date) -> bool:
    """Whether one born on ``birth`` is under ``years`` years old on ``day``, by the calendar."""
    return day < anniversary(birth, years)


@dataclass(frozen=True)
class Young(Condition):
    """An age on the flow's start day from an ISO birth date: ``younger_than_years`` or
    ``at_least_years``."""

    ref: Ref
    years: int
    younger: bool
    loc: Loc = ()

    def holds(self, scope: Scope) -> bool:
        value = scope.get(self.ref)
        if value is MISSING or value is None:
            return False
        birth = _as_date(value)
        if birth is None:
            raise EvaluationError(self.ref.text, f"{value!r} is not a birth date (YYYY-MM-DD)")
        return younger_than(birth, self.years, scope.today) == self.younger

    def refs(self) -> Iterator[tuple[Loc, Ref]]:
        yield (*self.loc, "path"), self.ref


@dataclass(frozen=True)
class All(Condition):
    items: tuple[Condition, ...]
    loc: Loc = ()

    def holds(self, scope: Scope) -> bool:
        return all(c.holds(scope) for c in self.items)

    def refs(self) -> Iterator[tuple[Loc, Ref]]:
        for c in self.items:
            yield from c.refs()


@dataclass(frozen=True)
class Any_(Condition):
    items: tuple[Condition, ...]
    loc: Loc = ()

    def holds(self, scope: Scope) -> bool:
        return any(c.holds(scope) for c in self.items)

    def refs(self) -> Iterator[tuple[Loc, Ref]]:
        for c in self.items:
            yield from c.refs()


@dataclass(frozen=True)
class Not(Condition):
    item: Condition
    loc: Loc = ()

    def holds(self, scope: Scope) -> bool:
        return not self.item.holds(scope)

    def refs(self) -> Iterator[tuple[Loc, Ref]]:
        yield from self.item.refs()


_TESTS = ("equals", "not_equals", "in", "lt", "le", "gt", "ge", "present", "younger_than_years",
          "at_least_years")
_COMBINATORS = ("all", "any", "not")


def parse_condition(raw: Any, loc: Loc = ()) -> Condition:
    """``{path: P, <test>: X}`` with one test of equals, not_equals, in, lt, le, gt, ge, present,
    younger_than_years, at_least_years; or one of ``all: [...]``, ``any: [...]``, ``not: {...}``."""
    if not isinstance(raw, dict) or not raw:
        raise DefinitionError(loc, "a condition is a mapping: {path: …, equals: …}, {all: [...]}, …")
    combinators = [k for k in _COMBINATORS if k in raw]
    if combinators:
        key = combinators[0]
        if len(raw) != 1:
            raise DefinitionError(loc, f"{key}: stands alone in its mapping (nest the other tests "
                                  "inside it)")
        inner = raw[key]
        if key == "not":
            return Not(parse_condition(inner, (*loc, "not")), loc)
        if not isinstance(inner, list) or not inner:
            raise DefinitionError((*loc, key), f"{key}: takes a non-empty list of conditions")
        items = tuple(parse_condition(c, (*loc, key, i)) for i, c in enumerate(inner))
        return All(items, loc) if key == "all" else Any_(items, loc)
    unknown = sorted(str(k) for k in raw.keys() - {"path", *_TESTS})
    if unknown:
        raise DefinitionError((*loc, unknown[0]), f"unknown condition {unknown[0]!r}; the vocabulary: "
                              f"path with one of {', '.join(_TESTS)}, or {', '.join(_COMBINATORS)}")
    if "path" not in raw:
        raise DefinitionError(loc, "a test names its path: {path: dossier.X, equals: …}")
    ref = parse_ref(raw["path"], (*loc, "path"))
    tests = [k for k in _TESTS if k in raw]
    if len(tests) != 1:
        raise DefinitionError(loc, f"one test per mapping (found {', '.join(tests) or 'none'}); "
                              "combine them with all: [...]")
    test = tests[0]
    operand = raw[test]
    where = (*loc, test)
    if test == "present":
        if not isinstance(operand, bool):
            raise DefinitionError(where, "present: true or false")
        return Present(ref, operand, loc)
    if test in ("younger_than_years", "at_least_years"):
        if not isinstance(operand, int) or isinstance(operand, bool) or not 0 <= operand <= 200:
            raise DefinitionError(where, f"{test}: a whole number of years (0-200)")
        return Young(ref, operand, test == "younger_than_years", loc)
    if test in ("equals", "not_equals"):
        return Compare(ref, test, _json_literal(operand, where), loc)  # type: ignore[arg-type]
    if test == "in":
        if not isinstance(operand, list) or not operand:
            raise DefinitionError(where, "in: takes a non-empty list of values")
        return Compare(ref, "in", tuple(_json_literal(o, (*where, i)) for i, o in enumerate(operand)), loc)
    if _number(operand):
        return Compare(ref, test, operand, loc)  # type: ignore[arg-type]
    day = _as_date(operand)
    if day is None:
        raise DefinitionError(where, f"{test}: compares with a number or an ISO date (YYYY-MM-DD)")
    return Compare(ref, test, day, loc)  # type: ignore[arg-type]
