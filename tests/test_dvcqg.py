"""The national portal connector: dates, message building, session handling, and against its simulator."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import httpx
import pytest
import uvicorn
from hypothesis import given
from hypothesis import strategies as st

from connectors.dvcqg import data, simulator
from connectors.dvcqg.connector import PortalConnector, create
from connectors.dvcqg.dates import (
    PORTAL_FORMAT,
    VIETNAM,
    DateError,
    format_portal,
    is_portal_date,
    parse_portal,
    to_iso,
    to_portal,
)
from connectors.dvcqg.messages import portal_body
from connectors.dvcqg.session import PortalSession
from gateway.config import Service
from gateway.connector import Call, ConnectorContext
from gateway.errors import InvalidBody, UpstreamError, UpstreamTimeout, UpstreamUnavailable
from gateway.resources import schemas_dir
from gateway.upstream import create_client

SERVICE_ID = "VN/GOV/000.00.00.G22/DVCQG/DongBoHoSoMC"
AGENCY = "000.20.31.H22"
OPTIONS = {"username": "motcua-hagiang", "password": "mat-khau-thu", "madonvi": AGENCY, "dstcode": "DVCQG"}


# --- dates -------------------------------------------------------------------------------------

def test_utc_instant_becomes_vietnamese_wall_time() -> None:
    """An ISO instant in UTC is written as the wall time in Hà Nội, seven hours later."""
    assert to_portal("2026-06-09T01:30:00Z") == "20260609083000"


def test_conversion_crosses_midnight() -> None:
    """20:00 UTC is 03:00 the next day in Vietnam."""
    assert to_portal("2026-06-09T20:00:00+00:00") == "20260610030000"


def test_other_offsets_are_converted() -> None:
    """An instant with any offset lands on the same Vietnamese wall time."""
    assert to_portal("2026-06-09T10:30:00+09:00") == "20260609083000"


def test_naive_iso_is_taken_as_vietnamese_time() -> None:
    """A date-time without offset, or a date alone, is already Vietnamese time."""
    assert to_portal("2026-06-09T08:30:00") == "20260609083000"
    assert to_portal("2026-06-09") == "20260609000000"


def test_portal_date_is_kept() -> None:
    """A valid yyyyMMddHHmmss passes unchanged."""
    assert to_portal("20260609083000") == "20260609083000"


def test_datetime_objects_are_accepted() -> None:
    """Python callers may pass aware datetimes."""
    assert to_portal(datetime(2026, 6, 9, 1, 30, tzinfo=UTC)) == "20260609083000"


def test_fractions_of_a_second_are_dropped() -> None:
    """The portal counts seconds; fractions are cut, not rounded."""
    assert to_portal("2026-06-09T08:30:59.999+07:00") == "20260609083059"


@pytest.mark.parametrize("text", ["20260231083000", "20260609246000", "2026060908300", "09/06/2026",
                                  "hôm qua", "", "2026-13-01"])
def test_invalid_dates_are_refused(text: str) -> None:
    """Impossible dates, short strings and foreign formats raise DateError."""
    with pytest.raises(DateError):
        to_portal(text)


def test_parse_portal_is_strict_and_aware() -> None:
    """parse_portal takes only 14 digits and answers in Asia/Ho_Chi_Minh."""
    moment = parse_portal("20260609083000")
    assert moment.utcoffset() == timedelta(hours=7)
    assert moment.astimezone(UTC) == datetime(2026, 6, 9, 1, 30, tzinfo=UTC)
    assert not is_portal_date("2026-06-09T08:30:00")
    assert to_iso("20260609083000") == "2026-06-09T08:30:00+07:00"


AFTER_1975 = st.datetimes(min_value=datetime(1976, 1, 2), max_value=datetime(9998, 12, 30),
                          timezones=st.timezones())


@given(AFTER_1975)
def test_format_then_parse_keeps_the_instant(moment: datetime) -> None:
    """Any aware instant since 1976 survives format_portal/parse_portal, to the second."""
    # Timestamps, not ==: Python never finds a wall time inside another zone's DST fold or gap
    # equal to a time in a different zone (PEP 495), though the instant is the same.
    assert parse_portal(format_portal(moment)).timestamp() == moment.replace(microsecond=0).timestamp()


@given(st.datetimes(min_value=datetime(1976, 1, 1), max_value=datetime(9999, 12, 31)))
def test_parse_then_format_keeps_the_text(wall: datetime) -> None:
    """Any valid portal date string survives parse_portal/format_portal unchanged."""
    text = wall.strftime("%Y%m%d%H%M%S")
    assert format_portal(parse_portal(text)) == text


@given(st.from_regex(r"[0-9]{14}", fullmatch=True)
       | st.datetimes(min_value=datetime(1000, 1, 1)).map(lambda d: d.strftime(PORTAL_FORMAT)))
def test_portal_dates_read_as_strptime_reads_them(text: str) -> None:
    """parse_portal reads the fields by place: any 14 digits give what strptime gives, or are
    refused where strptime refuses them; to_portal keeps a real one as it is."""
    try:
        expected: datetime | None = datetime.strptime(text, PORTAL_FORMAT).replace(tzinfo=VIETNAM)
    except ValueError:
        expected = None
    if expected is None:
        with pytest.raises(DateError, match="not a real date and time"):
            parse_portal(text)
        with pytest.raises(DateError):
            to_portal(text)
    else:
        assert parse_portal(text) == expected and parse_portal(text).tzinfo is VIETNAM
        assert to_portal(text) == text


@given(AFTER_1975)
def test_iso_and_portal_agree(moment: datetime) -> None:
    """An ISO 8601 string and its datetime give the same portal date."""
    assert to_portal(moment.isoformat()) == format_portal(moment)


# --- messages (no sockets) ---------------------------------------------------------------------

def test_dossier_is_wrapped_in_a_data_list() -> None:
    """A single dossier object goes to the portal as {madonvi, service, isUpdating, data: [dossier]}."""
    dossier = data.dossier(7, 0)
    body = portal_body("DongBoHoSoMC", {**dossier, "isUpdating": True}, madonvi=AGENCY)
    assert body == {"madonvi": AGENCY, "service": "DongBoHoSoMC", "isUpdating": "True", "data": [dossier]}


def test_iso_dates_and_numeric_status_are_normalised() -> None:
    """ISO dates become yyyyMMddHHmmss and a numeric status a string, as the portal expects."""
    dossier = {"MaHoSo": "H22.31.20-20260609-0000001", "NgayTiepNhan": "2026-06-09T01:30:00Z",
               "TrangThaiHoSo": 4, "DanhSachHoSoBoSung": [{"NgayBoSung": "2026-06-10T09:00:00+07:00"}]}
    record = portal_body("DongBoHoSoMC", dossier, madonvi=AGENCY)["data"][0]
    assert record["NgayTiepNhan"] == "20260609083000"
    assert record["TrangThaiHoSo"] == "4"
    assert record["DanhSachHoSoBoSung"][0]["NgayBoSung"] == "20260610090000"
    assert dossier["TrangThaiHoSo"] == 4  # the client's payload is not modified


def test_every_problem_is_reported_with_its_path() -> None:
    """A bad dossier raises InvalidBody 422 listing each field at fault."""
    with pytest.raises(InvalidBody) as caught:
        portal_body("DongBoHoSoMC", {"TrangThaiHoSo": "11", "NgayHenTra": "31/12/2026",
                                     "TaiLieuNop": "tờ khai"}, madonvi=AGENCY)
    assert caught.value.status == 422
    paths = {error["path"] for error in caught.value.extra["errors"]}
    assert paths == {"$.MaHoSo", "$.TrangThaiHoSo", "$.NgayHenTra", "$.TaiLieuNop"}


def test_list_paths_name_the_record() -> None:
    """In a list, a problem's path names the record's index."""
    with pytest.raises(InvalidBody) as caught:
        portal_body("CapNhatTienDoHoSoMC", [{"MaHoSo": "A"}, {"TrangThai": 0}], madonvi=AGENCY)
    paths = {error["path"] for error in caught.value.extra["errors"]}
    assert paths == {"$[1].MaHoSo", "$[1].TrangThai"}


def test_envelope_shape_is_accepted() -> None:
    """The portal's own envelope {data, isUpdating, madonvi} is accepted as is."""
    dossier = data.dossier(7, 1)
    body = portal_body("DongBoHoSoMC", {"isUpdating": "false", "madonvi": "000.00.10.H41",
                                        "data": [dossier]}, madonvi=AGENCY)
    assert body["madonvi"] == "000.00.10.H41"
    assert body["isUpdating"] == "False"
    assert body["data"] == [dossier]


def test_agency_is_required_from_payload_or_options() -> None:
    """Without options.madonvi the client must send madonvi."""
    with pytest.raises(InvalidBody) as caught:
        portal_body("TraCuuHoSo", {"MaHoSo": "A"}, madonvi=None)
    assert caught.value.extra["errors"][0]["path"] == "$.madonvi"


def test_lookup_takes_the_code_from_path_or_query() -> None:
    """TraCuuHoSo finds MaHoSo in the payload, the path or the query, and sends it as mahoso."""
    assert portal_body("TraCuuHoSo", None, madonvi=AGENCY, path="/A-1")["mahoso"] == "A-1"
    assert portal_body("TraCuuHoSo", None, madonvi=AGENCY, query="MaHoSo=B-2")["mahoso"] == "B-2"
    assert portal_body("TraCuuHoSo", {"MaHoSo": "C-3"}, madonvi=AGENCY)["mahoso"] == "C-3"


def test_other_services_merge_the_payload() -> None:
    """A service without special rules gets the client's object merged into the envelope."""
    body = portal_body("LayThuTuc", {"maTTHC": "1.001193.000.00.00.H22"}, madonvi=AGENCY)
    assert body == {"madonvi": AGENCY, "service": "LayThuTuc", "maTTHC": "1.001193.000.00.00.H22"}


async def test_concurrent_calls_share_one_login() -> None:
    """Ten calls needing a session at once cause one login; renewing a stale one, one more."""
    counter = iter(range(100))

    async def login() -> str:
        await asyncio.sleep(0.01)
        return f"session-{next(counter)}"

    session = PortalSession(login)
    first = await asyncio.gather(*(session.current() for _ in range(10)))
    assert set(first) == {"session-0"}
    renewed = await asyncio.gather(*(session.renew("session-0") for _ in range(10)))
    assert set(renewed) == {"session-1"}
    assert session.logins == 2


# --- against the simulator ---------------------------------------------------------------------

@contextlib.asynccontextmanager
async def serving(app: Any) -> AsyncIterator[str]:
    config = uvicorn.Config(app, host="127.0.0.1", port=0, lifespan="off", log_level="critical",
                            access_log=False, timeout_graceful_shutdown=1)
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    while not server.started:
        if task.done():
            task.result()
        await asyncio.sleep(0.005)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await task


@pytest.fixture
async def portal() -> AsyncIterator[str]:
    async with serving(simulator.create_app()) as url:
        yield url


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    client = create_client()
    yield client
    await client.aclose()


def connector_for(url: str, http: httpx.AsyncClient, *, timeout: float = 5.0,
                  **options: Any) -> PortalConnector:
    service = Service(id=SERVICE_ID, connector="dvcqg", upstream=url, timeout=timeout,
                      options={**OPTIONS, **options})
    return create(service, ConnectorContext(http=http, schemas_dir=schemas_dir()))


def call(operation: str, payload: Any) -> Call:
    service = Service(id=SERVICE_ID, connector="dvcqg", upstream="http://unused")
    return Call(exchange_id="ex-1", service=service, operation=operation, payload=payload)


async def set_mode(http: httpx.AsyncClient, url: str, **mode: Any) -> dict[str, Any]:
    answer = await http.post(f"{url}/_sim/mode", json=mode)
    assert answer.status_code == 200, answer.text
    return dict(answer.json())


async def received(http: httpx.AsyncClient, url: str) -> list[str]:
    return [item["kind"] for item in (await http.get(f"{url}/_sim/received")).json()["items"]]


async def test_pushed_dossier_is_found_by_lookup(portal: str, http: httpx.AsyncClient) -> None:
    """A dossier pushed with DongBoHoSoMC comes back from TraCuuHoSo, dates in portal form."""
    connector = connector_for(portal, http)
    dossier = {**data.dossier(1, 0), "NgayHenTra": "2026-06-20T17:00:00+07:00"}
    reply = await connector.call(call("DongBoHoSoMC", dossier))
    assert reply.payload["error_code"] == "00"
    assert reply.payload["result"] == [{"MaHoSo": dossier["MaHoSo"], "TrangThaiHoSo": "2"}]
    found = await connector.call(call("TraCuuHoSo", {"MaHoSo": dossier["MaHoSo"]}))
    [held] = found.payload["result"]
    assert held["ChuHoSo"] == dossier["ChuHoSo"]
    assert held["NgayHenTra"] == "20260620170000"
    assert held["MaDonVi"] == AGENCY
    assert held["QuaTrinhXuLy"] == []


async def test_wire_request_is_the_portal_envelope(portal: str, http: httpx.AsyncClient) -> None:
    """What went over the wire is {session, madonvi, service, isUpdating, data: [...]}."""
    import orjson

    connector = connector_for(portal, http)
    reply = await connector.call(call("DongBoHoSoMC", data.dossier(1, 1)))
    sent = orjson.loads(reply.wire_request)
    assert list(sent) == ["session", "madonvi", "service", "isUpdating", "data"]
    assert sent["data"][0]["MaHoSo"] == data.dossier(1, 1)["MaHoSo"]
    assert orjson.loads(reply.wire_response) == reply.payload


async def test_progress_updates_status_and_history(portal: str, http: httpx.AsyncClient) -> None:
    """CapNhatTienDoHoSoMC adds to the dossier's history and moves its status."""
    connector = connector_for(portal, http)
    dossier = data.dossier(1, 2)
    await connector.call(call("DongBoHoSoMC", dossier))
    for step in (0, 1):
        reply = await connector.call(call("CapNhatTienDoHoSoMC", data.progress(dossier, step)))
        assert reply.payload["result"] == [{"MaHoSo": dossier["MaHoSo"], "SoBuocXuLy": step + 1}]
    [held] = (await connector.call(call("TraCuuHoSo", {"MaHoSo": dossier["MaHoSo"]}))).payload["result"]
    assert held["TrangThaiHoSo"] == "4"
    assert [p["NoiDungXuLy"] for p in held["QuaTrinhXuLy"]] == [
        "Tiếp nhận hồ sơ, chuyển phòng chuyên môn", "Thẩm định hồ sơ"]


async def test_progress_for_unknown_dossier_is_refused(portal: str, http: httpx.AsyncClient) -> None:
    """Progress for a dossier the portal does not hold is UpstreamError with error_code 04."""
    with pytest.raises(UpstreamError) as caught:
        await connector_for(portal, http).call(call("CapNhatTienDoHoSoMC", data.progress(data.dossier(1, 3))))
    assert caught.value.extra["error_code"] == "04"
    assert "Không tìm thấy hồ sơ" in caught.value.extra["message"]
    assert caught.value.status == 502


async def test_lookup_of_unknown_dossier_is_empty(portal: str, http: httpx.AsyncClient) -> None:
    """TraCuuHoSo for an unknown code is success with an empty result, as the portal answers."""
    reply = await connector_for(portal, http).call(call("TraCuuHoSo", {"MaHoSo": "H22-khong-co"}))
    assert reply.payload["error_code"] == "00"
    assert reply.payload["result"] == []


async def test_expired_session_is_renewed_transparently(portal: str, http: httpx.AsyncClient) -> None:
    """When the portal says the session expired, the connector logs in again and the call succeeds."""
    connector = connector_for(portal, http)
    await connector.call(call("DongBoHoSoMC", data.dossier(2, 0)))
    await set_mode(http, portal, expire_sessions=True)
    reply = await connector.call(call("DongBoHoSoMC", data.dossier(2, 1)))
    assert reply.payload["error_code"] == "00"
    assert connector.session.logins == 2
    assert await received(http, portal) == ["login", "DongBoHoSoMC", "DongBoHoSoMC", "login", "DongBoHoSoMC"]


async def test_short_sessions_are_renewed(portal: str, http: httpx.AsyncClient) -> None:
    """A session that times out on the portal's side is renewed the same way."""
    await set_mode(http, portal, session_ttl=0.05)
    connector = connector_for(portal, http)
    await connector.call(call("DongBoHoSoMC", data.dossier(2, 2)))
    await asyncio.sleep(0.1)
    await connector.call(call("TraCuuHoSo", {"MaHoSo": data.dossier(2, 2)["MaHoSo"]}))
    assert connector.session.logins == 2


async def test_refused_login_is_upstream_error(portal: str, http: httpx.AsyncClient) -> None:
    """A login the portal refuses is UpstreamError with error_code 11, and no API call is made."""
    await set_mode(http, portal, refuse_login=True)
    with pytest.raises(UpstreamError) as caught:
        await connector_for(portal, http).call(call("DongBoHoSoMC", data.dossier(2, 3)))
    assert caught.value.extra == {"error_code": "11", "message": "Tên đăng nhập hoặc mật khẩu không đúng",
                                  "operation": "login"}
    assert await received(http, portal) == ["login"]


def test_missing_credentials_fail_at_creation() -> None:
    """A dvcqg service without username/password is refused when the connector is built."""
    service = Service(id=SERVICE_ID, connector="dvcqg", upstream="http://127.0.0.1:9", options={})
    with pytest.raises(ValueError, match="username and password"):
        PortalConnector(service, httpx.AsyncClient())


async def test_invalid_payload_never_reaches_the_portal(portal: str, http: httpx.AsyncClient) -> None:
    """An invalid dossier is refused with InvalidBody 422 before any request goes out."""
    with pytest.raises(InvalidBody) as caught:
        await connector_for(portal, http).call(call("DongBoHoSoMC", {"ChuHoSo": "Lê Văn Nam",
                                                                     "NgayTiepNhan": "hôm nay"}))
    assert caught.value.status == 422
    assert [e["path"] for e in caught.value.extra["errors"]] == ["$.MaHoSo", "$.NgayTiepNhan"]
    assert await received(http, portal) == []


async def test_repeated_new_dossier_is_harmless(portal: str, http: httpx.AsyncClient) -> None:
    """The same new dossier pushed twice is accepted twice; a different one under its code is refused (05)."""
    connector = connector_for(portal, http)
    dossier = data.dossier(3, 0)
    await connector.call(call("DongBoHoSoMC", dossier))
    await connector.call(call("DongBoHoSoMC", dossier))
    with pytest.raises(UpstreamError) as caught:
        await connector.call(call("DongBoHoSoMC", {**dossier, "GhiChu": "khác"}))
    assert caught.value.extra["error_code"] == "05"
    await connector.call(call("DongBoHoSoMC", {**dossier, "GhiChu": "khác", "isUpdating": True}))
    held = (await http.get(f"{portal}/_sim/dossiers")).json()["items"]
    assert [(h["MaHoSo"], h["HoSo"]["GhiChu"], h["SoLanCapNhat"]) for h in held] == [
        (dossier["MaHoSo"], "khác", 1)]


async def test_update_of_unknown_dossier_is_refused(portal: str, http: httpx.AsyncClient) -> None:
    """isUpdating true for a dossier the portal does not hold is refused with 04."""
    with pytest.raises(UpstreamError) as caught:
        await connector_for(portal, http).call(call("DongBoHoSoMC",
                                                    {**data.dossier(3, 1), "isUpdating": True}))
    assert caught.value.extra["error_code"] == "04"


async def test_madonvi_and_dstcode_reach_the_portal(portal: str, http: httpx.AsyncClient) -> None:
    """The agency code from the payload wins over the option; the dstcode header is sent."""
    connector = connector_for(portal, http)
    dossier = data.dossier(3, 2)
    await connector.call(call("DongBoHoSoMC", {**dossier, "madonvi": "000.00.10.H41"}))
    held = (await http.get(f"{portal}/_sim/dossiers")).json()["items"][0]
    assert held["madonvi"] == "000.00.10.H41"
    items = (await http.get(f"{portal}/_sim/received")).json()["items"]
    assert items[-1]["dstcode"] == "DVCQG"


async def test_catalogue_services_pass_through(portal: str, http: httpx.AsyncClient) -> None:
    """LayThuTuc, a service without special rules, reaches the portal with the client's fields."""
    reply = await connector_for(portal, http).call(call("LayThuTuc", {"maTTHC": "1.001193.000.00.00.H22"}))
    assert reply.payload["result"][0]["TENTTHC"] == "Đăng ký khai sinh"


async def test_unknown_service_is_refused(portal: str, http: httpx.AsyncClient) -> None:
    """A service the portal does not offer is UpstreamError with error_code 03."""
    with pytest.raises(UpstreamError) as caught:
        await connector_for(portal, http).call(call("DichVuKhongCo", {}))
    assert caught.value.extra["error_code"] == "03"


async def test_portal_system_error_is_upstream_error(portal: str, http: httpx.AsyncClient) -> None:
    """The "error_code" switch answers 99, which is UpstreamError carrying the code and message."""
    connector = connector_for(portal, http)
    await connector.session.current()
    await set_mode(http, portal, fail="error_code")
    with pytest.raises(UpstreamError) as caught:
        await connector.call(call("DongBoHoSoMC", data.dossier(4, 0)))
    assert caught.value.extra["error_code"] == "99"
    assert caught.value.extra["message"] == "Hệ thống đang bận, vui lòng thử lại sau"


@pytest.mark.parametrize("fail", ["http500", "garbage"])
async def test_bad_answers_are_upstream_errors(portal: str, http: httpx.AsyncClient, fail: str) -> None:
    """HTTP 500 and a body that is not JSON become UpstreamError."""
    await set_mode(http, portal, fail=fail)
    with pytest.raises(UpstreamError):
        await connector_for(portal, http).call(call("DongBoHoSoMC", data.dossier(4, 1)))


async def test_dropped_connection_is_unavailable(portal: str, http: httpx.AsyncClient) -> None:
    """A connection closed without an answer becomes UpstreamUnavailable."""
    await set_mode(http, portal, fail="drop")
    with pytest.raises(UpstreamUnavailable):
        await connector_for(portal, http).call(call("DongBoHoSoMC", data.dossier(4, 2)))


async def test_portal_down_is_unavailable(http: httpx.AsyncClient) -> None:
    """A refused connection becomes UpstreamUnavailable."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with pytest.raises(UpstreamUnavailable):
        await connector_for(f"http://127.0.0.1:{port}", http).call(call("DongBoHoSoMC", data.dossier(4, 3)))


async def test_slow_portal_times_out(portal: str, http: httpx.AsyncClient) -> None:
    """An answer later than service.timeout becomes UpstreamTimeout."""
    await set_mode(http, portal, delay_ms=1000)
    with pytest.raises(UpstreamTimeout):
        await connector_for(portal, http, timeout=0.2).call(call("DongBoHoSoMC", data.dossier(4, 4)))


async def test_recovers_after_transient_failures(portal: str, http: httpx.AsyncClient) -> None:
    """After {"fail": "http500", "times": 2} the third attempt succeeds."""
    await set_mode(http, portal, fail="http500", times=2)
    connector = connector_for(portal, http)
    for _ in range(2):
        with pytest.raises(UpstreamError):
            await connector.call(call("DongBoHoSoMC", data.dossier(5, 0)))
    assert (await connector.call(call("DongBoHoSoMC", data.dossier(5, 0)))).payload["error_code"] == "00"


def test_sample_dossier_looks_real() -> None:
    """Synthetic dossiers carry a well-formed code, portal dates and a 12-digit personal id."""
    dossier = data.dossier(2026, 0, agency="000.00.20.G09")
    assert dossier["MaHoSo"].startswith("G09.20-202606")
    assert is_portal_date(dossier["NgayTiepNhan"]) and is_portal_date(dossier["NgayHenTra"])
    assert len(dossier["MaDoiTuong"]) == 12 and dossier["MaDoiTuong"].isdigit()
    assert dossier == data.dossier(2026, 0, agency="000.00.20.G09")


def test_vietnam_offset_is_seven_hours_today() -> None:
    """Asia/Ho_Chi_Minh is UTC+07:00 without daylight saving."""
    for month in (1, 7):
        assert datetime(2026, month, 1, tzinfo=VIETNAM).utcoffset() == timedelta(hours=7)
    assert datetime(2026, 1, 1, tzinfo=timezone(timedelta(hours=7))) == datetime(2026, 1, 1, tzinfo=VIETNAM)
