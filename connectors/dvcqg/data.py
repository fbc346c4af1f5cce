"""Synthetic portal data: a small procedure catalogue, agencies, and realistic dossiers and progress.

Deterministic for a seed, so tests, the demo and the benchmark can build the same dossiers. Procedure
and agency codes follow the real formats (``1.001193.000.00.00.H22``, ``000.00.00.H22``) but are
examples, not the national catalogue.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from connectors import synthetic
from connectors.dvcqg.dates import VIETNAM, format_portal

__all__ = ["AGENCIES", "PROCEDURES", "Procedure", "dossier", "dossier_code", "progress", "short_code"]


@dataclass(frozen=True, slots=True)
class Procedure:
    code: str
    name: str
    field_code: str
    field_name: str
    days: int  # time allowed by law, working days counted as calendar days here
    fee: int  # đồng; 0 when free
    for_business: bool = False


PROCEDURES = [
    Procedure("1.001193.000.00.00.H22", "Đăng ký khai sinh", "HOTICH", "Hộ tịch", 1, 0),
    Procedure("1.004222.000.00.00.H22", "Đăng ký thường trú", "CUTRU", "Đăng ký, quản lý cư trú", 7, 15000),
    Procedure("1.002587.000.00.00.H22", "Cấp thẻ bảo hiểm y tế cho trẻ em dưới 6 tuổi", "BHYT",
              "Bảo hiểm y tế", 5, 0),
    Procedure("1.001021.000.00.00.H22", "Liên thông thủ tục hành chính về đăng ký khai sinh, đăng ký "
              "thường trú, cấp thẻ bảo hiểm y tế cho trẻ em dưới 6 tuổi", "HOTICH", "Hộ tịch", 10, 0),
    Procedure("1.000656.000.00.00.H22", "Đăng ký khai tử", "HOTICH", "Hộ tịch", 1, 0),
    Procedure("2.000488.000.00.00.H22", "Cấp Phiếu lý lịch tư pháp cho công dân Việt Nam",
              "LYLICHTUPHAP", "Lý lịch tư pháp", 10, 200000),
    Procedure("1.011442.000.00.00.H22", "Cấp giấy phép xây dựng mới đối với nhà ở riêng lẻ",
              "XAYDUNG", "Hoạt động xây dựng", 15, 75000),
    Procedure("2.000720.000.00.00.H22", "Đăng ký thành lập hộ kinh doanh", "HOKINHDOANH",
              "Thành lập và hoạt động của hộ kinh doanh", 3, 100000, for_business=True),
]

AGENCIES = {
    "000.00.00.G22": "Văn phòng Chính phủ",
    "000.00.00.H22": "Ủy ban nhân dân tỉnh Hà Giang",
    "000.00.10.H22": "Sở Tư pháp tỉnh Hà Giang",
    "000.20.31.H22": "Ủy ban nhân dân thành phố Hà Giang",
    "000.00.00.H60": "Ủy ban nhân dân tỉnh Tuyên Quang",
    "000.00.10.H60": "Sở Tư pháp tỉnh Tuyên Quang",
    "000.00.23.H60": "Ủy ban nhân dân phường Hà Giang 1",
    "000.00.00.H41": "Ủy ban nhân dân tỉnh Nghệ An",
    "000.00.10.H41": "Sở Tư pháp tỉnh Nghệ An",
}

OFFICIALS = [("Nguyễn Thị Thu Hà", "Chuyên viên"), ("Trần Văn Hùng", "Phó Trưởng phòng"),
             ("Lê Minh Tuấn", "Trưởng phòng"), ("Phạm Ngọc Lan", "Công chức một cửa")]
STEPS = [(2, "Bộ phận Tiếp nhận và Trả kết quả", "Tiếp nhận hồ sơ, chuyển phòng chuyên môn"),
         (4, "Phòng chuyên môn", "Thẩm định hồ sơ"),
         (4, "Lãnh đạo đơn vị", "Trình ký, phê duyệt kết quả"),
         (9, "Phòng chuyên môn", "Đã có kết quả, chuyển Bộ phận Một cửa"),
         (10, "Bộ phận Tiếp nhận và Trả kết quả", "Đã trả kết quả cho công dân")]


def short_code(agency: str) -> str:
    """The agency part of a dossier code: ``000.00.20.G09`` gives ``G09.20``."""
    return ".".join(group for group in reversed(agency.split(".")) if set(group) != {"0"})


def dossier_code(agency: str, day: datetime, sequence: int) -> str:
    """A dossier code as the portal assigns them, e.g. ``G09.20-20260609-0092637``."""
    return f"{short_code(agency)}-{day:%Y%m%d}-{sequence:07d}"


def dossier(seed: int = 2026, index: int = 0, *, agency: str = "000.20.31.H22",
            status: int = 2) -> dict[str, Any]:
    """One realistic ``DongBoHoSoMC`` dossier (portal date format), the same for the same arguments."""
    rng = random.Random(f"dossier/{seed}/{index}")
    person = synthetic.people(1, rng.randrange(2**31))[0]
    procedure = rng.choice(PROCEDURES)
    received = datetime(2026, 6, 1, 7, 30, tzinfo=VIETNAM) + timedelta(
        days=rng.randrange(28), minutes=rng.randrange(540))
    code = dossier_code(agency, received, rng.randrange(1, 10**7))
    fees = [] if not procedure.fee else [
        {"TenPhiLePhi": f"Lệ phí {procedure.name[0].lower()}{procedure.name[1:]}", "MaPhiLePhi": "LP01",
         "HinhThucThu": "2", "Gia": str(procedure.fee), "LoaiPhiLePhi": "1"}]
    return {
        "MaHoSo": code, "MaTTHC": procedure.code, "TenTTHC": procedure.name,
        "MaLinhVuc": procedure.field_code, "TenLinhVuc": procedure.field_name,
        "SoBienNhan": f"{received:%y%m%d}-{rng.randrange(10000):04d}",
        "ChuHoSo": person.ho_va_ten, "LoaiDoiTuong": "2" if procedure.for_business else "1",
        "MaDoiTuong": person.so_dinh_danh, "Email": person.email, "SoDienThoai": person.so_dien_thoai,
        "TrichYeuHoSo": f"{procedure.name} cho {person.ho_va_ten}",
        "NgayTiepNhan": format_portal(received),
        "NgayHenTra": format_portal(received + timedelta(days=procedure.days)),
        "TrangThaiHoSo": str(status), "NgayTra": "", "HinhThuc": str(rng.randrange(2)),
        "NgayKetThucXuLy": "", "DonViXuLy": AGENCIES.get(agency, agency), "GhiChu": "",
        "TaiLieuNop": [{"TepDinhKemId": f"{rng.randrange(10**8):08d}", "TenTepDinhKem": "To_khai.pdf",
                        "IsDeleted": "False", "MaThanhPhanHoSo": f"{procedure.code}-TP01",
                        "DuongDanTaiTepTin": f"https://motcua.example.vn/tep/{rng.randrange(10**8):08d}"}],
        "DanhSachLePhi": fees, "DanhSachHoSoBoSung": [], "DanhSachGiayToKetQua": [],
    }


def progress(dossier_record: dict[str, Any], step: int = 0, *, seed: int = 2026) -> dict[str, Any]:
    """A ``CapNhatTienDoHoSoMC`` record for step ``step`` (0-4) of processing ``dossier_record``."""
    rng = random.Random(f"progress/{seed}/{dossier_record['MaHoSo']}/{step}")
    status, department, content = STEPS[min(step, len(STEPS) - 1)]
    official, title = rng.choice(OFFICIALS)
    start = datetime.strptime(dossier_record["NgayTiepNhan"], "%Y%m%d%H%M%S").replace(tzinfo=VIETNAM)
    at = start + timedelta(hours=2 * step, minutes=rng.randrange(60))
    return {"MaHoSo": dossier_record["MaHoSo"], "NguoiXuLy": official, "ChucDanh": title,
            "ThoiDiemXuLy": format_portal(at), "PhongBanXuLy": department, "NoiDungXuLy": content,
            "TrangThai": str(status), "NgayBatDau": format_portal(at),
            "NgayKetThucTheoQuyDinh": dossier_record.get("NgayHenTra", "")}
