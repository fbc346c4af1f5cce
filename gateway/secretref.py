"""Secrets by reference in the configuration file.

Any string value in ``config.yaml`` may name where its value is kept instead of holding it:

- ``${NAME}``: the environment variable NAME (the whole value, nothing around it);
- ``file:PATH``: the contents of the file at PATH (relative to the configuration's folder), one
  trailing line ending stripped: a Kubernetes Secret or a Docker secret mounted as files.

So the portal's password, client secret hashes, the database URL with its password, an OIDC
client secret never need to stand in plain text in a file that is read by many and versioned. The
references are resolved when the file is loaded, before validation; a variable that is not set or
empty, or a file that cannot be read, stops the load with the file, the line, the key and the
variable or file named. Resolved values are never put into a message or a log line.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from gateway.yamlfile import FileError, Location, line_of

__all__ = ["FILE_PREFIX", "resolve"]

_ENV = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
FILE_PREFIX = "file:"


def resolve(data: Any, lines: dict[Location, int], config_path: Path,
            environ: Mapping[str, str] | None = None) -> Any:
    """``data`` (the loaded YAML) with every reference replaced by its value; FileError naming the
    line, the key and the variable or file when one cannot be resolved."""
    env = os.environ if environ is None else environ
    return _walk(data, (), lines, config_path, env)


def _walk(data: Any, path: Location, lines: dict[Location, int], config_path: Path,
          env: Mapping[str, str]) -> Any:
    if isinstance(data, dict):
        return {key: _walk(value, (*path, key), lines, config_path, env) for key, value in data.items()}
    if isinstance(data, list):
        return [_walk(value, (*path, i), lines, config_path, env) for i, value in enumerate(data)]
    if isinstance(data, str):
        return _value(data, path, lines, config_path, env)
    return data


def _value(value: str, path: Location, lines: dict[Location, int], config_path: Path,
           env: Mapping[str, str]) -> str:
    where = ".".join(str(p) for p in path) or "(top level)"

    def fail(message: str) -> FileError:
        return FileError(config_path, line_of(lines, path), f"{where}: {message}")

    match = _ENV.fullmatch(value)
    if match is not None:
        name = match.group(1)
        found = env.get(name)
        if found is None:
            raise fail(f"environment variable {name} is not set (the value is ${{{name}}}); set it "
                       "in the gateway's environment, or write the value here")
        if not found:
            raise fail(f"environment variable {name} is empty (the value is ${{{name}}})")
        return found
    if value.startswith(FILE_PREFIX):
        return _file(value[len(FILE_PREFIX):], config_path, fail)
    return value


def _file(name: str, config_path: Path, fail: Any) -> str:
    if not name:
        raise fail("file: names no file (write file:/path/to/the/secret)")
    path = Path(name)
    if not path.is_absolute():
        path = config_path.parent / path
    try:
        text = path.read_bytes().decode("utf-8")
    except IsADirectoryError:
        raise fail(f"cannot read {path} (file: reference): it is a folder") from None
    except OSError as exc:
        raise fail(f"cannot read {path} (file: reference): {exc.strerror}; check that the secret is "
                   "mounted there and readable by the gateway's account") from None
    except UnicodeDecodeError:
        raise fail(f"{path} (file: reference) is not UTF-8 text") from None
    if text.endswith("\r\n"):  # one line ending, as editors and `echo` add
        text = text[:-2]
    elif text.endswith("\n"):
        text = text[:-1]
    if not text:
        raise fail(f"{path} (file: reference) is empty")
    return text
