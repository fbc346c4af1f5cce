"""The simulator's citizens: ``connectors.synthetic.people`` with the rest of a population record.

Parents, spouse, head of household and addresses are drawn from a random generator seeded by the
seed and the personal id, so a citizen's record is the same in every run and every process.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from connectors import synthetic
from connectors.synthetic import Person

THIS_YEAR = 2026
_PROVINCE_CODE = {name: code[-2:] for code, name in synthetic.PROVINCES}  # "001" -> "01"


@dataclass(frozen=True, slots=True)
class Address:
    chi_tiet: str  # the full text
    ma_tinh_thanh: str | None = None
    quoc_gia: str = "VN"


@dataclass(frozen=True, slots=True)
class Relative:
    ho: str
    chu_dem: str
    ten: str
    so_dinh_danh: str | None = None
    quoc_tich: str = "VN"


@dataclass(frozen=True, slots=True)
class Citizen:
    person: Person
    noi_dang_ky_khai_sinh: Address
    que_quan: Address
    thuong_tru: Address
    noi_o_hien_tai: Address
    cha: Relative
    me: Relative
    vo_chong: Relative | None
    chu_ho: Relative
    quan_he_voi_chu_ho: str  # "Chủ hộ" when the citizen heads the household


def citizens(count: int = 1000, seed: int = 2026) -> dict[str, Citizen]:
    """``count`` synthetic citizens by personal id, the same for the same seed."""
    return {p.so_dinh_danh: _citizen(p, seed) for p in synthetic.people(count=count, seed=seed)}


def _citizen(person: Person, seed: int) -> Citizen:
    rng = random.Random(f"{seed}:{person.so_dinh_danh}")
    province = person.so_dinh_danh[:3]
    year = int(person.ngay_sinh[:4])
    male = person.gioi_tinh == "1"
    cha = _relative(rng, province, year - rng.randrange(20, 36), male=True, ho=person.ho)
    me = _relative(rng, province, year - rng.randrange(18, 33), male=False)
    vo_chong = (_relative(rng, province, year + rng.randrange(-6, 7), male=not male)
                if person.tinh_trang_hon_nhan == "2" else None)
    self_as_head = Relative(person.ho, person.chu_dem, person.ten, person.so_dinh_danh)
    if THIS_YEAR - year < 18:
        chu_ho, quan_he = cha, "Con"
    elif vo_chong is not None and not male and rng.random() < 0.6:
        chu_ho, quan_he = vo_chong, "Vợ"
    else:
        chu_ho, quan_he = self_as_head, "Chủ hộ"
    province_name = next(name for code, name in synthetic.PROVINCES if code == province)
    return Citizen(
        person=person,
        noi_dang_ky_khai_sinh=Address(f"{rng.choice(synthetic.WARDS)}, {province_name}", province[-2:]),
        que_quan=_address(person.que_quan),
        thuong_tru=_address(person.thuong_tru),
        noi_o_hien_tai=_address(person.noi_o_hien_tai),
        cha=cha, me=me, vo_chong=vo_chong, chu_ho=chu_ho, quan_he_voi_chu_ho=quan_he,
    )


def _relative(rng: random.Random, province: str, year: int, *, male: bool, ho: str | None = None
              ) -> Relative:
    return Relative(
        ho=ho or rng.choice(synthetic.FAMILY),
        chu_dem=rng.choice(synthetic.MIDDLE_M if male else synthetic.MIDDLE_F),
        ten=rng.choice(synthetic.GIVEN_M if male else synthetic.GIVEN_F),
        so_dinh_danh=synthetic.personal_id(rng, province, male, year),
    )


def _address(text: str) -> Address:
    province_name = text.rsplit(", ", 1)[-1]
    return Address(text, _PROVINCE_CODE.get(province_name))
