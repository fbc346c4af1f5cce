"""Response minimisation: only the fields a rule lists leave the gateway (Decree 13/2023).

A rule's ``response_fields`` are dotted paths into the JSON-shaped reply: ``TonTai`` keeps that
field, ``HoVaTen.Ten`` keeps ``Ten`` inside ``HoVaTen``, ``HoVaTen`` keeps the whole object, ``*``
stands for any key at its level, and lists are walked so a path applies to each element. Everything
else is removed. A value where the paths expected an object is removed too (it is not one of the
allowed fields); a bare scalar reply (or a list of them) has no fields and is kept.

The pipeline applies this once, to the reply payload, before any entry point renders it, so REST and
SOAP consumers get the same fields.
"""

from __future__ import annotations

from typing import Any

# A compiled set of paths: key -> subtree, where KEEP means "the whole value".
Tree = dict[str, Any]
KEEP: Tree = {}
_WILD = "*"


def compile_fields(paths: list[str] | tuple[str, ...]) -> Tree:
    tree: Tree = {}
    for path in paths:
        node = tree
        parts = path.removeprefix("$.").split(".")
        for i, part in enumerate(parts):
            last = i == len(parts) - 1
            existing = node.get(part)
            if existing is KEEP:
                break  # a shorter path keeps all of it already
            if last:
                node[part] = KEEP
            else:
                node = node.setdefault(part, {})
    return tree


def minimise(payload: Any, tree: Tree) -> Any:
    """The payload with only the fields of ``tree``."""
    if isinstance(payload, list):  # lists are transparent: each item is a reply of its own
        return [minimise(item, tree) for item in payload]
    if isinstance(payload, dict):
        return _prune(payload, tree)
    return payload


def _prune(node: Any, tree: Tree) -> Any:
    if tree is KEEP:
        return node
    if isinstance(node, list):
        return [v for v in (_prune(item, tree) for item in node) if v is not _DROP]
    if isinstance(node, dict):
        wild = tree.get(_WILD)
        out = {}
        for key, value in node.items():
            sub = tree.get(key, wild)
            if sub is None:
                continue
            kept = _prune(value, sub)
            if kept is not _DROP:
                out[key] = kept
        return out
    return _DROP  # a scalar where an object was expected


_DROP = object()
