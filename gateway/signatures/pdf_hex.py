"""pyHanko's PDF hex-string reader, with the common case decoded in C.

pyHanko reads a hex string (``<48656C6C6F>``) one character at a time in Python, about 1 µs each: a
signature's ``/Contents`` of a few thousand characters costs milliseconds. ``read_hex_string`` reads
up to the closing ``>`` in chunks and, when everything before it is hexadecimal digits and PDF
whitespace (every string a signer writes), decodes it with ``binascii``. Anything else (a ``%``
comment, a stray character, no ``>`` before the end) is handed back to pyHanko's own reader from
the same position, so the answer, the exception and the stream's position afterwards are always
pyHanko's. ``install`` (run when ``gateway.signatures`` is imported) puts it in place of pyHanko's.
"""

from __future__ import annotations

import binascii
from typing import BinaryIO

from pyhanko.pdf_utils import generic, misc

__all__ = ["install", "installed", "read_hex_string"]

_PYHANKO_READER = generic.read_hex_string_from_stream
_WHITESPACE = misc.PDF_WHITESPACE
_HEX_DIGITS = generic.HEX_DIGITS
# Most hex strings are short (/ID, small byte strings): a first read this size finds the end;
# a signature's /Contents takes a few doublings.
_FIRST_CHUNK = 512
_MAX_CHUNK = 1_048_576


def read_hex_string(stream: BinaryIO) -> generic.ByteStringObject | generic.TextStringObject:
    """The hex string at the stream's position (its ``<``), exactly as pyHanko's reader reads it."""
    start = stream.tell()
    stream.read(1)  # the "<", as pyHanko skips it unread
    parts: list[bytes] = []
    size = _FIRST_CHUNK
    while True:
        chunk = stream.read(size)
        if not chunk:
            return _pyhanko(stream, start)  # no ">" before the end: pyHanko's error
        end = chunk.find(b">")
        if end >= 0:
            parts.append(chunk[:end])
            break
        parts.append(chunk)
        size = min(2 * size, _MAX_CHUNK)
    read = b"".join(parts)
    digits = read.translate(None, _WHITESPACE)
    if digits.translate(None, _HEX_DIGITS):
        return _pyhanko(stream, start)  # a comment or a stray character: pyHanko decides
    stream.seek(start + 1 + len(read) + 1)  # just past the ">", where pyHanko leaves it
    if len(digits) % 2:
        digits += b"0"  # PDF 32000-1, 7.3.4.3: a missing last digit is zero
    return generic.pdf_string(binascii.unhexlify(digits))


def install() -> None:
    """Make pyHanko's parser read hex strings with ``read_hex_string`` (idempotent)."""
    if generic.read_hex_string_from_stream is _PYHANKO_READER:  # someone else's replacement stays
        generic.read_hex_string_from_stream = read_hex_string


def installed() -> bool:
    """Whether pyHanko's parser now uses ``read_hex_string``."""
    return generic.read_hex_string_from_stream is read_hex_string


def _pyhanko(stream: BinaryIO, start: int) -> generic.ByteStringObject | generic.TextStringObject:
    stream.seek(start)
    result: generic.ByteStringObject | generic.TextStringObject = _PYHANKO_READER(stream)
    return result
