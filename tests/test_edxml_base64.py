"""The attachments' base64 decoder (gateway/edxml/codec.py ``_Decoder``): pybase64 decodes, and what
it accepts, refuses and says is exactly what the decoder did with binascii alone before (issue 16's
ninth session): spaces, tabs and line breaks anywhere, pieces cut anywhere, padding only at the end."""

from __future__ import annotations

import base64
import binascii
import hashlib
import io
import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from connectors.dms import data
from gateway.edxml import codec
from gateway.edxml.codec import EdxmlError, Limits, parse

PATH = "/edXML/AttachmentEncoded/Attachment/ContentTransferEncoded"


class Reference:
    """The decoder as it was before pybase64 (binascii, the spaces taken out by ``translate``): what
    the new one must match, refusals and their reasons included."""

    def __init__(self) -> None:
        self.out = bytearray()
        self.newlines = 0
        self.carry = b""
        self.padded = False

    def write(self, text: bytes) -> None:
        self.newlines += text.count(b"\n")
        text = self.carry + text.translate(None, b" \t\r\n")
        whole = len(text) - len(text) % 4
        self.carry = text[whole:]
        if whole:
            if self.padded:
                raise EdxmlError("bad-base64", "the attachment's base64 goes on after its padding", PATH)
            try:
                self.out += binascii.a2b_base64(text[:whole], strict_mode=True)
            except binascii.Error as exc:
                raise EdxmlError("bad-base64", f"the attachment is not base64: {exc}", PATH) from None
            self.padded = text[:whole].endswith(b"=")

    def finish(self) -> None:
        if self.carry:
            raise EdxmlError("bad-base64", "the attachment's base64 length is not a multiple of 4", PATH)


def decoded(pieces: list[bytes]) -> tuple[bytes, int, str, int] | str:
    """(bytes, size, SHA-256, newlines) from the decoder fed ``pieces``, or its refusal's message."""
    decoder = codec._Decoder(1 << 20, PATH)
    try:
        for piece in pieces:
            decoder.write(piece)
        decoder.finish()
    except EdxmlError as err:
        assert err.code == "bad-base64" and err.path == PATH
        return str(err)
    decoder.file.seek(0)
    return decoder.file.read(), decoder.size, decoder.digest.hexdigest(), decoder.newlines


def reference(pieces: list[bytes]) -> tuple[bytes, int, str, int] | str:
    ref = Reference()
    try:
        for piece in pieces:
            ref.write(piece)
        ref.finish()
    except EdxmlError as err:
        return str(err)
    out = bytes(ref.out)
    return out, len(out), hashlib.sha256(out).hexdigest(), ref.newlines


def cut(text: bytes, at: list[int]) -> list[bytes]:
    """``text`` in pieces at the offsets ``at`` (any order, repeats make empty pieces)."""
    points = sorted(min(a, len(text)) for a in at)
    return [text[a:b] for a, b in zip([0, *points], [*points, len(text)], strict=True)]


def wrap(text: bytes, width: int, newline: bytes) -> bytes:
    return newline.join(text[i:i + width] for i in range(0, len(text), width))


# -------------------------------------------------------------------------------------------- examples


@pytest.mark.parametrize("text", [
    b"QUJD", b"QUI=", b"QQ==", b"", b"QR==",   # non-zero padding bits: taken, as binascii takes them
    b"AAAA====",                             # binascii (Python 3.11) takes the extra padding; pybase64 not
    b"QU\nJD\r\nQU I=\t", b"\n\n\n\n", b" QUJD ",
])
def test_accepted_as_before(text: bytes) -> None:
    assert decoded([text]) == reference([text])
    assert not isinstance(decoded([text]), str)


@pytest.mark.parametrize(("text", "reason"), [
    (b"YWJj*GVm", "Only base64 data is allowed"),
    (b"YWJjZGV", "not a multiple of 4"),
    (b"YQ==YWJj", "Excess data after padding"),
    (b"=AAA", "Leading padding not allowed"),
    (b"AA=A", "Discontinuous padding not allowed"),
    (b"A===", "cannot be 1 more than a multiple of 4"),
    (b"QQ==\nQUJD", "Excess data after padding"),
    (b"QUJD\x00AAA", "Only base64 data is allowed"),
    (b"QUJD\xffAAA", "Only base64 data is allowed"),
    (b"QUJD\x0bAAA", "Only base64 data is allowed"),  # a vertical tab is not among the spaces taken out
])
def test_refused_as_before(text: bytes, reason: str) -> None:
    message = decoded([text])
    assert isinstance(message, str) and reason in message
    assert message == reference([text])


def test_padding_then_more_in_a_later_piece() -> None:
    """A quad with padding ends the attachment: more quads after it, in any piece, are refused."""
    assert decoded([b"QQ==", b"QUJD"]) == "the attachment's base64 goes on after its padding at " + PATH
    assert decoded([b"QQ==", b"\r\n  ", b"\n"]) == (b"A", 1, hashlib.sha256(b"A").hexdigest(), 2)


def test_quads_across_pieces_and_line_breaks() -> None:
    """A quad cut by a piece's end, or by a line break, is decoded whole; newlines are counted."""
    raw = bytes(range(256)) * 40
    text = wrap(base64.b64encode(raw), 76, b"\r\n")
    pieces = [text[i:i + 1000] for i in range(0, len(text), 1000)]
    assert decoded(pieces) == (raw, len(raw), hashlib.sha256(raw).hexdigest(), text.count(b"\n"))


# ------------------------------------------------------------------------------------------ properties


BREAKS = [b"\n", b"\r\n", b" ", b"\t", b" \n\t"]


@given(st.binary(max_size=3000), st.integers(1, 120), st.sampled_from(BREAKS), st.booleans(),
       st.lists(st.integers(0, 5000), max_size=8))
def test_any_bytes_any_wrapping_any_pieces(raw: bytes, width: int, newline: bytes, wrapped: bool,
                                           at: list[int]) -> None:
    """Whatever the bytes, the line width and breaks, and where the pieces are cut: the bytes back,
    their size and digest, and the newlines the text had."""
    text = base64.b64encode(raw)
    if wrapped:
        text = wrap(text, width, newline)
    assert decoded(cut(text, at)) == (raw, len(raw), hashlib.sha256(raw).hexdigest(), text.count(b"\n"))


CHARACTERS = [b"A", b"Q", b"w", b"9", b"+", b"/", b"=", b"==", b"\n", b"\r\n", b" ", b"\t",
              b"*", b"-", b"_", b"\x00", b"\xff", b"\x0b", b"QUJD", b"QUJDRA=="]


@given(st.lists(st.sampled_from(CHARACTERS), max_size=40), st.lists(st.integers(0, 200), max_size=6))
def test_any_text_as_before(characters: list[bytes], at: list[int]) -> None:
    """Any text, valid or not, cut anywhere: accepted with the same bytes, or refused with the same
    reason, as by the binascii decoder before."""
    pieces = cut(b"".join(characters), at)
    assert decoded(pieces) == reference(pieces)


@given(st.lists(st.lists(st.sampled_from(CHARACTERS), max_size=8), max_size=8))
def test_any_pieces_as_before(pieces: list[list[bytes]]) -> None:
    """The same, the pieces cut between the characters above (a piece ending with padding, a quad
    cut before its line break): cuts at random offsets seldom fall there."""
    joined = [b"".join(piece) for piece in pieces]
    assert decoded(joined) == reference(joined)


@given(st.binary(min_size=1, max_size=600), st.integers(0, 800), st.sampled_from([b"*", b"=", b"\x00", b"-"]),
       st.lists(st.integers(0, 900), max_size=4))
def test_one_bad_character_anywhere(raw: bytes, where: int, bad: bytes, at: list[int]) -> None:
    """A character that does not belong, put anywhere in valid text: the same verdict as before."""
    text = base64.b64encode(raw)
    where = min(where, len(text))
    pieces = cut(text[:where] + bad + text[where:], at)
    assert decoded(pieces) == reference(pieces)


# --------------------------------------------------------------------------------------- whole packages


@pytest.mark.parametrize("newline", [b"\n", b"\r\n"])
def test_wrapped_attachments_read_as_unwrapped(newline: bytes) -> None:
    """A package whose attachments are wrapped at 76 (MIME's habit) reads as the unwrapped one."""
    package = data.package_bytes("000.00.00.H60", ["000.00.00.H41"], 11, attachments=2,
                                 attachment_size=200_000)
    texts = re.findall(rb"<ContentTransferEncoded>([^<]*)<", package)
    wrapped = re.sub(rb"(<ContentTransferEncoded>)([^<]*)(<)",
                     lambda m: m[1] + newline + wrap(m[2], 76, newline) + newline + m[3], package)
    assert len(texts) == 2 and wrapped.count(newline) >= sum(len(t) // 76 for t in texts)
    for limits in (Limits(), Limits(keep_attachments=False)):
        with parse(package, limits) as plain, parse(io.BytesIO(wrapped), limits) as lines:
            assert [(a.size, a.sha256) for a in lines.attachments] == [
                (a.size, a.sha256) for a in plain.attachments]
