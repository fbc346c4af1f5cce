"""The C2SP tlog-witness add-checkpoint request (https://c2sp.org/tlog-witness), as bytes.

Request body, every line ending in a newline::

    old <size of the previous checkpoint, decimal, no leading zeros>
    <base64 consistency proof hash>      (zero to 63 lines)
    <empty line>
    <signed checkpoint note>

A 409 Conflict answer carries the witness's latest size as ``<decimal>\\n`` with the content type
``text/x.tlog.size``; a 200 answer is one or more cosignature lines. Pure functions: no I/O.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Sequence
from dataclasses import dataclass

__all__ = [
    "MAX_BODY",
    "MAX_PROOF",
    "SIZE_TYPE",
    "MalformedRequest",
    "Submission",
    "build_request",
    "parse_request",
    "parse_size",
    "size_body",
]

MAX_PROOF = 63
"""Consistency proof lines a request may carry (the spec's limit)."""
MAX_BODY = 64 * 1024
"""Bytes accepted in one request: 63 proof lines and a checkpoint with many signatures fit easily."""
SIZE_TYPE = "text/x.tlog.size"
_HASH_SIZE = 32
_DECIMAL = re.compile(rb"0|[1-9][0-9]{0,19}")
_MAX_SIZE = (1 << 64) - 1


class MalformedRequest(ValueError):
    """A request body that is not an add-checkpoint request."""


@dataclass(frozen=True, slots=True)
class Submission:
    """A parsed add-checkpoint request: the old size, the proof, and the note as sent."""

    old: int
    proof: tuple[bytes, ...]
    note: bytes


def _decimal(text: bytes, what: str) -> int:
    if not _DECIMAL.fullmatch(text) or int(text) > _MAX_SIZE:
        raise MalformedRequest(f"{what} {text[:24]!r} is not a decimal size without leading zeros")
    return int(text)


def _hash(line: bytes) -> bytes:
    try:
        raw = base64.b64decode(line, validate=True)
    except (binascii.Error, ValueError):
        raw = b""
    if len(raw) != _HASH_SIZE or base64.b64encode(raw) != line:
        raise MalformedRequest(f"proof line {line[:60]!r} is not canonical base64 of a 32-byte hash")
    return raw


def parse_request(body: bytes) -> Submission:
    """Read an add-checkpoint request body; raises MalformedRequest (the note itself is checked by
    whoever opens it)."""
    if len(body) > MAX_BODY:
        raise MalformedRequest(f"request body over {MAX_BODY} bytes")
    end = body.find(b"\n")
    if end < 0 or not body.startswith(b"old "):
        raise MalformedRequest("the body must start with an 'old <size>' line")
    old = _decimal(body[4:end], "old size")
    proof: list[bytes] = []
    pos = end + 1
    while True:
        end = body.find(b"\n", pos)
        if end < 0:
            raise MalformedRequest("no empty line between the proof and the checkpoint")
        line = body[pos:end]
        pos = end + 1
        if not line:
            break
        if len(proof) == MAX_PROOF:
            raise MalformedRequest(f"more than {MAX_PROOF} consistency proof lines")
        proof.append(_hash(line))
    note = body[pos:]
    if not note:
        raise MalformedRequest("no checkpoint after the empty line")
    if old == 0 and proof:
        raise MalformedRequest("the proof must be empty when the old size is 0")
    return Submission(old, tuple(proof), note)


def build_request(old: int, proof: Sequence[bytes], note: bytes) -> bytes:
    """The request body submitting ``note`` with a consistency proof from size ``old``."""
    lines = [b"old %d\n" % old, *(base64.b64encode(h) + b"\n" for h in proof), b"\n"]
    return b"".join(lines) + note


def size_body(size: int) -> bytes:
    """A 409 answer's body: the size the witness holds."""
    return b"%d\n" % size


def parse_size(body: bytes) -> int:
    """The size in a 409 answer's body; raises MalformedRequest."""
    if not body.endswith(b"\n"):
        raise MalformedRequest("a size answer ends with a newline")
    return _decimal(body[:-1], "size")
