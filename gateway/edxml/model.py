"""edXML packages and status messages as typed values (QCVN 102:2016).

A ``Package`` is a document: its ``MessageHeader`` fields, the trace, the signature element as it came,
the manifest's references and the attachments. An attachment's bytes live in a spooled temporary file
(memory up to a threshold, then disk), never in the dataclass; equality compares their size and
SHA-256, so two packages are equal when their fields and their attachments' bytes are.

An optional field is ``None`` when the element is absent and ``""`` when it is present but empty, so a
package read and written again keeps what it had. Element names are in the docstrings of
``gateway/edxml/schema/edxml.xsd``'s types, field for field.
"""

from __future__ import annotations

import hashlib
import io
import tempfile
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import IO, Any

__all__ = ["SPOOL_THRESHOLD", "Attachment", "Business", "Code", "DocumentType", "Dropped", "MessageHeader",
           "Organization", "OtherInfo", "Package", "PromulgationInfo", "Reference", "ResponseFor",
           "SignerInfo", "StaffInfo", "StatusMessage", "TraceHeader", "TraceHeaderList", "spool"]

SPOOL_THRESHOLD = 1_048_576  # an attachment over this many bytes goes to disk
_COPY = 1_048_576


@dataclass(frozen=True, slots=True)
class Organization:
    """From, To: OrganId, OrganizationInCharge, OrganName, OrganAdd, Email, Telephone, Fax, Website."""

    organ_id: str
    organization_in_charge: str | None = None
    organ_name: str | None = None
    organ_add: str | None = None
    email: str | None = None
    telephone: str | None = None
    fax: str | None = None
    website: str | None = None


@dataclass(frozen=True, slots=True)
class Code:
    """CodeNumber, CodeNotation: the document's number and notation (``123``, ``QĐ-UBND``)."""

    number: str
    notation: str


@dataclass(frozen=True, slots=True)
class PromulgationInfo:
    place: str
    date: date


@dataclass(frozen=True, slots=True)
class DocumentType:
    type: int
    type_name: str


@dataclass(frozen=True, slots=True)
class SignerInfo:
    position: str
    full_name: str
    competence: str | None = None


@dataclass(frozen=True, slots=True)
class OtherInfo:
    priority: int | None = None
    sphere_of_promulgation: str | None = None
    typer_notation: str | None = None
    promulgation_amount: int | None = None
    page_amount: int | None = None
    appendixes: tuple[str, ...] | None = None


@dataclass(frozen=True, slots=True)
class ResponseFor:
    """The document a package or status answers: its sender, code, date and DocumentId."""

    organ_id: str
    code: str
    promulgation_date: date
    document_id: str


@dataclass(frozen=True, slots=True)
class MessageHeader:
    from_: Organization
    to: tuple[Organization, ...]
    code: Code
    promulgation: PromulgationInfo
    document_type: DocumentType
    subject: str
    signer: SignerInfo
    document_id: str  # OrganId,YYYY/MM/DD,number/notation
    content: str | None = None
    due_date: date | None = None
    to_places: tuple[str, ...] | None = None
    other_info: OtherInfo | None = None
    response_for: tuple[ResponseFor, ...] = ()
    steering_type: int | None = None


@dataclass(frozen=True, slots=True)
class TraceHeader:
    organ_id: str
    timestamp: datetime  # to the second, no time zone (the standard's format has none)


@dataclass(frozen=True, slots=True)
class StaffInfo:
    department: str | None = None
    staff: str | None = None
    mobile: str | None = None
    email: str | None = None


@dataclass(frozen=True, slots=True)
class Business:
    """The standard's ``Bussiness``: why the package was sent (new, replacement, ...) and by whom."""

    doc_type: int
    doc_reason: str | None = None
    document_id: str | None = None
    staff: tuple[StaffInfo, ...] = ()
    paper: int | None = None


@dataclass(frozen=True, slots=True)
class TraceHeaderList:
    traces: tuple[TraceHeader, ...] = ()
    business: Business | None = None


@dataclass(frozen=True, slots=True)
class Reference:
    """A manifest entry; ``content_id`` without its ``cid:`` prefix."""

    content_id: str
    attachment_name: str
    content_type: str
    description: str | None = None


@dataclass(frozen=True, slots=True)
class Attachment:
    """An attachment's fields and its bytes in ``file`` (read it with ``open()``)."""

    content_id: str
    attachment_name: str
    content_type: str
    size: int
    sha256: str
    file: IO[bytes] = field(compare=False, repr=False)
    description: str | None = None

    @classmethod
    def from_bytes(cls, content_id: str, attachment_name: str, content_type: str, data: bytes,
                   description: str | None = None) -> Attachment:
        return cls.from_stream(content_id, attachment_name, content_type, io.BytesIO(data), description)

    @classmethod
    def from_stream(cls, content_id: str, attachment_name: str, content_type: str, stream: IO[bytes],
                    description: str | None = None) -> Attachment:
        """Copied into a spooled file in pieces, so a large file is never in memory whole."""
        out = spool()
        digest = hashlib.sha256()
        size = 0
        while piece := stream.read(_COPY):
            digest.update(piece)
            out.write(piece)
            size += len(piece)
        return cls(content_id, attachment_name, content_type, size, digest.hexdigest(), out, description)

    def open(self) -> IO[bytes]:
        """The bytes from the start (the same file each time: read one at a time)."""
        self.file.seek(0)
        return self.file

    def read(self) -> bytes:
        """All the bytes: for small attachments and tests only."""
        return self.open().read()

    def close(self) -> None:
        self.file.close()


@dataclass(frozen=True, slots=True)
class Package:
    header: MessageHeader
    references: tuple[Reference, ...] = ()
    attachments: tuple[Attachment, ...] = ()
    trace: TraceHeaderList | None = None
    signature: bytes | None = None  # the ds:Signature element as serialised XML, unverified

    def close(self) -> None:
        """Remove the attachments' spooled files."""
        for attachment in self.attachments:
            attachment.close()

    def __enter__(self) -> Package:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


@dataclass(frozen=True, slots=True)
class StatusMessage:
    """A status notification about a document (received, refused, assigned, done, recalled...)."""

    response_for: ResponseFor
    from_: Organization
    status_code: str  # two digits: 01 arrived ... 06 done, 13 recalled, 15/16 recall agreed/refused
    timestamp: datetime
    description: str | None = None
    staff: StaffInfo | None = None
    trace: TraceHeaderList | None = None
    signature: bytes | None = None


class Dropped(io.BufferedIOBase):
    """Where an attachment's bytes go when only its size and digest are wanted (``Limits.keep_attachments``
    off): written and forgotten; reading it is a mistake, said as such rather than read as empty."""

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        return len(data)

    def seek(self, offset: int, whence: int = 0) -> int:
        raise io.UnsupportedOperation("this attachment's bytes were not kept (Limits.keep_attachments)")


def spool(threshold: int = SPOOL_THRESHOLD) -> IO[bytes]:
    """A temporary file kept in memory up to ``threshold`` bytes, then on disk; deleted on close."""
    return tempfile.SpooledTemporaryFile(max_size=threshold, mode="w+b")

