"""A simulator of social insurance (BHXH): a child's health-insurance card and the funeral allowance.

Routes::

    POST /CapTheBHYT         {MaHoSo, SoDinhDanh, HoTen, NgaySinh, GioiTinh, DiaChi}
                             -> {MaHoSo, MaSoBHXH, SoTheBHYT, GiaTriTu, GiaTriDen}
    POST /GiaiQuyetMaiTang   {MaHoSo, SoDinhDanh (the deceased), SoTrichLucKhaiTu, NguoiNhan}
                             -> {MaHoSo, SoQuyetDinh, SoTien}
    GET  /_sim/registrations, GET|POST /_sim/mode, GET /_sim/received, POST /_sim/reset
                             (connectors.agency_simulator)

A child under 6 is insured by the state (Law on Health Insurance, art. 12): the card's object code
is ``TE``, benefit level ``1``, then the 2-digit province code and the 10-digit social-insurance
number, itself the province code and 8 digits drawn from the seed and the child's id (one person,
one number: a second dossier for the same child gets the same card). The card runs from the day it
is issued to the day before the 6th birthday. The funeral allowance is ten times the base salary
(Law on Social Insurance): 10 x 2,340,000 VND (base salary from 1 July 2024) = 23,400,000 VND.
Decision numbers are ``<n>/QĐ-BHXH``, counting up per year from a seeded start.

Rejections (422): ``QUA_TUOI`` when the child is 6 or older on the day; ``KHONG_DU_DIEU_KIEN`` when
the deceased's personal id ends in 9999 (the simulator's stand-in for "fewer than 12 months of
contributions"); ``DA_DANG_KY`` for an allowance already settled for the same deceased under
another dossier, or a different request under a dossier code already answered.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from datetime import date, timedelta
from typing import Any

from connectors.agency_simulator import (
    Invalid,
    Rejection,
    Service,
    agency_app,
    certificate,
    digits,
    dossier_code,
    iso_date,
    obj,
    province,
    sex,
    text,
    today_in_vietnam,
)
from connectors.rest.simulator import ASGIApp

__all__ = ["ALLOWANCE", "CARD", "FUNERAL", "NOT_ELIGIBLE", "create_app", "sixth_birthday"]

ALLOWANCE = 10 * 2_340_000  # VND: ten times the base salary in force since 1 July 2024
NOT_ELIGIBLE = "9999"  # the deceased's id ends so: no allowance (too few contributions)
PERSONAL_ID = digits(12, "12 chữ số")
CARD = obj({"MaHoSo": dossier_code, "SoDinhDanh": PERSONAL_ID, "HoTen": text, "NgaySinh": iso_date,
            "GioiTinh": sex, "DiaChi": obj({"MaTinh": province, "MaXa": text, "ChiTiet": text})})
FUNERAL = obj({"MaHoSo": dossier_code, "SoDinhDanh": PERSONAL_ID, "SoTrichLucKhaiTu": certificate,
               "NguoiNhan": obj({"HoTen": text, "SoDinhDanh": PERSONAL_ID})})


def sixth_birthday(born: date) -> date:
    """The day a child turns 6 (a child born on 29 February turns 6 on 1 March of a common year)."""
    try:
        return born.replace(year=born.year + 6)
    except ValueError:
        return date(born.year + 6, 3, 1)


class _Insurer:
    def __init__(self, seed: int, today: Callable[[], date]) -> None:
        self._seed, self._today = seed, today
        self.reset()

    def reset(self) -> None:
        self._numbers: dict[str, str] = {}  # personal id -> social-insurance number
        self._taken: set[str] = set()  # the numbers given: a new one is drawn until it is not among them
        self._decisions: dict[int, int] = {}
        self._settled: dict[str, str] = {}  # the deceased's id -> the dossier it was settled under

    def _insurance_number(self, person: str, province_code: str) -> str:
        number = self._numbers.get(person)
        if number is None:
            rng = random.Random(f"{self._seed}:bhxh:{person}")
            while number is None or number in self._taken:
                number = f"{province_code}{rng.randrange(10**8):08d}"
            self._numbers[person] = number
            self._taken.add(number)
        return number

    def card(self, request: dict[str, Any]) -> dict[str, Any]:
        today, born = self._today(), request["NgaySinh"]
        if born > today:
            raise Invalid("NgaySinh", "ngày sinh (NgaySinh) sau ngày cấp thẻ")
        turns_six = sixth_birthday(born)
        if today >= turns_six:
            raise Rejection("QUA_TUOI", f"Trẻ sinh ngày {born.isoformat()} đã đủ 6 tuổi: không thuộc "
                            "đối tượng cấp thẻ BHYT trẻ em dưới 6 tuổi")
        province_code = request["DiaChi"]["MaTinh"]
        number = self._insurance_number(request["SoDinhDanh"], province_code)
        return {"MaHoSo": request["MaHoSo"], "MaSoBHXH": number,
                "SoTheBHYT": f"TE1{province_code}{number}", "GiaTriTu": today.isoformat(),
                "GiaTriDen": (turns_six - timedelta(days=1)).isoformat()}

    def funeral(self, request: dict[str, Any]) -> dict[str, Any]:
        dead, year = request["SoDinhDanh"], self._today().year
        if dead.endswith(NOT_ELIGIBLE):
            raise Rejection("KHONG_DU_DIEU_KIEN", f"Người có số định danh {dead} chưa đủ 12 tháng đóng "
                            "BHXH: không đủ điều kiện hưởng trợ cấp mai táng")
        earlier = self._settled.get(dead)
        if earlier is not None:
            raise Rejection("DA_DANG_KY", f"Trợ cấp mai táng cho người có số định danh {dead} đã được "
                            f"giải quyết theo hồ sơ {earlier}")
        self._settled[dead] = request["MaHoSo"]
        if year not in self._decisions:
            self._decisions[year] = 1 + random.Random(f"{self._seed}:mai-tang:{year}").randrange(2_000)
        n = self._decisions[year]
        self._decisions[year] = n + 1
        return {"MaHoSo": request["MaHoSo"], "SoQuyetDinh": f"{n}/QĐ-BHXH", "SoTien": ALLOWANCE}


def create_app(seed: int = 2026, today: Callable[[], date] = today_in_vietnam) -> ASGIApp:
    """The social-insurance office; ``today`` is the day of the decision."""
    insurer = _Insurer(seed, today)
    return agency_app([Service("CapTheBHYT", CARD, insurer.card),
                       Service("GiaiQuyetMaiTang", FUNERAL, insurer.funeral)], reset=insurer.reset)
