"""A citizen's access report covers what they most want to see: a look-up of them that the gateway
refused, and the dossiers filed in their name (issue 15, item 6). Through the running demo catalog."""

from __future__ import annotations

import httpx
import pytest

from gateway.init import NGHE_AN, POPULATION, PORTAL, TUYEN_QUANG
from tests.conftest import Stack, random_id

LOOKUP = f"{POPULATION}/CSDLDC/TraCuuThongTinCongDan"  # one-stop systems may not: the demo refuses it
PUSH = f"{PORTAL}/DVCQG/DongBoHoSoMC"
AUDITOR = f"{PORTAL}/KIEMTOAN"


def _person() -> str:
    return "0010" + str(int(random_id(), 16))[-8:].rjust(8, "0")  # 12 digits, new for each test


def _report(stack: Stack, subject: str) -> list[dict[str, object]]:
    token = stack.token(AUDITOR, "audit.subject")
    r = httpx.post(f"{stack.base}/audit/subject-report", json={"subject": subject},
                   headers={"Authorization": f"Bearer {token}"})
    assert r.status_code == 200, r.text
    accesses: list[dict[str, object]] = r.json()["accesses"]
    return accesses


@pytest.mark.parametrize("client", [f"{TUYEN_QUANG}/MOTCUA", f"{NGHE_AN}/MOTCUA"])
def test_a_refused_look_up_shows_in_the_citizens_report(stack: Stack, client: str) -> None:
    person = _person()
    token = stack.token(client)
    r = httpx.post(f"{stack.base}/r1/{LOOKUP}", json={"SoDinhDanh": person, "HoVaTen": "Nguyễn Văn A"},
                   headers={"Authorization": f"Bearer {token}", "X-Road-UserId": "VN-canbo.x",
                            "X-Road-Issue": "H60.23-20261121-0000001"})
    assert r.status_code == 403, r.text
    (access,) = _report(stack, person)
    assert access["outcome"] == "refused" and access["service"]["id"] == LOOKUP  # type: ignore[index]
    assert access["system"]["id"] == client  # type: ignore[index]


def test_an_unreadable_refused_request_names_no_one(stack: Stack) -> None:
    token = stack.token(f"{TUYEN_QUANG}/MOTCUA")
    r = httpx.post(f"{stack.base}/r1/{LOOKUP}", content=b'{"SoDinhDanh": "0010',
                   headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"})
    assert r.status_code == 403  # refused by policy first; the broken body is simply not indexed


def _code() -> str:
    return f"H60.23-20261121-{int(random_id(), 16) % 10_000_000:07d}"


def _dossier(code: str, owner: str) -> dict[str, str]:
    return {"MaHoSo": code, "MaTTHC": "1.001193.000.00.00.H22", "TenTTHC": "Đăng ký khai sinh",
            "ChuHoSo": "Nguyễn Văn An", "LoaiDoiTuong": "1", "MaDoiTuong": owner,
            "NgayTiepNhan": "20261121090000", "NgayHenTra": "20261126170000", "TrangThaiHoSo": "2"}


def test_a_dossier_filed_in_a_citizens_name_shows_in_their_report(stack: Stack) -> None:
    person = _person()
    token = stack.token(f"{TUYEN_QUANG}/MOTCUA")
    r = httpx.post(f"{stack.base}/r1/{PUSH}", json=_dossier(_code(), person),
                   headers={"Authorization": f"Bearer {token}"})
    assert r.status_code == 202, r.text
    accesses = _report(stack, person)
    assert any(a["service"]["id"] == PUSH and a["outcome"] == "ok" for a in accesses), accesses  # type: ignore[index]


def test_a_progress_update_shows_in_the_dossier_owners_report(stack: Stack) -> None:
    """A progress update names no citizen, but it is about the dossier's owner: indexed as them,
    once the dossier itself went through the gateway."""
    person, code = _person(), _code()
    auth = {"Authorization": f"Bearer {stack.token(f'{TUYEN_QUANG}/MOTCUA')}"}
    assert httpx.post(f"{stack.base}/r1/{PUSH}", json=_dossier(code, person), headers=auth).status_code == 202
    progress = {"MaHoSo": code, "NguoiXuLy": "Trần Văn B", "ChucDanh": "Chuyên viên",
                "ThoiDiemXuLy": "20261122100000", "PhongBanXuLy": "Bộ phận một cửa",
                "NoiDungXuLy": "Đang xử lý", "TrangThai": "4", "NgayBatDau": "20261121090000",
                "NgayKetThucTheoQuyDinh": "20261126170000"}
    r = httpx.post(f"{stack.base}/r1/{PORTAL}/DVCQG/CapNhatTienDoHoSoMC", json=progress, headers=auth)
    assert r.status_code == 202, r.text
    services = [a["service"]["id"] for a in _report(stack, person)]  # type: ignore[index]
    assert f"{PORTAL}/DVCQG/CapNhatTienDoHoSoMC" in services and PUSH in services
    stranger = {**progress, "MaHoSo": _code()}
    assert httpx.post(f"{stack.base}/r1/{PORTAL}/DVCQG/CapNhatTienDoHoSoMC", json=stranger,
                      headers=auth).status_code == 202  # a dossier never seen here: no one indexed
