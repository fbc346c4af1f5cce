"""Synthetic official documents as edXML (QCVN 102:2016): packages with attachments and status
messages, with realistic Vietnamese agencies, subjects and officials (example codes)."""

from __future__ import annotations

import io
from datetime import date, datetime

from gateway.edxml import Attachment, Package, Reference, StatusMessage, build, build_status
from gateway.edxml.model import (
    Code,
    DocumentType,
    MessageHeader,
    Organization,
    PromulgationInfo,
    ResponseFor,
    SignerInfo,
    StaffInfo,
)

__all__ = ["ORGANS", "STATUS_CODES", "package", "package_bytes", "status", "status_bytes"]

ORGANS = {
    "000.00.00.H60": "UBND tỉnh Tuyên Quang",
    "000.01.00.H60": "Văn phòng UBND tỉnh Tuyên Quang",
    "000.12.00.H60": "Sở Nội vụ tỉnh Tuyên Quang",
    "000.00.00.H41": "UBND tỉnh Nghệ An",
    "000.00.00.G12": "Bộ Nội vụ",
    "000.00.00.G06": "Bộ Tài chính",
}
# From public integrations: 01 arrived, 02 refused, 03 received, 04 awaiting assignment, 05 assigned
# and in progress, 06 done, 13 recalled, 15 recall agreed, 16 recall refused.
STATUS_CODES = {"01": "Đã đến", "02": "Từ chối tiếp nhận", "03": "Đã tiếp nhận", "04": "Chờ phân công",
                "05": "Đã phân công, đang xử lý", "06": "Đã hoàn thành", "13": "Thu hồi",
                "15": "Đồng ý thu hồi", "16": "Từ chối thu hồi"}
SUBJECTS = ("V/v báo cáo sắp xếp đơn vị hành chính cấp xã", "V/v triển khai Đề án 06 năm 2026",
            "V/v tăng cường kỷ luật, kỷ cương hành chính", "V/v góp ý dự thảo Nghị định",
            "V/v báo cáo kết quả giải quyết thủ tục hành chính quý IV")
SIGNERS = (("Chủ tịch", "Nguyễn Văn Sơn"), ("Phó Chủ tịch", "Hoàng Thị Hạnh"),
           ("Giám đốc", "Lê Minh Tuấn"))


def _organ(organ_id: str) -> Organization:
    return Organization(organ_id, organ_name=ORGANS.get(organ_id, f"Cơ quan {organ_id}"))


def package(sender: str, recipients: list[str], number: int, *, day: date = date(2026, 11, 21),
            attachments: int = 1, attachment_size: int = 2048) -> Package:
    """A công văn from ``sender`` to ``recipients`` with ``attachments`` PDF-like files."""
    notation = "UBND-VP" if sender.endswith("00.00.H60") else "VP"
    signer = SIGNERS[number % len(SIGNERS)]
    header = MessageHeader(
        from_=_organ(sender), to=tuple(_organ(r) for r in recipients),
        code=Code(str(number), notation), promulgation=PromulgationInfo("Tuyên Quang", day),
        document_type=DocumentType(1, "Công văn"), subject=SUBJECTS[number % len(SUBJECTS)],
        signer=SignerInfo(signer[0], signer[1], "Thay mặt"),
        document_id=f"{sender},{day:%Y/%m/%d},{number}/{notation}",
        content="Kính gửi các cơ quan, đơn vị…", due_date=None)
    files = tuple(Attachment.from_bytes(
        f"att{i}", f"{number}-phu-luc-{i}.pdf", "application/pdf",
        (b"%PDF-1.7\n" + f"{sender} {number} {i} ".encode() * (attachment_size // 32 + 1))[:attachment_size])
        for i in range(1, attachments + 1))
    references = tuple(Reference(a.content_id, a.attachment_name, a.content_type) for a in files)
    return Package(header, references, files)


def package_bytes(sender: str, recipients: list[str], number: int, **options: object) -> bytes:
    out = io.BytesIO()
    with package(sender, recipients, number, **options) as pkg:  # type: ignore[arg-type]
        build(pkg, out)
    return out.getvalue()


def status(document_id: str, sender_organ: str, code: str, from_organ: str, *,
           when: datetime = datetime(2026, 11, 21, 14, 5, 0)) -> StatusMessage:
    """A status notification about ``document_id`` (sent by ``sender_organ``) from ``from_organ``."""
    _, day, number = document_id.split(",", 2)
    year, month, dom = (int(x) for x in day.split("/"))
    return StatusMessage(ResponseFor(sender_organ, number, date(year, month, dom), document_id),
                         _organ(from_organ), code, when, STATUS_CODES.get(code),
                         StaffInfo("Văn thư", "Trần Thị Lan", None, None))


def status_bytes(document_id: str, sender_organ: str, code: str, from_organ: str) -> bytes:
    out = io.BytesIO()
    build_status(status(document_id, sender_organ, code, from_organ), out)
    return out.getvalue()
