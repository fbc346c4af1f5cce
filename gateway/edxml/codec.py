"""Reading and writing edXML (QCVN 102:2016) packages and status messages, attachments streamed.

``parse(stream)`` reads a package, ``parse_status`` a status message, ``parse_message`` either;
``build(package, out)`` and ``build_status(status, out)`` write them. Both directions validate the
document with ``schema/edxml.xsd`` (libxml2's validator for the yes or no, xmlschema to list the
errors of a document it refuses) and then check what the schema cannot:
real calendar dates (in DocumentIds too), the ``edXML:`` prefix on every element of the envelope,
``xlink:href`` naming the reference's own ContentId, and that the manifest's references and the
attachments name each other one to one. Every refusal is an ``EdxmlError`` with a ``code``, the
element's ``path`` and, when reading, its ``line``.

Attachments are never held whole in memory. Reading, the bytes go to lxml's pull parser (the
``iterparse`` machinery, fed by us, with the hardened parser's options from ``gateway.xml.safe``: no
DTD, no entities, no network) except the text of each ``ContentTransferEncoded``: that is decoded from
base64 piece by piece into a spooled temporary file. The parser must itself report the element's start
at the byte where we begin diverting, so a look-alike tag in a comment or CDATA section cannot make us
read a different document than the parser does. (Left in the parser, the text would be held whole, and
over 10 MB refused, since the hardened settings keep ``huge_tree`` off.) The envelope is validated as
soon as it ends, before any attachment is read. Writing, the envelope is serialised as a tree and each
attachment is read from its file and written in base64 pieces (``lxml.etree.xmlfile``).
"""

from __future__ import annotations

import binascii
import copy
import functools
import hashlib
import io
import re
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path
from typing import IO, Any, Protocol, cast

import pybase64
from lxml import etree

from gateway.edxml.model import (
    SPOOL_THRESHOLD,
    Attachment,
    Business,
    Code,
    DocumentType,
    Dropped,
    MessageHeader,
    Organization,
    OtherInfo,
    Package,
    PromulgationInfo,
    Reference,
    ResponseFor,
    SignerInfo,
    StaffInfo,
    StatusMessage,
    TraceHeader,
    TraceHeaderList,
    spool,
)
from gateway.xml import safe
from gateway.xml.catalog import load_xsd

__all__ = ["DS", "NS", "EdxmlError", "Limits", "build", "build_status", "parse", "parse_message",
           "parse_status", "schema"]

NS = "http://www.mic.gov.vn/TBT/QCVN_102_2016"
DS = "http://www.w3.org/2000/09/xmldsig#"
XLINK = "http://www.w3.org/1999/xlink"
PREFIX = "edXML"  # receivers that validate strictly refuse envelope elements without it

_CHUNK = 65536
_B64_RAW = 49152  # bytes encoded per piece when writing: a multiple of 3, so pieces join without padding
_MAX_ERRORS = 50
_TAG_MAX = 4096
_CTE = "ContentTransferEncoded"
_CTE_START = re.compile(rb"<(?:[A-Za-z_][\w.\-]*:)?" + _CTE.encode() + rb"(?=[\s/>])[^<>]*>")
_ENCODING = re.compile(rb"^\s*<\?xml[^>]*?encoding\s*=\s*[\"']([A-Za-z0-9._\-]+)[\"']")
_DOCUMENT_ID = re.compile(r"([^,\s]+),(\d{4}/\d{2}/\d{2}),([^,/\s]+)/([^,]+)")
_DTD_MARKS = (b"<!DOCTYPE", b"<!ENTITY")
_SPACES = (b"\n", b"\r", b" ", b"\t")  # what may break base64 text into lines; taken out before decoding
_PAD = ord("=")


class Source(Protocol):
    """What a document is read from: a binary file, or anything with its ``read`` (a spooled
    request body's reader, gateway/spool.py)."""

    def read(self, size: int, /) -> bytes: ...


class EdxmlError(ValueError):
    """An edXML document refused: ``code`` says why, ``path`` and ``line`` where.

    Codes: ``malformed``, ``dtd``, ``processing-instruction``, ``too-large``, ``too-deep``,
    ``too-many-elements``, ``encoding``, ``invalid`` (the schema; ``errors`` lists each problem),
    ``unprefixed``, ``bad-date``, ``bad-document-id``, ``bad-base64``, ``bad-reference``,
    ``duplicate-content-id``, ``missing-attachment``, ``unreferenced-attachment``, ``not-a-package``,
    ``not-a-status``. ``status`` is the HTTP status an entry point answers with.
    """

    def __init__(self, code: str, message: str, path: str | None = None, line: int | None = None,
                 errors: tuple[tuple[str, int | None, str], ...] = ()) -> None:
        where = f" at {path}" + (f" (line {line})" if line else "") if path else ""
        super().__init__(f"{message}{where}")
        self.code = code
        self.reason = message
        self.path = path
        self.line = line
        self.errors = errors or ((path or "/", line, message),)

    @property
    def status(self) -> int:
        return 413 if self.code == "too-large" else 400


@dataclass(frozen=True, slots=True)
class Limits:
    """``xml`` bounds what the parser holds (every byte but the attachments' base64, nesting, element
    count); ``max_bytes`` bounds the whole document, attachments included."""

    xml: safe.Limits = field(default_factory=lambda: safe.Limits(max_bytes=8 * 1_048_576))
    max_bytes: int = 2 * 1024 ** 3
    spool_threshold: int = SPOOL_THRESHOLD
    # False: each attachment is decoded (so checked) and digested, but its bytes are not kept (a reader
    # that only needs sizes and digests, as the gateway's desk, saves their copy and their disk)
    keep_attachments: bool = True


SCHEMA = Path(__file__).parent / "schema" / "edxml.xsd"


@functools.cache
def schema() -> Any:
    """The edXML schema for xmlschema, compiled once per process: the errors, each with its path."""
    return load_xsd(SCHEMA)


_validators = threading.local()


def fast_schema() -> etree.XMLSchema:
    """The same schema compiled by libxml2, once per thread (a validator keeps its error log: it is
    not shared between the threads documents are read in). It gives the yes or no about sixty times
    faster than xmlschema (13 µs against 0.8 ms for an envelope; issue 16's bench)."""
    validator: etree.XMLSchema | None = getattr(_validators, "schema", None)
    if validator is None:
        # Our own files, beside this module: their imports are the other two; nothing is fetched.
        parser = etree.XMLParser(no_network=True, resolve_entities=False, load_dtd=False)
        validator = _validators.schema = etree.XMLSchema(etree.parse(str(SCHEMA), parser))
    return validator


# ---------------------------------------------------------------------------------------------- reading


def parse(stream: Source | bytes, limits: Limits = Limits()) -> Package:
    """A package, its attachments spooled; close it (or use ``with``) to remove their files."""
    message = parse_message(stream, limits)
    if not isinstance(message, Package):
        raise EdxmlError("not-a-package", "a status message where a package was expected",
                         f"/{PREFIX}:edXML/{PREFIX}:edXMLEnvelope/{PREFIX}:edXMLHeader/{PREFIX}:Status")
    return message


def parse_status(stream: Source | bytes, limits: Limits = Limits()) -> StatusMessage:
    message = parse_message(stream, limits)
    if not isinstance(message, StatusMessage):
        message.close()
        raise EdxmlError("not-a-status", "a package where a status message was expected",
                         f"/{PREFIX}:edXML/{PREFIX}:edXMLEnvelope/{PREFIX}:edXMLHeader/{PREFIX}:MessageHeader")
    return message


def parse_message(stream: Source | bytes, limits: Limits = Limits()) -> Package | StatusMessage:
    """A package or a status message, whichever the document holds."""
    reader = _Reader(limits)
    try:
        root = reader.read(io.BytesIO(stream) if isinstance(stream, bytes | bytearray) else stream)
        _validate(root, reader.line)
        return _message(root, reader)
    except BaseException:
        reader.discard()
        raise


class _Reader:
    """Feeds a document to the pull parser, diverting attachment text to base64 decoders."""

    def __init__(self, limits: Limits) -> None:
        self.limits = limits
        etree.clear_error_log()  # a fed parser's errors land in this thread's log: start it empty
        self.parser = etree.XMLPullParser(events=("start", "end", "pi"), **safe.PARSER_OPTIONS)
        self.total = self.fed = self.count = 0
        self.open: list[Any] = []
        self.last: tuple[str, Any] = ("", None)
        self.decoder: _Decoder | None = None
        self.decoded: list[tuple[Any, _Decoder]] = []  # (ContentTransferEncoded element, its bytes)
        self.shifts: list[tuple[int, int]] = []  # (parser line, newlines diverted up to there)
        self.previous = b""

    def read(self, stream: Source) -> Any:
        buffer = b""
        first = True
        while chunk := stream.read(_CHUNK):
            self.total += len(chunk)
            if self.total > self.limits.max_bytes:
                raise EdxmlError("too-large", f"the edXML document is over {self.limits.max_bytes} bytes")
            if first:
                _check_encoding(chunk)
                first = False
            buffer = self._advance(buffer + chunk, final=False)
        self._advance(buffer, final=True)
        if self.decoder is not None:
            self.decoded.append((self.open[-1] if self.open else None, self.decoder))
            self.decoder = None
        try:
            root = self.parser.close()
        except etree.XMLSyntaxError as exc:
            raise self._syntax(exc) from None
        if root.getroottree().docinfo.doctype:
            raise EdxmlError("dtd", "XML with a document type declaration (DTD) is refused")
        try:
            safe.refuse_pis(root)
        except safe.XmlRefused as exc:
            raise EdxmlError(exc.kind, str(exc)) from None
        return root

    def _advance(self, buffer: bytes, final: bool) -> bytes:
        while buffer:
            if self.decoder is None:
                found = _CTE_START.search(buffer)
                if found is None:
                    cut = len(buffer) if final else _complete_markup(buffer)
                    self._feed(buffer[:cut])
                    return buffer[cut:]
                self._feed(buffer[:found.end()])
                buffer = buffer[found.end():]
                if not found.group().endswith(b"/>"):
                    self._divert()
            else:
                end = buffer.find(b"<")
                self.decoder.write(buffer if end < 0 else buffer[:end])
                if end < 0:
                    return b""
                buffer = buffer[end:]
                self._resume()
        return buffer

    def _feed(self, data: bytes) -> None:
        if not data:
            return
        self.fed += len(data)
        if self.fed > self.limits.xml.max_bytes:
            raise EdxmlError("too-large", f"the edXML document's markup and fields are over "
                                          f"{self.limits.xml.max_bytes} bytes (attachments aside)")
        window = self.previous + data
        if any(mark in window for mark in _DTD_MARKS):
            raise EdxmlError("dtd", "XML with a document type declaration (DTD) is refused")
        self.previous = window[-len(_DTD_MARKS[0]):]
        try:
            self.parser.feed(data)
        except etree.XMLSyntaxError as exc:
            raise self._syntax(exc) from None
        self._events()

    def _events(self) -> None:
        limits = self.limits.xml
        for event, element in self.parser.read_events():
            self.last = (event, element)
            if event == "pi":
                raise EdxmlError("processing-instruction", "XML with a processing instruction "
                                 f"(<?{str(element.target)[:40]} ...?>) is refused")
            if event == "start":
                self.open.append(element)
                self.count += 1
                if self.count > limits.max_elements:
                    raise EdxmlError("too-many-elements",
                                     f"the edXML document has more than {limits.max_elements} elements")
                if len(self.open) > limits.max_depth:
                    raise EdxmlError("too-deep", f"the edXML document nests deeper than {limits.max_depth} "
                                                 "levels", _path(element))
            else:
                self.open.pop()
                if element.tag == _q("edXMLEnvelope") and len(self.open) == 1:
                    _validate(element, self.line)  # fail before reading the attachments

    def _divert(self) -> None:
        """The parser must have just started a ContentTransferEncoded of an Attachment: divert its text."""
        expected = [_q("edXML"), _q("AttachmentEncoded"), _q("Attachment"), _q(_CTE)]
        event, element = self.last
        if event != "start" or [e.tag for e in self.open] != expected:
            where = _path(self.open[-1]) if self.open else None
            raise EdxmlError("malformed", f"a {_CTE} tag where the document has none (in a comment or "
                                          "CDATA section), or outside AttachmentEncoded/Attachment", where)
        self.decoder = _Decoder(self.limits.spool_threshold, _path(element), self.limits.keep_attachments)
        self.shifts.append((element.sourceline or 0, self._shift()))

    def _resume(self) -> None:
        assert self.decoder is not None
        self.decoder.finish()
        line, before = self.shifts[-1]
        self.shifts[-1] = (line, before + self.decoder.newlines)
        self.decoded.append((self.open[-1], self.decoder))
        self.decoder = None

    def _shift(self) -> int:
        return self.shifts[-1][1] if self.shifts else 0

    def line(self, parser_line: int | None) -> int | None:
        """The line in the document: the parser never saw the newlines of diverted base64 text."""
        if not parser_line:
            return None
        shift = 0
        for at, total in self.shifts:
            if at < parser_line:  # an element on the same line after an attachment's text: not shifted
                shift = total
        return parser_line + shift

    def _syntax(self, exc: etree.XMLSyntaxError) -> EdxmlError:
        first = next(iter(exc.error_log.filter_from_errors()), None)
        if first is not None:  # a fed parser reports its first error there, and only "no element found"
            exc = etree.XMLSyntaxError(first.message, first.type, first.line, first.column)
        refused = safe.refused_syntax(exc)
        line = getattr(exc, "lineno", None)
        return EdxmlError(refused.kind, str(refused), _path(self.open[-1]) if self.open else None,
                          line + self._shift() if line else None)

    def discard(self) -> None:
        for _, decoder in self.decoded:
            decoder.file.close()
        if self.decoder is not None:
            self.decoder.file.close()


class _Decoder:
    """base64 text, in pieces of any length, decoded into a spooled file with its size and SHA-256.

    What it accepts is what ``binascii.a2b_base64(strict_mode=True)`` accepts once spaces, tabs and
    line breaks are taken out; each piece's whole quads are decoded by pybase64 (SIMD, about thirty
    times faster: a third of a worker's time went to base64 in issue 16's bench). Text pybase64
    refuses is handed to binascii, which decides and says why: pybase64 refuses a few forms
    binascii takes (``AAAA====``), and binascii's reasons are the ones the 400 has always given.
    """

    def __init__(self, threshold: int, path: str, keep: bool = True) -> None:
        self.file: IO[bytes] = spool(threshold) if keep else cast(IO[bytes], Dropped())
        self.path = path
        self.digest = hashlib.sha256()
        self.size = self.newlines = 0
        self.carry = b""  # up to 3 characters of a quad the next piece completes, spaces taken out
        self.padded = False

    def write(self, text: bytes) -> None:
        if self.carry:
            text = self.carry + text
        if not self._unspaced(text):
            text = self._unspace(text)
            whole = len(text) - len(text) % 4
            self.carry = text[whole:]
            if whole:
                self._decode(text, whole)

    def _unspaced(self, text: bytes) -> bool:
        """The common case at one pass: the whole quads have no spaces or line breaks and decode.
        False (nothing done) otherwise, left to the careful way."""
        whole = len(text) - len(text) % 4
        if not whole or self.padded:
            return False
        try:
            data = pybase64.b64decode(memoryview(text)[:whole], validate=True)
        except binascii.Error:  # a space or line break, or not base64: ``_decode`` says which
            return False
        self._keep(data, text[whole - 1] == _PAD)
        self.carry = self._unspace(text[whole:])
        return True

    def _unspace(self, text: bytes) -> bytes:
        """``text`` without spaces, tabs and line breaks, its newlines counted (error lines after
        the attachment). One C pass (``replace``) for each kind present: wrapped base64 has only
        ``\n`` or ``\r\n``, so the others cost a ``memchr`` that finds nothing."""
        for space in _SPACES:
            if space in text:
                stripped = text.replace(space, b"")
                if space == b"\n":
                    self.newlines += len(text) - len(stripped)
                text = stripped
        return text

    def _decode(self, text: bytes, whole: int) -> None:
        if self.padded:
            raise EdxmlError("bad-base64", "the attachment's base64 goes on after its padding", self.path)
        quads = memoryview(text)[:whole]
        try:
            data = pybase64.b64decode(quads, validate=True)
        except binascii.Error:
            try:
                data = binascii.a2b_base64(quads, strict_mode=True)
            except binascii.Error as exc:
                raise EdxmlError("bad-base64", f"the attachment is not base64: {exc}", self.path) from None
        self._keep(data, text[whole - 1] == _PAD)

    def _keep(self, data: bytes, padded: bool) -> None:
        self.padded = padded
        self.digest.update(data)
        self.file.write(data)
        self.size += len(data)

    def finish(self) -> None:
        if self.carry:
            raise EdxmlError("bad-base64", "the attachment's base64 length is not a multiple of 4", self.path)


def _complete_markup(buffer: bytes) -> int:
    """How much of ``buffer`` can go to the parser now: all but a start tag that may be cut in two.
    Past ``_TAG_MAX`` bytes it cannot be a ContentTransferEncoded tag (and holding on would make
    concatenating chunks quadratic): it goes to the parser, which keeps such an element's text itself."""
    start = buffer.rfind(b"<")
    if start < 0 or b">" in buffer[start:] or len(buffer) - start > _TAG_MAX:
        return len(buffer)
    return start


def _check_encoding(head: bytes) -> None:
    if head.startswith((b"\xff\xfe", b"\xfe\xff", b"\x00", b"<\x00")):
        raise EdxmlError("encoding", "edXML documents must be UTF-8")
    declared = _ENCODING.match(head.removeprefix(b"\xef\xbb\xbf"))
    if declared and declared.group(1).lower() not in (b"utf-8", b"utf8", b"us-ascii", b"ascii"):
        raise EdxmlError("encoding", f"edXML documents must be UTF-8, not {declared.group(1).decode()}")


# ----------------------------------------------------------------------------------------- validation


def _validate(element: Any, line: Any = None) -> None:
    """The schema's verdict on ``element`` (the root or the envelope), then the prefix rule."""
    to_line = line or (lambda n: n)
    errors = []
    # libxml2's verdict first; xmlschema names what is wrong when it says no. Where the two
    # disagree about a refusal, xmlschema (the validator the tests' cases were written against)
    # decides.
    valid = fast_schema().validate(element)
    for error in () if valid else schema().iter_errors(element):
        where = error.elem if error.elem is not None else element
        errors.append((_path(where), to_line(where.sourceline), str(error.reason or error.message)))
        if len(errors) == _MAX_ERRORS:
            break
    if errors:
        path, at, reason = errors[0]
        raise EdxmlError("invalid", f"the edXML document breaks its schema: {reason}", path, at,
                         tuple(errors))
    envelope = element if element.tag == _q("edXMLEnvelope") else element.find(_q("edXMLEnvelope"))
    for inner in envelope.iter(f"{{{NS}}}*"):
        if inner.prefix != PREFIX:
            raise EdxmlError("unprefixed", f"every element of the envelope must carry the {PREFIX}: prefix "
                             "(receivers validating strictly refuse others)", _path(inner),
                             to_line(inner.sourceline))


def _path(element: Any) -> str:
    """``/edXML/edXML:edXMLEnvelope/.../edXML:To[2]``: names as written, positions among namesakes."""
    steps = []
    while element is not None:
        name = etree.QName(element).localname
        step = f"{element.prefix}:{name}" if element.prefix else name
        parent = element.getparent()
        if parent is not None:
            namesakes = [e for e in parent if e.tag == element.tag]
            if len(namesakes) > 1:
                step += f"[{namesakes.index(element) + 1}]"
        steps.append(step)
        element = parent
    return "/" + "/".join(reversed(steps))


# ------------------------------------------------------------------------------- tree -> typed values


def _message(root: Any, reader: _Reader) -> Package | StatusMessage:
    envelope = root.find(_q("edXMLEnvelope"))
    header = envelope.find(_q("edXMLHeader"))
    body = envelope.find(_q("edXMLBody"))
    attachments = root.find(_q("AttachmentEncoded"))
    trace = _trace(header.find(_q("TraceHeaderList")))
    signature = _signature(header.find(f"{{{DS}}}Signature"))
    status = header.find(_q("Status"))
    if status is not None:
        extra = body if body is not None else attachments
        if extra is not None:
            raise EdxmlError("not-a-status", "a status message has no body and no attachments", _path(extra))
        return _status(status, trace, signature)
    if body is None:
        raise EdxmlError("not-a-package", "a package needs edXMLBody with its edXMLManifest", _path(envelope))
    references = tuple(_reference(e) for e in body.find(_q("edXMLManifest")).iterfind(_q("Reference")))
    files = {id(cte): decoder for cte, decoder in reader.decoded}  # reader.decoded keeps the proxies alive
    found: list[Attachment] = []
    try:
        for element in [] if attachments is None else attachments.iterfind(_q("Attachment")):
            found.append(_attachment(element, files, reader.limits.spool_threshold))
        reader.decoded = []  # the attachments own the files now
        _match(references, tuple(found))
        return Package(_message_header(header.find(_q("MessageHeader"))), references, tuple(found), trace,
                       signature)
    except BaseException:
        for attachment in found:
            attachment.close()
        raise


def _message_header(e: Any) -> MessageHeader:
    other = e.find(_q("OtherInfo"))
    places = e.find(_q("ToPlaces"))
    return MessageHeader(
        from_=_organization(e.find(_q("From"))),
        to=tuple(_organization(t) for t in e.iterfind(_q("To"))),
        code=Code(_text(e, "Code/CodeNumber"), _text(e, "Code/CodeNotation")),
        promulgation=PromulgationInfo(_text(e, "PromulgationInfo/Place"),
                                      _date(e.find(_path_q("PromulgationInfo/PromulgationDate")))),
        document_type=DocumentType(int(_text(e, "DocumentType/Type")), _text(e, "DocumentType/TypeName")),
        subject=_text(e, "Subject"),
        signer=SignerInfo(_text(e, "SignerInfo/Position"), _text(e, "SignerInfo/FullName"),
                          _optional(e, "SignerInfo/Competence")),
        document_id=_document_id(e.find(_q("DocumentId"))),
        content=_optional(e, "Content"),
        due_date=_optional_date(e.find(_q("DueDate"))),
        to_places=None if places is None else tuple(p.text or "" for p in places.iterfind(_q("Place"))),
        other_info=None if other is None else _other_info(other),
        response_for=tuple(_response_for(r) for r in e.iterfind(_q("ResponseFor"))),
        steering_type=_optional_int(e, "SteeringType"),
    )


def _organization(e: Any) -> Organization:
    return Organization(_text(e, "OrganId"), _optional(e, "OrganizationInCharge"), _optional(e, "OrganName"),
                        _optional(e, "OrganAdd"), _optional(e, "Email"), _optional(e, "Telephone"),
                        _optional(e, "Fax"), _optional(e, "Website"))


def _other_info(e: Any) -> OtherInfo:
    appendixes = e.find(_q("Appendixes"))
    return OtherInfo(_optional_int(e, "Priority"), _optional(e, "SphereOfPromulgation"),
                     _optional(e, "TyperNotation"), _optional_int(e, "PromulgationAmount"),
                     _optional_int(e, "PageAmount"),
                     None if appendixes is None else tuple(a.text or "" for a in appendixes))


def _response_for(e: Any) -> ResponseFor:
    return ResponseFor(_text(e, "OrganId"), _text(e, "Code"), _date(e.find(_q("PromulgationDate"))),
                       _document_id(e.find(_q("DocumentId"))))


def _trace(e: Any) -> TraceHeaderList | None:
    if e is None:
        return None
    business = e.find(_q("Bussiness"))
    traces = tuple(TraceHeader(_text(t, "OrganId"), _timestamp(t.find(_q("Timestamp"))))
                   for t in e.iterfind(_q("TraceHeader")))
    return TraceHeaderList(traces, None if business is None else Business(
        int(_text(business, "BussinessDocType")), _optional(business, "BussinessDocReason"),
        _optional_document_id(business.find(_q("DocumentId"))),
        tuple(_staff(s) for s in business.iterfind(_q("StaffInfo"))), _optional_int(business, "Paper")))


def _staff(e: Any) -> StaffInfo:
    return StaffInfo(_optional(e, "Department"), _optional(e, "Staff"), _optional(e, "Mobile"),
                     _optional(e, "Email"))


def _status(e: Any, trace: TraceHeaderList | None, signature: bytes | None) -> StatusMessage:
    staff = e.find(_q("StaffInfo"))
    return StatusMessage(_response_for(e.find(_q("ResponseFor"))), _organization(e.find(_q("From"))),
                         _text(e, "StatusCode"), _timestamp(e.find(_q("Timestamp"))),
                         _optional(e, "Description"), None if staff is None else _staff(staff), trace,
                         signature)


def _reference(e: Any) -> Reference:
    content_id = _bare(_text(e, "ContentId"))
    href = e.get(f"{{{XLINK}}}href")
    if _bare(href) != content_id or not href.lower().startswith("cid:"):
        raise EdxmlError("bad-reference", f"xlink:href {href!r} is not cid:{content_id}", _path(e),
                         e.sourceline)
    return Reference(content_id, _text(e, "AttachmentName"), _text(e, "ContentType"),
                     _optional(e, "Description"))


def _attachment(e: Any, files: dict[int, _Decoder], threshold: int) -> Attachment:
    cte = e.find(_q(_CTE))
    decoder = files.get(id(cte))
    if decoder is None:  # written <ContentTransferEncoded/>, or small enough that the parser kept it
        decoder = _Decoder(threshold, _path(cte))
        decoder.write((cte.text or "").encode("ascii", "replace"))
        decoder.finish()
    return Attachment(_bare(_text(e, "ContentId")), _text(e, "AttachmentName"), _text(e, "ContentType"),
                      decoder.size, decoder.digest.hexdigest(), decoder.file, _optional(e, "Description"))


def _match(references: tuple[Reference, ...], attachments: tuple[Attachment, ...]) -> None:
    """Each reference names one attachment and each attachment one reference, by ContentId."""
    manifest = f"/edXML/{PREFIX}:edXMLEnvelope/{PREFIX}:edXMLBody/{PREFIX}:edXMLManifest"
    for what, ids, where in (
            ("reference", [r.content_id for r in references], f"{manifest}/{PREFIX}:Reference"),
            ("attachment", [a.content_id for a in attachments], "/edXML/AttachmentEncoded/Attachment")):
        seen: set[str] = set()
        for n, content_id in enumerate(ids, 1):
            if content_id in seen:
                raise EdxmlError("duplicate-content-id", f"two {what}s with ContentId {content_id}",
                                 f"{where}[{n}]")
            seen.add(content_id)
    named = {a.content_id for a in attachments}
    for n, reference in enumerate(references, 1):
        if reference.content_id not in named:
            raise EdxmlError("missing-attachment", f"the manifest names ContentId {reference.content_id}, "
                             "which no attachment has", f"{manifest}/{PREFIX}:Reference[{n}]")
    listed = {r.content_id for r in references}
    for n, attachment in enumerate(attachments, 1):
        if attachment.content_id not in listed:
            raise EdxmlError("unreferenced-attachment", f"the attachment with ContentId "
                             f"{attachment.content_id} is not in the manifest",
                             f"/edXML/AttachmentEncoded/Attachment[{n}]")


def _signature(e: Any) -> bytes | None:
    if e is None:
        return None
    alone = copy.deepcopy(e)
    etree.cleanup_namespaces(alone)  # only the namespaces it uses, so it reads the same wherever it goes
    return bytes(etree.tostring(alone, with_tail=False))


def _q(name: str) -> str:
    return f"{{{NS}}}{name}"


def _path_q(path: str) -> str:
    return "/".join(_q(step) for step in path.split("/"))


def _optional(e: Any, path: str) -> str | None:
    found = e.find(_path_q(path))
    return None if found is None else found.text or ""


def _text(e: Any, path: str) -> str:
    return _optional(e, path) or ""  # the schema has made sure it is there


def _optional_int(e: Any, path: str) -> int | None:
    text = _optional(e, path)
    return None if text is None else int(text.strip())


def _date(e: Any) -> date:
    try:
        return datetime.strptime((e.text or "").strip(), "%Y/%m/%d").date()
    except ValueError:
        raise EdxmlError("bad-date", f"{e.text!r} is not a date (YYYY/MM/DD)", _path(e),
                         e.sourceline) from None


def _optional_date(e: Any) -> date | None:
    return None if e is None else _date(e)


def _timestamp(e: Any) -> datetime:
    try:
        return datetime.strptime((e.text or "").strip(), "%Y/%m/%d %H:%M:%S")
    except ValueError:
        raise EdxmlError("bad-date", f"{e.text!r} is not a timestamp (yyyy/MM/dd HH:mm:ss)", _path(e),
                         e.sourceline) from None


def _document_id(e: Any) -> str:
    value = (e.text or "").strip()
    problem = _document_id_problem(value)
    if problem:
        raise EdxmlError("bad-document-id", problem, _path(e), e.sourceline)
    return value


def _optional_document_id(e: Any) -> str | None:
    return None if e is None else _document_id(e)


def _document_id_problem(value: str) -> str | None:
    parts = _DOCUMENT_ID.fullmatch(value)
    if parts is None:
        return f"DocumentId {value!r} is not OrganId,YYYY/MM/DD,number/notation"
    try:
        datetime.strptime(parts.group(2), "%Y/%m/%d")
    except ValueError:
        return f"DocumentId {value!r} holds {parts.group(2)!r}, which is not a date"
    return None


def _bare(content_id: str) -> str:
    content_id = content_id.strip()
    return content_id[4:] if content_id.lower().startswith("cid:") else content_id


# ---------------------------------------------------------------------------------------------- writing


def build(package: Package, out: IO[bytes]) -> None:
    """Write ``package`` to ``out``: checked first (nothing is written if it is refused), then the
    envelope as a tree and each attachment read from its file in base64 pieces."""
    for n, reference in enumerate(package.references, 1):
        _check_content_id(reference.content_id, f"/edXML/{PREFIX}:edXMLEnvelope/{PREFIX}:edXMLBody/"
                                                f"{PREFIX}:edXMLManifest/{PREFIX}:Reference[{n}]")
    for n, attachment in enumerate(package.attachments, 1):
        _check_content_id(attachment.content_id, f"/edXML/AttachmentEncoded/Attachment[{n}]")
    root = etree.Element(_q("edXML"), nsmap={None: NS})
    envelope = _envelope(root, lambda header: _message_header_element(header, package.header), package.trace,
                         package.signature)
    body = _sub(_sub(envelope, "edXMLBody"), "edXMLManifest")
    for reference in package.references:
        _reference_element(body, reference)
    if package.attachments:
        encoded = _sub(root, "AttachmentEncoded")
        for attachment in package.attachments:
            _attachment_fields(_sub(encoded, "Attachment"), attachment)
    _check_built(root)
    _match(package.references, package.attachments)
    with etree.xmlfile(out, encoding="utf-8") as xf:
        xf.write_declaration()
        with xf.element(_q("edXML"), nsmap={None: NS}):
            xf.write(envelope)
            if package.attachments:
                with xf.element(_q("AttachmentEncoded")):
                    for attachment in package.attachments:
                        _write_attachment(xf, attachment)


def build_status(status: StatusMessage, out: IO[bytes]) -> None:
    root = etree.Element(_q("edXML"), nsmap={None: NS})
    _envelope(root, lambda header: _status_element(header, status), status.trace, status.signature)
    _check_built(root)
    out.write(etree.tostring(root, xml_declaration=True, encoding="utf-8"))


def _check_built(root: Any) -> None:
    """What ``parse`` would refuse, ``build`` refuses: the schema, the prefix, dates and DocumentIds."""
    _validate(root)
    for element in root.iter(_q("DocumentId")):
        problem = _document_id_problem(element.text or "")
        if problem:
            raise EdxmlError("bad-document-id", problem, _path(element))


def _check_content_id(content_id: str, path: str) -> None:
    if not content_id or content_id != content_id.strip() or content_id.lower().startswith("cid:"):
        raise EdxmlError("bad-reference", f"ContentId {content_id!r} must be given bare (no cid:, no spaces "
                                          "around it)", path)


def _envelope(root: Any, fill: Callable[[Any], None], trace: TraceHeaderList | None,
              signature: bytes | None) -> Any:
    envelope = etree.SubElement(root, _q("edXMLEnvelope"), nsmap={PREFIX: NS})
    header = _sub(envelope, "edXMLHeader")
    fill(header)
    if trace is not None:
        _trace_element(header, trace)
    if signature is not None:
        try:
            header.append(safe.parse(signature))
        except safe.XmlRefused as exc:
            raise EdxmlError(exc.kind, f"the signature is not XML the gateway accepts: {exc}",
                             f"/edXML/{PREFIX}:edXMLEnvelope/{PREFIX}:edXMLHeader/ds:Signature") from None
    return envelope


def _message_header_element(parent: Any, h: MessageHeader) -> None:
    e = _sub(parent, "MessageHeader")
    _organization_element(_sub(e, "From"), h.from_)
    for to in h.to:
        _organization_element(_sub(e, "To"), to)
    _fields(_sub(e, "Code"), ("CodeNumber", h.code.number), ("CodeNotation", h.code.notation))
    _fields(_sub(e, "PromulgationInfo"), ("Place", h.promulgation.place),
            ("PromulgationDate", _format_date(h.promulgation.date)))
    _fields(_sub(e, "DocumentType"), ("Type", str(h.document_type.type)),
            ("TypeName", h.document_type.type_name))
    _fields(e, ("Subject", h.subject), ("Content", h.content))
    _fields(_sub(e, "SignerInfo"), ("Competence", h.signer.competence), ("Position", h.signer.position),
            ("FullName", h.signer.full_name))
    _fields(e, ("DueDate", None if h.due_date is None else _format_date(h.due_date)))
    if h.to_places is not None:
        _fields(_sub(e, "ToPlaces"), *(("Place", place) for place in h.to_places))
    if h.other_info is not None:
        _other_info_element(_sub(e, "OtherInfo"), h.other_info)
    for response in h.response_for:
        _response_for_element(_sub(e, "ResponseFor"), response)
    _fields(e, ("SteeringType", _str(h.steering_type)), ("DocumentId", h.document_id))


def _organization_element(e: Any, o: Organization) -> None:
    _fields(e, ("OrganId", o.organ_id), ("OrganizationInCharge", o.organization_in_charge),
            ("OrganName", o.organ_name), ("OrganAdd", o.organ_add), ("Email", o.email),
            ("Telephone", o.telephone), ("Fax", o.fax), ("Website", o.website))


def _other_info_element(e: Any, o: OtherInfo) -> None:
    _fields(e, ("Priority", _str(o.priority)), ("SphereOfPromulgation", o.sphere_of_promulgation),
            ("TyperNotation", o.typer_notation), ("PromulgationAmount", _str(o.promulgation_amount)),
            ("PageAmount", _str(o.page_amount)))
    if o.appendixes is not None:
        _fields(_sub(e, "Appendixes"), *(("Appendix", a) for a in o.appendixes))


def _response_for_element(e: Any, r: ResponseFor) -> None:
    _fields(e, ("OrganId", r.organ_id), ("Code", r.code),
            ("PromulgationDate", _format_date(r.promulgation_date)), ("DocumentId", r.document_id))


def _trace_element(parent: Any, t: TraceHeaderList) -> None:
    e = _sub(parent, "TraceHeaderList")
    for trace in t.traces:
        _fields(_sub(e, "TraceHeader"), ("OrganId", trace.organ_id),
                ("Timestamp", _format_time(trace.timestamp)))
    if t.business is not None:
        b = t.business
        business = _sub(e, "Bussiness")
        _fields(business, ("BussinessDocType", str(b.doc_type)), ("BussinessDocReason", b.doc_reason),
                ("DocumentId", b.document_id))
        for staff in b.staff:
            _staff_element(_sub(business, "StaffInfo"), staff)
        _fields(business, ("Paper", _str(b.paper)))


def _staff_element(e: Any, s: StaffInfo) -> None:
    _fields(e, ("Department", s.department), ("Staff", s.staff), ("Mobile", s.mobile), ("Email", s.email))


def _status_element(parent: Any, s: StatusMessage) -> None:
    e = _sub(parent, "Status")
    _response_for_element(_sub(e, "ResponseFor"), s.response_for)
    _organization_element(_sub(e, "From"), s.from_)
    _fields(e, ("StatusCode", s.status_code), ("Description", s.description),
            ("Timestamp", _format_time(s.timestamp)))
    if s.staff is not None:
        _staff_element(_sub(e, "StaffInfo"), s.staff)


def _reference_element(manifest: Any, r: Reference) -> None:
    e = _sub(manifest, "Reference")
    e.set(f"{{{XLINK}}}href", f"cid:{r.content_id}")
    _fields(e, ("Description", r.description), ("AttachmentName", r.attachment_name),
            ("ContentType", r.content_type), ("ContentId", f"cid:{r.content_id}"))


def _attachment_fields(e: Any, a: Attachment) -> None:
    """The Attachment as the schema sees it: ContentTransferEncoded empty, its text is streamed."""
    _fields(e, ("ContentType", a.content_type), ("ContentId", a.content_id), ("Description", a.description),
            (_CTE, ""), ("AttachmentName", a.attachment_name))


def _write_attachment(xf: Any, a: Attachment) -> None:
    with xf.element(_q("Attachment")):
        for name, value in (("ContentType", a.content_type), ("ContentId", a.content_id),
                            ("Description", a.description)):
            if value is not None:
                with xf.element(_q(name)):
                    xf.write(value)
        with xf.element(_q(_CTE)):
            for piece in _base64(a.open()):
                xf.write(piece)
        with xf.element(_q("AttachmentName")):
            xf.write(a.attachment_name)


def _base64(stream: IO[bytes]) -> Iterator[str]:
    while piece := stream.read(_B64_RAW):
        yield binascii.b2a_base64(piece, newline=False).decode("ascii")


def _sub(parent: Any, name: str) -> Any:
    return etree.SubElement(parent, _q(name))


def _fields(parent: Any, *fields: tuple[str, str | None]) -> None:
    """One child element per field given; ``None`` writes none, ``""`` an empty one."""
    for name, value in fields:
        if value is not None:
            _sub(parent, name).text = value


def _str(value: int | None) -> str | None:
    return None if value is None else str(value)


def _format_date(value: date) -> str:
    return f"{value.year:04d}/{value.month:02d}/{value.day:02d}"  # strftime writes year 1 as "1"


def _format_time(value: datetime) -> str:
    return f"{_format_date(value)} {value.hour:02d}:{value.minute:02d}:{value.second:02d}"
