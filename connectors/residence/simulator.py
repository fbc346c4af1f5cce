"""A simulator of residence registration (the police's residence database): permanent residence.

Routes::

    POST /DangKyThuongTru      {MaHoSo, SoDinhDanh, HoTen, NgaySinh, ChuHo, QuanHeVoiChuHo, DiaChi}
                               -> {MaHoSo, SoXacNhan, NgayDangKy}
    POST /HuyDangKyThuongTru   {MaHoSo, SoXacNhan, LyDo} -> {MaHoSo, SoXacNhan, DaHuy: true}
    POST /XoaDangKyThuongTru   {MaHoSo, SoDinhDanh, SoTrichLucKhaiTu, LyDo} -> {MaHoSo, SoXacNhan, NgayXoa}
    GET  /_sim/registrations, GET|POST /_sim/mode, GET /_sim/received, POST /_sim/reset
                               (connectors.agency_simulator)

Confirmation numbers (``SoXacNhan``) are ``CT<province>-<year>-<6 digits>``, counting up from a
seeded start. The simulator does not hold the whole population: anyone it has not seen is taken to
have a permanent residence somewhere (so a death can be struck off).

Rejections (422): ``CHU_HO_KHONG_TON_TAI`` when the household head's id has the province code 000
(no province has it); ``DIA_CHI_KHONG_HOP_LE`` when ``DiaChi.MaTinh`` is not a province code or
``DiaChi.MaXa`` is not a 5-digit commune code; ``KHONG_CO_THUONG_TRU`` when the person to strike off
has an id with province code 000, or was already struck off, or their registration here was
cancelled; ``KHONG_TIM_THAY`` when a cancellation names an unknown confirmation number; ``DA_DANG_KY``
for a different request under a dossier code already answered (not for a cancellation, which may be
repeated: a registration already cancelled answers ``DaHuy: true`` again).
"""

from __future__ import annotations

import random
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date
from typing import Any

from connectors.agency_simulator import (
    PROVINCES,
    Invalid,
    Rejection,
    Service,
    agency_app,
    certificate,
    digits,
    dossier_code,
    iso_date,
    obj,
    text,
    today_in_vietnam,
)
from connectors.rest.simulator import ASGIApp

__all__ = ["CANCEL", "NOBODY", "REGISTER", "STRIKE_OFF", "create_app"]

NOBODY = "000"  # the province code of ids that name no one: no province has it
PERSONAL_ID = digits(12, "12 chữ số")
ADDRESS = obj({"MaTinh": text, "MaXa": text, "ChiTiet": text})
REGISTER = obj({"MaHoSo": dossier_code, "SoDinhDanh": PERSONAL_ID, "HoTen": text, "NgaySinh": iso_date,
                "ChuHo": obj({"HoTen": text, "SoDinhDanh": PERSONAL_ID}), "QuanHeVoiChuHo": text,
                "DiaChi": ADDRESS})
CANCEL = obj({"MaHoSo": dossier_code, "SoXacNhan": text, "LyDo": text})
STRIKE_OFF = obj({"MaHoSo": dossier_code, "SoDinhDanh": PERSONAL_ID, "SoTrichLucKhaiTu": certificate,
                  "LyDo": text})


@dataclass(slots=True)
class _Residence:
    number: str  # SoXacNhan
    person: str
    dossier: str
    active: bool = True


class _Office:
    def __init__(self, seed: int, today: Callable[[], date]) -> None:
        self._seed, self._today = seed, today
        self.reset()

    def reset(self) -> None:
        self._next: dict[int, int] = {}
        self._residences: dict[str, _Residence] = {}  # by personal id: the latest registration
        self._by_number: dict[str, _Residence] = {}
        self._struck_off: dict[str, str] = {}  # personal id -> the dossier that struck it off

    def _number(self, province: str, year: int) -> str:
        if year not in self._next:
            self._next[year] = 1 + random.Random(f"{self._seed}:cu-tru:{year}").randrange(5_000)
        n = self._next[year]
        self._next[year] = n + 1
        return f"CT{province}-{year}-{n:06d}"

    def register(self, request: dict[str, Any]) -> dict[str, Any]:
        today, where = self._today(), request["DiaChi"]
        if request["NgaySinh"] > today:
            raise Invalid("NgaySinh", "ngày sinh (NgaySinh) sau ngày đăng ký")
        if request["ChuHo"]["SoDinhDanh"].startswith(NOBODY):
            raise Rejection("CHU_HO_KHONG_TON_TAI", f"Không có chủ hộ mang số định danh "
                            f"{request['ChuHo']['SoDinhDanh']} trong Cơ sở dữ liệu về cư trú")
        if where["MaTinh"] not in PROVINCES or not re.fullmatch(r"[0-9]{5}", where["MaXa"]):
            raise Rejection("DIA_CHI_KHONG_HOP_LE", f"Địa chỉ không hợp lệ: mã tỉnh {where['MaTinh']!r}, "
                            f"mã xã {where['MaXa']!r} không có trong danh mục đơn vị hành chính")
        # A person registered before moves: the new registration replaces the old one.
        record = _Residence(self._number(where["MaTinh"], today.year), request["SoDinhDanh"],
                            request["MaHoSo"])
        self._residences[record.person] = record
        self._by_number[record.number] = record
        return {"MaHoSo": request["MaHoSo"], "SoXacNhan": record.number, "NgayDangKy": today.isoformat()}

    def cancel(self, request: dict[str, Any]) -> dict[str, Any]:
        record = self._by_number.get(request["SoXacNhan"])
        if record is None:
            raise Rejection("KHONG_TIM_THAY", f"Không có đăng ký thường trú số {request['SoXacNhan']}")
        record.active = False
        return {"MaHoSo": request["MaHoSo"], "SoXacNhan": record.number, "DaHuy": True}

    def strike_off(self, request: dict[str, Any]) -> dict[str, Any]:
        person, today = request["SoDinhDanh"], self._today()
        earlier, held = self._struck_off.get(person), self._residences.get(person)
        if person.startswith(NOBODY) or earlier is not None or (held is not None and not held.active):
            why = f"đã xóa theo hồ sơ {earlier}" if earlier is not None else "không có đăng ký thường trú"
            raise Rejection("KHONG_CO_THUONG_TRU", f"Người có số định danh {person} {why}")
        self._struck_off[person] = request["MaHoSo"]
        if held is not None:
            held.active = False
        number = self._number(person[1:3], today.year)
        return {"MaHoSo": request["MaHoSo"], "SoXacNhan": number, "NgayXoa": today.isoformat()}


def create_app(seed: int = 2026, today: Callable[[], date] = today_in_vietnam) -> ASGIApp:
    """The residence registration office; ``today`` is the day of registration."""
    office = _Office(seed, today)
    return agency_app([Service("DangKyThuongTru", REGISTER, office.register),
                       Service("HuyDangKyThuongTru", CANCEL, office.cancel, once=False),
                       Service("XoaDangKyThuongTru", STRIKE_OFF, office.strike_off)], reset=office.reset)
