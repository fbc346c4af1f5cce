"""Realistic synthetic Vietnamese data for the simulators: names, 12-digit personal ids, addresses.

Deterministic for a given seed, so tests and the demo can name citizens that the simulators know.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

FAMILY = ["Nguyễn", "Trần", "Lê", "Phạm", "Hoàng", "Huỳnh", "Phan", "Vũ", "Võ", "Đặng", "Bùi", "Đỗ",
          "Hồ", "Ngô", "Dương", "Lý"]
MIDDLE_M = ["Văn", "Hữu", "Đức", "Minh", "Quang", "Công", "Thành", "Xuân"]
MIDDLE_F = ["Thị", "Ngọc", "Thu", "Thanh", "Mai", "Kim", "Hồng", "Bích"]
GIVEN_M = ["An", "Bình", "Cường", "Dũng", "Hải", "Hùng", "Khánh", "Long", "Nam", "Phong", "Quân",
           "Sơn", "Tâm", "Thắng", "Trung", "Tuấn", "Việt"]
GIVEN_F = ["Anh", "Chi", "Dung", "Hà", "Hạnh", "Hoa", "Hương", "Lan", "Linh", "Mai", "Ngân", "Nhung",
           "Phương", "Thảo", "Trang", "Vân", "Yến"]
# Province codes used in personal ids (first three digits) and names, Decree 137/2015.
PROVINCES = [("001", "Thành phố Hà Nội"), ("002", "Tỉnh Hà Giang"), ("040", "Tỉnh Nghệ An"),
             ("031", "Thành phố Hải Phòng"), ("079", "Thành phố Hồ Chí Minh"),
             ("048", "Thành phố Đà Nẵng"), ("038", "Tỉnh Thanh Hóa")]
WARDS = ["Phường Trần Phú", "Phường Minh Khai", "Xã Phú Linh", "Phường Quang Trung", "Xã Nghi Phú",
         "Phường Hưng Bình", "Xã Ngọc Đường"]
ETHNIC = ["Kinh", "Kinh", "Kinh", "Tày", "Mông", "Dao", "Thái"]
RELIGION = ["Không", "Không", "Không", "Phật giáo", "Công giáo"]


@dataclass(frozen=True, slots=True)
class Person:
    so_dinh_danh: str
    so_cmnd: str
    ho: str
    chu_dem: str
    ten: str
    gioi_tinh: str  # "1" male, "2" female, as the population database codes it
    ngay_sinh: str  # yyyyMMdd
    dan_toc: str
    ton_giao: str
    tinh_trang_hon_nhan: str  # 1 single, 2 married, 3 divorced, 4 widowed
    que_quan: str
    thuong_tru: str
    noi_o_hien_tai: str
    email: str
    so_dien_thoai: str

    @property
    def ho_va_ten(self) -> str:
        return f"{self.ho} {self.chu_dem} {self.ten}"


def personal_id(rng: random.Random, province: str, male: bool, year: int) -> str:
    """A valid-looking 12-digit id: province (3), century+sex (1), birth year (2), serial (6)."""
    century = 0 if year < 2000 else 2
    digit = century + (0 if male else 1)
    return f"{province}{digit}{year % 100:02d}{rng.randrange(1_000_000):06d}"


def people(count: int, seed: int = 2026) -> list[Person]:
    """``count`` distinct synthetic citizens, the same for the same seed."""
    rng = random.Random(seed)
    out: list[Person] = []
    seen: set[str] = set()
    while len(out) < count:
        male = rng.random() < 0.5
        year = rng.randrange(1950, 2024)
        province, province_name = rng.choice(PROVINCES)
        pid = personal_id(rng, province, male, year)
        if pid in seen:
            continue
        seen.add(pid)
        ho = rng.choice(FAMILY)
        chu_dem = rng.choice(MIDDLE_M if male else MIDDLE_F)
        ten = rng.choice(GIVEN_M if male else GIVEN_F)
        home = f"{rng.choice(WARDS)}, {province_name}"
        out.append(Person(
            so_dinh_danh=pid,
            so_cmnd=f"{rng.randrange(10**8, 10**9)}",
            ho=ho, chu_dem=chu_dem, ten=ten,
            gioi_tinh="1" if male else "2",
            ngay_sinh=f"{year}{rng.randrange(1, 13):02d}{rng.randrange(1, 29):02d}",
            dan_toc=rng.choice(ETHNIC),
            ton_giao=rng.choice(RELIGION),
            tinh_trang_hon_nhan=rng.choice("1122234"),
            que_quan=f"{rng.choice(WARDS)}, {rng.choice(PROVINCES)[1]}",
            thuong_tru=home,
            noi_o_hien_tai=home,
            email=f"{_ascii(ten).lower()}.{_ascii(ho).lower()}{rng.randrange(100)}@example.vn",
            so_dien_thoai=f"09{rng.randrange(10**7, 10**8)}",
        ))
    return out


_FOLD = str.maketrans(
    "àáảãạăằắẳẵặâầấẩẫậèéẻẽẹêềếểễệìíỉĩịòóỏõọôồốổỗộơờớởỡợùúủũụưừứửữựỳýỷỹỵđ"
    "ÀÁẢÃẠĂẰẮẲẴẶÂẦẤẨẪẬÈÉẺẼẸÊỀẾỂỄỆÌÍỈĨỊÒÓỎÕỌÔỒỐỔỖỘƠỜỚỞỠỢÙÚỦŨỤƯỪỨỬỮỰỲÝỶỸỴĐ",
    "aaaaaaaaaaaaaaaaaeeeeeeeeeeeiiiiiooooooooooooooooouuuuuuuuuuuyyyyyd"
    "AAAAAAAAAAAAAAAAAEEEEEEEEEEEIIIIIOOOOOOOOOOOOOOOOOUUUUUUUUUUUYYYYYD")


def _ascii(text: str) -> str:
    return text.translate(_FOLD)
