"""Paths a client adds after a service's code, kept as opaque segments that can never escape.

A client allowed one service must not reach another endpoint of the upstream's host through it
(``…/echo/../_sim/received``). So the path after the service is split on ``/`` while still
percent-encoded, each segment is decoded once and checked, and what goes upstream is the segments
encoded again, one by one. Refused (400, naming the segment): dot segments (``.``, ``..``) however
encoded, a segment that decodes to a ``/`` or ``\\`` (an encoded separator), a segment that still
holds a percent-escape after decoding (double encoding, which an upstream decoding twice would
turn into one of the above), control characters, empty segments inside the path, and bytes that
are not UTF-8. Nothing is ever resolved or normalised: a path is refused or forwarded as it came.

A service takes an extra path only when its catalog entry says so (``extra_path``: ``/`` for any,
``/items`` for ``/items`` and below); by default it takes none. Every connector that puts a value
into an upstream URL goes through ``segment``, so the same rules hold there too.
"""

from __future__ import annotations

import re
from urllib.parse import quote, unquote_to_bytes

from gateway.errors import InvalidRequest, UnknownService

__all__ = ["PathRefused", "check_prefix", "encode", "path_value", "segment", "segments", "split_raw"]

_ESCAPE = re.compile(r"%[0-9A-Fa-f]{2}")
# What stays unencoded in a forwarded segment: RFC 3986 unreserved and sub-delims, ':' and '@'.
_SAFE = "-._~!$&'()*+,;=:@"
_MAX_SEGMENTS = 64


class PathRefused(InvalidRequest):
    """A path the gateway will not forward (400)."""

    code = "Client.BadPath"
    type_slug = "bad-path"


def _decode(raw: str, where: str) -> str:
    """One percent-decoding of one raw segment, refused unless it is a plain, safe name."""
    try:
        text = unquote_to_bytes(raw).decode("utf-8")
    except UnicodeDecodeError:
        raise PathRefused(f"{where}: the segment {raw[:80]!r} is not UTF-8 once decoded") from None
    if text in (".", ".."):
        raise PathRefused(f"{where}: dot segments ({raw[:80]!r}) are never resolved nor forwarded")
    if "/" in text or "\\" in text:
        raise PathRefused(f"{where}: the segment {raw[:80]!r} holds an encoded '/' or a '\\'; "
                          "a segment cannot be split into others")
    if any(ord(c) < 0x20 or 0x7F <= ord(c) < 0xA0 for c in text):
        raise PathRefused(f"{where}: the segment {raw[:80]!r} holds control characters")
    if _ESCAPE.search(text):
        raise PathRefused(f"{where}: the segment {raw[:80]!r} is percent-encoded twice")
    return text


def split_raw(raw: str, where: str = "the path") -> list[str]:
    """A raw (still percent-encoded) path without its leading ``/``, as decoded segments; a
    trailing ``/`` gives a last empty segment, an empty one anywhere else is refused."""
    parts = raw.split("/")
    if len(parts) > _MAX_SEGMENTS:
        raise PathRefused(f"{where} has more than {_MAX_SEGMENTS} segments")
    out = []
    for i, part in enumerate(parts):
        if not part and i != len(parts) - 1:
            raise PathRefused(f"{where}: empty segments ('//') are not forwarded")
        out.append(_decode(part, where) if part else "")
    return out


def segments(raw_rest: str) -> tuple[str, ...]:
    """The extra path (``/a/b``, raw) as its decoded segments; ``""`` for none."""
    if not raw_rest:
        return ()
    if not raw_rest.startswith("/"):
        raise PathRefused("the extra path must start with '/'")
    return tuple(split_raw(raw_rest[1:], "the path after the service"))


def encode(parts: tuple[str, ...] | list[str]) -> str:
    """Decoded segments as the path that goes upstream: ``/`` + each segment percent-encoded."""
    return "".join("/" + quote(p, safe=_SAFE) for p in parts)


def path_value(path: str) -> str:
    """The extra path (as ``encode`` gave it) read as one value, decoded: ``/H22.1%2B`` -> ``H22.1+``;
    ``""`` for none (connectors that take a dossier code from the path)."""
    return "/".join(p for p in segments(path) if p)


def segment(value: str, what: str = "a value") -> str:
    """One value (a dossier code, say) as a single encoded URL segment, under the same rules."""
    if not value:
        raise PathRefused(f"{what} is empty, and cannot name a path segment")
    return quote(_decode(quote(value, safe=""), what), safe=_SAFE)


def check_prefix(path: str, allowed: str | None, service: str) -> None:
    """Refuse (404) an extra path (as ``encode`` gave it) that the service does not declare: none
    at all by default."""
    if not path:
        return
    if allowed is None:
        raise UnknownService(f"{service} takes no path after its code; declare extra_path in its "
                             "catalog entry to allow one")
    prefix = encode([p for p in allowed.split("/") if p])
    if prefix and path != prefix and not path.startswith(prefix + "/"):
        raise UnknownService(f"{service} takes only paths under {allowed}")
