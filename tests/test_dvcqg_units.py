"""The national portal's formats and rules at unit level: error codes, dates, dossier codes, the
connector's request checks (every JSON path it names) and the portal simulator's own rules, through
its ASGI app in-process."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st

from connectors.dvcqg import codes, data
from connectors.dvcqg.dates import (
    VIETNAM,
    DateError,
    format_portal,
    is_portal_date,
    parse_any,
    parse_portal,
    to_iso,
    to_portal,
)
from connectors.dvcqg.messages import DOSSIER, PROGRESS, TRA_CUU, portal_body
from connectors.dvcqg.simulator import Portal, create_app
from gateway.errors import InvalidBody
from gateway.routing import agency_part, check_agency

DOSSIER_CODE = re.compile(r"[A-Z][0-9]{2}(\.[0-9]{1,3})*-[0-9]{8}-[0-9]{7}")
AGENCY = "000.00.00.H60"


# -- error codes -----------------------------------------------------------------------------------


@pytest.mark.parametrize(("raw", "normal"), [
    (0, "00"), ("0", "00"), (" 5 ", "05"), (10, "10"), ("99", "99"), ("ERR", "ERR"), ("", ""),
    (True, None), (False, None), (None, None), (1.0, None), (["00"], None),
])
def test_normalise_writes_codes_as_two_digits(raw: object, normal: str | None) -> None:
    """Portals write 0 or "0" for "00"; a bool, a float or a list is no code at all."""
    assert codes.normalise(raw) == normal


def test_every_code_has_a_message_and_only_transient_ones_are_retryable() -> None:
    every = {codes.OK, codes.INVALID_REQUEST, codes.INVALID_DATA, codes.UNKNOWN_SERVICE, codes.NOT_FOUND,
             codes.ALREADY_EXISTS, codes.SESSION_EXPIRED, codes.LOGIN_FAILED, codes.SYSTEM_ERROR}
    assert set(codes.MESSAGES) == every
    assert frozenset({"10", "11", "99"}) == codes.RETRYABLE
    assert codes.MESSAGES["00"] == "Thành công"


# -- dates -----------------------------------------------------------------------------------------


def test_format_portal_refuses_instants_beyond_year_one() -> None:
    """An aware datetime that converts outside datetime's years is a DateError, not an OverflowError."""
    early = datetime(1, 1, 1, 0, 0, tzinfo=timezone(timedelta(hours=12)))
    with pytest.raises(DateError, match="outside the years the portal can write"):
        format_portal(early)
    late = datetime(9999, 12, 31, 23, 0, tzinfo=timezone(timedelta(hours=-12)))
    with pytest.raises(DateError):
        to_portal(late)


def test_format_portal_pads_early_years_and_keeps_naive_wall_time() -> None:
    assert format_portal(datetime(987, 1, 2, 3, 4, 5)) == "09870102030405"
    assert format_portal(datetime(2026, 6, 9, 1, 0, tzinfo=UTC)) == "20260609080000"


@pytest.mark.parametrize("value", [20260609083000, None, b"20260609083000", ["x"]])
def test_parse_any_refuses_what_is_not_text(value: Any) -> None:
    with pytest.raises(DateError, match="is not a date: expected a string"):
        parse_any(value)


@pytest.mark.parametrize("value", [12345678901234, None, "2026060908300", "2026-06-09"])
def test_is_portal_date_is_false_for_anything_else(value: object) -> None:
    assert is_portal_date(value) is False


def test_impossible_portal_dates_say_so() -> None:
    with pytest.raises(DateError, match="is not a real date and time"):
        parse_portal("20260230120000")
    with pytest.raises(DateError, match="is not a date in the form yyyyMMddHHmmss"):
        parse_portal("2026-06-09")


def test_to_iso_writes_the_vietnamese_offset() -> None:
    assert to_iso("20261121090000") == "2026-11-21T09:00:00+07:00"
    with pytest.raises(DateError):
        to_iso("2026-11-21T09:00:00")


def test_iso_with_spaces_around_is_read() -> None:
    assert to_portal("  2026-06-09T01:30:00Z ") == "20260609083000"


@given(st.datetimes(min_value=datetime(1976, 1, 1), max_value=datetime(9998, 12, 31),
                    timezones=st.sampled_from([UTC, VIETNAM, timezone(timedelta(hours=-5, minutes=-30))])))
def test_iso_text_and_portal_text_round_trip(moment: datetime) -> None:
    """Any instant written as ISO 8601 comes back from the portal's form as the same second."""
    whole = moment.replace(microsecond=0)
    portal = to_portal(whole.isoformat())
    assert is_portal_date(portal)
    assert parse_portal(portal) == whole
    assert to_portal(to_iso(portal)) == portal


# -- dossier codes ---------------------------------------------------------------------------------


@pytest.mark.parametrize(("agency", "short"), [
    ("000.00.20.G09", "G09.20"), ("000.00.00.H22", "H22"), ("000.20.31.H22", "H22.31.20"),
    ("001.02.03.H60", "H60.03.02.001"),
])
def test_short_code_reverses_and_drops_zero_groups(agency: str, short: str) -> None:
    assert data.short_code(agency) == short


def test_dossier_code_joins_agency_day_and_sequence() -> None:
    day = datetime(2026, 6, 9, 23, 59, tzinfo=VIETNAM)
    assert data.dossier_code("000.00.20.G09", day, 92637) == "G09.20-20260609-0092637"


agency_codes = st.builds(
    lambda a, b, c, letter, n: f"{a:03d}.{b:02d}.{c:02d}.{letter}{n:02d}",
    st.integers(0, 999), st.integers(0, 99), st.integers(0, 99), st.sampled_from("GH"), st.integers(1, 99))


@given(agency=agency_codes, day=st.dates(min_value=datetime(2000, 1, 1).date()),
       sequence=st.integers(0, 10**7 - 1))
def test_any_generated_dossier_code_parses_back(agency: str, day: Any, sequence: int) -> None:
    """Every code the generator makes has the portal's shape, and routing reads its agency back."""
    moment = datetime(day.year, day.month, day.day, tzinfo=VIETNAM)
    code = data.dossier_code(agency, moment, sequence)
    assert DOSSIER_CODE.fullmatch(code), code
    part, date_text, number = code.split("-")
    assert agency_part(code) == part == check_agency(part) == data.short_code(agency)
    assert part.split(".")[0] == agency.rsplit(".", 1)[1]
    assert parse_portal(date_text + "000000").date() == day
    assert int(number) == sequence


@given(seed=st.integers(0, 10**6), index=st.integers(0, 500), status=st.integers(1, 10))
def test_sample_dossiers_pass_the_connectors_checks(seed: int, index: int, status: int) -> None:
    """A dossier of data.dossier, and its progress, are what portal_body sends unchanged."""
    record = data.dossier(seed, index, agency="000.00.23.H60", status=status)
    assert DOSSIER_CODE.fullmatch(record["MaHoSo"])
    assert record["MaHoSo"].split("-")[1] == record["NgayTiepNhan"][:8]
    assert parse_portal(record["NgayHenTra"]) > parse_portal(record["NgayTiepNhan"])
    body = portal_body(DOSSIER, record, madonvi=AGENCY)
    assert body["data"] == [record]
    step = data.progress(record, index % 7, seed=seed)
    assert portal_body(PROGRESS, step, madonvi=AGENCY)["data"] == [step]


def test_progress_steps_beyond_the_last_repeat_the_last_status() -> None:
    record = data.dossier(1, 1)
    assert [data.progress(record, s)["TrangThai"] for s in range(7)] == ["2", "4", "4", "9", "10", "10", "10"]


# -- what the connector sends (portal_body) --------------------------------------------------------


def problems_of(operation: str, payload: Any, **kwargs: Any) -> list[dict[str, str]]:
    with pytest.raises(InvalidBody) as caught:
        portal_body(operation, payload, **{"madonvi": AGENCY, **kwargs})
    assert caught.value.status == 422
    assert caught.value.extra is not None
    errors: list[dict[str, str]] = caught.value.extra["errors"]
    return errors


def test_envelope_data_that_is_not_a_list() -> None:
    assert problems_of(DOSSIER, {"data": {"MaHoSo": "x"}}) == [
        {"path": "$.data", "message": "must be a list of records"},
        {"path": "$.data", "message": "no dossier to send"}]


@pytest.mark.parametrize(("payload", "path", "message"), [
    ([], "$", "no progress to send"),
    ({"data": []}, "$.data", "no progress to send"),
    ("text", "$", "expected a progress object or a list of them"),
    (None, "$", "expected a progress object or a list of them"),
    ([{"MaHoSo": "A"}, 7], "$[1]", "must be a progress object"),
])
def test_progress_shapes_that_are_refused(payload: Any, path: str, message: str) -> None:
    assert problems_of(PROGRESS, payload)[0] == {"path": path, "message": message}


def test_records_must_agree_on_is_updating_and_madonvi() -> None:
    payload = [{"MaHoSo": "A", "isUpdating": True, "madonvi": "X"},
               {"MaHoSo": "B", "isUpdating": False, "madonvi": "X"},
               {"MaHoSo": "C", "madonvi": "Y"}]
    assert problems_of(DOSSIER, payload) == [
        {"path": "$[1].isUpdating",
         "message": "differs from the other records' isUpdating: one request carries one value"},
        {"path": "$[2].madonvi",
         "message": "differs from the other records' madonvi: one request carries one value"}]


def test_flags_inside_records_move_to_the_envelope() -> None:
    body = portal_body(DOSSIER, [{"MaHoSo": "A", "isUpdating": "yes", "madonvi": "000.00.10.H60"},
                                 {"MaHoSo": "B"}])
    assert body == {"madonvi": "000.00.10.H60", "service": DOSSIER, "isUpdating": "True",
                    "data": [{"MaHoSo": "A"}, {"MaHoSo": "B"}]}


def test_agency_missing_from_a_list_is_named_at_its_first_record() -> None:
    assert problems_of(DOSSIER, [{"MaHoSo": "A"}], madonvi=None) == [
        {"path": "$[0].madonvi",
         "message": "no agency code: send madonvi, or configure options.madonvi for this service"}]
    assert problems_of(DOSSIER, {"MaHoSo": "A", "madonvi": "  "}, madonvi=None)[0]["path"] == "$.madonvi"


@pytest.mark.parametrize(("value", "sent"), [(True, "True"), (False, "False"), ("TRUE", "True"), (1, "True"),
                                             (0, "False"), ("no", "False"), ("", "False"), (" yes ", "True")])
def test_is_updating_is_written_as_provincial_systems_write_it(value: Any, sent: str) -> None:
    body = portal_body(DOSSIER, {"data": [{"MaHoSo": "A"}], "isUpdating": value}, madonvi=AGENCY)
    assert body["isUpdating"] == sent


@pytest.mark.parametrize("value", ["maybe", 2, None, 1.0, ["true"]])
def test_is_updating_that_is_not_a_truth_value(value: Any) -> None:
    assert problems_of(DOSSIER, {"data": [{"MaHoSo": "A"}], "isUpdating": value}) == [
        {"path": "$.isUpdating", "message": "must be true or false"}]


@pytest.mark.parametrize(("status", "sent"), [(3, "3"), (" 10 ", "10"), ("04", "4")])
def test_status_codes_are_sent_as_plain_numbers(status: Any, sent: str) -> None:
    assert portal_body(DOSSIER, {"MaHoSo": "A", "TrangThaiHoSo": status},
                       madonvi=AGENCY)["data"][0]["TrangThaiHoSo"] == sent


@pytest.mark.parametrize("status", [0, 11, True, "2a", -1, 2.0])
def test_status_outside_one_to_ten_is_named(status: Any) -> None:
    (problem,) = problems_of(PROGRESS, {"MaHoSo": "A", "TrangThai": status})
    assert problem == {"path": "$.TrangThai", "message": f"{status!r} is not a dossier status (1 to 10)"}


def test_dossier_lists_must_be_lists_and_supplement_dates_are_converted() -> None:
    record: dict[str, Any] = {"MaHoSo": "A", "TaiLieuNop": "file.pdf", "DanhSachLePhi": None,
              "DanhSachHoSoBoSung": [{"NgayBoSung": "2026-06-09T08:00:00+07:00"}, "stray",
                                     {"NgayHenTraMoi": "tomorrow"}]}
    assert problems_of(DOSSIER, record) == [
        {"path": "$.TaiLieuNop", "message": "must be a list"},
        {"path": "$.DanhSachHoSoBoSung[2].NgayHenTraMoi",
         "message": "'tomorrow' is neither yyyyMMddHHmmss nor an ISO 8601 date"}]
    fine = {**record, "TaiLieuNop": [], "DanhSachHoSoBoSung": record["DanhSachHoSoBoSung"][:2]}
    body = portal_body(DOSSIER, fine, madonvi=AGENCY)
    assert body["data"][0]["DanhSachHoSoBoSung"] == [{"NgayBoSung": "20260609080000"}, "stray"]
    assert fine["DanhSachHoSoBoSung"][0] == {"NgayBoSung": "2026-06-09T08:00:00+07:00"}  # not changed


def test_many_problems_are_summarised_in_the_detail() -> None:
    with pytest.raises(InvalidBody) as caught:
        portal_body(DOSSIER, [{}, {"MaHoSo": " "}, {"MaHoSo": "C", "NgayTra": "x"}], madonvi=AGENCY)
    assert str(caught.value.detail) == ("DongBoHoSoMC: $[0].MaHoSo: required: the dossier code, a "
                                        "non-empty string (and 2 more)")


def test_lookup_refuses_a_body_that_is_not_an_object_and_no_code() -> None:
    assert problems_of(TRA_CUU, ["A"]) == [
        {"path": "$", "message": 'expected {"MaHoSo": "..."}'},
        {"path": "$.MaHoSo", "message": "required: the code of the dossier to look up"}]
    assert portal_body(TRA_CUU, {"mahoso": " H60-1 "}, madonvi=AGENCY)["mahoso"] == "H60-1"
    assert portal_body(TRA_CUU, None, madonvi=AGENCY, query="mahoso=H60-2")["mahoso"] == "H60-2"


def test_other_services_drop_session_and_service_and_refuse_non_objects() -> None:
    body = portal_body("LayThuTuc", {"maTTHC": "1.001193", "session": "s", "service": "X",
                                     "madonvi": "000.00.10.H60"}, madonvi=AGENCY)
    assert body == {"madonvi": "000.00.10.H60", "service": "LayThuTuc", "maTTHC": "1.001193"}
    assert portal_body("LayDanhMucCoQuan", None, madonvi=AGENCY) == {"madonvi": AGENCY,
                                                                       "service": "LayDanhMucCoQuan"}
    assert problems_of("LayThuTuc", [1]) == [{"path": "$", "message": "LayThuTuc takes a JSON object"}]


# -- the portal simulator's rules (Portal, no HTTP) ------------------------------------------------


def logged_in(portal: Portal) -> str:
    answer = portal.login({"username": "lgsp", "password": "secret"})
    assert (answer["error_code"], answer["expires_in"]) == ("00", 1800)
    return str(answer["session"])


def ask(portal: Portal, session: str, service: str, **fields: Any) -> dict[str, Any]:
    return portal.handle({"session": session, "madonvi": AGENCY, "service": service, **fields})


@pytest.mark.parametrize("request_", [None, [], "x", {"username": "", "password": "p"},
                                      {"username": "u"}, {"username": "u", "password": 1}])
def test_login_needs_a_user_name_and_password(request_: Any) -> None:
    answer = Portal().login(request_)
    expected = codes.INVALID_REQUEST if not isinstance(request_, dict) else codes.LOGIN_FAILED
    assert answer["error_code"] == expected
    assert "session" not in answer


def test_requests_need_an_object_a_live_session_and_an_agency() -> None:
    portal = Portal()
    session = logged_in(portal)
    assert portal.handle([1])["error_code"] == "01"
    assert portal.handle({"madonvi": AGENCY, "service": TRA_CUU})["error_code"] == "10"
    assert portal.handle({"session": session, "service": TRA_CUU}) == {
        "error_code": "01", "message": "Thiếu mã đơn vị (madonvi)"}
    assert portal.handle({"session": session, "madonvi": AGENCY, "service": 3})["error_code"] == "03"


def test_an_expired_session_is_forgotten() -> None:
    portal = Portal()
    session = logged_in(portal)
    portal.sessions[session] = 0.0  # its expiry long past on the monotonic clock
    assert ask(portal, session, TRA_CUU, mahoso="A")["error_code"] == "10"
    assert session not in portal.sessions


@pytest.mark.parametrize(("records", "message"), [
    (None, "Trường data phải là danh sách khác rỗng"),
    ([], "Trường data phải là danh sách khác rỗng"),
    (["x"], "Phần tử thứ 1 của data không phải đối tượng"),
    ([{"MaHoSo": "A"}, {"MaHoSo": ""}], "Thiếu mã hồ sơ (MaHoSo) ở phần tử thứ 2"),
    ([{"MaHoSo": "A", "TrangThaiHoSo": "11"}],
     "TrangThaiHoSo '11' không hợp lệ (hồ sơ A): chỉ nhận giá trị từ 1 đến 10"),
    ([{"MaHoSo": "A", "NgayHenTra": "2026-06-09"}],
     "NgayHenTra '2026-06-09' không đúng định dạng yyyyMMddHHmmss (hồ sơ A)"),
])
def test_bad_dossiers_are_refused_all_or_nothing(records: Any, message: str) -> None:
    portal = Portal()
    session = logged_in(portal)
    answer = ask(portal, session, DOSSIER, isUpdating="False", data=records)
    assert answer == {"error_code": "02", "message": message}
    assert portal.dossiers == {}


def test_updates_count_changes_and_repeats_count_copies() -> None:
    portal = Portal()
    session = logged_in(portal)
    record = {"MaHoSo": "H60-20260609-0000001", "TrangThaiHoSo": "2"}
    assert ask(portal, session, DOSSIER, data=[record])["result"] == [
        {"MaHoSo": record["MaHoSo"], "TrangThaiHoSo": "2"}]
    assert ask(portal, session, DOSSIER, isUpdating="1", data=[record])["error_code"] == "00"
    changed = {**record, "TrangThaiHoSo": "4"}
    assert ask(portal, session, DOSSIER, isUpdating="True", data=[changed])["error_code"] == "00"
    assert ask(portal, session, DOSSIER, isUpdating="False", data=[record])["error_code"] == "05"
    held = portal.dossiers[record["MaHoSo"]]
    assert (held["SoLanCapNhat"], held["SoLanLap"], held["HoSo"]) == (1, 1, changed)


def test_progress_without_status_keeps_the_dossiers_status_and_repeats_are_not_added() -> None:
    portal = Portal()
    session = logged_in(portal)
    ask(portal, session, DOSSIER, data=[{"MaHoSo": "A", "TrangThaiHoSo": "2"}])
    step = {"MaHoSo": "A", "NoiDungXuLy": "Thẩm định", "ThoiDiemXuLy": "20260609100000"}
    first = ask(portal, session, PROGRESS, data=[step])
    again = ask(portal, session, PROGRESS, data=[step, {**step, "TrangThai": 9}])
    assert first["result"] == [{"MaHoSo": "A", "SoBuocXuLy": 1}]
    assert again["result"] == [{"MaHoSo": "A", "SoBuocXuLy": 2}, {"MaHoSo": "A", "SoBuocXuLy": 2}]
    held = portal.dossiers["A"]
    assert (held["SoLanLap"], held["HoSo"]["TrangThaiHoSo"]) == (1, "9")
    bad = ask(portal, session, PROGRESS, data=[{"MaHoSo": "A", "ThoiDiemXuLy": "hôm nay"}])
    assert bad["error_code"] == "02"


def test_lookup_and_catalogue_services() -> None:
    portal = Portal()
    session = logged_in(portal)
    ask(portal, session, DOSSIER, data=[{"MaHoSo": "A"}])
    found = ask(portal, session, TRA_CUU, MaHoSo="A")["result"]
    assert found == [{"MaHoSo": "A", "MaDonVi": AGENCY, "QuaTrinhXuLy": []}]
    assert ask(portal, session, TRA_CUU, mahoso=["A"]) == {"error_code": "01",
                                                            "message": "Thiếu mã hồ sơ (mahoso)"}
    procedure = ask(portal, session, "LayThuTuc", maTTHC="1.001193.000.00.00.H22")["result"]
    assert procedure == [{"MATTHC": "1.001193.000.00.00.H22", "TENTTHC": "Đăng ký khai sinh",
                          "THOIHANGIAIQUYET": "1 ngày",
                          "LINHVUCTHUCHIEN": [{"MALINHVUC": "HOTICH", "TENLINHVUC": "Hộ tịch"}]}]
    assert ask(portal, session, "LayThuTuc", MaTTHC="none")["result"] == []
    assert len(ask(portal, session, "LayDanhSachTTHC")["result"]) == len(data.PROCEDURES)
    agencies = ask(portal, session, "LayDanhMucCoQuan")["result"]
    assert {"MADONVI": "000.00.00.G22", "TENDONVI": "Văn phòng Chính phủ"} in agencies
    assert len(agencies) == len(data.AGENCIES)


# -- the portal simulator over HTTP ----------------------------------------------------------------


@pytest.fixture
async def portal_http() -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=create_app())
    async with httpx.AsyncClient(transport=transport, base_url="http://portal") as c:
        yield c


async def session_of(c: httpx.AsyncClient) -> str:
    r = await c.post("/login", json={"username": "lgsp", "password": "secret"})
    return str(r.json()["session"])


async def test_api_body_that_is_not_json_is_01_and_recorded(portal_http: httpx.AsyncClient) -> None:
    r = await portal_http.post("/api", content=b"\xff{", headers={"dstcode": "H60"})
    assert (r.status_code, r.json()) == (200, {"error_code": "01",
                                               "message": "Dữ liệu yêu cầu không đúng định dạng JSON"})
    login = await portal_http.post("/login", content=b"not json")
    assert login.json()["error_code"] == "01"
    items = (await portal_http.get("/_sim/received")).json()["items"]
    assert [(i["kind"], i.get("dstcode"), i.get("username")) for i in items] == [
        ("api", "H60", None), ("login", None, None)]


@pytest.mark.parametrize("session", [["s"], {"s": 1}])
async def test_session_that_is_not_text_is_10_not_500(portal_http: httpx.AsyncClient, session: Any) -> None:
    r = await portal_http.post("/api", json={"session": session, "madonvi": AGENCY, "service": TRA_CUU})
    assert (r.status_code, r.json()["error_code"]) == (200, "10")


async def test_portal_switches(portal_http: httpx.AsyncClient) -> None:
    session = await session_of(portal_http)
    r = await portal_http.post("/_sim/mode", json={"session_ttl": 60, "refuse_login": True})
    assert r.json() == {"delay_ms": 0, "fail": None, "times": None, "session_ttl": 60.0,
                        "refuse_login": True, "sessions": 1}
    assert (await portal_http.post("/login", json={"username": "a", "password": "b"})).json()[
        "error_code"] == "11"
    r = await portal_http.post("/_sim/mode", json={"expire_sessions": False, "refuse_login": False})
    assert r.json()["sessions"] == 1
    ok = await portal_http.post("/api", json={"session": session, "madonvi": AGENCY, "service": TRA_CUU,
                                              "mahoso": "X"})
    assert ok.json() == {"error_code": "00", "message": "Không tìm thấy hồ sơ X", "result": []}
    assert (await portal_http.post("/_sim/mode", json={"expire_sessions": True})).json()["sessions"] == 0


@pytest.mark.parametrize("switch", [{"session_ttl": 0}, {"session_ttl": -5}, {"session_ttl": True},
                                    {"session_ttl": "60"}, {"expire_sessions": 1}, {"refuse_login": "yes"},
                                    {"colour": "red"}])
async def test_invalid_portal_switches_are_400(portal_http: httpx.AsyncClient,
                                               switch: dict[str, Any]) -> None:
    r = await portal_http.post("/_sim/mode", json=switch)
    assert r.status_code == 400
    assert r.json()["message"].startswith(f"unknown or invalid switch {next(iter(switch))!r}")
    state = (await portal_http.get("/_sim/mode")).json()
    assert (state["session_ttl"], state["refuse_login"]) == (1800.0, False)


async def test_system_error_failure_is_99_with_http_200(portal_http: httpx.AsyncClient) -> None:
    await portal_http.post("/_sim/mode", json={"fail": "error_code", "times": 1})
    r = await portal_http.post("/login", json={"username": "a", "password": "b"})
    assert (r.status_code, r.json()) == (200, {"error_code": "99", "message": codes.MESSAGES["99"]})
    assert (await portal_http.post("/login", json={"username": "a", "password": "b"})).json()[
        "error_code"] == "00"


async def test_reset_forgets_dossiers_sessions_and_switches(portal_http: httpx.AsyncClient) -> None:
    session = await session_of(portal_http)
    await portal_http.post("/api", json={"session": session, "madonvi": AGENCY, "service": DOSSIER,
                                         "data": [{"MaHoSo": "A"}]})
    await portal_http.post("/_sim/mode", json={"session_ttl": 5, "fail": "garbage"})
    held = (await portal_http.get("/_sim/dossiers")).json()
    assert (held["total"], held["items"][0]["madonvi"], held["items"][0]["SoLanLap"]) == (1, AGENCY, 0)
    assert (await portal_http.post("/_sim/reset")).json() == {"ok": True}
    assert (await portal_http.get("/_sim/dossiers")).json() == {"total": 0, "items": []}
    state = (await portal_http.get("/_sim/mode")).json()
    assert state == {"delay_ms": 0, "fail": None, "times": None, "session_ttl": 1800.0,
                     "refuse_login": False, "sessions": 0}
