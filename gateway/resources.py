"""Where the bundled ``schemas/``, ``policies/`` and ``flows/`` folders are, in a checkout or a wheel
install."""

from __future__ import annotations

from pathlib import Path

_HERE = Path(__file__).resolve().parent


def _bundled(name: str) -> Path:
    # A wheel carries them inside the package; a checkout (or editable install) beside it.
    inside = _HERE / "_bundled" / name
    return inside if inside.is_dir() else _HERE.parent / name


def schemas_dir() -> Path:
    return _bundled("schemas")


def policies_dir() -> Path:
    return _bundled("policies")


def flows_dir() -> Path:
    return _bundled("flows")
