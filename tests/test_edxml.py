"""The edXML codec (QCVN 102:2016): round trips, the schema, the hardened parser, streamed attachments."""

from __future__ import annotations

import hashlib
import io
import os
import tempfile
import tracemalloc
from datetime import date, datetime
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from lxml import etree

from gateway.edxml import codec
from gateway.edxml.codec import (
    NS,
    EdxmlError,
    Limits,
    build,
    build_status,
    parse,
    parse_message,
    parse_status,
)
from gateway.edxml.model import (
    Attachment,
    Business,
    Code,
    DocumentType,
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
)

SIGNATURE = (b'<ds:Signature xmlns:ds="http://www.w3.org/2000/09/xmldsig#"><ds:SignedInfo>'
             b'<ds:CanonicalizationMethod Algorithm="http://www.w3.org/2001/10/xml-exc-c14n#"/>'
             b'</ds:SignedInfo><ds:SignatureValue>AAAA</ds:SignatureValue></ds:Signature>')
TUYEN_QUANG = Organization("000.00.00.H60", "UBND tỉnh Tuyên Quang", "Sở Nội vụ tỉnh Tuyên Quang",
                           "Số 1, đường 17/8, phường Minh Xuân", "sonv@tuyenquang.gov.vn", "0207 3822 444",
                           "", None)
MINISTRY = Organization("000.00.00.G12", organ_name="Bộ Nội vụ")


def header(**changes: Any) -> MessageHeader:
    fields: dict[str, Any] = dict(
        from_=TUYEN_QUANG, to=(MINISTRY, Organization("000.00.00.H22", organ_name="UBND tỉnh Hà Giang")),
        code=Code("123", "UBND-NV"), promulgation=PromulgationInfo("Tuyên Quang", date(2026, 11, 21)),
        document_type=DocumentType(18, "Công văn"),
        subject="V/v báo cáo sắp xếp đơn vị hành chính cấp xã sau hợp nhất",
        signer=SignerInfo("Chủ tịch", "Nguyễn Văn Sơn", "Thay mặt"),
        document_id="000.00.00.H60,2026/11/21,123/UBND-NV",
        content="Ủy ban nhân dân tỉnh Tuyên Quang báo cáo…", due_date=date(2026, 11, 30),
        to_places=("Bộ Nội vụ", "Lưu: VT"),
        other_info=OtherInfo(1, "Liên thông văn bản", "NVA", 2, 3, ("Phụ lục I", "Phụ lục II")),
        response_for=(ResponseFor("000.00.00.G12", "45/BNV-CQĐP", date(2026, 11, 1),
                                  "000.00.00.G12,2026/11/01,45/BNV-CQĐP"),),
        steering_type=0)
    fields.update(changes)
    return MessageHeader(**fields)


TRACE = TraceHeaderList(
    (TraceHeader("000.00.00.H60", datetime(2026, 11, 21, 9, 30, 5)),),
    Business(0, "Văn bản mới", None, (StaffInfo("Văn phòng", "Lê Thị Mai", None, ""),), 0))


def package(*attachments: tuple[str, bytes], **changes: Any) -> Package:
    files = tuple(Attachment.from_bytes(f"cid-{n}", name, "application/pdf", data, f"Tệp {n}")
                  for n, (name, data) in enumerate(attachments))
    return Package(header(**changes), references_to(files), files, TRACE, SIGNATURE)


def references_to(files: tuple[Attachment, ...]) -> tuple[Reference, ...]:
    return tuple(Reference(a.content_id, a.attachment_name, a.content_type, a.description) for a in files)


def to_bytes(message: Package | StatusMessage) -> bytes:
    out = io.BytesIO()
    if isinstance(message, Package):
        build(message, out)
    else:
        build_status(message, out)
    return out.getvalue()


def status() -> StatusMessage:
    return StatusMessage(ResponseFor("000.00.00.H60", "123/UBND-NV", date(2026, 11, 21),
                                     "000.00.00.H60,2026/11/21,123/UBND-NV"),
                         MINISTRY, "03", datetime(2026, 11, 21, 14, 2, 0), "Đã tiếp nhận văn bản",
                         StaffInfo("Văn thư", "Trần Thị Hoa", "0912345678", "hoa@moha.gov.vn"))


def refused(data: bytes, limits: Limits | None = None) -> EdxmlError:
    with pytest.raises(EdxmlError) as caught:
        parse_message(data, limits or Limits())
    return caught.value


def edit(data: bytes, old: bytes, new: bytes) -> bytes:
    assert old in data
    return data.replace(old, new, 1)


# ----------------------------------------------------------------------------------------- round trips


@pytest.mark.parametrize("attachments", [
    (),
    (("Công văn 123.pdf", b"%PDF-1.7 " + bytes(range(256)) * 3),),
    (("a.pdf", b""), ("Phụ lục.docx", os.urandom(70_000)), ("c.txt", "Tiếng Việt có dấu".encode())),
], ids=["none", "one", "several"])
def test_package_round_trip(attachments: tuple[tuple[str, bytes], ...]) -> None:
    """A package built and parsed again is equal, attachment bytes included."""
    original = package(*attachments)
    with parse(to_bytes(original)) as again:
        assert again == original
        assert [a.read() for a in again.attachments] == [data for _, data in attachments]


def test_status_round_trip() -> None:
    """A status message built and parsed again is equal."""
    assert parse_status(to_bytes(status())) == status()


def test_written_shape() -> None:
    """The envelope's elements carry edXML:, attachments sit unprefixed outside it, references use cid:."""
    root = etree.fromstring(to_bytes(package(("a.pdf", b"abc"))))
    envelope = root.find(f"{{{NS}}}edXMLEnvelope")
    assert root.prefix is None and envelope.prefix == "edXML"
    assert {e.prefix for e in envelope.iter(f"{{{NS}}}*")} == {"edXML"}
    reference = envelope.find(f".//{{{NS}}}Reference")
    assert reference.get("{http://www.w3.org/1999/xlink}href") == "cid:cid-0"
    attachment = root.find(f"{{{NS}}}AttachmentEncoded/{{{NS}}}Attachment")
    assert attachment.prefix is None
    assert attachment.findtext(f"{{{NS}}}ContentTransferEncoded") == "YWJj"
    assert envelope.findtext(f".//{{{NS}}}PromulgationDate") == "2026/11/21"
    assert envelope.findtext(f".//{{{NS}}}Timestamp") == "2026/11/21 09:30:05"


def test_public_sample_shape_is_read() -> None:
    """A package in the shape public builders write (fields in their order, Reference ContentId with cid:,
    TraceHeaderList attributes, base64 wrapped over lines) is read."""
    data = f"""<?xml version="1.0" encoding="utf-8"?>
<edXML xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" xmlns="{NS}">
  <edXML:edXMLEnvelope xmlns:edXML="{NS}">
    <edXML:edXMLHeader>
      <edXML:MessageHeader>
        <edXML:From><edXML:OrganId>000.00.00.H60</edXML:OrganId>
          <edXML:OrganizationInCharge>UBND tỉnh</edXML:OrganizationInCharge>
          <edXML:OrganName>Sở Nội vụ</edXML:OrganName></edXML:From>
        <edXML:To><edXML:OrganName>Bộ Nội vụ</edXML:OrganName><edXML:OrganId>G12</edXML:OrganId></edXML:To>
        <edXML:Code><edXML:CodeNumber>7</edXML:CodeNumber><edXML:CodeNotation>SNV</edXML:CodeNotation></edXML:Code>
        <edXML:PromulgationInfo><edXML:Place>Tuyên Quang</edXML:Place>
          <edXML:PromulgationDate>2026/01/05</edXML:PromulgationDate></edXML:PromulgationInfo>
        <edXML:DocumentType><edXML:Type>18</edXML:Type>
          <edXML:TypeName>Công văn</edXML:TypeName></edXML:DocumentType>
        <edXML:Subject>Trích yếu</edXML:Subject>
        <edXML:SignerInfo><edXML:FullName>Lê Văn A</edXML:FullName><edXML:Position>Giám đốc</edXML:Position>
        </edXML:SignerInfo>
        <edXML:DocumentId>000.00.00.H60,2026/01/05,7/SNV</edXML:DocumentId>
      </edXML:MessageHeader>
      <edXML:TraceHeaderList id="a1b2c3d4" version="1.0" mustUnderstand="1"
          actor="http://schemas.xmlsoap.org/soap/actor/next">
        <edXML:TraceHeader><edXML:OrganId>000.00.00.H60</edXML:OrganId>
          <edXML:Timestamp>2026/01/05 08:00:00</edXML:Timestamp></edXML:TraceHeader>
      </edXML:TraceHeaderList>
    </edXML:edXMLHeader>
    <edXML:edXMLBody><edXML:edXMLManifest version="1.0">
      <edXML:Reference xmlns:xlink="http://www.w3.org/1999/xlink" xlink:href="cid:f1" xlink:type="simple">
        <edXML:AttachmentName>cv.txt</edXML:AttachmentName><edXML:ContentType>text/plain</edXML:ContentType>
        <edXML:ContentId>cid:f1</edXML:ContentId></edXML:Reference>
    </edXML:edXMLManifest></edXML:edXMLBody>
  </edXML:edXMLEnvelope>
  <AttachmentEncoded><Attachment><ContentType>text/plain</ContentType><ContentId>f1</ContentId>
    <ContentTransferEncoded>
SGVsbG8s
IFZp4buHdCBOYW0=
</ContentTransferEncoded><AttachmentName>cv.txt</AttachmentName></Attachment></AttachmentEncoded>
</edXML>""".encode()
    with parse(data) as found:
        assert found.header.to[0] == Organization("G12", organ_name="Bộ Nội vụ")
        assert found.header.signer == SignerInfo("Giám đốc", "Lê Văn A")
        assert found.trace == TraceHeaderList((TraceHeader("000.00.00.H60", datetime(2026, 1, 5, 8)),))
        assert found.references == (Reference("f1", "cv.txt", "text/plain"),)
        assert found.attachments[0].read() == "Hello, Việt Nam".encode()


# ------------------------------------------------------------------------------------ schema refusals


def test_missing_subject_refused() -> None:
    """A package without Subject breaks the schema; the error names MessageHeader and its line."""
    data = to_bytes(package())
    start = data.index(b"<edXML:Subject>")
    data = data[:start] + data[data.index(b"</edXML:Subject>") + len(b"</edXML:Subject>"):]
    error = refused(data)
    assert error.code == "invalid" and error.status == 400
    assert error.path == "/edXML/edXML:edXMLEnvelope/edXML:edXMLHeader/edXML:MessageHeader"
    assert "Subject" in str(error) and error.line == 2  # the XML declaration is line 1


def test_bad_date_format_refused() -> None:
    """A date not written YYYY/MM/DD is refused at its element."""
    error = refused(edit(to_bytes(package()), b">2026/11/21</edXML:PromulgationDate>",
                         b">21/11/2026</edXML:PromulgationDate>"))
    assert error.code == "invalid"
    assert error.path.endswith("edXML:PromulgationInfo/edXML:PromulgationDate")


def test_impossible_date_refused() -> None:
    """A date of the right shape that is not in the calendar is refused."""
    error = refused(edit(to_bytes(package()), b">2026/11/30</edXML:DueDate>", b">2026/02/30</edXML:DueDate>"))
    assert error.code == "bad-date" and error.path.endswith("edXML:MessageHeader/edXML:DueDate")


def test_impossible_timestamp_refused() -> None:
    error = refused(edit(to_bytes(package()), b"2026/11/21 09:30:05", b"2026/11/21 25:30:05"))
    assert error.code == "bad-date" and error.path.endswith("edXML:TraceHeader/edXML:Timestamp")


def test_unprefixed_element_refused() -> None:
    """An envelope element in the edXML namespace but without the edXML: prefix is refused by path."""
    data = edit(to_bytes(package()), b"<edXML:Subject>", b"<Subject>")
    error = refused(edit(data, b"</edXML:Subject>", b"</Subject>"))
    assert error.code == "unprefixed"
    assert error.path == "/edXML/edXML:edXMLEnvelope/edXML:edXMLHeader/edXML:MessageHeader/Subject"


def test_element_outside_the_namespace_refused() -> None:
    """An unprefixed element in no namespace is not the schema's Subject."""
    data = edit(to_bytes(package()), b"<edXML:Subject>", b'<Subject xmlns="">')
    error = refused(edit(data, b"</edXML:Subject>", b"</Subject>"))
    assert error.code == "invalid" and "Subject" in str(error)


@pytest.mark.parametrize(("document_id", "code"), [
    (b"000.00.00.H60,2026/11/21", "invalid"),
    (b"000.00.00.H60;2026/11/21;123/UBND-NV", "invalid"),
    (b"000.00.00.H60,21/11/2026,123/UBND-NV", "invalid"),
    (b"000.00.00.H60,2026/02/30,123/UBND-NV", "bad-document-id"),
])
def test_wrong_document_id_refused(document_id: bytes, code: str) -> None:
    """A DocumentId that is not OrganId,YYYY/MM/DD,number/notation (a real date) is refused by path."""
    data = to_bytes(package())
    error = refused(edit(data, b">000.00.00.H60,2026/11/21,123/UBND-NV<", b">" + document_id + b"<"))
    assert error.code == code
    assert error.path == "/edXML/edXML:edXMLEnvelope/edXML:edXMLHeader/edXML:MessageHeader/edXML:DocumentId"


def test_build_refuses_what_parse_refuses() -> None:
    """Nothing is written for a package the schema or the DocumentId rule refuses."""
    for bad in (package(subject="   "), package(document_id="H60,2026/02/29,1/UBND")):
        out = io.BytesIO()
        with pytest.raises(EdxmlError):
            build(bad, out)
        assert out.getvalue() == b""


def test_errors_list_every_problem() -> None:
    """All schema problems are listed, each with its path."""
    data = edit(to_bytes(package()), b">2026/11/30</edXML:DueDate>", b">30/11/2026</edXML:DueDate>")
    error = refused(edit(data, b"<edXML:Type>18</edXML:Type>", "<edXML:Type>mười tám</edXML:Type>".encode()))
    assert {path.rsplit("/", 1)[1] for path, _, _ in error.errors} >= {"edXML:DueDate", "edXML:Type"}


# ------------------------------------------------------------------------------ manifest and attachments


def test_reference_without_attachment_refused() -> None:
    """A manifest reference whose attachment is missing is refused naming its ContentId."""
    data = to_bytes(package(("a.pdf", b"1"), ("b.pdf", b"2")))
    start = data.index(b"<Attachment><ContentType>application/pdf</ContentType><ContentId>cid-1<")
    data = data[:start] + data[data.index(b"</Attachment>", start) + len(b"</Attachment>"):]
    error = refused(data)
    assert error.code == "missing-attachment" and "cid-1" in str(error)
    assert error.path.endswith("edXML:Reference[2]")


def test_attachment_without_reference_refused() -> None:
    """An attachment the manifest does not name is refused naming its ContentId."""
    original = package(("a.pdf", b"1"))
    extra = Attachment.from_bytes("stray", "x.pdf", "application/pdf", b"x")
    for bad in (Package(original.header, original.references, (*original.attachments, extra)),):
        with pytest.raises(EdxmlError) as caught:
            build(bad, io.BytesIO())
        assert caught.value.code == "unreferenced-attachment" and "stray" in str(caught.value)
    data = to_bytes(original)
    error = refused(edit(data, b"</AttachmentEncoded>", b"<Attachment><ContentType>a/b</ContentType>"
                         b"<ContentId>stray</ContentId><ContentTransferEncoded>eA==</ContentTransferEncoded>"
                         b"<AttachmentName>x</AttachmentName></Attachment></AttachmentEncoded>"))
    assert error.code == "unreferenced-attachment" and error.path == "/edXML/AttachmentEncoded/Attachment[2]"


def test_duplicate_content_id_refused() -> None:
    data = to_bytes(package(("a.pdf", b"1"), ("b.pdf", b"2")))
    data = data.replace(b"cid-1", b"cid-0")
    assert refused(data).code == "duplicate-content-id"


def test_href_must_name_the_content_id() -> None:
    data = edit(to_bytes(package(("a.pdf", b"1"))), b'href="cid:cid-0"', b'href="cid:other"')
    assert refused(data).code == "bad-reference"


def test_bad_base64_refused() -> None:
    """Attachment text that is not base64 is refused at its ContentTransferEncoded."""
    data = to_bytes(package(("a.pdf", b"abcdef")))
    for bad in (b"YWJj*GVm", b"YWJjZGV", b"YQ==YWJj"):
        error = refused(edit(data, b"YWJjZGVm", bad))
        assert error.code == "bad-base64"
        assert error.path == "/edXML/AttachmentEncoded/Attachment/ContentTransferEncoded"


def test_look_alike_tag_in_a_comment_refused() -> None:
    """A ContentTransferEncoded tag inside a comment cannot make the reader divert text the parser keeps."""
    data = edit(to_bytes(package(("a.pdf", b"1"))), b"<AttachmentEncoded>",
                b"<AttachmentEncoded><!-- <ContentTransferEncoded> -->")
    assert refused(data).code == "malformed"


def test_line_numbers_count_attachment_lines() -> None:
    """An error after a wrapped base64 attachment names the line it is on in the document."""
    body = b"\n".join([b"QUJD"] * 500)
    data = to_bytes(package(("a.pdf", b"ABC"), ("b.pdf", b"x")))
    data = edit(data, b"<ContentTransferEncoded>QUJD</ContentTransferEncoded>",
                b"<ContentTransferEncoded>\n" + body + b"\n</ContentTransferEncoded>")
    data = edit(data, b"<AttachmentName>b.pdf</AttachmentName>", b"\n<AttachmentName> </AttachmentName>")
    error = refused(data)
    assert error.code == "invalid"
    assert error.line == data[:data.index(b"<AttachmentName> ")].count(b"\n") + 1


def test_status_is_not_a_package() -> None:
    """parse wants a package, parse_status a status message."""
    with pytest.raises(EdxmlError) as caught:
        parse(to_bytes(status()))
    assert caught.value.code == "not-a-package"
    with pytest.raises(EdxmlError) as caught:
        parse_status(to_bytes(package()))
    assert caught.value.code == "not-a-status"


def test_bad_status_code_refused() -> None:
    error = refused(edit(to_bytes(status()), b"<edXML:StatusCode>03<", b"<edXML:StatusCode>da tiep nhan<"))
    assert error.code == "invalid" and error.path.endswith("edXML:Status/edXML:StatusCode")


# ------------------------------------------------------------------------------------ hostile documents

HOSTILE = {
    "billion laughs": (b'<?xml version="1.0"?><!DOCTYPE edXML [<!ENTITY a "aaaa"><!ENTITY b "&a;&a;&a;">]>'
                       b'<edXML xmlns="' + NS.encode() + b'">&b;</edXML>', "dtd"),
    "external entity": (b'<!DOCTYPE edXML [<!ENTITY x SYSTEM "file:///etc/passwd">]><edXML>&x;</edXML>',
                        "dtd"),
    "external dtd": (b'<!DOCTYPE edXML SYSTEM "http://127.0.0.1:1/edxml.dtd"><edXML/>', "dtd"),
    "undeclared entity": (b'<edXML xmlns="' + NS.encode() + b'">&x;</edXML>', "dtd"),
    "processing instruction": (b'<edXML xmlns="' + NS.encode() + b'"><?php echo 1; ?></edXML>',
                               "processing-instruction"),
    "instruction before the root": (b'<?xml version="1.0"?><?xml-stylesheet href="a.xsl"?><edXML/>',
                                    "processing-instruction"),
    "not well-formed": (b"<edXML><a></edXML>", "malformed"),
    "utf-16": ('<?xml version="1.0" encoding="UTF-16"?><edXML/>'.encode("utf-16"), "encoding"),
}


@pytest.mark.parametrize("name", HOSTILE)
def test_hostile_documents_refused(name: str) -> None:
    """DTDs, entities and processing instructions are refused by the hardened parser settings."""
    data, code = HOSTILE[name]
    assert refused(data).code == code


def test_dtd_in_a_package_refused() -> None:
    data = to_bytes(package(("a.pdf", b"1")))
    data = edit(data, b"?>\n", b'?>\n<!DOCTYPE edXML [<!ENTITY x "y">]>\n')
    assert refused(data).code == "dtd"


def test_size_limits() -> None:
    """Over the document limit is too-large (413); too many elements or levels are refused."""
    data = to_bytes(package(("a.pdf", b"x" * 10_000)))
    error = refused(data, Limits(max_bytes=5_000))
    assert (error.code, error.status) == ("too-large", 413)
    assert refused(data, Limits(xml=codec.safe.Limits(max_elements=20))).code == "too-many-elements"
    assert refused(data, Limits(xml=codec.safe.Limits(max_depth=3))).code == "too-deep"


def test_envelope_refused_before_attachments_are_read() -> None:
    """A bad envelope fails as soon as it ends, without reading the attachments after it."""
    data = to_bytes(package(("a.pdf", os.urandom(3_000_000))))
    data = edit(data, b"<edXML:Subject>", b"<Subject>").replace(b"</edXML:Subject>", b"</Subject>", 1)
    stream = io.BytesIO(data)
    with pytest.raises(EdxmlError, match="prefix"):
        parse(stream)
    assert stream.tell() < 200_000


def test_schema_compiled_once() -> None:
    assert codec.schema() is codec.schema()


# ---------------------------------------------------------------------------------- large attachments

SIZE = 50 * 1024 * 1024


def test_large_attachment_streamed() -> None:
    """A 50 MB attachment is built and parsed with Python allocations far below its size."""
    digest = hashlib.sha256()
    with tempfile.TemporaryFile() as source, tempfile.TemporaryFile() as document:
        for n in range(SIZE // 1_048_576):
            block = hashlib.sha256(str(n).encode()).digest() * 32768
            digest.update(block)
            source.write(block)
        source.seek(0)
        big = Attachment.from_stream("big", "Hồ sơ quét.pdf", "application/pdf", source)
        original = Package(header(), (Reference("big", "Hồ sơ quét.pdf", "application/pdf"),), (big,))

        tracemalloc.start()
        build(original, document)
        built_peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        big.close()

        document.seek(0)
        tracemalloc.start()
        with parse(document) as again:
            parsed_peak = tracemalloc.get_traced_memory()[1]
            tracemalloc.stop()
            assert (again.attachments[0].size, again.attachments[0].sha256) == (SIZE, digest.hexdigest())
    print(f"peak allocations: build {built_peak:,} B, parse {parsed_peak:,} B")
    assert built_peak < SIZE // 10, built_peak
    assert parsed_peak < SIZE // 10, parsed_peak


# -------------------------------------------------------------------------------------- property test

XML_TEXT = st.characters(blacklist_categories=("Cs", "Cc", "Cn"), blacklist_characters="\ufeff") \
    | st.sampled_from("\n\t")
text = st.text(XML_TEXT, max_size=30)
some_text = text.filter(lambda s: any(c not in " \t\n\r" for c in s))
organ_id = st.from_regex(r"[0-9]{3}\.[0-9]{2}\.[0-9]{2}\.[A-Z][0-9]{2}", fullmatch=True)
day = st.dates(min_value=date(1900, 1, 1), max_value=date(2199, 12, 31))
moment = st.datetimes(min_value=datetime(1900, 1, 1), max_value=datetime(2199, 1, 1)).map(
    lambda t: t.replace(microsecond=0))
int32 = st.integers(-(2 ** 31), 2 ** 31 - 1)
notation = st.text(st.sampled_from("ABCDĐQNVU-/0123456789"), min_size=1, max_size=12)
document_id = st.builds(lambda o, d, n, t: f"{o},{codec._format_date(d)},{n}/{t}", organ_id, day,
                        st.from_regex(r"[0-9]{1,5}", fullmatch=True), notation)
maybe = st.none() | text
organization = st.builds(Organization, organ_id, maybe, maybe, maybe, maybe, maybe, maybe, maybe)
staff = st.builds(StaffInfo, maybe, maybe, maybe, maybe)
response_for = st.builds(ResponseFor, organ_id, text, day, document_id)
headers = st.builds(
    MessageHeader, from_=organization, to=st.lists(organization, min_size=1, max_size=3).map(tuple),
    code=st.builds(Code, some_text, some_text), promulgation=st.builds(PromulgationInfo, text, day),
    document_type=st.builds(DocumentType, int32, text), subject=some_text,
    signer=st.builds(SignerInfo, text, some_text, maybe), document_id=document_id, content=maybe,
    due_date=st.none() | day, to_places=st.none() | st.lists(text, max_size=3).map(tuple),
    other_info=st.none() | st.builds(OtherInfo, st.none() | int32, maybe, maybe, st.none() | int32,
                                     st.none() | int32, st.none() | st.lists(text, max_size=3).map(tuple)),
    response_for=st.lists(response_for, max_size=2).map(tuple), steering_type=st.none() | int32)
traces = st.none() | st.builds(
    TraceHeaderList, st.lists(st.builds(TraceHeader, organ_id, moment), max_size=3).map(tuple),
    st.none() | st.builds(Business, int32, maybe, st.none() | document_id,
                          st.lists(staff, max_size=2).map(tuple), st.none() | int32))
files = st.lists(st.tuples(some_text, st.binary(max_size=3000), maybe), max_size=3)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(headers, traces, files, st.booleans())
def test_any_package_round_trips(header: MessageHeader, trace: TraceHeaderList | None,
                                 attachments: list[tuple[str, bytes, str | None]], signed: bool) -> None:
    """Any package built from generated header values and attachment bytes parses back equal."""
    made = tuple(Attachment.from_bytes(f"f{n}", name, "application/octet-stream", data, description)
                 for n, (name, data, description) in enumerate(attachments))
    original = Package(header, references_to(made), made, trace, SIGNATURE if signed else None)
    with parse(to_bytes(original)) as again:
        assert again == original
        assert [a.read() for a in again.attachments] == [data for _, data, _ in attachments]


@settings(max_examples=30, deadline=None)
@given(response_for, organization, st.from_regex(r"[0-9]{2}", fullmatch=True), moment, maybe,
       st.none() | staff, traces)
def test_any_status_round_trips(response: ResponseFor, sender: Organization, code: str, when: datetime,
                                description: str | None, person: StaffInfo | None,
                                trace: TraceHeaderList | None) -> None:
    """Any status message built from generated values parses back equal."""
    original = StatusMessage(response, sender, code, when, description, person, trace)
    assert parse_status(to_bytes(original)) == original
