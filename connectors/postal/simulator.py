"""A simulator of the postal service's order API: delivering a joint procedure's paper results.

Routes::

    POST /TaoDonHang   {MaHoSo, NguoiNhan: {HoTen, SoDienThoai, DiaChi}, GiayTo: [{Ten, So}, ...]}
                       -> {MaHoSo, MaVanDon, NgayDuKien}
    GET  /_sim/registrations, GET|POST /_sim/mode, GET /_sim/received, POST /_sim/reset
                       (connectors.agency_simulator)

Waybills (``MaVanDon``) are UPU S10 item identifiers as Vietnam Post prints them: ``EV``, an 8-digit
serial counting up from a seeded start, the S10 check digit, ``VN`` (``EV123456785VN``). Delivery is
expected the next day in the five centrally run cities (codes 01, 31, 48, 79, 92), two days later
elsewhere. A phone number is Vietnamese: 10 digits from 0, or +84 and 9 digits. No business
refusal besides ``DA_DANG_KY`` (a different order under a dossier code already answered).
"""

from __future__ import annotations

import random
import re
from collections.abc import Callable
from datetime import date, timedelta
from typing import Any

from connectors.agency_simulator import (
    Invalid,
    Service,
    agency_app,
    dossier_code,
    items,
    obj,
    province,
    text,
    today_in_vietnam,
)
from connectors.rest.simulator import ASGIApp

__all__ = ["ORDER", "create_app", "s10_check_digit"]

CITIES = ("01", "31", "48", "79", "92")  # Hà Nội, Hải Phòng, Đà Nẵng, Hồ Chí Minh, Cần Thơ


def _phone(value: Any, path: str) -> str:
    got = text(value, path)
    if not re.fullmatch(r"(0[0-9]{9})|(\+84[0-9]{9})", got):
        raise Invalid(path, f"trường {path} phải là số điện thoại Việt Nam (10 chữ số bắt đầu bằng 0)")
    return got


ORDER = obj({
    "MaHoSo": dossier_code,
    "NguoiNhan": obj({"HoTen": text, "SoDienThoai": _phone,
                      "DiaChi": obj({"MaTinh": province, "MaXa": text, "ChiTiet": text})}),
    "GiayTo": items(obj({"Ten": text, "So": text})),
})


def s10_check_digit(serial: str) -> int:
    """The UPU S10 check digit of an 8-digit serial."""
    total = sum(int(d) * w for d, w in zip(serial, (8, 6, 4, 2, 3, 5, 9, 7), strict=True))
    check = 11 - total % 11
    return {10: 0, 11: 5}.get(check, check)


class _Post:
    def __init__(self, seed: int, today: Callable[[], date]) -> None:
        self._seed, self._today = seed, today
        self.reset()

    def reset(self) -> None:
        self._next = random.Random(f"{self._seed}:buu-chinh").randrange(10_000_000, 90_000_000)

    def order(self, request: dict[str, Any]) -> dict[str, Any]:
        serial = f"{self._next:08d}"
        self._next += 1
        days = 1 if request["NguoiNhan"]["DiaChi"]["MaTinh"] in CITIES else 2
        return {"MaHoSo": request["MaHoSo"], "MaVanDon": f"EV{serial}{s10_check_digit(serial)}VN",
                "NgayDuKien": (self._today() + timedelta(days=days)).isoformat()}


def create_app(seed: int = 2026, today: Callable[[], date] = today_in_vietnam) -> ASGIApp:
    """The postal order API; ``today`` is the day the order is taken."""
    post = _Post(seed, today)
    return agency_app([Service("TaoDonHang", ORDER, post.order)], reset=post.reset)
