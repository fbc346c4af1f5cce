"""Reading the flows folder and checking every definition against the others, the catalog and the
joint dossier's JSON Schema, each problem named by file and line (``lienthong check``, start-up)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
from pydantic import ValidationError

from gateway import yamlfile
from gateway.config import Config
from gateway.delivery.schema import SchemaValidator
from gateway.flows.definition import Compensate, Flow
from gateway.flows.mapping import Loc, Ref, required_reads
from gateway.resources import schemas_dir as bundled_schemas

__all__ = ["Flows", "declares", "flow_files", "load_flows"]


@dataclass
class Flows:
    """The flows a folder defines, which catalog service starts which, and every problem found."""

    flows: dict[str, Flow] = field(default_factory=dict)
    starters: dict[str, str] = field(default_factory=dict)  # service id -> flow name
    validators: dict[str, SchemaValidator] = field(default_factory=dict)  # flow name -> its dossier's
    problems: list[yamlfile.FileError] = field(default_factory=list)
    # the catalog services a notification may go to (client_service: that code on any subsystem)
    notified: frozenset[str] = frozenset()

    @property
    def called(self) -> frozenset[str]:
        """The services the flows' steps, undos and notifications call: the delivery queue carries
        them."""
        return self.notified | self.stepped

    @property
    def stepped(self) -> frozenset[str]:
        """The services the flows' steps and undos call: a flow waits for their answers."""
        return frozenset(
            service for flow in self.flows.values() for step in flow.steps
            for service in (step.service, *((step.compensation.service,) if step.compensation else ())))

    def started_by(self, service_id: str) -> Flow | None:
        name = self.starters.get(service_id)
        return None if name is None else self.flows.get(name)


def flow_files(folder: Path) -> list[Path]:
    return sorted([*folder.glob("*.yaml"), *folder.glob("*.yml")])


@dataclass
class _Read:
    path: Path
    lines: dict[yamlfile.Location, int]
    flow: Flow
    schema: dict[str, Any] | None = None

    def error(self, loc: Loc, message: str) -> yamlfile.FileError:
        return yamlfile.FileError(self.path, yamlfile.line_of(self.lines, loc), message)


def load_flows(folder: Path, config: Config, *, config_file: Path | None = None,
               schemas: Path | None = None) -> Flows:
    """Every flow in ``folder`` (``*.yaml``, one flow a file), checked; problems are collected, not
    raised. A folder that does not exist holds no flows. ``config_file`` locates problems with the
    catalog's ``flow:`` marks; ``schemas`` is the schemas folder (the configuration's by default)."""
    out = Flows()
    if schemas is None:
        schemas = config.path(config.schemas_dir) if config.schemas_dir else bundled_schemas()
    read: list[_Read] = []
    named: set[str] = set()  # flow names seen, valid or not, so a broken file is reported once
    for path in flow_files(folder) if folder.is_dir() else []:
        item = _read(path, out.problems, named)
        if item is None:
            continue
        if item.flow.name in out.flows:
            out.problems.append(item.error(("name",), f"flow {item.flow.name!r} is already defined at "
                                           f"{out.flows[item.flow.name].source}"))
            continue
        out.flows[item.flow.name] = item.flow
        read.append(item)
    for item in read:
        validator = _schema(item, schemas, out.problems)
        if validator is not None:
            out.validators[item.flow.name] = validator
        out.problems.extend(_flow_problems(item, config))
    _catalog(out, read, named, config, config_file)
    codes = {n.client_service for f in out.flows.values() for n in f.notify if n.client_service}
    out.notified = frozenset(
        {n.service for f in out.flows.values() for n in f.notify if n.service is not None}
        | {s.id for s in config.services if s.id.rsplit("/", 1)[-1] in codes})
    return out


def _read(path: Path, problems: list[yamlfile.FileError], named: set[str]) -> _Read | None:
    try:
        data, lines = yamlfile.load(path)
    except yamlfile.FileError as exc:
        problems.append(exc)
        return None
    if data is None:
        return None
    if not isinstance(data, dict):
        problems.append(yamlfile.FileError(path, 1, "a flow file is a mapping: name, title, "
                                           "dossier_schema, deadline, legal_limit, steps"))
        return None
    if isinstance(data.get("name"), str):
        named.add(data["name"])
    try:
        flow = Flow.model_validate({**data, "source": f"{path}:{yamlfile.line_of(lines, ('name',))}"})
    except ValidationError as exc:
        for err in exc.errors():
            loc: Loc = tuple(err["loc"])
            message = err["msg"]
            inner = (err.get("ctx") or {}).get("error")
            if inner is not None and hasattr(inner, "loc"):  # a source or condition, located inside
                loc, message = (*loc, *inner.loc), inner.message
            where = ".".join(str(p) for p in loc) or "(flow)"
            problems.append(yamlfile.FileError(path, yamlfile.line_of(lines, loc), f"{where}: {message}"))
        return None
    return _Read(path, lines, flow)


def _schema(item: _Read, schemas: Path, problems: list[yamlfile.FileError]) -> SchemaValidator | None:
    name = item.flow.dossier_schema
    path = schemas / name
    try:
        raw = orjson.loads(path.read_bytes())
        validator = SchemaValidator(raw, name=name)
    except OSError as exc:
        problems.append(item.error(("dossier_schema",), f"dossier_schema {name}: cannot read "
                                   f"{path}: {exc.strerror}"))
        return None
    except Exception as exc:  # not JSON, or not a JSON Schema: either way the flow cannot start
        problems.append(item.error(("dossier_schema",), f"dossier_schema {name}: not a JSON Schema "
                                   f"(draft 2020-12): {str(exc).splitlines()[0]}"))
        return None
    item.schema = raw
    return validator


def _flow_problems(item: _Read, config: Config) -> Iterator[yamlfile.FileError]:
    flow = item.flow
    for key in ("code", "subjects"):
        paths = [flow.code] if key == "code" else flow.subjects
        for j, text in enumerate(paths):
            parts = tuple(text.removeprefix("$.").split("."))
            if item.schema is not None and not declares(item.schema, parts):
                loc: Loc = (key,) if key == "code" else (key, j)
                yield item.error(loc, f"{key}: {text}: {_undeclared(flow)}")
    seen: dict[str, int] = {}
    for i, step in enumerate(flow.steps):
        at: Loc = ("steps", i)
        if step.id in seen:
            yield item.error((*at, "id"), f"step id {step.id!r} is already used by step {seen[step.id] + 1}")
            continue
        seen[step.id] = i
        yield from _service_problems(item, config, (*at, "service"), step.service)
        for loc, ref in step.input.refs():
            yield from _ref_problems(item, (*at, "input", *loc), ref, before=i)
        if step.when is not None:
            for loc, ref in step.when.refs():
                yield from _ref_problems(item, (*at, "when", *loc), ref, before=i)
        if isinstance(step.on_reject, Compensate):
            for j, name in enumerate(step.on_reject.compensate):
                yield from _compensate_problems(item, (*at, "on_reject", "compensate", j), name, i)
        if step.compensation is not None:
            c = (*at, "compensation")
            yield from _service_problems(item, config, (*c, "service"), step.compensation.service)
            for loc, ref in step.compensation.input.refs():
                yield from _ref_problems(item, (*c, "input", *loc), ref, before=i + 1)
    yield from _notify_problems(item, config)


def _notify_problems(item: _Read, config: Config) -> Iterator[yamlfile.FileError]:
    flow = item.flow
    seen: set[str] = set()
    for i, notify in enumerate(flow.notify):
        at: Loc = ("notify", i)
        if notify.id in seen:
            yield item.error((*at, "id"), f"notification id {notify.id!r} is used twice")
        seen.add(notify.id)
        if notify.service is not None:
            yield from _service_problems(item, config, (*at, "service"), notify.service)
        elif not any(s.id.rsplit("/", 1)[-1] == notify.client_service for s in config.services):
            yield item.error((*at, "client_service"), f"client_service {notify.client_service}: no "
                             "subsystem in the catalog offers a service of that code")
        for j, name in enumerate(notify.steps or []):
            if flow.index(name) < 0:
                yield item.error((*at, "steps", j), f"steps: the flow has no step {name!r}")
        for loc, ref in notify.input.refs():
            yield from _ref_problems(item, (*at, "input", *loc), ref, before=len(flow.steps),
                                     notify=True)
        for loc, ref in required_reads(notify.input):
            if ref.root == "steps":
                yield item.error((*at, "input", *loc), f"{ref.text}: a notification may go before "
                                 f"step {ref.step!r} has answered: read it with {{from: {ref.text}, "
                                 "optional: true}")


def _service_problems(item: _Read, config: Config, loc: Loc, service_id: str) -> Iterator[yamlfile.FileError]:
    service = config.service(service_id)
    if service is None:
        yield item.error(loc, f"service {service_id} is not in the catalog (services: in the "
                         "configuration)")
    elif service.flow is not None:
        yield item.error(loc, f"service {service_id} starts flow {service.flow}: a step calls an "
                         "agency's service, not another flow")


def _ref_problems(item: _Read, loc: Loc, ref: Ref, *, before: int,
                  notify: bool = False) -> Iterator[yamlfile.FileError]:
    """``ref`` may read the dossier where its schema declares it, and the answers of the steps with
    index below ``before``, in fields they produce; ``flow.`` and ``event.`` in notifications only."""
    flow = item.flow
    if ref.root in ("flow", "event"):
        if not notify:
            yield item.error(loc, f"{ref.text}: {ref.root}. is read by notifications (notify:) only")
        return
    if ref.root == "dossier":
        if item.schema is not None and not declares(item.schema, ref.parts):
            yield item.error(loc, f"{ref.text}: {_undeclared(flow)}")
        return
    j = flow.index(ref.step)
    if j < 0:
        yield item.error(loc, f"{ref.text}: the flow has no step {ref.step!r}")
    elif j >= before:
        yield item.error(loc, f"{ref.text}: step {ref.step!r} does not come before this one: a step "
                         "reads only the answers of the steps before it (no forward reference, no cycle)")
    elif not flow.steps[j].produced(ref.field_path):
        produced = ", ".join(flow.steps[j].produces) or "nothing"
        yield item.error(loc, f"{ref.text}: step {ref.step!r} does not produce "
                         f"{'.'.join(ref.field_path)} (it produces {produced})")


def _compensate_problems(item: _Read, loc: Loc, name: str, i: int) -> Iterator[yamlfile.FileError]:
    flow = item.flow
    j = flow.index(name)
    if j < 0:
        yield item.error(loc, f"compensate: the flow has no step {name!r}")
    elif j >= i:
        yield item.error(loc, f"compensate: step {name!r} does not come before this one: only a "
                         "step that already succeeded can be undone")
    elif flow.steps[j].compensation is None:
        yield item.error(loc, f"compensate: step {name!r} declares no compensation: (service and "
                         "input that undo it)")


def _undeclared(flow: Flow) -> str:
    return f"the joint dossier's schema ({flow.dossier_schema}) declares no such field"


def _catalog(out: Flows, read: list[_Read], named: set[str], config: Config,
             config_file: Path | None) -> None:
    """Every ``flow:`` in the catalog names a flow, and every flow is started by a service."""
    config_lines: dict[yamlfile.Location, int] = {}
    if config_file is not None:
        # The configuration was loaded already: reading it again only locates the marks.
        with contextlib.suppress(yamlfile.FileError):
            config_lines = yamlfile.load(config_file)[1]
    for i, service in enumerate(config.services):
        if service.flow is None:
            continue
        if service.flow in out.flows:
            out.starters[service.id] = service.flow
        elif service.flow not in named:  # a broken definition of that name is reported already
            out.problems.append(yamlfile.FileError(
                config_file or "configuration", yamlfile.line_of(config_lines, ("services", i, "flow")),
                f"service {service.id}: flow: {service.flow}: no such flow in the flows folder "
                f"({', '.join(sorted(out.flows)) or 'none defined'})"))
    started = set(out.starters.values())
    for item in read:
        if item.flow.name not in started:
            out.problems.append(item.error(("name",), f"flow {item.flow.name!r}: no catalog service "
                                           f"starts it (mark one with flow: {item.flow.name})"))


# --- the joint dossier's JSON Schema ------------------------------------------------------------

_MAX_DEPTH = 64


def declares(schema: dict[str, Any], parts: tuple[str, ...]) -> bool:
    """Whether a JSON Schema declares the property path ``parts`` (``properties`` walked; ``items``
    for a list index; ``$ref`` within the same document followed; allOf/anyOf/oneOf/if-then-else
    branches each count)."""
    return _declares(schema, schema, parts, 0)


def _declares(root: dict[str, Any], node: Any, parts: tuple[str, ...], depth: int) -> bool:
    if depth > _MAX_DEPTH:
        return False
    if not parts:
        return True
    head, rest = parts[0], parts[1:]
    for branch in _branches(root, node, depth):
        properties = branch.get("properties")
        if isinstance(properties, dict) and head in properties \
                and _declares(root, properties[head], rest, depth + 1):
            return True
        if head.isdigit() and "items" in branch and _declares(root, branch["items"], rest, depth + 1):
            return True
    return False


def _branches(root: dict[str, Any], node: Any, depth: int) -> Iterator[dict[str, Any]]:
    node = _deref(root, node)
    if not isinstance(node, dict) or depth > _MAX_DEPTH:
        return
    yield node
    for key in ("allOf", "anyOf", "oneOf"):
        for sub in node.get(key) or []:
            yield from _branches(root, sub, depth + 1)
    for key in ("then", "else"):
        if key in node:
            yield from _branches(root, node[key], depth + 1)


def _deref(root: dict[str, Any], node: Any) -> Any:
    seen = 0
    while isinstance(node, dict) and isinstance(node.get("$ref"), str) and seen < _MAX_DEPTH:
        ref = node["$ref"]
        if not ref.startswith("#"):
            return None  # another document: not followed, so what it declares is unknown here
        target: Any = root
        for token in [t for t in ref[1:].split("/") if t]:
            token = token.replace("~1", "/").replace("~0", "~")
            target = target.get(token) if isinstance(target, dict) else None
        # A $ref beside properties (2020-12 allows it): both count.
        node = {**target, **{k: v for k, v in node.items() if k != "$ref"}} if isinstance(target, dict) \
            else None
        seen += 1
    return node
