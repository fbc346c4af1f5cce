"""YAML files whose errors can name a line.

Configuration and policy files are read through here: the loaded data comes with a map from each
key path to the line it stands on, so that a validation error says ``config.yaml:17: ...``.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

import yaml


class FileError(ValueError):
    """A problem in a file, located by file and line."""

    def __init__(self, path: Path | str, line: int | None, message: str) -> None:
        where = f"{path}:{line}" if line else str(path)
        super().__init__(f"{where}: {message}")
        self.path = str(path)
        self.line = line
        self.message = message


Location = tuple[str | int, ...]


class _Unbuildable(Exception):
    def __init__(self, line: int, message: str) -> None:
        self.line, self.message = line, message


def _value(node: yaml.Node) -> Any:
    """One scalar (or key) as the safe loader builds it; a tag it refuses or a value its tag cannot
    hold (``!!int ten``) is an error at the node's own line."""
    try:
        return yaml.safe_load(yaml.serialize(node))
    except (yaml.YAMLError, ValueError, TypeError) as exc:
        problem = exc.problem if isinstance(exc, yaml.MarkedYAMLError) and exc.problem else str(exc)
        raise _Unbuildable(node.start_mark.line + 1, problem) from None


def _walk(node: yaml.Node, path: Location, lines: dict[Location, int]) -> Any:
    lines[path] = node.start_mark.line + 1
    if isinstance(node, yaml.MappingNode):
        out: dict[Any, Any] = {}
        for key_node, value_node in node.value:
            key = _value(key_node)
            lines[(*path, key)] = key_node.start_mark.line + 1
            out[key] = _walk(value_node, (*path, key), lines)
        return out
    if isinstance(node, yaml.SequenceNode):
        return [_walk(item, (*path, i), lines) for i, item in enumerate(node.value)]
    return _value(node)


def load(path: Path) -> tuple[Any, dict[Location, int]]:
    """Load a YAML file safely, returning the data and a key-path -> line map."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise FileError(path, None, f"cannot read: {exc.strerror}") from exc
    except UnicodeDecodeError as exc:
        line = path.read_bytes()[:exc.start].count(b"\n") + 1
        raise FileError(path, line, "not UTF-8 text: save the file as UTF-8") from None
    lines: dict[Location, int] = {}
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        if node is None:
            return None, lines
        return _walk(node, (), lines), lines
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        raise FileError(path, mark.line + 1 if mark else None,
                        f"not valid YAML: {exc.problem or exc.context}") from None
    except _Unbuildable as exc:  # an unknown tag, a value its tag cannot hold
        raise FileError(path, exc.line, f"not valid YAML: {exc.message}") from None
    except yaml.reader.ReaderError as exc:  # a character YAML does not allow (a control character)
        raise FileError(path, text[:exc.position].count("\n") + 1,
                        f"not valid YAML: character {exc.character!r} is not allowed") from None


def line_of(lines: dict[Location, int], loc: Iterable[str | int]) -> int | None:
    """The line of the deepest known prefix of ``loc``."""
    path = tuple(loc)
    while path:
        if path in lines:
            return lines[path]
        path = path[:-1]
    return lines.get(())
