"""Flow definitions (issue 13): the bundled joint procedures load and check; every mistake in a
definition is refused naming its file and line; sources, paths and conditions evaluate as documented."""

from __future__ import annotations

import shutil
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner
from hypothesis import given
from hypothesis import strategies as st

from gateway.cli import main
from gateway.config import Config, load_config
from gateway.errors import InvalidBody
from gateway.flows import MISSING, Flows, declares, load_flows, parse_duration
from gateway.flows.definition import Compensate
from gateway.flows.mapping import (
    Compare,
    DefinitionError,
    EvaluationError,
    MissingSource,
    Scope,
    Young,
    anniversary,
    build_request,
    parse_condition,
    parse_ref,
    parse_shape,
    parse_source,
    resolve,
    younger_than,
)
from gateway.resources import flows_dir, schemas_dir
from gateway.yamlfile import FileError

# The shared contract's catalog (/work/flows-contract.md): agencies, their services, and the
# gateway's own services that start the two flows. Built here so these tests never depend on when the
# demo catalog gains them.
G15, G01, G20, POST, G22 = ("VN/GOV/000.00.00.G15", "VN/GOV/000.00.00.G01", "VN/GOV/000.00.00.G20",
                            "VN/COM/0100000001", "VN/GOV/000.00.00.G22")
AGENCY_SERVICES = [f"{G15}/HOTICH/DangKyKhaiSinh", f"{G15}/HOTICH/DangKyKhaiTu",
                   f"{G01}/CUTRU/DangKyThuongTru", f"{G01}/CUTRU/HuyDangKyThuongTru",
                   f"{G01}/CUTRU/XoaDangKyThuongTru", f"{G20}/BHXH/CapTheBHYT",
                   f"{G20}/BHXH/GiaiQuyetMaiTang", f"{POST}/BUUCHINH/TaoDonHang"]
STARTERS = {f"{G22}/LIENTHONG/KhaiSinh3Trong1": "khai-sinh-3-trong-1", f"{G22}/LIENTHONG/KhaiTu": "khai-tu"}
# Where the flows' notifications go: the portal, and a one-stop system's outcome service.
ONESTOP = "VN/GOV/000.00.00.H41"
NOTIFIED = [f"{G22}/DVCQG/DongBoHoSoMC", f"{G22}/DVCQG/CapNhatTienDoHoSoMC",
            f"{ONESTOP}/MOTCUA/NhanKetQuaLienThong"]
BIRTH = flows_dir() / "khai-sinh-3-trong-1.yaml"
DEATH = flows_dir() / "khai-tu.yaml"


def catalog(**starters: str) -> dict[str, Any]:
    members = [{"id": member, "subsystems": [{"code": code}]} for member, code in
               [(G15, "HOTICH"), (G01, "CUTRU"), (G20, "BHXH"), (POST, "BUUCHINH"), (G22, "LIENTHONG"),
                (G22, "DVCQG"), (ONESTOP, "MOTCUA")]]
    services: list[dict[str, Any]] = [{"id": s, "connector": "rest", "upstream": "http://127.0.0.1:9"}
                                      for s in AGENCY_SERVICES + NOTIFIED]
    services += [{"id": sid, "flow": name} for sid, name in (starters or STARTERS).items()]
    return {"members": members, "services": services}


def config() -> Config:
    return Config.model_validate(catalog())


def line_of(path: Path, needle: str, occurrence: int = 1) -> int:
    hits = [i for i, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1) if needle in line]
    assert len(hits) >= occurrence, f"{needle!r} not in {path}"
    return hits[occurrence - 1]


def folder_with(tmp_path: Path, *sources: Path) -> Path:
    folder = tmp_path / "flows"
    folder.mkdir(exist_ok=True)
    for source in sources:
        shutil.copyfile(source, folder / source.name)
    return folder


def edited(tmp_path: Path, source: Path, old: str, new: str, count: int = 1) -> Path:
    """A flows folder with the bundled flows, one of them with one change."""
    text = source.read_text(encoding="utf-8")
    assert old in text, old
    folder = folder_with(tmp_path, BIRTH, DEATH)
    path = folder / source.name
    path.write_text(text.replace(old, new, count), encoding="utf-8")
    return path


def problems(path: Path, cfg: Config | None = None) -> list[FileError]:
    return load_flows(path.parent, cfg or config()).problems


def only_problem(path: Path, cfg: Config | None = None) -> FileError:
    found = problems(path, cfg)
    assert len(found) == 1, [str(p) for p in found]
    return found[0]


def birth_dossier(**changes: Any) -> dict[str, Any]:
    address = {"MaTinh": "40", "MaXa": "25456", "ChiTiet": "Số 12, đường Lê Lợi"}
    dossier: dict[str, Any] = {
        "MaHoSo": "H41.31-20261203-0000123", "NoiDangKy": "25456",
        "Tre": {"HoTen": "Nguyễn Minh Khang", "GioiTinh": 1, "NgaySinh": "2026-11-20", "NoiSinh":
                "Bệnh viện Sản Nhi Nghệ An", "DanToc": "Kinh", "QuocTich": "Việt Nam"},
        "Me": {"HoTen": "Trần Thị Lan", "SoDinhDanh": "040190012345"},
        "NguoiYeuCau": {"HoTen": "Trần Thị Lan", "SoDinhDanh": "040190012345", "QuanHe": "Mẹ",
                        "SoDienThoai": "0912345678"},
        "ThuongTru": {"ChuHo": {"HoTen": "Nguyễn Văn Hùng", "SoDinhDanh": "040088001234"},
                      "QuanHeVoiChuHo": "Cháu", "DiaChi": address},
        "NhanKetQua": {"HinhThuc": "buu_chinh", "DiaChi": address},
    }
    dossier.update(changes)
    return dossier


def death_dossier(**changes: Any) -> dict[str, Any]:
    dossier: dict[str, Any] = {
        "MaHoSo": "H41.31-20261203-0000456", "NoiDangKy": "25456",
        "NguoiChet": {"HoTen": "Lê Văn Bình", "SoDinhDanh": "040045000111", "NgayChet": "2026-12-01",
                      "NoiChet": "Tại nhà"},
        "NguoiYeuCau": {"HoTen": "Lê Thị Hoa", "SoDinhDanh": "040075000222", "QuanHe": "Con",
                        "SoDienThoai": "0987654321"},
        "NguoiNhanMaiTang": {"HoTen": "Lê Thị Hoa", "SoDinhDanh": "040075000222"},
        "NhanKetQua": {"HinhThuc": "truc_tiep"},
    }
    dossier.update(changes)
    return dossier


@pytest.fixture(scope="module")
def bundled() -> Flows:
    return load_flows(flows_dir(), config())


# -- the bundled flows ----------------------------------------------------------------------------

def test_bundled_flows_load_and_check_against_the_contract_catalog(bundled: Flows) -> None:
    """Both shipped flows check clean against the contract's services, each started by its service."""
    assert bundled.problems == []
    assert sorted(bundled.flows) == ["khai-sinh-3-trong-1", "khai-tu"]
    assert bundled.starters == STARTERS
    assert bundled.started_by(f"{G22}/LIENTHONG/KhaiTu") is bundled.flows["khai-tu"]
    assert bundled.started_by(AGENCY_SERVICES[0]) is None
    assert sorted(bundled.validators) == sorted(bundled.flows)


def test_the_3_in_1_is_the_contracts(bundled: Flows) -> None:
    """Steps, services, deadlines and rejections of the 3-in-1 are those the contract names."""
    flow = bundled.flows["khai-sinh-3-trong-1"]
    assert [(s.id, s.service.rsplit("/", 1)[1]) for s in flow.steps] == [
        ("khai_sinh", "DangKyKhaiSinh"), ("thuong_tru", "DangKyThuongTru"), ("bhyt", "CapTheBHYT"),
        ("buu_chinh", "TaoDonHang")]
    assert (flow.deadline, flow.legal_limit) == (2 * 86_400, 7 * 86_400)
    assert [s.deadline for s in flow.steps[:3]] == [86_400.0] * 3
    assert all(s.on_reject == "stop" for s in flow.steps)
    assert flow.code == "MaHoSo" and flow.dossier_schema == "flows/khai-sinh-3-trong-1.json"
    assert isinstance(flow.steps[2].when, Young) and flow.steps[2].when.years == 6
    undo = flow.steps[1].compensation
    assert undo is not None and undo.service == f"{G01}/CUTRU/HuyDangKyThuongTru"
    assert flow.title.vi.startswith("Đăng ký khai sinh") and flow.title.en


def test_the_death_group_is_the_contracts(bundled: Flows) -> None:
    """Death registration, deletion of residence, funeral allowance when someone receives it, post."""
    flow = bundled.flows["khai-tu"]
    assert [s.id for s in flow.steps] == ["khai_tu", "xoa_thuong_tru", "mai_tang", "buu_chinh"]
    assert flow.steps[2].service == f"{G20}/BHXH/GiaiQuyetMaiTang"
    scope = Scope(death_dossier(), {}, date(2026, 12, 3))
    assert flow.steps[2].when is not None and flow.steps[2].when.holds(scope)
    without = death_dossier()
    del without["NguoiNhanMaiTang"]
    assert not flow.steps[2].when.holds(Scope(without, {}, date(2026, 12, 3)))
    assert flow.steps[3].when is not None and not flow.steps[3].when.holds(scope)  # at the counter


def test_bundled_flows_check_against_the_demo_catalog() -> None:
    """Against the catalog `lienthong init` writes: its agencies' services and the services that
    start the two flows."""
    from gateway.init import Ports
    from gateway.init import catalog as demo_catalog

    data: dict[str, Any] = demo_catalog(Ports())
    assert set(AGENCY_SERVICES) <= {s["id"] for s in data["services"]}
    demo = Config.model_validate(data)
    loaded = load_flows(flows_dir(), demo)
    assert [str(p) for p in loaded.problems] == []
    assert set(loaded.starters.values()) == {"khai-sinh-3-trong-1", "khai-tu"}


def test_the_3_in_1_requests_are_the_contracts(bundled: Flows) -> None:
    """Each step's request carries the contract's fields, from the dossier and the earlier answers."""
    flow = bundled.flows["khai-sinh-3-trong-1"]
    dossier = birth_dossier()
    answers: dict[str, Any] = {}
    scope = Scope(dossier, answers, date(2026, 12, 3))
    birth = build_request(flow.steps[0].input, scope)
    assert set(birth) == {"MaHoSo", "NoiDangKy", "Tre", "Me", "NguoiYeuCau"}  # no Cha: none given
    assert birth["Tre"] == dossier["Tre"] and birth["NguoiYeuCau"] == {
        "HoTen": "Trần Thị Lan", "SoDinhDanh": "040190012345", "QuanHe": "Mẹ"}  # no phone number
    answers["khai_sinh"] = {"MaHoSo": dossier["MaHoSo"], "SoGiayKhaiSinh": "123/2026",
                            "SoDinhDanh": "040226000777", "NgayDangKy": "2026-12-03"}
    residence = build_request(flow.steps[1].input, scope)
    assert residence == {"MaHoSo": dossier["MaHoSo"], "SoDinhDanh": "040226000777",
                         "HoTen": "Nguyễn Minh Khang", "NgaySinh": "2026-11-20",
                         "ChuHo": dossier["ThuongTru"]["ChuHo"], "QuanHeVoiChuHo": "Cháu",
                         "DiaChi": dossier["ThuongTru"]["DiaChi"]}
    answers["thuong_tru"] = {"SoXacNhan": "CT-2026-0001", "NgayDangKy": "2026-12-03"}
    assert flow.steps[2].when is not None and flow.steps[2].when.holds(scope)
    card = build_request(flow.steps[2].input, scope)
    assert set(card) == {"MaHoSo", "SoDinhDanh", "HoTen", "NgaySinh", "GioiTinh", "DiaChi"}
    post = build_request(flow.steps[3].input, scope)  # the card step has not answered: no card listed
    assert [d["Ten"] for d in post["GiayTo"]] == ["Giấy khai sinh", "Xác nhận đăng ký thường trú"]
    assert post["NguoiNhan"]["SoDienThoai"] == "0912345678"
    answers["bhyt"] = {"SoTheBHYT": "TE1400000000001"}
    post = build_request(flow.steps[3].input, scope)
    assert post["GiayTo"][2] == {"Ten": "Thẻ bảo hiểm y tế", "So": "TE1400000000001"}
    undo = flow.steps[1].compensation
    assert undo is not None
    assert build_request(undo.input, scope)["SoXacNhan"] == "CT-2026-0001"


def test_the_father_is_sent_only_when_the_dossier_names_him(bundled: Flows) -> None:
    """Cha is in the birth registration request exactly when the joint dossier has it."""
    step = bundled.flows["khai-sinh-3-trong-1"].steps[0]
    father = {"HoTen": "Nguyễn Văn Nam", "SoDinhDanh": "040088009999"}
    request = build_request(step.input, Scope(birth_dossier(Cha=father), {}, date(2026, 12, 3)))
    assert request["Cha"] == father


def test_the_card_step_is_skipped_from_the_sixth_birthday(bundled: Flows) -> None:
    """The insurance card is asked for until the day before the sixth birthday, not from it."""
    when = bundled.flows["khai-sinh-3-trong-1"].steps[2].when
    assert when is not None
    child = birth_dossier(Tre={**birth_dossier()["Tre"], "NgaySinh": "2020-12-03"})
    assert when.holds(Scope(child, {}, date(2026, 12, 2)))
    assert not when.holds(Scope(child, {}, date(2026, 12, 3)))


def test_joint_dossiers_are_checked_by_their_schemas(bundled: Flows) -> None:
    """A valid dossier passes; a missing part, a bad personal id or date, a postal order without an
    address are refused naming the field."""
    birth = bundled.validators["khai-sinh-3-trong-1"]
    birth.validate(birth_dossier())
    bundled.validators["khai-tu"].validate(death_dossier())
    no_date = birth_dossier()
    del no_date["Tre"]["NgaySinh"]
    bad: list[tuple[dict[str, Any], str]] = [
        (no_date, "$.Tre.NgaySinh"),
        (birth_dossier(Me={"HoTen": "Trần Thị Lan", "SoDinhDanh": "04019001234"}), "$.Me.SoDinhDanh"),
        (birth_dossier(Tre={**birth_dossier()["Tre"], "NgaySinh": "20/11/2026"}), "$.Tre.NgaySinh"),
        (birth_dossier(NhanKetQua={"HinhThuc": "buu_chinh"}), "$.NhanKetQua.DiaChi"),
        (birth_dossier(NhanKetQua={"HinhThuc": "fax"}), "$.NhanKetQua.HinhThuc"),
    ]
    for dossier, path in bad:
        with pytest.raises(InvalidBody) as info:
            birth.validate(dossier)
        assert path in str(info.value.detail), (path, info.value.detail)
    without = death_dossier()
    del without["NguoiChet"]
    with pytest.raises(InvalidBody, match=r"\$\.NguoiChet"):
        bundled.validators["khai-tu"].validate(without)


# -- refusals, each at its file and line -----------------------------------------------------------

def test_an_unknown_service_is_refused_at_its_line(tmp_path: Path) -> None:
    """A step calling a service the catalog does not list is refused at the step's service line."""
    path = edited(tmp_path, BIRTH, "BHXH/CapTheBHYT", "BHXH/CapTheBHYTX")
    problem = only_problem(path)
    assert problem.path == str(path) and problem.line == line_of(path, "CapTheBHYTX")
    assert "not in the catalog" in problem.message and f"{path}:{problem.line}:" in str(problem)


def test_an_unknown_compensation_service_is_refused(tmp_path: Path) -> None:
    """The service that undoes a step must be in the catalog too."""
    path = edited(tmp_path, BIRTH, "CUTRU/HuyDangKyThuongTru", "CUTRU/HuyDangKy")
    problem = only_problem(path)
    assert problem.line == line_of(path, "CUTRU/HuyDangKy") and "HuyDangKy" in problem.message


def test_a_step_may_not_call_a_flow(tmp_path: Path) -> None:
    """A step calling a service that starts a flow is refused: steps call agencies."""
    path = edited(tmp_path, DEATH, f"{POST}/BUUCHINH/TaoDonHang", f"{G22}/LIENTHONG/KhaiSinh3Trong1")
    problem = only_problem(path)
    assert problem.line == line_of(path, "LIENTHONG/KhaiSinh3Trong1") and "starts flow" in problem.message


def test_a_duplicate_step_id_is_refused(tmp_path: Path) -> None:
    """Two steps with one id: the second is refused at its id's line."""
    path = edited(tmp_path, DEATH, "- id: mai_tang", "- id: khai_tu")
    found = problems(path)
    assert found and found[0].line == line_of(path, "- id: khai_tu", 2)
    assert "already used by step 1" in found[0].message


def test_a_duplicate_flow_name_is_refused(tmp_path: Path) -> None:
    """Two files defining one flow: the second is refused, naming where the first is."""
    folder = folder_with(tmp_path, BIRTH, DEATH)
    copy = folder / "zz-copy.yaml"
    copy.write_text(DEATH.read_text(encoding="utf-8"), encoding="utf-8")
    problem = only_problem(copy)
    assert problem.path == str(copy) and problem.line == line_of(copy, "name: khai-tu")
    assert f"already defined at {folder / 'khai-tu.yaml'}:" in problem.message


def test_a_forward_reference_is_refused(tmp_path: Path) -> None:
    """A step reading a later step's answer is refused at that line: no forward reference."""
    path = edited(tmp_path, BIRTH, "SoDinhDanh: steps.khai_sinh.SoDinhDanh\n      HoTen: dossier.Tre.HoTen\n"
                  "      NgaySinh: dossier.Tre.NgaySinh\n      ChuHo",
                  "SoDinhDanh: steps.bhyt.MaSoBHXH\n      HoTen: dossier.Tre.HoTen\n"
                  "      NgaySinh: dossier.Tre.NgaySinh\n      ChuHo")
    problem = only_problem(path)
    assert problem.line == line_of(path, "steps.bhyt.MaSoBHXH")
    assert "does not come before" in problem.message and "no forward reference" in problem.message


def test_a_step_reading_itself_is_a_cycle(tmp_path: Path) -> None:
    """A step reading its own answer is refused like a forward reference."""
    path = edited(tmp_path, DEATH, "SoTrichLucKhaiTu: steps.khai_tu.SoTrichLucKhaiTu\n      LyDo",
                  "SoTrichLucKhaiTu: steps.xoa_thuong_tru.SoXacNhan\n      LyDo")
    problem = only_problem(path)
    assert problem.line == line_of(path, "steps.xoa_thuong_tru.SoXacNhan\n".strip())
    assert "no cycle" in problem.message


def test_a_field_the_step_does_not_produce_is_refused(tmp_path: Path) -> None:
    """Reading a field the earlier step does not declare in produces is refused, listing what it does."""
    path = edited(tmp_path, BIRTH, "So: steps.khai_sinh.SoGiayKhaiSinh", "So: steps.khai_sinh.SoGiayKS")
    problem = only_problem(path)
    assert problem.line == line_of(path, "steps.khai_sinh.SoGiayKS")
    assert "does not produce SoGiayKS" in problem.message and "SoGiayKhaiSinh" in problem.message


def test_a_reference_to_no_step_is_refused(tmp_path: Path) -> None:
    """A path naming a step the flow does not have is refused."""
    path = edited(tmp_path, BIRTH, "{path: steps.bhyt.SoTheBHYT, present: true}",
                  "{path: steps.the.SoTheBHYT, present: true}")
    problem = only_problem(path)
    assert problem.line == line_of(path, "steps.the.SoTheBHYT") and "no step 'the'" in problem.message


def test_an_undeclared_dossier_path_is_refused(tmp_path: Path) -> None:
    """A dossier path the joint dossier's JSON Schema does not declare is refused, in inputs,
    conditions, code and subjects alike."""
    path = edited(tmp_path, BIRTH, "HoTen: dossier.ThuongTru.ChuHo.HoTen",
                  "HoTen: dossier.ThuongTru.ChuHo.Ten")
    problem = only_problem(path)
    assert problem.line == line_of(path, "dossier.ThuongTru.ChuHo.Ten")
    assert "declares no such field" in problem.message
    path = edited(tmp_path, DEATH, "{path: dossier.NguoiNhanMaiTang, present",
                  "{path: dossier.NguoiNhanTroCap, present")
    assert only_problem(path).line == line_of(path, "NguoiNhanTroCap")
    path = edited(tmp_path, DEATH, "code: MaHoSo", "code: SoHoSo")
    assert only_problem(path).line == line_of(path, "code: SoHoSo")
    path = edited(tmp_path, DEATH, "NguoiNhanMaiTang.SoDinhDanh]", "NguoiNhan.SoDinhDanh]")
    problem = only_problem(path)
    assert problem.line == line_of(path, "NguoiNhan.SoDinhDanh]") and problem.message.startswith("subjects:")


def test_a_missing_or_broken_dossier_schema_is_refused(tmp_path: Path) -> None:
    """dossier_schema must name a JSON Schema under schemas/."""
    path = edited(tmp_path, DEATH, "flows/khai-tu.json", "flows/nowhere.json")
    problem = only_problem(path)
    assert problem.line == line_of(path, "dossier_schema") and "cannot read" in problem.message
    schemas = tmp_path / "schemas"
    (schemas / "flows").mkdir(parents=True)
    (schemas / "flows" / "khai-tu.json").write_text('{"type": 12}')
    shutil.copyfile(schemas_dir() / "flows" / BIRTH.with_suffix(".json").name,
                    schemas / "flows" / BIRTH.with_suffix(".json").name)
    shutil.copyfile(DEATH, path)  # the original definition, against a broken schema
    found = load_flows(path.parent, config(), schemas=schemas).problems
    assert len(found) == 1 and "not a JSON Schema" in found[0].message


@pytest.mark.parametrize(("old", "new", "needle", "expected"), [
    ("on_reject: stop                         # từ chối cấp thẻ",
     "on_reject: {compensate: [buu_chinh]}  #", "compensate: [buu_chinh]", "does not come before"),
    ("on_reject: stop                         # từ chối cấp thẻ",
     "on_reject: {compensate: [khai_sinh]}  #", "compensate: [khai_sinh]", "declares no compensation"),
    ("on_reject: stop                         # từ chối cấp thẻ",
     "on_reject: {compensate: [cu_tru]}  #", "compensate: [cu_tru]", "no step 'cu_tru'"),
])
def test_a_compensation_must_name_an_earlier_step_that_declares_one(
        tmp_path: Path, old: str, new: str, needle: str, expected: str) -> None:
    """compensate: names earlier steps, each with a compensation: of its own."""
    path = edited(tmp_path, BIRTH, old, new)
    problem = only_problem(path)
    assert problem.line == line_of(path, needle) and expected in problem.message


def test_compensating_an_earlier_step_checks_clean(tmp_path: Path) -> None:
    """The contract's test variant: the card's refusal undoes the residence registration."""
    path = edited(tmp_path, BIRTH, "on_reject: stop                         # từ chối cấp thẻ",
                  "on_reject: {compensate: [thuong_tru]}  #")
    loaded = load_flows(path.parent, config())
    assert loaded.problems == []
    assert loaded.flows["khai-sinh-3-trong-1"].steps[2].on_reject == Compensate(compensate=["thuong_tru"])


def test_a_compensation_reads_only_steps_up_to_its_own(tmp_path: Path) -> None:
    """The undo of a step may read its own answer but not a later step's."""
    path = edited(tmp_path, BIRTH, "SoXacNhan: steps.thuong_tru.SoXacNhan", "SoXacNhan: steps.bhyt.MaSoBHXH")
    problem = only_problem(path)
    assert problem.line == line_of(path, "steps.bhyt.MaSoBHXH") and "does not come before" in problem.message


@pytest.mark.parametrize(("old", "new", "needle", "expected"), [
    ("younger_than_years: 6}", "younger_than: 6}", "younger_than: 6", "unknown condition 'younger_than'"),
    ("{path: dossier.NhanKetQua.HinhThuc, equals: buu_chinh}",
     "{path: dossier.NhanKetQua.HinhThuc, equals: buu_chinh, in: [a]}", "in: [a]", "one test per mapping"),
    ("deadline: 2d", "deadline: 2 days", "deadline: 2 days", "not a duration"),
    ("retry: {attempts: 20,", "retry: {attempts: 0,", "attempts: 0", "greater than or equal to 1"),
    ("LyDo: {value: Hủy", "LyDo: {valu: Hủy", "valu: Hủy", "not a path"),
    ("MaHoSo: dossier.MaHoSo\n      NoiDangKy", "MaHoSo: {from: dossier.MaHoSo, value: x}\n      NoiDangKy",
     "value: x}", "exactly one of from, value or fields"),
    ("NoiDangKy: dossier.NoiDangKy", "NoiDangKy: Tre.NoiDangKy", "Tre.NoiDangKy", "not a path"),
    ("- id: bhyt", "- id: BHYT", "id: BHYT", "a step id is lower case"),
    ("dossier_schema: flows", "dosier_schema: flows", "dosier_schema", "Extra inputs"),
])
def test_a_malformed_definition_is_refused_at_its_line(
        tmp_path: Path, old: str, new: str, needle: str, expected: str) -> None:
    """Conditions outside the vocabulary, bad durations, malformed sources: refused at their line."""
    path = edited(tmp_path, BIRTH, old, new)
    found = [p for p in problems(path) if expected in p.message]
    assert found, [str(p) for p in problems(path)]
    assert found[0].path == str(path) and found[0].line == line_of(path, needle), str(found[0])


def test_a_file_that_is_not_a_flow_is_refused(tmp_path: Path) -> None:
    """Broken YAML names its line; a list instead of a mapping is refused at line 1."""
    folder = folder_with(tmp_path)
    (folder / "a.yaml").write_text("name: x\nsteps: [\n", encoding="utf-8")
    (folder / "b.yaml").write_text("- name: x\n", encoding="utf-8")
    (folder / "c.yaml").write_text("", encoding="utf-8")  # empty: nothing, not a problem
    found = load_flows(folder, Config()).problems
    assert [(Path(p.path).name, p.line) for p in found] == [("a.yaml", 3), ("b.yaml", 1)]
    assert "not valid YAML" in found[0].message


def test_a_catalog_flow_with_no_definition_is_refused_at_the_config_line(tmp_path: Path) -> None:
    """A service marked flow: X when no flow X is defined: the configuration's file and line."""
    data = catalog(**{**STARTERS, f"{G22}/LIENTHONG/CaiChet": "khai-tu-2"})
    config_file = tmp_path / "config.yaml"
    config_file.write_text(yaml.safe_dump(data, allow_unicode=True, sort_keys=False), encoding="utf-8")
    cfg = load_config(config_file)
    found = load_flows(folder_with(tmp_path, BIRTH, DEATH), cfg, config_file=config_file).problems
    assert len(found) == 1 and found[0].path == str(config_file)
    assert found[0].line == line_of(config_file, "flow: khai-tu-2")
    assert "no such flow" in found[0].message and "khai-sinh-3-trong-1, khai-tu" in found[0].message


def test_a_flow_no_service_starts_is_refused(tmp_path: Path) -> None:
    """A defined flow that no catalog service starts is refused at its name."""
    cfg = Config.model_validate(catalog(**{f"{G22}/LIENTHONG/KhaiSinh3Trong1": "khai-sinh-3-trong-1"}))
    folder = folder_with(tmp_path, BIRTH, DEATH)
    problem = only_problem(folder / "khai-tu.yaml", cfg)
    assert problem.path == str(folder / "khai-tu.yaml") and problem.line == line_of(DEATH, "name: khai-tu")
    assert "no catalog service starts it" in problem.message


def test_a_missing_folder_holds_no_flows(tmp_path: Path) -> None:
    """No flows folder: no flows, and the catalog's flow services are what is refused."""
    loaded = load_flows(tmp_path / "none", config())
    assert loaded.flows == {} and len(loaded.problems) == 2
    assert all("no such flow" in p.message for p in loaded.problems)
    assert load_flows(tmp_path / "none", Config()).problems == []


# -- the configuration -----------------------------------------------------------------------------

def test_a_flow_service_has_no_connector_or_route(tmp_path: Path) -> None:
    """A service that starts a flow names no connector, upstream or route: refused at its line."""
    data = catalog()
    data["services"][-1] |= {"connector": "rest", "upstream": "http://127.0.0.1:9"}
    config_file = tmp_path / "config.yaml"
    config_file.write_text(yaml.safe_dump(data, allow_unicode=True, sort_keys=False), encoding="utf-8")
    with pytest.raises(FileError) as info:
        load_config(config_file)
    assert "starts flow khai-tu" in info.value.message
    assert info.value.line == line_of(config_file, "LIENTHONG/KhaiTu")
    data["services"][-1] = {"id": f"{G22}/LIENTHONG/KhaiTu", "flow": "khai-tu", "route": True,
                            "delivery": "async", "dossier": {"message": "dossier"}}
    with pytest.raises(ValueError, match="starts flow khai-tu"):
        Config.model_validate(data)


def test_flows_dir_is_relative_to_the_configuration(tmp_path: Path) -> None:
    """flows_dir defaults to flows/ beside the configuration file."""
    config_file = tmp_path / "config.yaml"
    config_file.write_text(yaml.safe_dump(catalog()), encoding="utf-8")
    cfg = load_config(config_file)
    assert cfg.flows_dir == "flows" and cfg.path(cfg.flows_dir) == tmp_path / "flows"


# -- lienthong check and init ----------------------------------------------------------------------

def _own_config(tmp_path: Path) -> Path:
    (tmp_path / "policies").mkdir()
    folder_with(tmp_path, BIRTH, DEATH)
    config_file = tmp_path / "config.yaml"
    config_file.write_text(yaml.safe_dump({**catalog(), "database": "sqlite:///x.db"}, allow_unicode=True,
                                          sort_keys=False), encoding="utf-8")
    return config_file


def test_check_passes_and_counts_the_flows(tmp_path: Path) -> None:
    """`lienthong check` loads the flows and reports how many."""
    result = CliRunner().invoke(main, ["check", "--config", str(_own_config(tmp_path))])
    assert result.exit_code == 0, result.output
    assert "2 flows: OK" in result.output


def test_check_refuses_a_bad_flow_naming_file_and_line(tmp_path: Path) -> None:
    """`lienthong check` exits non-zero and prints every flow problem as file:line."""
    config_file = _own_config(tmp_path)
    flow = tmp_path / "flows" / "khai-tu.yaml"
    text = flow.read_text(encoding="utf-8")
    flow.write_text(text.replace("steps.khai_tu.SoTrichLucKhaiTu", "steps.mai_tang.SoQuyetDinh", 1),
                    encoding="utf-8")
    result = CliRunner().invoke(main, ["check", "--config", str(config_file)])
    assert result.exit_code != 0
    assert "invalid flow definitions" in result.output
    assert f"{flow}:{line_of(flow, 'steps.mai_tang.SoQuyetDinh')}:" in result.output


def test_init_copies_the_bundled_flows(tmp_path: Path) -> None:
    """`lienthong init` writes the bundled flows beside the configuration, where flows_dir points."""
    from gateway.init import initialise

    done = initialise(tmp_path / "gw")
    cfg = load_config(done.config_path)
    copied = cfg.path(cfg.flows_dir)
    assert sorted(p.name for p in copied.glob("*.yaml")) == ["khai-sinh-3-trong-1.yaml", "khai-tu.yaml"]
    assert (copied / "khai-tu.yaml").read_bytes() == DEATH.read_bytes()


# -- durations ------------------------------------------------------------------------------------

@pytest.mark.parametrize(("text", "seconds"), [("2d", 172_800), ("36h", 129_600), ("1d12h", 129_600),
                                               ("90m", 5_400), ("30s", 30), ("1.5h", 5_400), (45, 45)])
def test_durations_are_seconds(text: object, seconds: float) -> None:
    """Durations are days, hours, minutes and seconds, or plain seconds."""
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "2", "2 days", "d", "0s", "-1h", "2d 3h", True, None, 0])
def test_bad_durations_are_refused(text: object) -> None:
    """Anything else is refused, as is a duration of nothing."""
    with pytest.raises(ValueError):
        parse_duration(text)


# -- dotted paths -----------------------------------------------------------------------------------

def test_resolve_walks_mappings_and_lists() -> None:
    """Paths walk mappings by key and lists by index; what is not there is MISSING, not None."""
    data = {"a": [{"b": 1}, {"b": None}], "0": "key", "s": "text"}
    assert resolve(data, "a.0.b") == 1
    assert resolve(data, "a.1.b") is None
    assert resolve(data, "a.2.b") is MISSING
    assert resolve(data, "a.x") is MISSING
    assert resolve(data, "0") == "key"
    assert resolve(data, "s.0") is MISSING
    assert resolve(data, "a.1.b.c") is MISSING
    assert resolve(data, ("a", "0")) == {"b": 1}


_keys = st.text(st.characters(blacklist_characters="."), min_size=1, max_size=8)
_json = st.recursive(st.none() | st.booleans() | st.integers() | st.text(max_size=5),
                     lambda inner: st.lists(inner, max_size=3) | st.dictionaries(_keys, inner, max_size=3),
                     max_leaves=8)


@given(st.lists(st.one_of(_keys, st.integers(0, 3)), min_size=1, max_size=6), _json,
       st.data())
def test_resolve_finds_what_was_put_at_a_path(steps: list[str | int], value: Any,
                                              data: st.DataObject) -> None:
    """Data built by putting a value at a generated path, among generated siblings, gives it back."""
    node: Any = value
    for step in reversed(steps):
        if isinstance(step, int):
            siblings = data.draw(st.lists(_json, min_size=step, max_size=step))
            node = [*siblings, node, *data.draw(st.lists(_json, max_size=2))]
        else:
            others: dict[str, Any] = data.draw(st.dictionaries(_keys, _json, max_size=3))
            node = {**others, step: node}  # the path's key wins over a sibling of the same name
    path = ".".join(str(s) for s in steps)
    assert resolve(node, path) == value
    assert resolve(node, path + ".\x00missing") is MISSING


def test_paths_name_their_root() -> None:
    """A source path starts with dossier. or steps.<id>. and names a field."""
    ref = parse_ref("steps.khai_sinh.SoDinhDanh")
    assert (ref.root, ref.step, ref.field_path) == ("steps", "khai_sinh", ("SoDinhDanh",))
    assert parse_ref("dossier.Tre.HoTen").field_path == ("Tre", "HoTen")
    for bad in ["Tre.HoTen", "steps.khai_sinh", "dossier", "dossier..HoTen", "dossier. HoTen", 12]:
        with pytest.raises(DefinitionError):
            parse_ref(bad, ("x",))


# -- building requests ------------------------------------------------------------------------------

def _scope(dossier: Any = None, steps: dict[str, Any] | None = None) -> Scope:
    return Scope({"Tre": {"HoTen": "An", "Ds": [{"So": "1"}]}} if dossier is None else dossier,
                 steps or {}, date(2026, 12, 3))


def test_a_missing_required_source_names_its_path_and_field() -> None:
    """A required path that is absent is an error naming the path and the request field."""
    shape = parse_shape({"Nguoi": {"HoTen": "dossier.Tre.HoTen", "So": "steps.khai_sinh.SoDinhDanh"}})
    with pytest.raises(MissingSource) as info:
        build_request(shape, _scope())
    assert info.value.path == "steps.khai_sinh.SoDinhDanh" and info.value.target == "Nguoi.So"
    assert build_request(shape, _scope(steps={"khai_sinh": {"SoDinhDanh": "0"}})) == {
        "Nguoi": {"HoTen": "An", "So": "0"}}


def test_optional_sources_and_whens_leave_fields_out() -> None:
    """An optional source that is absent, or a source whose when fails, leaves its field out;
    a JSON null that is there is sent as null."""
    shape = parse_shape({
        "Cha": {"from": "dossier.Cha", "optional": True},
        "Null": {"from": "dossier.Null", "optional": True},
        "Lst": ["dossier.Tre.Ds.0.So", {"value": "x", "when": {"path": "dossier.Cha", "present": True}}],
        "Obj": {"when": {"path": "dossier.Tre.HoTen", "equals": "An"}, "fields": {"T": "dossier.Tre.HoTen"}},
    })
    dossier = {"Tre": {"HoTen": "An", "Ds": [{"So": "1"}]}, "Null": None}
    assert build_request(shape, _scope(dossier)) == {"Null": None, "Lst": ["1"], "Obj": {"T": "An"}}


def test_literals_are_json_and_never_shared() -> None:
    """Literals become JSON (a YAML date as ISO text); changing a built request changes neither the
    definition nor the dossier."""
    shape = parse_shape({"L": {"value": {"a": [1, date(2026, 1, 2)]}}, "T": "dossier.Tre"})
    dossier = {"Tre": {"HoTen": "An"}}
    first = build_request(shape, _scope(dossier))
    assert first == {"L": {"a": [1, "2026-01-02"]}, "T": {"HoTen": "An"}}
    first["L"]["a"].append(3)
    first["T"]["HoTen"] = "changed"
    assert build_request(shape, _scope(dossier))["L"] == {"a": [1, "2026-01-02"]}
    assert dossier["Tre"]["HoTen"] == "An"


@pytest.mark.parametrize(("raw", "loc"), [
    ({"A": {"from": "dossier.X", "value": 1}}, ("A",)),
    ({"A": {"value": 1, "optional": True}}, ("A", "optional")),
    ({"A": {"from": "dossier.X", "extra": 1}}, ("A", "extra")),
    ({"A": {"value": float("nan")}}, ("A", "value")),
    ({"A": {"value": {1: 2}}}, ("A", "value")),
    ({"A": {"fields": []}}, ("A", "fields")),
    ({"A": [{"B": "dossier.X"}, 3]}, ("A", 1)),
    ({"A": {"when": {"path": "dossier.X"}, "value": 1}}, ("A", "when")),
])
def test_malformed_sources_are_located(raw: dict[str, Any], loc: tuple[Any, ...]) -> None:
    """A malformed source is refused with its place inside input, for the loader's line."""
    with pytest.raises(DefinitionError) as info:
        parse_shape(raw)
    assert info.value.loc == loc


def test_sources_list_what_they_read() -> None:
    """refs() gives every path a source reads, conditions included, each with where it is written."""
    source = parse_source({"A": "dossier.X", "B": [{"when": {"path": "steps.s.F", "present": True},
                                                    "value": 1}]})
    assert [(loc, ref.text) for loc, ref in source.refs()] == [
        (("A",), "dossier.X"), (("B", 0, "when", "path"), "steps.s.F")]


# -- conditions -------------------------------------------------------------------------------------

def _holds(raw: dict[str, Any], dossier: Any, today: date = date(2026, 12, 3)) -> bool:
    return parse_condition(raw).holds(Scope(dossier, {}, today))


def test_equality_tests() -> None:
    """equals, not_equals and in compare JSON values; a missing path equals nothing."""
    d = {"H": "buu_chinh", "N": 1, "B": True}
    assert _holds({"path": "dossier.H", "equals": "buu_chinh"}, d)
    assert not _holds({"path": "dossier.H", "equals": "truc_tiep"}, d)
    assert _holds({"path": "dossier.H", "not_equals": "truc_tiep"}, d)
    assert not _holds({"path": "dossier.X", "equals": None}, d)
    assert _holds({"path": "dossier.X", "not_equals": "a"}, d)
    assert _holds({"path": "dossier.H", "in": ["a", "buu_chinh"]}, d)
    assert not _holds({"path": "dossier.X", "in": ["a"]}, d)
    assert not _holds({"path": "dossier.N", "equals": True}, d)  # JSON's true is not 1
    assert not _holds({"path": "dossier.B", "equals": 1}, d)
    assert _holds({"path": "dossier.B", "equals": True}, d)
    assert _holds({"path": "dossier.D", "equals": date(2026, 1, 2)}, {"D": "2026-01-02"})


def test_presence() -> None:
    """present: a path that leads somewhere other than null."""
    d = {"A": {"B": 0}, "N": None}
    assert _holds({"path": "dossier.A.B", "present": True}, d)
    assert _holds({"path": "dossier.N", "present": False}, d)
    assert _holds({"path": "dossier.Z", "present": False}, d)
    assert not _holds({"path": "dossier.Z", "present": True}, d)


def test_order_tests_on_numbers_and_dates() -> None:
    """lt/le/gt/ge compare numbers, or ISO dates (YAML's own dates too); absent is false."""
    d = {"N": 5, "D": "2026-12-03"}
    assert _holds({"path": "dossier.N", "lt": 6}, d) and not _holds({"path": "dossier.N", "lt": 5}, d)
    assert _holds({"path": "dossier.N", "le": 5}, d) and _holds({"path": "dossier.N", "ge": 5}, d)
    assert not _holds({"path": "dossier.N", "gt": 5.5}, d)
    assert _holds({"path": "dossier.D", "gt": "2026-12-02"}, d)
    assert _holds({"path": "dossier.D", "le": date(2026, 12, 3)}, d)
    assert not _holds({"path": "dossier.D", "lt": date(2026, 12, 3)}, d)
    assert not _holds({"path": "dossier.X", "lt": 6}, d)
    with pytest.raises(EvaluationError, match=r"dossier\.D"):
        _holds({"path": "dossier.D", "lt": 6}, d)
    with pytest.raises(EvaluationError, match="not a date"):
        _holds({"path": "dossier.N", "lt": "2026-01-01"}, d)


def test_combinations() -> None:
    """all, any and not combine tests, nested as deep as written."""
    d = {"H": "buu_chinh", "N": 3}
    a = {"path": "dossier.H", "equals": "buu_chinh"}
    b = {"path": "dossier.N", "gt": 5}
    assert not _holds({"all": [a, b]}, d) and _holds({"any": [a, b]}, d)
    assert _holds({"not": b}, d) and _holds({"all": [a, {"not": {"any": [b]}}]}, d)


@pytest.mark.parametrize(("raw", "loc"), [
    ({"path": "dossier.A"}, ()),
    ({"path": "dossier.A", "equals": 1, "lt": 2}, ()),
    ({"path": "dossier.A", "bigger": 1}, ("bigger",)),
    ({"equals": 1}, ()),
    ({"all": []}, ("all",)),
    ({"all": [{"path": "dossier.A", "present": "yes"}]}, ("all", 0, "present")),
    ({"any": [{"path": "A", "equals": 1}]}, ("any", 0, "path")),
    ({"not": {"path": "dossier.A", "lt": "soon"}}, ("not", "lt")),
    ({"not": {"path": "dossier.A", "present": True}, "path": "dossier.B"}, ()),
    ({"path": "dossier.A", "younger_than_years": 6.5}, ("younger_than_years",)),
    ({"path": "dossier.A", "in": []}, ("in",)),
    ([], ()),
])
def test_malformed_conditions_are_located(raw: Any, loc: tuple[Any, ...]) -> None:
    """Conditions outside the vocabulary are refused with their place, never evaluated as code."""
    with pytest.raises(DefinitionError) as info:
        parse_condition(raw)
    assert info.value.loc == loc


def test_a_condition_is_never_code() -> None:
    """A string that looks like an expression is a value compared as text."""
    condition = parse_condition({"path": "dossier.A", "equals": "__import__('os').system('false')"})
    assert isinstance(condition, Compare) and not condition.holds(Scope({"A": 1}))


# -- ages -------------------------------------------------------------------------------------------

def test_ages_by_the_calendar() -> None:
    """Under 6 until the day before the sixth birthday; born 29 February, 6 on 1 March of a common year."""
    young = {"path": "dossier.S", "younger_than_years": 6}
    old = {"path": "dossier.S", "at_least_years": 6}
    assert _holds(young, {"S": "2020-12-04"}) and not _holds(old, {"S": "2020-12-04"})
    assert not _holds(young, {"S": "2020-12-03"}) and _holds(old, {"S": "2020-12-03"})
    leap = {"S": "2020-02-29"}
    assert _holds(young, leap, date(2026, 2, 28)) and not _holds(young, leap, date(2026, 3, 1))
    assert anniversary(date(2020, 2, 29), 4) == date(2024, 2, 29)
    assert anniversary(date(2020, 2, 29), 6) == date(2026, 3, 1)
    assert not _holds(young, {}) and not _holds(old, {})  # no birth date: neither
    with pytest.raises(EvaluationError, match="birth date"):
        _holds(young, {"S": "03/12/2020"})
    with pytest.raises(EvaluationError):
        _holds(young, {"S": "2020-02-30"})


def _naive_age(birth: date, day: date) -> int:
    return day.year - birth.year - ((day.month, day.day) < (birth.month, birth.day))


@given(st.dates(min_value=date(1900, 1, 1), max_value=date(2100, 12, 31)),
       st.integers(0, 120), st.integers(-400, 80 * 366))
def test_younger_than_agrees_with_a_naive_age(birth: date, years: int, days: int) -> None:
    """younger_than_years agrees with the year/month/day comparison for any birth date and day."""
    day = birth + timedelta(days=days)
    assert younger_than(birth, years, day) == (_naive_age(birth, day) < years)
    scope = Scope({"S": birth.isoformat()}, {}, day)
    assert parse_condition({"path": "dossier.S", "younger_than_years": years}).holds(scope) == (
        _naive_age(birth, day) < years)
    assert parse_condition({"path": "dossier.S", "at_least_years": years}).holds(scope) == (
        _naive_age(birth, day) >= years)


@given(st.integers(1901, 2096).map(lambda y: y - y % 4).filter(lambda y: y % 100 or y % 400 == 0),
       st.integers(0, 100), st.integers(-3, 3))
def test_leap_day_births_agree_with_a_naive_age(year: int, years: int, offset: int) -> None:
    """Around the birthdays of one born on 29 February, too rare for the property above to hit."""
    birth = date(year, 2, 29)
    day = date(year + years, 3, 1) + timedelta(days=offset)
    assert younger_than(birth, years, day) == (_naive_age(birth, day) < years)


# -- the joint dossier's schema ------------------------------------------------------------------

def test_declares_walks_properties_refs_items_and_branches() -> None:
    """Property paths are found through $ref, items (by index), allOf/anyOf and if/then."""
    schema: dict[str, Any] = {
        "properties": {"A": {"$ref": "#/$defs/a"}, "L": {"type": "array", "items": {"$ref": "#/$defs/a"}},
                       "X": {"$ref": "other.json#/a"}, "Loop": {"$ref": "#/$defs/loop"}},
        "allOf": [{"properties": {"B": {}}}],
        "if": {}, "then": {"properties": {"C": {"anyOf": [{"properties": {"D": {}}}]}}},
        "$defs": {"a": {"properties": {"HoTen": {"type": "string"}}}, "loop": {"$ref": "#/$defs/loop"}},
    }
    for path in ["A.HoTen", "L.0.HoTen", "B", "C.D", "A"]:
        assert declares(schema, tuple(path.split("."))), path
    for path in ["A.Ten", "L.HoTen", "X.a", "Loop.x", "Z", "C.E"]:
        assert not declares(schema, tuple(path.split("."))), path


def test_the_bundled_schemas_declare_what_the_flows_read(bundled: Flows) -> None:
    """The joint dossiers' schemas declare the personal ids the flows name as data subjects."""
    import orjson

    birth = orjson.loads((schemas_dir() / "flows" / "khai-sinh-3-trong-1.json").read_bytes())
    assert declares(birth, ("ThuongTru", "ChuHo", "SoDinhDanh"))
    assert not declares(birth, ("ThuongTru", "ChuHo", "NgaySinh"))
    for flow in bundled.flows.values():
        assert flow.subjects and all(p.endswith("SoDinhDanh") for p in flow.subjects)


# -- notifications ---------------------------------------------------------------------------------

def test_a_notification_reading_a_step_answer_must_say_optional(tmp_path: Path) -> None:
    """A notification may go before the step answered (or after it was skipped): a required read of
    its answer is refused at its line, naming the way to write it."""
    path = edited(tmp_path, BIRTH, "SoTheBHYT: {from: steps.bhyt.SoTheBHYT, optional: true}",
                  "SoTheBHYT: steps.bhyt.SoTheBHYT")
    problem = only_problem(path)
    assert problem.line == line_of(path, "SoTheBHYT: steps.bhyt.SoTheBHYT")
    assert "optional: true" in problem.message


def test_a_misspelt_event_field_and_flow_fields_in_a_step_are_refused(tmp_path: Path) -> None:
    path = edited(tmp_path, BIRTH, "NoiDungXuLy: event.description", "NoiDungXuLy: event.descripton")
    problem = only_problem(path)
    assert problem.line == line_of(path, "event.descripton") and "event. reads one of" in problem.message
    path = edited(tmp_path, DEATH, "NoiDangKy: dossier.NoiDangKy", "NoiDangKy: flow.id")
    problem = only_problem(path)
    assert problem.line == line_of(path, "NoiDangKy: flow.id") and "notifications" in problem.message


def test_a_client_service_no_subsystem_offers_is_refused(tmp_path: Path) -> None:
    path = edited(tmp_path, DEATH, "client_service: NhanKetQuaLienThong", "client_service: NhanKetQuaX")
    problem = only_problem(path)
    assert problem.line == line_of(path, "NhanKetQuaX") and "no subsystem" in problem.message


def test_notification_shape_mistakes_are_refused(tmp_path: Path) -> None:
    """A target named twice or not at all, steps: outside at: step, an unknown step, a bad map."""
    path = edited(tmp_path, DEATH, "    client_service: NhanKetQuaLienThong",
                  "    client_service: NhanKetQuaLienThong\n    service: " + f"{G22}/DVCQG/DongBoHoSoMC")
    assert "exactly one of service or client_service" in only_problem(path).message
    path = edited(tmp_path, DEATH, "    at: step\n", "    at: step\n    steps: [khai_tu, nope]\n")
    problem = only_problem(path)
    assert "no step 'nope'" in problem.message and problem.line == line_of(path, "steps: [khai_tu, nope]")
    path = edited(tmp_path, DEATH, "map: {done: \"4\", rejected: \"8\", failed: \"8\"}", "map: []")
    assert "map: is a mapping" in only_problem(path).message


def test_a_map_writes_the_code_of_the_value_it_reads() -> None:
    from gateway.flows.mapping import build_request, parse_shape

    shape = parse_shape({"TrangThai": {"from": "event.state", "map": {"done": "4", "rejected": "8"}},
                         "Co": {"from": "flow.overdue", "map": {"true": 1, "false": 0}},
                         "Khac": {"from": "event.state", "map": {"x": 1}, "optional": True}})
    scope = Scope({}, {}, date(2026, 12, 3), flow={"overdue": False}, event={"state": "done"})
    assert build_request(shape, scope) == {"TrangThai": "4", "Co": 0}
