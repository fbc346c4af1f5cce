"""The joint procedures' agency simulators (civil status, residence, social insurance, postal): the
flows contract's answers and formats, idempotency by MaHoSo, every rejection, malformed requests,
the modes of /_sim/mode, what /_sim/received and /_sim/registrations show, and one birth
registration through a running gateway as its own client, audited with the mother as data subject.

The apps are driven in-process through httpx's ASGI transport, with a fixed registration day."""

from __future__ import annotations

import copy
import json
import re
import time
from collections.abc import AsyncIterator, Callable, Iterator
from datetime import date
from typing import Any

import httpx
import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from starlette.testclient import TestClient

from connectors import synthetic
from connectors.agency_simulator import MAX_BODY
from connectors.civil_status import simulator as civil_status
from connectors.postal import simulator as postal
from connectors.postal.simulator import s10_check_digit
from connectors.residence import simulator as residence
from connectors.social_insurance import simulator as social_insurance
from connectors.social_insurance.simulator import ALLOWANCE
from gateway.audit.record import SubjectHasher
from gateway.keys import load_subject_key
from gateway.plugins import SIMULATORS, load
from tests.conftest import Stack

TODAY = date(2026, 12, 3)
MOTHER = "040190012345"
FATHER = "040088054321"


def birth(code: str = "H41.31-20261203-0000123", **changes: Any) -> dict[str, Any]:
    body = {"MaHoSo": code, "NoiDangKy": "16681",
            "Tre": {"HoTen": "Nguyễn Thị Lan", "GioiTinh": 2, "NgaySinh": "2026-11-20",
                    "NoiSinh": "Bệnh viện Sản Nhi Nghệ An", "DanToc": "Kinh", "QuocTich": "Việt Nam"},
            "Me": {"HoTen": "Trần Thị Hoa", "SoDinhDanh": MOTHER},
            "Cha": {"HoTen": "Nguyễn Văn Nam", "SoDinhDanh": FATHER},
            "NguoiYeuCau": {"HoTen": "Nguyễn Văn Nam", "SoDinhDanh": FATHER, "QuanHe": "Cha"}}
    return {**body, **changes}


def death(code: str = "H41.31-20261203-0000200", **changes: Any) -> dict[str, Any]:
    body = {"MaHoSo": code, "NoiDangKy": "16681",
            "NguoiChet": {"HoTen": "Lê Văn Hùng", "SoDinhDanh": "040045001122", "NgayChet": "2026-11-30",
                          "NoiChet": "Xã Nghi Phú, Nghệ An"},
            "NguoiYeuCau": {"HoTen": "Lê Thị Mai", "SoDinhDanh": "040180009876", "QuanHe": "Con"}}
    return {**body, **changes}


ADDRESS = {"MaTinh": "40", "MaXa": "16681", "ChiTiet": "Số 12 đường Lê Lợi, xóm 3"}


def residence_body(code: str = "H41.31-20261203-0000123", **changes: Any) -> dict[str, Any]:
    body = {"MaHoSo": code, "SoDinhDanh": "040326001234", "HoTen": "Nguyễn Thị Lan",
            "NgaySinh": "2026-11-20", "ChuHo": {"HoTen": "Nguyễn Văn Nam", "SoDinhDanh": FATHER},
            "QuanHeVoiChuHo": "Con", "DiaChi": ADDRESS}
    return {**body, **changes}


def strike_off(code: str = "H41.31-20261203-0000200", **changes: Any) -> dict[str, Any]:
    return {"MaHoSo": code, "SoDinhDanh": "040045001122", "SoTrichLucKhaiTu": "15/2026",
            "LyDo": "Đã chết", **changes}


def card(code: str = "H41.31-20261203-0000123", **changes: Any) -> dict[str, Any]:
    return {"MaHoSo": code, "SoDinhDanh": "040326001234", "HoTen": "Nguyễn Thị Lan",
            "NgaySinh": "2026-11-20", "GioiTinh": "2", "DiaChi": ADDRESS, **changes}


def funeral(code: str = "H41.31-20261203-0000200", **changes: Any) -> dict[str, Any]:
    return {"MaHoSo": code, "SoDinhDanh": "040045001122", "SoTrichLucKhaiTu": "15/2026",
            "NguoiNhan": {"HoTen": "Lê Thị Mai", "SoDinhDanh": "040180009876"}, **changes}


def order(code: str = "H41.31-20261203-0000123", **changes: Any) -> dict[str, Any]:
    return {"MaHoSo": code,
            "NguoiNhan": {"HoTen": "Nguyễn Văn Nam", "SoDienThoai": "0912345678", "DiaChi": ADDRESS},
            "GiayTo": [{"Ten": "Giấy khai sinh", "So": "101/2026"}, {"Ten": "Thẻ BHYT", "So": "TE140"}],
            **changes}


APPS: dict[str, Callable[..., Any]] = {
    "civil_status": civil_status.create_app, "residence": residence.create_app,
    "social_insurance": social_insurance.create_app, "postal": postal.create_app}
# Every service with a valid request, and the simulator that serves it.
VALID: list[tuple[str, str, Callable[[], dict[str, Any]]]] = [
    ("civil_status", "DangKyKhaiSinh", birth), ("civil_status", "DangKyKhaiTu", death),
    ("residence", "DangKyThuongTru", residence_body), ("residence", "XoaDangKyThuongTru", strike_off),
    ("residence", "HuyDangKyThuongTru",
     lambda: {"MaHoSo": "H41.31-20261203-0000123", "SoXacNhan": "CT40-2026-000001", "LyDo": "Bù trừ"}),
    ("social_insurance", "CapTheBHYT", card), ("social_insurance", "GiaiQuyetMaiTang", funeral),
    ("postal", "TaoDonHang", order)]
OPTIONAL = {"Cha"}


def client_for(app: Any) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://sim")


@pytest.fixture
async def sims() -> AsyncIterator[dict[str, httpx.AsyncClient]]:
    clients = {name: client_for(make(today=lambda: TODAY)) for name, make in APPS.items()}
    yield clients
    for c in clients.values():
        await c.aclose()


def problem(r: httpx.Response, status: int, code: str) -> str:
    assert r.status_code == status, r.text
    assert r.json()["MaLoi"] == code, r.text
    return str(r.json()["LyDo"])


# -- answers --------------------------------------------------------------------------------------


def test_entry_points_name_the_four_simulators() -> None:
    """Each simulator is found by its name in the lienthong.simulators entry-point group."""
    for name, make in APPS.items():
        assert load(SIMULATORS, name) is make


async def test_birth_answers_certificate_and_child_id(sims: dict[str, httpx.AsyncClient]) -> None:
    """A birth gets `<n>/<year>` and a 12-digit id: province of birth, century+sex, year, 6 digits."""
    r = await sims["civil_status"].post("/DangKyKhaiSinh", json=birth())
    assert r.status_code == 200, r.text
    answer = r.json()
    assert set(answer) == {"MaHoSo", "SoGiayKhaiSinh", "SoDinhDanh", "NgayDangKy"}
    assert answer["MaHoSo"] == birth()["MaHoSo"] and answer["NgayDangKy"] == "2026-12-03"
    assert re.fullmatch(r"040326[0-9]{6}", answer["SoDinhDanh"])  # Nghệ An, a girl of the 2000s, 2026
    n, year = answer["SoGiayKhaiSinh"].split("/")
    assert year == "2026"
    boy = birth("H41.31-20261203-0000124", Tre={**birth()["Tre"], "HoTen": "Nguyễn Văn Minh",
                                               "GioiTinh": "1", "NoiSinh": "Tại nhà"})
    second = (await sims["civil_status"].post("/DangKyKhaiSinh", json=boy)).json()
    assert second["SoGiayKhaiSinh"] == f"{int(n) + 1}/2026"  # counting up in the year
    assert second["SoDinhDanh"].startswith("040226")  # no province named: the mother's


async def test_answers_are_deterministic_from_seed_and_request() -> None:
    """Two simulators with the same seed answer the same request alike; another seed differs."""
    async def child_id(seed: int) -> str:
        async with client_for(civil_status.create_app(seed, today=lambda: TODAY)) as c:
            return str((await c.post("/DangKyKhaiSinh", json=birth())).json()["SoDinhDanh"])
    assert await child_id(7) == await child_id(7)
    assert await child_id(7) != await child_id(8)


async def test_death_answers_extract_number(sims: dict[str, httpx.AsyncClient]) -> None:
    """A death registration answers the death extract's number and the day."""
    r = await sims["civil_status"].post("/DangKyKhaiTu", json=death())
    assert r.status_code == 200, r.text
    assert set(r.json()) == {"MaHoSo", "SoTrichLucKhaiTu", "NgayDangKy"}
    assert re.fullmatch(r"[0-9]+/2026", r.json()["SoTrichLucKhaiTu"])


async def test_residence_register_cancel_and_strike_off(sims: dict[str, httpx.AsyncClient]) -> None:
    """Registration answers a confirmation number; cancelling it twice answers alike; a deceased
    is struck off once."""
    c = sims["residence"]
    r = await c.post("/DangKyThuongTru", json=residence_body())
    assert r.status_code == 200, r.text
    number = r.json()["SoXacNhan"]
    assert re.fullmatch(r"CT40-2026-[0-9]{6}", number) and r.json()["NgayDangKy"] == "2026-12-03"
    cancel = {"MaHoSo": residence_body()["MaHoSo"], "SoXacNhan": number, "LyDo": "Không cấp được thẻ"}
    for reason in ("Không cấp được thẻ", "Bù trừ"):
        again = await c.post("/HuyDangKyThuongTru", json={**cancel, "LyDo": reason})
        assert again.json() == {"MaHoSo": cancel["MaHoSo"], "SoXacNhan": number, "DaHuy": True}
    gone = await c.post("/XoaDangKyThuongTru", json=strike_off())
    assert gone.status_code == 200 and set(gone.json()) == {"MaHoSo", "SoXacNhan", "NgayXoa"}
    assert gone.json()["NgayXoa"] == "2026-12-03"


async def test_health_card_formats_and_validity(sims: dict[str, httpx.AsyncClient]) -> None:
    """TE1 + province + the 10-digit BHXH number, valid to the day before the 6th birthday."""
    r = await sims["social_insurance"].post("/CapTheBHYT", json=card())
    assert r.status_code == 200, r.text
    a = r.json()
    assert re.fullmatch(r"40[0-9]{8}", a["MaSoBHXH"])
    assert a["SoTheBHYT"] == f"TE140{a['MaSoBHXH']}" and len(a["SoTheBHYT"]) == 15
    assert (a["GiaTriTu"], a["GiaTriDen"]) == ("2026-12-03", "2032-11-19")
    other = await sims["social_insurance"].post("/CapTheBHYT", json=card("H41.31-20261203-0000999"))
    assert other.json()["MaSoBHXH"] == a["MaSoBHXH"]  # one person, one insurance number


async def test_leap_day_child_card_ends_before_first_of_march() -> None:
    """A child born on 29 February turns 6 on 1 March of a common year."""
    async with client_for(social_insurance.create_app(today=lambda: date(2025, 1, 1))) as c:
        a = (await c.post("/CapTheBHYT", json=card(NgaySinh="2024-02-29"))).json()
    assert a["GiaTriDen"] == "2030-02-28"


async def test_funeral_allowance(sims: dict[str, httpx.AsyncClient]) -> None:
    """Ten times the base salary, as an integer of VND, with a decision number."""
    r = await sims["social_insurance"].post("/GiaiQuyetMaiTang", json=funeral())
    assert r.status_code == 200, r.text
    assert r.json()["SoTien"] == ALLOWANCE == 23_400_000 and isinstance(r.json()["SoTien"], int)
    assert re.fullmatch(r"[0-9]+/QĐ-BHXH", r.json()["SoQuyetDinh"])


async def test_postal_order_waybill(sims: dict[str, httpx.AsyncClient]) -> None:
    """A waybill is EV + 8 digits + the S10 check digit + VN; cities get next-day delivery."""
    r = await sims["postal"].post("/TaoDonHang", json=order())
    assert r.status_code == 200, r.text
    waybill = r.json()["MaVanDon"]
    assert re.fullmatch(r"EV[0-9]{9}VN", waybill)
    assert int(waybill[10]) == s10_check_digit(waybill[2:10])
    assert r.json()["NgayDuKien"] == "2026-12-05"
    hanoi = {**ADDRESS, "MaTinh": "01"}
    city = order("H01.1-20261203-1", NguoiNhan={**order()["NguoiNhan"], "DiaChi": hanoi})
    second = (await sims["postal"].post("/TaoDonHang", json=city)).json()
    assert second["NgayDuKien"] == "2026-12-04" and second["MaVanDon"] != waybill


def test_s10_check_digit_known_value() -> None:
    """The UPU S10 check digit of the well-known example item RA473124829GB."""
    assert s10_check_digit("47312482") == 9


# -- idempotency ----------------------------------------------------------------------------------


@pytest.mark.parametrize(("sim", "service", "valid"), [v for v in VALID if v[1] != "HuyDangKyThuongTru"],
                         ids=[v[1] for v in VALID if v[1] != "HuyDangKyThuongTru"])
async def test_same_request_same_answer_once_registered(sims: dict[str, httpx.AsyncClient], sim: str,
                                                        service: str, valid: Callable[[], dict[str, Any]]
                                                        ) -> None:
    """The same request under the same MaHoSo answers alike and registers once; another request
    under that MaHoSo is refused DA_DANG_KY."""
    c = sims[sim]
    body = valid()
    first = await c.post(f"/{service}", json=body)
    shuffled = dict(reversed(list(body.items())))  # the same JSON, keys in another order
    again = await c.post(f"/{service}", json=shuffled)
    assert first.status_code == again.status_code == 200 and first.json() == again.json()
    regs = (await c.get("/_sim/registrations", params={"service": service})).json()
    assert regs["total"] == 1 and regs["items"][0]["answer"] == first.json()
    changed = copy.deepcopy(body)
    changed["MaHoSo"] = body["MaHoSo"]
    changed["_khac"] = 1  # any change of content, even a field the service does not read
    problem(await c.post(f"/{service}", json=changed), 422, "DA_DANG_KY")
    assert (await c.get("/_sim/registrations")).json()["by_service"][service] == 1


# -- rejections -----------------------------------------------------------------------------------


async def test_mother_name_mismatch(sims: dict[str, httpx.AsyncClient]) -> None:
    """'Sai Tên' in the mother's name, or a name that differs from a known citizen's: TEN_KHONG_KHOP."""
    c = sims["civil_status"]
    reason = problem(await c.post("/DangKyKhaiSinh", json=birth(Me={"HoTen": "Trần Thị Sai Tên",
                                                                    "SoDinhDanh": MOTHER})),
                     422, "TEN_KHONG_KHOP")
    assert "Me.HoTen" in reason
    known = synthetic.people(1000, 2026)[1]
    wrong = birth("H41.2", Me={"HoTen": "Không Phải Bà Ấy", "SoDinhDanh": known.so_dinh_danh})
    problem(await c.post("/DangKyKhaiSinh", json=wrong), 422, "TEN_KHONG_KHOP")
    right = birth("H41.3", Me={"HoTen": known.ho_va_ten.upper(), "SoDinhDanh": known.so_dinh_danh})
    assert (await c.post("/DangKyKhaiSinh", json=right)).status_code == 200
    dead = death(NguoiChet={**death()["NguoiChet"], "HoTen": "lê văn sai tên"})
    problem(await c.post("/DangKyKhaiTu", json=dead), 422, "TEN_KHONG_KHOP")
    assert (await c.get("/_sim/registrations")).json()["total"] == 1


async def test_already_registered_under_another_dossier(sims: dict[str, httpx.AsyncClient]) -> None:
    """The same child, the same death, the same allowance under another dossier: DA_DANG_KY."""
    c, bhxh = sims["civil_status"], sims["social_insurance"]
    assert (await c.post("/DangKyKhaiSinh", json=birth("A-1"))).status_code == 200
    assert "A-1" in problem(await c.post("/DangKyKhaiSinh", json=birth("A-2")), 422, "DA_DANG_KY")
    assert (await c.post("/DangKyKhaiTu", json=death("B-1"))).status_code == 200
    problem(await c.post("/DangKyKhaiTu", json=death("B-2")), 422, "DA_DANG_KY")
    assert (await bhxh.post("/GiaiQuyetMaiTang", json=funeral("C-1"))).status_code == 200
    problem(await bhxh.post("/GiaiQuyetMaiTang", json=funeral("C-2")), 422, "DA_DANG_KY")


@pytest.mark.parametrize(("born", "status"), [("2020-12-04", 200), ("2020-12-03", 422), ("2010-01-01", 422)])
async def test_card_refused_from_the_sixth_birthday(sims: dict[str, httpx.AsyncClient], born: str,
                                                    status: int) -> None:
    """A child who turns 6 on the day, or is older, gets QUA_TUOI; the day before, a card."""
    r = await sims["social_insurance"].post("/CapTheBHYT", json=card(NgaySinh=born))
    assert r.status_code == status, r.text
    if status == 422:
        problem(r, 422, "QUA_TUOI")


async def test_residence_rejections(sims: dict[str, httpx.AsyncClient]) -> None:
    """An unknown household head, a bad address, nothing to strike off or cancel: each its code."""
    c = sims["residence"]
    nobody = residence_body(ChuHo={"HoTen": "Ai Đó", "SoDinhDanh": "000090000001"})
    problem(await c.post("/DangKyThuongTru", json=nobody), 422, "CHU_HO_KHONG_TON_TAI")
    for where in ({**ADDRESS, "MaTinh": "00"}, {**ADDRESS, "MaXa": "12"}):
        r = await c.post("/DangKyThuongTru", json=residence_body(DiaChi=where))
        problem(r, 422, "DIA_CHI_KHONG_HOP_LE")
    problem(await c.post("/XoaDangKyThuongTru", json=strike_off(SoDinhDanh="000045001122")),
            422, "KHONG_CO_THUONG_TRU")
    assert (await c.post("/XoaDangKyThuongTru", json=strike_off("X-1"))).status_code == 200
    assert "X-1" in problem(await c.post("/XoaDangKyThuongTru", json=strike_off("X-2")),
                            422, "KHONG_CO_THUONG_TRU")
    problem(await c.post("/HuyDangKyThuongTru", json={"MaHoSo": "Y-1", "SoXacNhan": "CT40-2026-999999",
                                                      "LyDo": "Bù trừ"}), 422, "KHONG_TIM_THAY")
    number = (await c.post("/DangKyThuongTru", json=residence_body("Z-1"))).json()["SoXacNhan"]
    await c.post("/HuyDangKyThuongTru", json={"MaHoSo": "Z-1", "SoXacNhan": number, "LyDo": "Bù trừ"})
    problem(await c.post("/XoaDangKyThuongTru", json=strike_off("Z-2", SoDinhDanh="040326001234")),
            422, "KHONG_CO_THUONG_TRU")  # the registration was cancelled


async def test_funeral_not_eligible(sims: dict[str, httpx.AsyncClient]) -> None:
    """A deceased whose id ends in 9999 has too few contributions: KHONG_DU_DIEU_KIEN."""
    r = await sims["social_insurance"].post("/GiaiQuyetMaiTang", json=funeral(SoDinhDanh="040045009999"))
    problem(r, 422, "KHONG_DU_DIEU_KIEN")


# -- malformed requests ---------------------------------------------------------------------------


def _paths(value: Any, prefix: str = "") -> Iterator[str]:
    if isinstance(value, dict):
        for key, sub in value.items():
            path = f"{prefix}.{key}" if prefix else key
            if key not in OPTIONAL:
                yield path
                yield from _paths(sub, path)
    elif isinstance(value, list):
        for i, sub in enumerate(value):
            yield from _paths(sub, f"{prefix}.{i}")


def _without(body: dict[str, Any], path: str) -> dict[str, Any]:
    out = copy.deepcopy(body)
    node: Any = out
    *parents, last = path.split(".")
    for part in parents:
        node = node[int(part)] if isinstance(node, list) else node[part]
    del node[last]
    return out


REQUIRED = [(sim, service, valid, path) for sim, service, valid in VALID for path in _paths(valid())]


@pytest.mark.parametrize(("sim", "service", "valid", "path"), REQUIRED,
                         ids=[f"{service}:{path}" for _, service, _, path in REQUIRED])
async def test_each_required_field_missing_is_400_naming_it(sims: dict[str, httpx.AsyncClient], sim: str,
                                                            service: str, valid: Callable[[], dict[str, Any]],
                                                            path: str) -> None:
    """Leaving out any required field (nested ones included) is 400 naming its dotted path."""
    r = await sims[sim].post(f"/{service}", json=_without(valid(), path))
    assert path in problem(r, 400, "DU_LIEU_KHONG_HOP_LE")


@pytest.mark.parametrize(("service", "body", "field"), [
    ("DangKyKhaiSinh", birth(Me={"HoTen": "A", "SoDinhDanh": "04019001234"}), "Me.SoDinhDanh"),
    ("DangKyKhaiSinh", birth(Tre={**birth()["Tre"], "NgaySinh": "20/11/2026"}), "Tre.NgaySinh"),
    ("DangKyKhaiSinh", birth(Tre={**birth()["Tre"], "NgaySinh": "2026-12-04"}), "Tre.NgaySinh"),
    ("DangKyKhaiSinh", birth(Tre={**birth()["Tre"], "GioiTinh": True}), "Tre.GioiTinh"),
    ("DangKyKhaiSinh", birth(Tre={**birth()["Tre"], "GioiTinh": 3}), "Tre.GioiTinh"),
    ("DangKyKhaiSinh", birth(Cha={"HoTen": "A"}), "Cha.SoDinhDanh"),
    ("DangKyKhaiSinh", birth(NoiDangKy=25456), "NoiDangKy"),
    ("DangKyKhaiSinh", birth(Me=["Trần Thị Hoa"]), "Me"),
    ("DangKyKhaiSinh", birth(MaHoSo="  "), "MaHoSo"),
    ("DangKyKhaiSinh", birth(MaHoSo="H" * 101), "MaHoSo"),
    ("DangKyKhaiTu", death(NguoiChet={**death()["NguoiChet"], "NgayChet": "2026-02-30"}),
     "NguoiChet.NgayChet"),
])
async def test_malformed_fields_are_400_naming_them(sims: dict[str, httpx.AsyncClient], service: str,
                                                    body: dict[str, Any], field: str) -> None:
    """A field of the wrong type or form is 400 naming it."""
    assert field in problem(await sims["civil_status"].post(f"/{service}", json=body), 400,
                            "DU_LIEU_KHONG_HOP_LE")


@pytest.mark.parametrize("body", [b"{not json", b"[1, 2]", b'"text"', b"null", b"", b"\xff\xfe{}",
                                  b'{"MaHoSo": 1e999999}', b"[" * 5000 + b"]" * 5000])
async def test_malformed_json_is_400(sims: dict[str, httpx.AsyncClient], body: bytes) -> None:
    """A body that is not a JSON object is 400, never a 500."""
    r = await sims["postal"].post("/TaoDonHang", content=body, headers={"Content-Type": "application/json"})
    problem(r, 400, "DU_LIEU_KHONG_HOP_LE")


async def test_huge_body_is_413(sims: dict[str, httpx.AsyncClient]) -> None:
    """A body over 1 MiB is refused 413 without reading it all."""
    huge = orjson.dumps({**order(), "GhiChu": "x" * MAX_BODY})
    problem(await sims["postal"].post("/TaoDonHang", content=huge), 413, "DU_LIEU_KHONG_HOP_LE")


# -- modes ----------------------------------------------------------------------------------------


async def test_down_answers_503_and_sim_routes_still_work(sims: dict[str, httpx.AsyncClient]) -> None:
    """Down: every service call is 503 (with Retry-After); /_sim/ routes answer; normal again after."""
    c = sims["civil_status"]
    mode = await c.post("/_sim/mode", json={"mode": "down"})
    assert mode.status_code == 200 and mode.json()["mode"] == "down"
    r = await c.post("/DangKyKhaiSinh", json=birth())
    problem(r, 503, "HE_THONG_GIAN_DOAN")
    assert r.headers["retry-after"] == "1"
    assert (await c.get("/_sim/registrations")).json()["total"] == 0
    await c.post("/_sim/mode", json={"mode": "normal"})
    assert (await c.post("/DangKyKhaiSinh", json=birth())).status_code == 200


async def test_slow_answers_after_the_delay(sims: dict[str, httpx.AsyncClient]) -> None:
    """Slow: the answer comes, after slow_ms."""
    c = sims["postal"]
    assert (await c.post("/_sim/mode", json={"mode": "slow", "slow_ms": 150})).json()["slow_ms"] == 150
    started = time.monotonic()
    r = await c.post("/TaoDonHang", json=order())
    assert r.status_code == 200 and time.monotonic() - started >= 0.15


async def test_reject_all_is_422_for_every_request(sims: dict[str, httpx.AsyncClient]) -> None:
    """reject_all: valid or not, every call is 422 TU_CHOI."""
    c = sims["social_insurance"]
    await c.post("/_sim/mode", json={"mode": "reject_all"})
    problem(await c.post("/CapTheBHYT", json=card()), 422, "TU_CHOI")
    problem(await c.post("/GiaiQuyetMaiTang", content=b"{oops"), 422, "TU_CHOI")


async def test_flaky_fails_every_other_request(sims: dict[str, httpx.AsyncClient]) -> None:
    """flaky: the first call after switching fails 503, the next is answered, and so on."""
    c = sims["residence"]
    await c.post("/_sim/mode", json={"mode": "flaky"})
    statuses = [(await c.post("/DangKyThuongTru", json=residence_body())).status_code for _ in range(4)]
    assert statuses == [503, 200, 503, 200]
    received = (await c.get("/_sim/received")).json()
    assert [i["status"] for i in received["items"]] == statuses and received["total"] == 4


@pytest.mark.parametrize("change", [{"mode": "broken"}, {"slow_ms": -1}, {"slow_ms": True}, {"other": 1},
                                    {"mode": "down", "delay_ms": "x"}])
async def test_invalid_mode_is_400_and_changes_nothing(sims: dict[str, httpx.AsyncClient],
                                                       change: dict[str, Any]) -> None:
    """An unknown mode or switch is refused, the simulator stays as it was."""
    c = sims["postal"]
    assert (await c.post("/_sim/mode", json=change)).status_code == 400
    assert (await c.get("/_sim/mode")).json()["mode"] == "normal"


async def test_shared_fail_switch_and_reset(sims: dict[str, httpx.AsyncClient]) -> None:
    """The shared Faults switches work here too; reset forgets registrations, mode and records."""
    c = sims["civil_status"]
    await c.post("/DangKyKhaiSinh", json=birth())
    await c.post("/_sim/mode", json={"fail": "http500", "times": 1})
    assert (await c.post("/DangKyKhaiTu", json=death())).status_code == 500
    await c.post("/_sim/mode", json={"mode": "down"})
    assert (await c.post("/_sim/reset")).json() == {"ok": True}
    assert (await c.get("/_sim/mode")).json() == {"delay_ms": 0, "fail": None, "times": None,
                                                   "mode": "normal", "slow_ms": 2000}
    assert (await c.get("/_sim/registrations")).json() == {
        "total": 0, "by_service": {"DangKyKhaiSinh": 0, "DangKyKhaiTu": 0}, "items": []}
    assert (await c.get("/_sim/received")).json()["total"] == 0
    assert (await c.post("/DangKyKhaiSinh", json=birth())).status_code == 200  # not DA_DANG_KY


async def test_received_and_registrations_views(sims: dict[str, httpx.AsyncClient]) -> None:
    """/_sim/received has every request with its status; /_sim/registrations each success once."""
    c = sims["civil_status"]
    await c.post("/DangKyKhaiSinh", json=birth())
    await c.post("/DangKyKhaiSinh", json=birth())
    await c.post("/DangKyKhaiSinh", json=birth("X", Me={"HoTen": "Sai Tên", "SoDinhDanh": MOTHER}))
    await c.post("/DangKyKhaiTu", json=death())
    received = (await c.get("/_sim/received")).json()["items"]
    assert [(i["kind"], i["status"]) for i in received] == [
        ("DangKyKhaiSinh", 200), ("DangKyKhaiSinh", 200), ("DangKyKhaiSinh", 422), ("DangKyKhaiTu", 200)]
    assert json.loads(received[0]["body"]) == birth()
    regs = (await c.get("/_sim/registrations")).json()
    assert regs["total"] == 2 and regs["by_service"] == {"DangKyKhaiSinh": 1, "DangKyKhaiTu": 1}
    assert {i["MaHoSo"] for i in regs["items"]} == {birth()["MaHoSo"], death()["MaHoSo"]}
    assert regs["items"][0]["request"] == birth()
    assert (await c.get("/_sim/registrations", params={"service": "DangKyKhaiTu"})).json()["total"] == 1


# -- properties -----------------------------------------------------------------------------------

_text = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=20)
_json = st.recursive(st.none() | st.booleans() | st.integers(-(2**63), 2**63 - 1)
                     | st.floats(allow_nan=False, allow_infinity=False) | _text,
                     lambda inner: st.lists(inner, max_size=4) | st.dictionaries(_text, inner, max_size=4),
                     max_leaves=12)
_keys = st.sampled_from(sorted({p.split(".")[-1] for *_, p in REQUIRED}))


@st.composite
def _mutated(draw: st.DrawFn) -> tuple[str, str, dict[str, Any]]:
    """A valid request with one field, at any depth, replaced by any JSON value (or a random object)."""
    sim, service, valid = draw(st.sampled_from(VALID))
    if draw(st.booleans()):
        return sim, service, draw(st.dictionaries(_keys | _text, _json, max_size=8))
    body = copy.deepcopy(valid())  # the shapes share ADDRESS
    path = draw(st.sampled_from(list(_paths(body))))
    node: Any = body
    *parents, last = path.split(".")
    for part in parents:
        node = node[int(part)] if isinstance(node, list) else node[part]
    node[int(last) if isinstance(node, list) else last] = draw(_json)
    return sim, service, body


@pytest.fixture(scope="module")
def sync_sims() -> Iterator[dict[str, TestClient]]:
    clients = {name: TestClient(make(today=lambda: TODAY)) for name, make in APPS.items()}
    yield clients
    for c in clients.values():
        c.close()


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow,
                                                   HealthCheck.function_scoped_fixture])
@given(case=_mutated())
def test_any_json_object_is_200_400_or_422(sync_sims: dict[str, TestClient],
                                           case: tuple[str, str, dict[str, Any]]) -> None:
    """Whatever JSON object arrives, the answer is 200, 400 or 422 with the contract's body: never 500."""
    sim, service, body = case
    r = sync_sims[sim].post(f"/{service}", content=orjson.dumps(body))
    assert r.status_code in (200, 400, 422), r.text
    if r.status_code != 200:
        assert set(r.json()) == {"MaLoi", "LyDo"}


# -- through the gateway --------------------------------------------------------------------------

ENGINE = "VN/GOV/000.00.00.G22/LIENTHONG"
BIRTH_SERVICE = "VN/GOV/000.00.00.G15/HOTICH/DangKyKhaiSinh"


@pytest.mark.slow
def test_birth_through_the_gateway_indexes_the_mother(stack: Stack) -> None:
    """The gateway's own client registers a birth through the demo catalog: 200 with the child's
    id, and the audit leaf names the mother (as a keyed hash) among its data subjects."""
    from gateway.audit.log import AuditLog
    from gateway.storage.db import create_engine

    code = f"H41.31-20261203-{time.time_ns() % 10**7:07d}"
    mother = f"0401900{time.time_ns() % 10**5:05d}"  # the session's stack may hold other births
    request = birth(code, Me={"HoTen": "Trần Thị Hoa", "SoDinhDanh": mother})
    r = httpx.post(f"{stack.base}/r1/{BIRTH_SERVICE}", json=request, timeout=30,
                   headers={"Authorization": f"Bearer {stack.token(ENGINE)}", "X-Road-Client": ENGINE})
    assert r.status_code == 200, r.text
    assert r.json()["MaHoSo"] == code and re.fullmatch(r"040326[0-9]{6}", r.json()["SoDinhDanh"])
    regs = httpx.get(f"{stack.sims['civil_status']}/_sim/registrations").json()
    assert code in {i["MaHoSo"] for i in regs["items"]}
    engine = create_engine(stack.database)
    try:
        (leaf,) = [json.loads(x.leaf) for x in AuditLog(engine).by_exchange(r.headers["x-road-id"])]
    finally:
        engine.dispose()
    hasher = SubjectHasher(load_subject_key(stack.config_path.parent / "keys"))
    assert hasher(mother) in leaf["subjects"] and hasher(FATHER) in leaf["subjects"]
    assert mother not in json.dumps(leaf)
    assert leaf["rule"] == "lien-thong-thu-tuc-lien-ket" and leaf["outcome"] == "ok"
    other = httpx.post(f"{stack.base}/r1/{BIRTH_SERVICE}", json=request, timeout=30,
                       headers={"Authorization": f"Bearer {stack.token('VN/GOV/000.00.00.H60/MOTCUA')}"})
    assert other.status_code == 403, other.text  # only the gateway's own client calls the agencies


def test_insurance_numbers_are_never_given_twice() -> None:
    """A person keeps their number; a number already given is drawn again for someone else; a
    reset forgets what was given. (The given numbers are a set: looking them up was once a scan of
    every person's, a drain of 10,000 flows' cards a quadratic cost.)"""
    today = lambda: date(2026, 12, 3)  # noqa: E731
    insurer = social_insurance._Insurer(7, today)
    numbers = {insurer._insurance_number(f"0402000{i:05d}", "40") for i in range(2_000)}
    assert len(numbers) == 2_000
    assert insurer._insurance_number("040200000001", "40") in numbers
    first = social_insurance._Insurer(7, today)._insurance_number("040299999999", "40")
    insurer._taken.add(first)  # as if someone else had it already
    other = insurer._insurance_number("040299999999", "40")
    assert other != first and re.fullmatch(r"40[0-9]{8}", other)
    insurer.reset()
    assert insurer._insurance_number("040299999999", "40") == first
