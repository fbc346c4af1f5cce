"""A simulator of the civil-status registry: birth and death registration (flows contract).

Routes::

    POST /DangKyKhaiSinh   {MaHoSo, NoiDangKy, Tre, Me, Cha?, NguoiYeuCau}
                           -> {MaHoSo, SoGiayKhaiSinh "<n>/<year>", SoDinhDanh (the child's), NgayDangKy}
    POST /DangKyKhaiTu     {MaHoSo, NoiDangKy, NguoiChet, NguoiYeuCau}
                           -> {MaHoSo, SoTrichLucKhaiTu "<n>/<year>", NgayDangKy}
    GET  /_sim/registrations, GET|POST /_sim/mode, GET /_sim/received, POST /_sim/reset
                           (connectors.agency_simulator)

The child's personal id follows the real structure (Circular 59/2021/TT-BCA): the 3-digit code of
the province where the birth is registered, one digit for century and sex (0/1 for a boy/girl born
in the 1900s, 2/3 in the 2000s), the last two digits of the birth year, six random digits. The
province is the first one named in ``Tre.NoiSinh`` (e.g. "Bệnh viện Sản Nhi Nghệ An" gives 040);
when it names none, the mother's (an assumption: the simulator has no commune-to-province table for
``NoiDangKy``). Certificate numbers count up per year from a seeded start.

Rejections (422): ``TEN_KHONG_KHOP`` when a parent's (``Me``, ``Cha``) or the deceased's name
contains "Sai Tên" (the demo's magic value), or names a synthetic citizen of the population
simulator (same seed) whose name differs; ``DA_DANG_KY`` for a child already registered (same
mother, name and birth date) or a death already registered (same personal id) under another
dossier, and for a different request under a dossier code already answered.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from datetime import date
from typing import Any

from connectors import synthetic
from connectors.agency_simulator import (
    PROVINCES,
    Invalid,
    Rejection,
    Service,
    agency_app,
    digits,
    dossier_code,
    fold,
    has_marker,
    iso_date,
    obj,
    optional,
    sex,
    text,
    today_in_vietnam,
)
from connectors.rest.simulator import ASGIApp

__all__ = ["BIRTH", "DEATH", "MISMATCH", "create_app"]

MISMATCH = "Sai Tên"  # in a parent's or the deceased's name: the registry says it does not match
PERSONAL_ID = digits(12, "12 chữ số")
_PERSON = obj({"HoTen": text, "SoDinhDanh": PERSONAL_ID})
_REQUESTER = obj({"HoTen": text, "SoDinhDanh": PERSONAL_ID, "QuanHe": text})
BIRTH = obj({
    "MaHoSo": dossier_code, "NoiDangKy": digits(5, "5 chữ số (mã xã)"),
    "Tre": obj({"HoTen": text, "GioiTinh": sex, "NgaySinh": iso_date, "NoiSinh": text, "DanToc": text,
                "QuocTich": text}),
    "Me": _PERSON, "Cha": optional(_PERSON), "NguoiYeuCau": _REQUESTER,
})
DEATH = obj({
    "MaHoSo": dossier_code, "NoiDangKy": digits(5, "5 chữ số (mã xã)"),
    "NguoiChet": obj({"HoTen": text, "SoDinhDanh": PERSONAL_ID, "NgayChet": iso_date, "NoiChet": text}),
    "NguoiYeuCau": _REQUESTER,
})
# Longest names first, so that no province is found inside another's name; folded once, as
# has_marker folds them (a birth's place is looked for among them at every registration).
_BY_NAME = sorted(((fold(name), code) for code, name in {**PROVINCES, "46": "Huế"}.items()),
                  key=lambda item: -len(item[0]))


def _fold(name: str) -> str:
    return " ".join(name.casefold().split())


class _Registry:
    def __init__(self, seed: int, today: Callable[[], date]) -> None:
        self._seed, self._today = seed, today
        self._names = {p.so_dinh_danh: p.ho_va_ten for p in synthetic.people(1000, seed)}
        self.reset()

    def reset(self) -> None:
        self._numbers: dict[tuple[str, int], int] = {}
        self._births: dict[tuple[str, str, date], str] = {}  # (mother, child's name, born) -> dossier
        self._deaths: dict[str, str] = {}  # the deceased's id -> dossier
        self._ids: set[str] = set()

    def _number(self, book: str, year: int) -> str:
        """The next number of ``book`` in ``year``: ``<n>/<year>``, from a seeded start."""
        key = (book, year)
        if key not in self._numbers:
            self._numbers[key] = 1 + random.Random(f"{self._seed}:{book}:{year}").randrange(300)
        n = self._numbers[key]
        self._numbers[key] = n + 1
        return f"{n}/{year}"

    def _check_name(self, person: dict[str, Any], path: str) -> None:
        known = self._names.get(person["SoDinhDanh"])
        if has_marker(person["HoTen"], MISMATCH) or (known is not None
                                                     and _fold(known) != _fold(person["HoTen"])):
            raise Rejection("TEN_KHONG_KHOP", f"Họ tên {person['HoTen']} ({path}.HoTen) không khớp với "
                            f"số định danh {person['SoDinhDanh']} trong Cơ sở dữ liệu quốc gia về dân cư")

    def _child_id(self, request: dict[str, Any]) -> str:
        child = request["Tre"]
        place = fold(child["NoiSinh"])
        province = next((f"0{code}" for name, code in _BY_NAME if name in place),
                        request["Me"]["SoDinhDanh"][:3])
        rng = random.Random(f"{self._seed}:khai-sinh:{request['MaHoSo']}:{request['Me']['SoDinhDanh']}")
        while True:
            pid = synthetic.personal_id(rng, province, child["GioiTinh"] == 1, child["NgaySinh"].year)
            if pid not in self._ids:
                self._ids.add(pid)
                return pid

    def birth(self, request: dict[str, Any]) -> dict[str, Any]:
        today, child = self._today(), request["Tre"]
        if child["NgaySinh"] > today:
            raise Invalid("Tre.NgaySinh", "ngày sinh (Tre.NgaySinh) sau ngày đăng ký")
        if child["NgaySinh"].year < 1900:
            raise Invalid("Tre.NgaySinh", "ngày sinh (Tre.NgaySinh) trước năm 1900")
        self._check_name(request["Me"], "Me")
        if "Cha" in request:
            self._check_name(request["Cha"], "Cha")
        key = (request["Me"]["SoDinhDanh"], _fold(child["HoTen"]), child["NgaySinh"])
        earlier = self._births.get(key)
        if earlier is not None:
            raise Rejection("DA_DANG_KY", f"Trẻ {child['HoTen']} sinh ngày {child['NgaySinh']} đã được "
                            f"đăng ký khai sinh theo hồ sơ {earlier}")
        self._births[key] = request["MaHoSo"]
        return {"MaHoSo": request["MaHoSo"], "SoGiayKhaiSinh": self._number("khai-sinh", today.year),
                "SoDinhDanh": self._child_id(request), "NgayDangKy": today.isoformat()}

    def death(self, request: dict[str, Any]) -> dict[str, Any]:
        today, dead = self._today(), request["NguoiChet"]
        if dead["NgayChet"] > today:
            raise Invalid("NguoiChet.NgayChet", "ngày chết (NguoiChet.NgayChet) sau ngày đăng ký")
        self._check_name(dead, "NguoiChet")
        earlier = self._deaths.get(dead["SoDinhDanh"])
        if earlier is not None:
            raise Rejection("DA_DANG_KY", f"Người có số định danh {dead['SoDinhDanh']} đã được đăng ký "
                            f"khai tử theo hồ sơ {earlier}")
        self._deaths[dead["SoDinhDanh"]] = request["MaHoSo"]
        return {"MaHoSo": request["MaHoSo"], "SoTrichLucKhaiTu": self._number("khai-tu", today.year),
                "NgayDangKy": today.isoformat()}


def create_app(seed: int = 2026, today: Callable[[], date] = today_in_vietnam) -> ASGIApp:
    """The civil-status registry; ``today`` is the registration day (Vietnamese time by default)."""
    registry = _Registry(seed, today)
    return agency_app([Service("DangKyKhaiSinh", BIRTH, registry.birth),
                       Service("DangKyKhaiTu", DEATH, registry.death)], reset=registry.reset)
