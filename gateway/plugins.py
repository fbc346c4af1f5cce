"""Finding connectors and simulators by name through entry points."""

from __future__ import annotations

from functools import cache
from importlib.metadata import entry_points
from typing import Any

CONNECTORS = "lienthong.connectors"
SIMULATORS = "lienthong.simulators"


class PluginNotFound(LookupError):
    pass


@cache
def _group(group: str) -> dict[str, Any]:
    return {ep.name: ep for ep in entry_points(group=group)}


def names(group: str) -> list[str]:
    return sorted(_group(group))


def load(group: str, name: str) -> Any:
    """The object an entry point names; PluginNotFound lists what is installed."""
    found = _group(group).get(name)
    if found is None:
        have = ", ".join(names(group)) or "none"
        raise PluginNotFound(f"no {group} entry point named {name!r} is installed (installed: {have})")
    return found.load()
