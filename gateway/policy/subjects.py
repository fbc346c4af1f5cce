"""Where a data subject's id sits in a request: dotted paths into the JSON payload."""

from __future__ import annotations

from typing import Any


def check_paths(value: list[str] | None) -> list[str] | None:
    """``value`` if every item is a dotted path such as ``HoVaTen.Ten``; ValueError naming one that
    is not (a validator for rules' and services' path lists)."""
    for path in value or []:
        parts = path.removeprefix("$.").split(".")
        if not path.strip() or any(not p.strip() for p in parts):
            raise ValueError(f"{path!r} is not a dotted path such as 'HoVaTen.Ten'")
    return value


def subject_ids(payload: Any, paths: list[str]) -> list[str]:
    """The data subjects' ids found at dotted paths of a JSON payload (lists are walked)."""
    found: list[str] = []
    for path in paths:
        nodes = [payload]
        for part in path.removeprefix("$.").split("."):
            nxt: list[Any] = []
            for node in nodes:
                if isinstance(node, list):
                    nxt.extend(n.get(part) for n in node if isinstance(n, dict))
                elif isinstance(node, dict):
                    nxt.append(node.get(part))
            nodes = [n for n in nxt if n is not None]
        for node in nodes:
            for value in node if isinstance(node, list) else [node]:
                if isinstance(value, str | int) and str(value).strip():
                    found.append(str(value).strip())
    return found
