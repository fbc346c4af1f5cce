"""Joint procedures end to end: a one-stop system files a joint dossier at the gateway, which runs
the flow across the agencies' simulators through the pipeline and the delivery queue (real
processes and sockets, SQLite and PostgreSQL: the session's ``stack``)."""

from __future__ import annotations

import json
import re
import time
from typing import Any

import httpx
import pytest

from gateway.audit.log import AuditLog
from gateway.audit.record import SubjectHasher
from gateway.keys import load_subject_key
from gateway.storage.db import create_engine
from tests.conftest import Stack
from tests.test_flow_definitions import birth_dossier, death_dossier

pytestmark = pytest.mark.slow

ONESTOP = "VN/GOV/000.00.00.H41/MOTCUA"
OTHER = "VN/GOV/000.00.00.H60/MOTCUA"
BIRTH = "VN/GOV/000.00.00.G22/LIENTHONG/KhaiSinh3Trong1"
DEATH = "VN/GOV/000.00.00.G22/LIENTHONG/KhaiTu"


def code() -> str:
    return f"H41.31-20261203-{time.time_ns() % 10**7:07d}"


def pid(prefix: str = "040") -> str:
    """A 12-digit personal id, new each call (the session's simulators keep what they registered)."""
    width = 12 - len(prefix)
    return f"{prefix}{time.time_ns() % 10**width:0{width}d}"


def birth(**changes: Any) -> dict[str, Any]:
    """The definitions' example 3-in-1 dossier (tests/test_flow_definitions.py) under a new code and
    new people: the session's simulators keep what they registered."""
    mother = {"HoTen": "Trần Thị Lan", "SoDinhDanh": pid("0401")}
    example = birth_dossier()
    dossier = {**example, "MaHoSo": code(), "Me": mother,
               "NguoiYeuCau": {**example["NguoiYeuCau"], **mother},
               "ThuongTru": {**example["ThuongTru"],
                             "ChuHo": {"HoTen": "Nguyễn Văn Hùng", "SoDinhDanh": pid("0400")}}}
    dossier.update(changes)
    return dossier


def death(**changes: Any) -> dict[str, Any]:
    """The definitions' example death-group dossier, new code and people, no funeral allowance."""
    example = death_dossier()
    dossier = {**example, "MaHoSo": code(),
               "NguoiChet": {**example["NguoiChet"], "SoDinhDanh": pid("0400")},
               "NguoiYeuCau": {**example["NguoiYeuCau"], "SoDinhDanh": pid("0401")}}
    del dossier["NguoiNhanMaiTang"]
    dossier.update(changes)
    return dossier


def headers(stack: Stack, client: str = ONESTOP) -> dict[str, str]:
    return {"Authorization": f"Bearer {stack.token(client)}"}


def file(stack: Stack, service: str, dossier: dict[str, Any], client: str = ONESTOP) -> httpx.Response:
    return httpx.post(f"{stack.base}/r1/{service}", json=dossier, headers=headers(stack, client), timeout=30)


def follow(stack: Stack, location: str, until: tuple[str, ...] = ("completed", "rejected", "failed"),
           seconds: float = 45) -> dict[str, Any]:
    deadline = time.monotonic() + seconds
    auth = headers(stack)
    while True:
        r = httpx.get(f"{stack.base}{location}", headers=auth, timeout=10)
        assert r.status_code == 200, r.text
        flow: dict[str, Any] = r.json()
        if flow["state"] in until or time.monotonic() > deadline:
            return flow
        time.sleep(0.2)


def steps(flow: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {s["step"]: s for s in flow["steps"]}


def test_a_3_in_1_flow_runs_across_three_agencies_and_the_post(stack: Stack) -> None:
    dossier = birth()
    r = file(stack, BIRTH, dossier)
    assert r.status_code == 202, r.text
    location = r.headers["location"]
    assert location == r.json()["location"] == f"/flows/{r.json()['flowId']}"
    flow = follow(stack, location)
    assert flow["state"] == "completed", flow
    done = steps(flow)
    assert [s["state"] for s in flow["steps"]] == ["done", "done", "done", "done"]
    child = done["khai_sinh"]["result"]["SoDinhDanh"]
    assert re.fullmatch(r"[0-9]{12}", child)
    assert done["bhyt"]["result"]["SoTheBHYT"].startswith("TE1")
    assert re.fullmatch(r"EV[0-9]{9}VN", done["buu_chinh"]["result"]["MaVanDon"])
    assert flow["dossier"] == dossier["MaHoSo"] and flow["client"] == ONESTOP
    # the residence registration used the child's new id, as the definition maps it
    registered = httpx.get(f"{stack.sims['residence']}/_sim/registrations").json()["items"]
    assert any(i.get("MaHoSo") == dossier["MaHoSo"] and child in json.dumps(i) for i in registered)
    # every step is an audited exchange carrying the flow, its people indexed
    engine = create_engine(stack.database)
    try:
        log = AuditLog(engine)
        leaves = [json.loads(x.leaf) for x in log.read(max(0, log.size() - 400), 400)]
    finally:
        engine.dispose()
    about = [leaf for leaf in leaves if f"flow/{flow['id']}" in (leaf.get("purpose") or "")]
    # audited where they are exchanged, at each attempt of their deliveries: a hand-over to the
    # queue, inside the gateway, is a leaf only when refused
    assert {leaf["protocol"] for leaf in about} == {"delivery"}
    assert {leaf["service"] for leaf in about} >= {s["service"] for s in flow["steps"]}
    hasher = SubjectHasher(load_subject_key(stack.config_path.parent / "keys"))
    mother = hasher(dossier["Me"]["SoDinhDanh"])
    assert any(mother in leaf.get("subjects", []) for leaf in about)
    # the messages that name nobody (progress, the outcome to the one-stop system) are the flow's
    # people's too: the joint dossier's, so the mother's access report shows the whole flow
    told = [leaf for leaf in about
            if leaf["service"].endswith(("CapNhatTienDoHoSoMC", "NhanKetQuaLienThong"))]
    assert told and all(mother in leaf.get("subjects", []) for leaf in told)
    assert dossier["Me"]["SoDinhDanh"] not in json.dumps(about)


def test_filing_the_same_dossier_again_finds_the_same_flow(stack: Stack) -> None:
    dossier = birth(NhanKetQua={"HinhThuc": "truc_tiep"})
    first, again = file(stack, BIRTH, dossier), file(stack, BIRTH, dossier)
    assert first.status_code == again.status_code == 202
    assert again.json()["flowId"] == first.json()["flowId"] and again.json()["duplicate"] is True
    flow = follow(stack, first.headers["location"])
    assert flow["state"] == "completed"
    assert steps(flow)["buu_chinh"]["state"] == "skipped"  # results collected in person
    listed = httpx.get(f"{stack.base}/flows", params={"dossier": dossier["MaHoSo"]},
                       headers=headers(stack), timeout=10).json()["items"]
    assert [f["id"] for f in listed] == [first.json()["flowId"]]


def test_a_child_6_or_older_gets_no_card_step(stack: Stack) -> None:
    dossier = birth(NhanKetQua={"HinhThuc": "truc_tiep"})
    dossier["Tre"] = {**dossier["Tre"], "NgaySinh": "2019-01-15"}
    flow = follow(stack, file(stack, BIRTH, dossier).headers["location"])
    assert flow["state"] == "completed"
    assert steps(flow)["bhyt"]["state"] == "skipped"


def test_a_rejected_birth_stops_the_flow_with_the_agencys_reason(stack: Stack) -> None:
    dossier = birth()
    dossier["Me"] = {"HoTen": "Sai Tên Mẹ", "SoDinhDanh": dossier["Me"]["SoDinhDanh"]}
    flow = follow(stack, file(stack, BIRTH, dossier).headers["location"])
    assert flow["state"] == "rejected", flow
    first = steps(flow)["khai_sinh"]
    assert first["state"] == "rejected" and first["reason"]["status"] == 422
    assert first["reason"]["answer"]["MaLoi"] == "TEN_KHONG_KHOP"
    assert flow["reason"]["step"] == "khai_sinh"
    assert [steps(flow)[s]["state"] for s in ("thuong_tru", "bhyt", "buu_chinh")] == ["pending"] * 3


def test_the_death_group_registers_strikes_off_and_pays_the_allowance(stack: Stack) -> None:
    dossier = death(NguoiNhanMaiTang={"HoTen": "Lê Thị Hoa", "SoDinhDanh": pid("0401")})
    r = file(stack, DEATH, dossier)
    assert r.status_code == 202, r.text
    flow = follow(stack, r.headers["location"])
    assert flow["state"] == "completed", flow
    done = steps(flow)
    assert done["xoa_thuong_tru"]["state"] == "done" and done["mai_tang"]["result"]["SoTien"] > 0
    assert done["buu_chinh"]["state"] == "skipped"


def test_an_agency_outage_is_ridden_out(stack: Stack) -> None:
    residence = stack.sims["residence"]
    httpx.post(f"{residence}/_sim/mode", json={"mode": "down"}).raise_for_status()
    try:
        r = file(stack, BIRTH, birth(NhanKetQua={"HinhThuc": "truc_tiep"}))
        waiting = follow(stack, r.headers["location"], until=("waiting",), seconds=20)
        assert waiting["state"] == "waiting", waiting
        assert steps(waiting)["khai_sinh"]["state"] == "done"
    finally:
        httpx.post(f"{residence}/_sim/mode", json={"mode": "normal"}).raise_for_status()
    flow = follow(stack, r.headers["location"], seconds=90)
    assert flow["state"] == "completed", flow


def test_bad_joint_dossiers_and_unknown_flows_are_refused(stack: Stack) -> None:
    incomplete = birth()
    del incomplete["Me"]
    r = file(stack, BIRTH, incomplete)
    assert r.status_code == 400 and "Me" in r.text
    missing = httpx.get(f"{stack.base}/flows/nope", headers=headers(stack), timeout=10)
    assert missing.status_code == 404
    mine = file(stack, BIRTH, birth(NhanKetQua={"HinhThuc": "truc_tiep"}))
    theirs = httpx.get(f"{stack.base}{mine.headers['location']}", headers=headers(stack, OTHER), timeout=10)
    assert theirs.status_code == 404  # another one-stop system does not see it
    listing = httpx.get(f"{stack.base}/flows", headers=headers(stack), timeout=10)
    assert listing.status_code == 400  # a client names the dossier
    unauthorised = file(stack, BIRTH, birth(), client="VN/GOV/000.00.00.G22/DVCQG")
    assert unauthorised.status_code == 403


def settled(stack: Stack, location: str, seconds: float = 45) -> dict[str, Any]:
    """The finished flow once every notification it called for has been delivered."""
    deadline = time.monotonic() + seconds
    while True:
        flow = follow(stack, location)
        sent = flow["notifications"]
        if (sent and all(n["delivery"] and n["delivery"]["state"] == "delivered" for n in sent)) \
                or time.monotonic() > deadline:
            return flow
        time.sleep(0.2)


def portal_record(stack: Stack, code: str) -> dict[str, Any]:
    held = httpx.get(f"{stack.sims['dvcqg']}/_sim/dossiers", timeout=10).json()["items"]
    found = [d for d in held if d["MaHoSo"] == code]
    assert len(found) == 1, [d["MaHoSo"] for d in held][-5:]
    return found[0]


def test_the_portal_follows_the_flow_and_the_filing_system_gets_the_results(stack: Stack) -> None:
    """The joint dossier is synced to the national portal when the flow starts, each step's end is
    its progress there (in order, after the dossier), and the outcome with the certificate, id,
    card and parcel numbers goes back to the one-stop system that filed it."""
    dossier = birth()
    flow = settled(stack, file(stack, BIRTH, dossier).headers["location"])
    assert flow["state"] == "completed", flow
    told = [(n["notify"], n["step"]) for n in flow["notifications"]]
    assert told == [("dong_bo", None), ("tien_do", "khai_sinh"), ("tien_do", "thuong_tru"),
                    ("tien_do", "bhyt"), ("tien_do", "buu_chinh"), ("ket_thuc", None), ("ket_qua", None)]
    assert all(n["delivery"]["state"] == "delivered" for n in flow["notifications"]), \
        json.dumps(flow["notifications"], ensure_ascii=False)
    record = portal_record(stack, dossier["MaHoSo"])
    synced = record["HoSo"]
    assert synced["ChuHoSo"] == dossier["NguoiYeuCau"]["HoTen"] and synced["HinhThuc"] == "2"
    assert re.fullmatch(r"20\d{12}", synced["NgayTiepNhan"]) and synced["NgayHenTra"] > synced["NgayTiepNhan"]
    progress = record["QuaTrinhXuLy"]
    assert [p["TrangThai"] for p in progress] == ["4", "4", "4", "4", "9"]
    assert progress[0]["PhongBanXuLy"] == "VN/GOV/000.00.00.G15" and progress[0]["NoiDungXuLy"]
    assert synced["TrangThaiHoSo"] == "9"  # the portal's status follows the last progress
    outcome = httpx.get(f"{stack.sims['onestop']}/ketqua/{dossier['MaHoSo']}", timeout=10).json()["data"]
    assert len(outcome) == 1 and outcome[0]["TrangThai"] == "completed"
    assert outcome[0]["MaLuong"] == flow["id"]
    results = {s["step"]: s["result"] for s in flow["steps"]}
    assert outcome[0]["KetQua"] == {
        "SoGiayKhaiSinh": results["khai_sinh"]["SoGiayKhaiSinh"],
        "SoDinhDanh": results["khai_sinh"]["SoDinhDanh"],
        "SoXacNhanThuongTru": results["thuong_tru"]["SoXacNhan"], "SoTheBHYT": results["bhyt"]["SoTheBHYT"],
        "MaVanDon": results["buu_chinh"]["MaVanDon"]}


@pytest.mark.parametrize(("agency", "service", "dossier_of", "step", "before"), [
    ("residence", BIRTH, "birth", "thuong_tru", ["khai_sinh"]),
    ("social_insurance", BIRTH, "birth", "bhyt", ["khai_sinh", "thuong_tru"]),
    ("postal", BIRTH, "birth", "buu_chinh", ["khai_sinh", "thuong_tru", "bhyt"]),
    ("residence", DEATH, "death", "xoa_thuong_tru", ["khai_tu"]),
    ("social_insurance", DEATH, "death", "mai_tang", ["khai_tu", "xoa_thuong_tru"]),
])
def test_a_rejection_at_each_step_stops_the_flow_and_tells_the_filer(
        stack: Stack, agency: str, service: str, dossier_of: str, step: str, before: list[str]) -> None:
    """Every step's declared outcome is stop: the steps before stay done, the ones after are never
    sent, the portal hears "stopped" (8) and the one-stop system the agency's reason."""
    dossier = birth() if dossier_of == "birth" else \
        death(NguoiNhanMaiTang={"HoTen": "Lê Thị Hoa", "SoDinhDanh": pid("0401")},
              NhanKetQua={"HinhThuc": "buu_chinh", "DiaChi": birth()["NhanKetQua"]["DiaChi"]})
    sim = stack.sims[agency]
    httpx.post(f"{sim}/_sim/mode", json={"mode": "reject_all"}, timeout=10).raise_for_status()
    try:
        flow = settled(stack, file(stack, service, dossier).headers["location"])
    finally:
        httpx.post(f"{sim}/_sim/mode", json={"mode": "normal"}, timeout=10).raise_for_status()
    assert flow["state"] == "rejected", flow
    by = steps(flow)
    assert [by[s]["state"] for s in before] == ["done"] * len(before)
    assert by[step]["state"] == "rejected" and by[step]["reason"]["status"] == 422
    after = [s["state"] for s in flow["steps"]][len(before) + 1:]
    assert all(state == "pending" for state in after), after
    assert flow["reason"]["step"] == step
    progress = portal_record(stack, dossier["MaHoSo"])["QuaTrinhXuLy"]
    assert [p["TrangThai"] for p in progress] == ["4"] * len(before) + ["8", "8"]
    outcome = httpx.get(f"{stack.sims['onestop']}/ketqua/{dossier['MaHoSo']}", timeout=10).json()["data"]
    assert outcome[0]["TrangThai"] == "rejected" and outcome[0]["LyDo"]


def test_a_joint_dossier_missing_a_part_is_a_400_naming_it(stack: Stack) -> None:
    incomplete = birth()
    del incomplete["NguoiYeuCau"]
    r = file(stack, BIRTH, incomplete)
    assert r.status_code == 400, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    assert "NguoiYeuCau" in r.text and r.json()["code"] == "Client.InvalidBody"
