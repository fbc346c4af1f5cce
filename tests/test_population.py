"""The population database (the ``soap`` connector, configured) against its simulator over real sockets."""

from __future__ import annotations

import socket
import threading
import time
import unicodedata
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from lxml import etree

from connectors import synthetic
from connectors.population import DANCU, NAMESPACE, QLDC, WSDL
from connectors.population.connector import create
from connectors.population.simulator import PopulationDatabase, create_app
from connectors.soap.connector import SoapConnector
from gateway.config import Service
from gateway.connector import Call, ConnectorContext, Reply
from gateway.errors import InvalidBody, UpstreamError, UpstreamFault, UpstreamTimeout, UpstreamUnavailable
from gateway.resources import schemas_dir
from gateway.simulation import free_port
from gateway.upstream import create_client
from gateway.xml.catalog import SchemaError, load_wsdl
from gateway.xml.contract import load_contract

SOAP_ENV = "http://schemas.xmlsoap.org/soap/envelope/"
VERIFY = "XacThucThongTinCongDan"
IDENTITY = "XacMinhThongTinNhanThan"
LOOKUP = "TraCuuThongTinCongDan"
ASKER = {"MaDichVu": "1.000001.000.00.00.H22", "MaCanBo": "canbo.hagiang"}
IDENTITY_ASKER = {"MaDVC": "1.000001.000.00.00.H22", "MaTichHop": "LGSP.H22", "MaDonVi": "000.00.00.H22",
                  "MaCanBo": "canbo.hagiang"}
PEOPLE = synthetic.people(count=1000, seed=2026)
CITIZEN = PEOPLE[0]
UNKNOWN_ID = "000000000000"


# --- fixtures -----------------------------------------------------------------------------------------

class _Simulator:
    def __init__(self) -> None:
        self.socket = socket.socket()
        self.socket.bind(("127.0.0.1", 0))
        self.port = self.socket.getsockname()[1]
        config = uvicorn.Config(create_app(seed=2026), log_level="warning", lifespan="off",
                                timeout_graceful_shutdown=1)
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.socket]},
                                       daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> _Simulator:
        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("the population simulator did not start")
            time.sleep(0.01)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=5)


@pytest.fixture(scope="module")
def simulator() -> Iterator[_Simulator]:
    with _Simulator() as running:
        yield running


@pytest.fixture
async def context() -> AsyncIterator[ConnectorContext]:
    http = create_client()
    try:
        yield ConnectorContext(http=http, schemas_dir=schemas_dir())
    finally:
        await http.aclose()


def _service(operation: str, upstream: str, **settings: Any) -> Service:
    return Service(id=f"VN/GOV/000.00.00.G06/CSDLDC/{operation}", connector="population",
                   upstream=upstream, **settings)


async def _call(context: ConnectorContext, operation: str, payload: Any, upstream: str, *,
                exchange_id: str = "lt-test-0001", headers: dict[str, str] | None = None,
                **settings: Any) -> Reply:
    service = _service(operation, upstream, **settings)
    connector = create(service, context)
    try:
        return await connector.call(Call(exchange_id=exchange_id, service=service, operation=operation,
                                         payload=payload,
                                         headers={"X-Road-Id": exchange_id, **(headers or {})}))
    finally:
        await connector.aclose()


def _verify(person: synthetic.Person = CITIZEN, **fields: Any) -> dict[str, Any]:
    """A verify request with the published fields (MaYeuCau left to the gateway)."""
    payload = {**ASKER, "SoDinhDanh": person.so_dinh_danh, "SoCMND": person.so_cmnd,
               "HoVaTen": person.ho_va_ten}
    payload.update(fields)
    return {k: v for k, v in payload.items() if v is not None}


def _identity(person: synthetic.Person = CITIZEN, **fields: Any) -> dict[str, Any]:
    payload = {**IDENTITY_ASKER, "SoDinhDanh": person.so_dinh_danh, "SoCMND": person.so_cmnd,
               "HoVaTen": person.ho_va_ten, "NgayThangNamSinh": person.ngay_sinh}
    payload.update(fields)
    return payload


def _connector(operation: str = VERIFY) -> SoapConnector:
    context = ConnectorContext(http=httpx.AsyncClient(), schemas_dir=schemas_dir())
    return create(_service(operation, "http://127.0.0.1:9/dancu"), context)


def _reply(content: bytes, operation: str = VERIFY) -> Any:
    connector = _connector(operation)
    assert connector.contract is not None
    return connector.reply(connector.contract.operations[operation], 200, content, "text/xml")


# --- verify (XacThucThongTinCongDan) ------------------------------------------------------------------

async def test_verify_known_person_is_true(simulator: _Simulator, context: ConnectorContext) -> None:
    """Verifying a known citizen's id, old card number and name answers {"TonTai": true}."""
    reply = await _call(context, VERIFY, _verify(), f"{simulator.url}/dancu")
    assert reply.payload == {"TonTai": True}
    assert reply.status == 200


async def test_verify_wrong_name_is_false(simulator: _Simulator, context: ConnectorContext) -> None:
    """A name that is not the citizen's answers {"TonTai": false}, not an error."""
    reply = await _call(context, VERIFY, _verify(HoVaTen="Nguyễn Văn Không Có"), f"{simulator.url}/dancu")
    assert reply.payload == {"TonTai": False}


async def test_verify_wrong_card_number_is_false(simulator: _Simulator, context: ConnectorContext) -> None:
    """An old card number (SoCMND) that is not the citizen's answers false."""
    wrong = "111111111" if CITIZEN.so_cmnd != "111111111" else "222222222"
    reply = await _call(context, VERIFY, _verify(SoCMND=wrong), f"{simulator.url}/dancu")
    assert reply.payload == {"TonTai": False}


async def test_verify_unknown_id_is_false(simulator: _Simulator, context: ConnectorContext) -> None:
    """An id the database does not hold answers false: verify never says more than yes or no."""
    reply = await _call(context, VERIFY, _verify(SoDinhDanh=UNKNOWN_ID), f"{simulator.url}/dancu")
    assert reply.payload == {"TonTai": False}


async def test_verify_name_ignores_case_spacing_and_unicode_form(
        simulator: _Simulator, context: ConnectorContext) -> None:
    """Names compare without regard to case, extra spaces or Unicode normalisation form."""
    decomposed = unicodedata.normalize("NFD", f"  {CITIZEN.ho_va_ten.upper()}  ").replace(" ", "   ")
    reply = await _call(context, VERIFY, _verify(HoVaTen=decomposed), f"{simulator.url}/dancu")
    assert reply.payload == {"TonTai": True}


async def test_verify_with_empty_name_and_card_is_true(
        simulator: _Simulator, context: ConnectorContext) -> None:
    """The published fields are all required but may be empty: an existing id alone verifies."""
    reply = await _call(context, VERIFY, _verify(HoVaTen="", SoCMND=""), f"{simulator.url}/dancu")
    assert reply.payload == {"TonTai": True}
    assert _request_fields(reply)["HoVaTen"] == ""


async def test_reply_keeps_wire_bytes(simulator: _Simulator, context: ConnectorContext) -> None:
    """The reply carries the exact envelope sent and the bytes received, for the audit hashes."""
    reply = await _call(context, VERIFY, _verify(), f"{simulator.url}/dancu")
    sent = etree.fromstring(reply.wire_request)
    assert sent.tag == f"{{{SOAP_ENV}}}Envelope"
    assert sent.find(f"{{{SOAP_ENV}}}Body")[0].tag == f"{{{NAMESPACE}}}XacThucThongTinCongDanRequest"
    assert b"KetQuaXacThucResponse" in reply.wire_response
    assert b"<ns2:TonTai>true</ns2:TonTai>" in reply.wire_response


# --- lookup and identity check ------------------------------------------------------------------------

async def test_lookup_returns_the_record_as_nested_json(
        simulator: _Simulator, context: ConnectorContext) -> None:
    """A lookup by id answers the whole record, HoVaTen and addresses as nested objects."""
    payload = {**ASKER, "SoDinhDanh": CITIZEN.so_dinh_danh}
    record = (await _call(context, LOOKUP, payload, f"{simulator.url}/dancu")).payload
    assert record["SoDinhDanh"] == CITIZEN.so_dinh_danh
    assert record["SoCMND"] == CITIZEN.so_cmnd
    assert record["HoVaTen"] == {"Ho": CITIZEN.ho, "ChuDem": CITIZEN.chu_dem, "Ten": CITIZEN.ten}
    assert record["GioiTinh"] == CITIZEN.gioi_tinh
    assert record["NgayThangNamSinh"] == {"NgayThangNam": CITIZEN.ngay_sinh}
    assert record["ThuongTru"]["ChiTiet"] == CITIZEN.thuong_tru
    assert record["DanToc"] == CITIZEN.dan_toc
    assert list(record["Cha"]) == ["SoDinhDanh", "QuocTich", "HoVaTen"]
    assert set(record["Cha"]["HoVaTen"]) == {"Ho", "ChuDem", "Ten"}
    assert record["ChuHo"]["QuanHe"]
    assert ("VoChong" in record) == (CITIZEN.tinh_trang_hon_nhan == "2")
    assert None not in record.values()


async def test_lookup_of_unknown_id_is_an_upstream_fault(
        simulator: _Simulator, context: ConnectorContext) -> None:
    """An unknown id answers a SOAP Fault, kept as UpstreamFault with code, string and detail."""
    with pytest.raises(UpstreamFault) as caught:
        await _call(context, LOOKUP, {**ASKER, "SoDinhDanh": UNKNOWN_ID}, f"{simulator.url}/dancu")
    extra = caught.value.extra
    assert extra["faultcode"] == "SOAP-ENV:Client"
    assert extra["faultstring"] == "Không tìm thấy công dân có số định danh này"
    assert extra["faultdetail"] == {"LoiNghiepVu": {
        "MaLoi": "KHONG_TIM_THAY", "MoTa": "Không tìm thấy công dân có số định danh này",
        "SoDinhDanh": UNKNOWN_ID}}
    assert caught.value.status == 502


async def test_identity_check_answers_a_collection(simulator: _Simulator, context: ConnectorContext) -> None:
    """XacMinhThongTinNhanThan answers a CongdanCollection: CongDan a list, the parents inside."""
    reply = await _call(context, IDENTITY, _identity(), f"{simulator.url}/dancu")
    collection = reply.payload["CongdanCollection"]
    assert collection["@SoCongDan"] == "1"
    (citizen,) = collection["CongDan"]
    assert citizen["SoDinhDanh"] == CITIZEN.so_dinh_danh
    assert citizen["HoVaTen"]["Ten"] == CITIZEN.ten
    assert citizen["NgayThangNamSinh"] == {"NgayThangNam": CITIZEN.ngay_sinh}
    assert set(citizen["Me"]) == {"SoDinhDanh", "QuocTich", "HoVaTen"}
    sent = etree.fromstring(reply.wire_request).find(f"{{{SOAP_ENV}}}Body")[0]
    assert sent.tag == f"{{{QLDC}}}XacMinhThongTinNhanThanRequest"
    assert b"<ns2:CongdanCollection" in reply.wire_response and DANCU.encode() in reply.wire_response


async def test_identity_check_without_a_match_is_a_fault(
        simulator: _Simulator, context: ConnectorContext) -> None:
    """The published collection holds at least one citizen, so no match is a Client fault."""
    with pytest.raises(UpstreamFault) as caught:
        await _call(context, IDENTITY, _identity(HoVaTen="Lê Thị Khác"), f"{simulator.url}/dancu")
    assert caught.value.extra["faultdetail"]["LoiNghiepVu"]["MaLoi"] == "KHONG_KHOP"


# --- what the connector fills in ----------------------------------------------------------------------

async def test_request_id_comes_from_the_exchange(simulator: _Simulator, context: ConnectorContext) -> None:
    """A request without MaYeuCau carries the exchange id; one with MaYeuCau keeps it."""
    reply = await _call(context, VERIFY, _verify(), f"{simulator.url}/dancu", exchange_id="lt-ex-42")
    assert _request_fields(reply)["MaYeuCau"] == "lt-ex-42"
    reply = await _call(context, VERIFY, _verify(MaYeuCau="client-7"), f"{simulator.url}/dancu",
                        exchange_id="lt-ex-43")
    assert _request_fields(reply)["MaYeuCau"] == "client-7"


async def test_official_and_defaults_are_filled(simulator: _Simulator, context: ConnectorContext) -> None:
    """MaCanBo comes from X-Road-UserId and catalog defaults fill MaDichVu when the client omits it."""
    payload = {"SoDinhDanh": CITIZEN.so_dinh_danh, "SoCMND": "", "HoVaTen": ""}
    reply = await _call(context, VERIFY, payload, f"{simulator.url}/dancu",
                        headers={"x-road-userid": "VN-CB-0042"},
                        options={"defaults": {"MaDichVu": "033"}})
    fields = _request_fields(reply)
    assert (fields["MaCanBo"], fields["MaDichVu"]) == ("VN-CB-0042", "033")
    assert list(fields) == ["MaYeuCau", "MaDichVu", "MaCanBo", "SoDinhDanh", "SoCMND", "HoVaTen"]
    assert reply.payload == {"TonTai": True}


def test_defaults_naming_no_published_field_are_refused() -> None:
    """A default for a field the operation does not have (MaDonVi on verify) fails at creation."""
    context = ConnectorContext(http=httpx.AsyncClient(), schemas_dir=schemas_dir())
    service = _service(VERIFY, "http://127.0.0.1:9/dancu", options={"defaults": {"MaDonVi": "x"}})
    with pytest.raises(ValueError, match="MaDonVi"):
        create(service, context)


def _request_fields(reply: Reply) -> dict[str, str]:
    element = etree.fromstring(reply.wire_request).find(f"{{{SOAP_ENV}}}Body")[0]
    return {etree.QName(child).localname: child.text or "" for child in element}


# --- invalid client JSON ------------------------------------------------------------------------------

async def test_invalid_json_is_refused_with_paths(context: ConnectorContext) -> None:
    """Unknown, missing, mistyped and old (unpublished) fields are refused (422), one error per path."""
    payload = {"MaDichVu": 33, "MaCanBo": "cb", "SoDinhDanh": "001060301193", "HoVaTen": ["Phạm"],
               "MaDonVi": "000.00.00.H22", "NgayThangNamSinh": "19600301"}
    with pytest.raises(InvalidBody) as caught:
        await _call(context, VERIFY, payload, f"http://127.0.0.1:{free_port()}/dancu")
    assert caught.value.status == 422
    errors = {e["path"]: e["message"] for e in caught.value.extra["errors"]}
    assert set(errors) == {"$.MaDichVu", "$.SoCMND", "$.HoVaTen", "$.MaDonVi", "$.NgayThangNamSinh"}


async def test_non_object_body_is_refused(context: ConnectorContext) -> None:
    """A JSON body that is not an object is refused at path $."""
    with pytest.raises(InvalidBody) as caught:
        await _call(context, VERIFY, ["001060301193"], f"http://127.0.0.1:{free_port()}/dancu")
    assert caught.value.extra["errors"][0]["path"] == "$"


async def test_control_characters_are_refused(context: ConnectorContext) -> None:
    """Text XML cannot carry is refused at its path instead of failing while writing XML."""
    with pytest.raises(InvalidBody) as caught:
        await _call(context, VERIFY, _verify(HoVaTen="Phạm\x00An"), f"http://127.0.0.1:{free_port()}/dancu")
    assert [e["path"] for e in caught.value.extra["errors"]] == ["$.HoVaTen"]


async def test_boolean_is_not_a_string(context: ConnectorContext) -> None:
    """JSON types follow the schema: true is not a string, a number is not a personal id."""
    with pytest.raises(InvalidBody) as caught:
        await _call(context, VERIFY, _verify(HoVaTen=True, SoDinhDanh=1060301193),
                    f"http://127.0.0.1:{free_port()}/dancu")
    paths = sorted(e["path"] for e in caught.value.extra["errors"])
    assert paths == ["$.HoVaTen", "$.SoDinhDanh"]


# --- upstream failures --------------------------------------------------------------------------------

async def test_upstream_down_is_unavailable(context: ConnectorContext) -> None:
    """A refused connection is UpstreamUnavailable (503), not a timeout."""
    with pytest.raises(UpstreamUnavailable):
        await _call(context, VERIFY, _verify(), f"http://127.0.0.1:{free_port()}/dancu")


async def test_slow_upstream_is_a_timeout(simulator: _Simulator, context: ConnectorContext) -> None:
    """An answer later than the service's timeout is UpstreamTimeout (504)."""
    with pytest.raises(UpstreamTimeout):
        await _call(context, VERIFY, _verify(), f"{simulator.url}/dancu?delay_ms=1500", timeout=0.2)


async def test_garbage_answer_is_an_upstream_error(simulator: _Simulator, context: ConnectorContext) -> None:
    """An answer that is not well-formed XML is UpstreamError (502)."""
    with pytest.raises(UpstreamError) as caught:
        await _call(context, VERIFY, _verify(), f"{simulator.url}/dancu?fail=garbage")
    assert type(caught.value) is UpstreamError


async def test_schema_breaking_answer_is_an_upstream_error(
        simulator: _Simulator, context: ConnectorContext) -> None:
    """A well-formed answer whose content breaks the schema is UpstreamError."""
    with pytest.raises(UpstreamError) as caught:
        await _call(context, VERIFY, _verify(), f"{simulator.url}/dancu?fail=invalid")
    assert type(caught.value) is UpstreamError
    assert "schema" in caught.value.detail


@pytest.mark.parametrize(("operation", "where"), [
    (VERIFY, "TonTai"), (IDENTITY, "@ThoiDiemDuLieu"), (LOOKUP, "GioiTinh")])
async def test_value_breaking_its_type_is_an_upstream_error(
        simulator: _Simulator, context: ConnectorContext, operation: str, where: str) -> None:
    """A value its XSD type does not allow (TonTai banana) is a 502 naming it, never a default."""
    payload = {VERIFY: _verify(), IDENTITY: _identity(),
               LOOKUP: {**ASKER, "SoDinhDanh": CITIZEN.so_dinh_danh}}
    with pytest.raises(UpstreamError) as caught:
        await _call(context, operation, payload[operation], f"{simulator.url}/dancu?fail=bad-value")
    assert type(caught.value) is UpstreamError and caught.value.status == 502
    assert "schema" in caught.value.detail and where in caught.value.detail


async def test_answer_with_a_dtd_is_refused(simulator: _Simulator, context: ConnectorContext) -> None:
    """An answer with a document type declaration is refused (502) before anything is read from it."""
    with pytest.raises(UpstreamError) as caught:
        await _call(context, VERIFY, _verify(), f"{simulator.url}/dancu?fail=dtd")
    assert caught.value.status == 502 and "DTD" in caught.value.detail


async def test_http_500_without_soap_is_an_upstream_error(
        simulator: _Simulator, context: ConnectorContext) -> None:
    """HTTP 500 with a plain-text body is UpstreamError naming the status."""
    with pytest.raises(UpstreamError) as caught:
        await _call(context, VERIFY, _verify(), f"{simulator.url}/dancu?fail=http500")
    assert type(caught.value) is UpstreamError
    assert "500" in caught.value.detail


async def test_server_fault_is_an_upstream_fault(simulator: _Simulator, context: ConnectorContext) -> None:
    """A soap:Server Fault (database busy) is UpstreamFault with its code."""
    with pytest.raises(UpstreamFault) as caught:
        await _call(context, VERIFY, _verify(), f"{simulator.url}/dancu?fail=fault")
    assert caught.value.extra["faultcode"] == "SOAP-ENV:Server"
    assert caught.value.extra["faultdetail"]["LoiNghiepVu"]["MaLoi"] == "HE_THONG_BAN"


def _envelope_of(body: str, prolog: str = "") -> bytes:
    return (f'{prolog}<e:Envelope xmlns:e="{SOAP_ENV}"><e:Body>{body}</e:Body></e:Envelope>').encode()


def test_reply_missing_a_required_element_is_an_upstream_error() -> None:
    """An answer without a required element (TonTai) breaks the schema: UpstreamError."""
    with pytest.raises(UpstreamError, match="TonTai"):
        _reply(_envelope_of(f'<d:KetQuaXacThucResponse xmlns:d="{NAMESPACE}"/>'))


def test_reply_with_another_element_is_an_upstream_error() -> None:
    """An answer carrying some other operation's element is UpstreamError."""
    with pytest.raises(UpstreamError, match="KetQuaXacThucResponse"):
        _reply(_envelope_of(f'<d:XacMinhThongTinNhanThanResponse xmlns:d="{DANCU}"/>'))


@pytest.mark.parametrize("value", ["banana", "", "yes", "TRUE", "2"])
def test_verdict_that_is_no_boolean_is_an_upstream_error(value: str) -> None:
    """TonTai is xs:boolean: anything but true, false, 1 or 0 is a schema error, never false."""
    with pytest.raises(UpstreamError, match="TonTai"):
        _reply(_envelope_of(f'<d:KetQuaXacThucResponse xmlns:d="{NAMESPACE}"><d:TonTai>{value}</d:TonTai>'
                            "</d:KetQuaXacThucResponse>"))


@pytest.mark.parametrize(("value", "verdict"), [("true", True), ("1", True), ("false", False), ("0", False),
                                                (" true ", True)])
def test_verdict_reads_every_lexical_form_of_a_boolean(value: str, verdict: bool) -> None:
    """The four lexical forms of xs:boolean (whitespace collapsed) are read as what they say."""
    answer = _reply(_envelope_of(f'<d:KetQuaXacThucResponse xmlns:d="{NAMESPACE}"><d:TonTai>{value}'
                                 "</d:TonTai></d:KetQuaXacThucResponse>"))
    assert answer == {"TonTai": verdict}


def test_reply_with_entities_is_not_expanded() -> None:
    """A DTD in the answer is refused: its entities are neither loaded nor expanded."""
    evil = _envelope_of(f'<d:KetQuaXacThucResponse xmlns:d="{NAMESPACE}"><d:TonTai>&x;</d:TonTai>'
                        "</d:KetQuaXacThucResponse>",
                        prolog='<!DOCTYPE e [<!ENTITY x SYSTEM "file:///etc/passwd">]>')
    with pytest.raises(UpstreamError, match="DTD"):
        _reply(evil)


# --- configuration ------------------------------------------------------------------------------------

def test_the_preset_is_the_soap_connector() -> None:
    """The population entry point is the soap connector with this database's WSDL and fill rules."""
    connector = _connector(IDENTITY)
    assert isinstance(connector, SoapConnector) and connector.forwards_soap
    assert connector.contract is not None and connector.contract.source == schemas_dir() / WSDL
    assert connector.operations == [IDENTITY]


def test_unknown_operation_is_refused_at_creation() -> None:
    """A service naming an operation the WSDL lacks fails when the connector is created."""
    with pytest.raises(SchemaError, match="has no operation XoaCongDan"):
        _connector("XoaCongDan")


def test_wsdl_imports_from_the_network_are_refused(tmp_path: Path) -> None:
    """A WSDL importing a schema by URL fails to load instead of fetching it."""
    text = (schemas_dir() / WSDL).read_text(encoding="utf-8").replace(
        'elementFormDefault="qualified">',
        'elementFormDefault="qualified"><xs:import namespace="urn:x" schemaLocation="http://127.0.0.1:9/x.xsd"/>',
        1)
    (tmp_path / "dancu.wsdl").write_text(text, encoding="utf-8")
    with pytest.raises(SchemaError, match=r"127\.0\.0\.1:9/x\.xsd"):
        load_contract(tmp_path / "dancu.wsdl")


# --- the simulator itself -----------------------------------------------------------------------------

async def test_simulator_keeps_the_envelope_it_received(
        simulator: _Simulator, context: ConnectorContext) -> None:
    """/_sim/received shows the envelope in the population database's namespace, with its SOAPAction."""
    await _call(context, VERIFY, _verify(), f"{simulator.url}/dancu", exchange_id="lt-recv-1")
    async with httpx.AsyncClient() as client:
        items = (await client.get(f"{simulator.url}/_sim/received")).json()["items"]
    mine = [i for i in items if i["body"] and "lt-recv-1" in i["body"]]
    assert len(mine) == 1
    assert mine[0]["kind"] == VERIFY
    assert mine[0]["soap_action"] == f'"{NAMESPACE}/{VERIFY}"'
    body = etree.fromstring(mine[0]["body"].encode()).find(f"{{{SOAP_ENV}}}Body")[0]
    assert body.tag == f"{{{NAMESPACE}}}XacThucThongTinCongDanRequest"


async def test_simulator_mode_switch_applies_until_reset(simulator: _Simulator) -> None:
    """POST /_sim/mode sets a failure for every call until it is switched back; bad switches are 400."""
    async with httpx.AsyncClient(base_url=simulator.url) as client:
        try:
            assert (await client.post("/_sim/mode", json={"fail": "http500"})).json()["fail"] == "http500"
            answer = await client.post("/dancu", content=_envelope(VERIFY, _verify(MaYeuCau="s")))
            assert answer.status_code == 500
            assert answer.headers["content-type"].startswith("text/plain")
            assert (await client.post("/_sim/mode", json={"fail": "sometimes"})).status_code == 400
            assert (await client.post("/_sim/mode", json={"delay_ms": -1})).status_code == 400
        finally:
            await client.post("/_sim/mode", json={"fail": None, "delay_ms": 0})
        answer = await client.post("/", content=_envelope(VERIFY, _verify(MaYeuCau="sim-1")))
        assert answer.status_code == 200


async def test_simulator_answers_malformed_xml_with_a_client_fault(simulator: _Simulator) -> None:
    """Malformed XML gets HTTP 500 and a SOAP Fault whose code is Client."""
    async with httpx.AsyncClient(base_url=simulator.url) as client:
        answer = await client.post("/dancu", content=b"<soapenv:Envelope><oops>",
                                   headers={"Content-Type": "text/xml"})
    assert answer.status_code == 500
    fault = etree.fromstring(answer.content).find(f"{{{SOAP_ENV}}}Body/{{{SOAP_ENV}}}Fault")
    assert fault is not None
    assert fault.findtext("faultcode") == "SOAP-ENV:Client"


async def test_simulator_refuses_a_request_with_a_dtd(simulator: _Simulator) -> None:
    """The simulator reads requests with the gateway's hardened parser: a DTD is a Client fault."""
    request = b'<!DOCTYPE e [<!ENTITY x "y">]>' + _envelope(VERIFY, _verify(MaYeuCau="&x;"))
    async with httpx.AsyncClient(base_url=simulator.url) as client:
        answer = await client.post("/dancu", content=request)
    assert answer.status_code == 500 and "XML_KHONG_HOP_LE" in answer.text


async def test_simulator_faults_on_missing_fields(simulator: _Simulator) -> None:
    """A request without the asking service's codes gets a Client fault naming them."""
    async with httpx.AsyncClient(base_url=simulator.url) as client:
        only_id = {"SoDinhDanh": CITIZEN.so_dinh_danh}
        answer = await client.post("/dancu", content=_envelope(VERIFY, only_id))
        identity = await client.post("/dancu", content=_envelope(IDENTITY, only_id))
    assert answer.status_code == 500
    assert "MaYeuCau, MaDichVu, MaCanBo" in answer.text
    assert "MaYeuCau, MaDVC, MaTichHop, MaDonVi, MaCanBo" in identity.text


async def test_simulator_serves_its_wsdl(simulator: _Simulator) -> None:
    """GET /dancu?wsdl serves the WSDL with the simulator's own address."""
    async with httpx.AsyncClient(base_url=simulator.url) as client:
        answer = await client.get("/dancu", params={"wsdl": ""})
    assert answer.status_code == 200
    location = etree.fromstring(answer.content).find(
        ".//{http://schemas.xmlsoap.org/wsdl/soap/}address").get("location")
    assert location == f"{simulator.url}/dancu"


def test_simulator_answers_are_valid_against_the_wsdl() -> None:
    """Every kind of answer the simulator writes validates against the WSDL's schemas."""
    schema = load_wsdl(schemas_dir() / WSDL).schema
    database = PopulationDatabase(seed=2026)
    answers = []
    for person in PEOPLE[:60]:
        answers += [database.lookup({**ASKER, "MaYeuCau": "x", "SoDinhDanh": person.so_dinh_danh}),
                    database.identity({**_identity(person), "MaYeuCau": "x"}),
                    database.verify({**_verify(person), "MaYeuCau": "x"})]
    answers.append(database.verify({**_verify(), "MaYeuCau": "x", "SoDinhDanh": UNKNOWN_ID}))
    for answer in answers:
        body = etree.fromstring(answer).find(f"{{{SOAP_ENV}}}Body")[0]
        schema.maps.elements[body.tag].validate(body)


async def test_simulator_fault_detail_is_valid_against_the_wsdl(simulator: _Simulator) -> None:
    """The Fault detail (LoiNghiepVu) validates against the WSDL's schema."""
    async with httpx.AsyncClient(base_url=simulator.url) as client:
        answer = await client.post("/dancu", content=_envelope(LOOKUP, {**ASKER, "MaYeuCau": "x",
                                                                       "SoDinhDanh": UNKNOWN_ID}))
    detail = etree.fromstring(answer.content).find(f".//{{{SOAP_ENV}}}Fault/detail")
    schema = load_wsdl(schemas_dir() / WSDL).schema
    schema.maps.elements[detail[0].tag].validate(detail[0])


def _envelope(operation: str, fields: dict[str, str]) -> bytes:
    request = f"{operation}Request"
    namespace = QLDC if operation == IDENTITY else NAMESPACE
    children = "".join(f"<d:{k}>{v}</d:{k}>" for k, v in fields.items())
    return (f'<e:Envelope xmlns:e="{SOAP_ENV}" xmlns:d="{namespace}"><e:Body><d:{request}>{children}'
            f"</d:{request}></e:Body></e:Envelope>").encode()
