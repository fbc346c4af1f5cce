"""Finding connectors and simulators by name through entry points.

A connector's service options are the pydantic model ``Options`` in the module its entry point
names (next to its ``create``): ``options_model(name)`` finds it, ``options_problem`` says what is
wrong with a service's options in the words the configuration check uses, and ``read_options`` is
how a connector reads them, once, when it is created.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from functools import cache
from importlib.metadata import EntryPoint, entry_points
from typing import TYPE_CHECKING, Any, TypeVar

from pydantic import BaseModel, ValidationError

if TYPE_CHECKING:
    from gateway.config import Service

CONNECTORS = "lienthong.connectors"
SIMULATORS = "lienthong.simulators"

M = TypeVar("M", bound=BaseModel)


class PluginNotFound(LookupError):
    pass


@cache
def _group(group: str) -> dict[str, Any]:
    return {ep.name: ep for ep in entry_points(group=group)}


def names(group: str) -> list[str]:
    return sorted(_group(group))


def _entry(group: str, name: str) -> EntryPoint:
    found: EntryPoint | None = _group(group).get(name)
    if found is None:
        have = ", ".join(names(group)) or "none"
        raise PluginNotFound(f"no {group} entry point named {name!r} is installed (installed: {have})")
    return found


def load(group: str, name: str) -> Any:
    """The object an entry point names; PluginNotFound lists what is installed."""
    return _entry(group, name).load()


@cache
def options_model(name: str) -> type[BaseModel] | None:
    """The options model of connector ``name``: ``Options`` in its entry point's module.

    None when that module declares none (a connector written before options were typed: its
    options are not checked); PluginNotFound when no such connector is installed.
    """
    module = importlib.import_module(_entry(CONNECTORS, name).module)
    model = getattr(module, "Options", None)
    return model if isinstance(model, type) and issubclass(model, BaseModel) else None


def options_problem(model: type[BaseModel], options: Mapping[str, Any],
                    connector: str) -> tuple[tuple[str | int, ...], str] | None:
    """What is wrong with a service's options for ``model``, or None: the path of the key at fault
    within the options (empty when a required key is missing) and a message naming it, with the
    connector's options when a key is unknown or missing."""
    try:
        model.model_validate(options)
    except ValidationError as exc:
        return _explain(exc, model, options, connector)
    return None


def read_options(model: type[M], service: Service) -> M:
    """A service's options as ``model`` reads them; ValueError naming the service and the key."""
    try:
        return model.model_validate(service.options)
    except ValidationError as exc:
        _, message = _explain(exc, model, service.options, service.connector or "this")
        raise ValueError(f"service {service.id}: {message}") from None


def _explain(exc: ValidationError, model: type[BaseModel], options: Mapping[str, Any],
             connector: str) -> tuple[tuple[str | int, ...], str]:
    errors = exc.errors()
    fields = list(model.model_fields)
    known = f"its options: {', '.join(fields)}" if fields else "it takes no options"
    for err in errors:
        if err["type"] == "extra_forbidden" and len(err["loc"]) == 1:
            key = err["loc"][0]
            return (key,), f"options.{key} is not an option of the {connector} connector ({known})"
    missing = [str(err["loc"][0]) for err in errors if err["type"] == "missing" and len(err["loc"]) == 1]
    if missing:
        return (), f"the {connector} connector needs options {' and '.join(missing)} ({known})"
    err = errors[0]
    path = _data_path(options, err["loc"])
    where = ".".join(str(p) for p in ("options", *path))
    if err["type"] == "extra_forbidden":
        return path, f"{where}: unknown key"
    return path, f"{where}: {err['msg']}"


def _data_path(data: Any, loc: tuple[str | int, ...]) -> tuple[str | int, ...]:
    """The part of a pydantic error location that names keys and items of the data: the tags it
    adds for the member of a union are left out (they name no line of the file)."""
    path: list[str | int] = []
    node = data
    for n, part in enumerate(loc):
        if isinstance(node, Mapping) and (part in node or n == len(loc) - 1):
            node = node.get(part)  # the last part may be a key that is missing
        elif isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node):
            node = node[part]
        else:
            continue
        path.append(part)
    return tuple(path)
