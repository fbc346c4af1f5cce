"""The generic SOAP connector: JSON in, a schema-built envelope out, JSON back; upstreams as ASGI apps."""

from __future__ import annotations

import asyncio
import json
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest
from lxml import etree

from connectors.population.simulator import create_app as population_app
from connectors.soap.connector import SoapConnector, create
from connectors.soap.simulator import Mode, SoapSimulator
from gateway.config import Service
from gateway.connector import Call, ConnectorContext
from gateway.errors import InvalidBody, UnknownService, UpstreamError, UpstreamFault
from gateway.resources import schemas_dir
from gateway.soap.faults import PassedFault
from gateway.xml.catalog import SchemaError
from tests.conftest import fixtures_dir
from tests.test_soap_face import FI_SERVICE, PLAYGROUND, PLAYGROUND_CLIENT, PRODUCER, face  # noqa: F401

SOAP = "http://schemas.xmlsoap.org/soap/envelope/"
DAN = "http://dancuquocgia.bca"
VERIFY = "VN/GOV/000.00.00.G01/CSDLDC/XacThucThongTinCongDan"
LOOKUP = "VN/GOV/000.00.00.G01/CSDLDC/TraCuuThongTinCongDan"


def connector(service: dict[str, Any], app: Any) -> SoapConnector:
    http = httpx.AsyncClient(transport=httpx.ASGITransport(app=app))
    return create(Service.model_validate(service), ConnectorContext(http=http, schemas_dir=schemas_dir()))


def call(service: SoapConnector, payload: Any, **kwargs: Any) -> Any:
    """One call, on an event loop of its own (in a thread: safe whatever loop this thread runs)."""
    svc = service._service
    headers = {"X-Road-Id": "ex-1", "X-Road-Client": PLAYGROUND_CLIENT, "X-Road-UserId": "canbo.mai"}
    request = Call(exchange_id="ex-1", service=svc, operation=kwargs.pop("operation", svc.operation_name),
                   payload=payload, headers=headers, **kwargs)
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, service.call(request)).result()


def adapter(operation: str, simulator: SoapSimulator) -> SoapConnector:
    base = PLAYGROUND if operation in ("listPeople", "personDetails") else FI_SERVICE
    wsdl = fixtures_dir("xroad-example-adapter") / "example-adapter.wsdl"
    return connector({"id": f"{base}/{operation}/v1", "connector": "soap", "upstream": "http://adapter/",
                      "schema": str(wsdl)}, simulator.app())


@pytest.fixture
def simulator() -> SoapSimulator:
    return SoapSimulator(responses=fixtures_dir("xroad-example-adapter"))


def test_example_adapter_operations_answer_json(simulator: SoapSimulator) -> None:
    """JSON calls of the X-Road example adapter come back as JSON shaped by the output schema."""
    hello = call(adapter("helloService", simulator), {"name": "Test"})
    assert hello.payload == {"message": "Hello Test! Greetings from adapter server!"}
    assert call(adapter("getRandom", simulator), {}).payload == {"data": "95"}
    people = call(adapter("listPeople", simulator), {}).payload["people"]["person"]
    assert [p["lastName"] for p in people] == ["Smith", "Tree", "Jones", "Johnson", "Miller", "Smith"]
    person = call(adapter("personDetails", simulator), {"ssn": "1235"}).payload["person"]
    assert person["dateOfBirth"] == "1966-06-30"
    assert person["contacts"]["contact"][1] == {"type": "email", "name": "Personal e-mail",
                                                "value": "other@email.nil"}


def test_request_envelope_comes_from_the_schema(simulator: SoapSimulator) -> None:
    """Element order, namespaces and the X-Road header come from the WSDL, not from the JSON."""
    reply = call(adapter("helloService", simulator), {"name": "An"})
    root = etree.fromstring(reply.wire_request)
    body = root.find(f"{{{SOAP}}}Body")[0]
    assert body.tag == f"{{{PRODUCER}}}helloService" and body[0].tag == f"{{{PRODUCER}}}name"
    xroad = "{http://x-road.eu/xsd/xroad.xsd}"
    header = root.find(f"{{{SOAP}}}Header")
    assert header.findtext(f"{xroad}protocolVersion") == "4.0" and header.findtext(f"{xroad}id") == "ex-1"
    codes = [e.text for e in header.find(f"{xroad}service")]
    assert codes == ["FI_TEST", "GOV", "9876543-1", "DemoService", "helloService", "v1"]
    assert [e.text for e in header.find(f"{xroad}client")] == PLAYGROUND_CLIENT.split("/")
    (received,) = simulator.recorder.items()
    assert received["body"].encode() == reply.wire_request


def test_invalid_json_is_refused_with_every_path(simulator: SoapSimulator) -> None:
    """JSON that breaks the input schema is a 422 naming each wrong field, and nothing is sent."""
    with pytest.raises(InvalidBody) as refused:
        call(adapter("personDetails", simulator), {"ssn": 1235, "extra": True})
    assert refused.value.status == 422
    assert [e["path"] for e in refused.value.extra["errors"]] == ["$.ssn", "$.extra"]
    assert simulator.recorder.items() == []


def population(operation: str, options: dict[str, Any] | None = None) -> SoapConnector:
    sid = VERIFY if operation == "XacThucThongTinCongDan" else LOOKUP
    return connector({"id": sid, "connector": "soap", "upstream": "http://population/dancu",
                      "schema": "population/dancu.wsdl", "options": options or {}}, population_app())


def citizen() -> Any:
    from connectors.population.data import citizens

    return next(iter(citizens(count=1000, seed=2026).values())).person


def test_population_verify_through_the_generic_connector() -> None:
    """The population database's verify call works through the generic connector: exchange id and
    official filled in from the exchange, the answer exactly {"TonTai": true}."""
    person = citizen()
    verify = population("XacThucThongTinCongDan", {"fill": {"MaYeuCau": "id", "MaCanBo": "userId"},
                                                   "defaults": {"MaDichVu": "1.001193"}})
    reply = call(verify, {"SoDinhDanh": person.so_dinh_danh, "SoCMND": person.so_cmnd,
                          "HoVaTen": person.ho_va_ten})
    assert reply.payload == {"TonTai": True}
    body = etree.fromstring(reply.wire_request).find(f"{{{SOAP}}}Body")[0]
    assert [etree.QName(e).localname for e in body] == ["MaYeuCau", "MaDichVu", "MaCanBo", "SoDinhDanh",
                                                        "SoCMND", "HoVaTen"]
    assert body.findtext(f"{{{DAN}}}MaYeuCau") == "ex-1" and body.findtext(f"{{{DAN}}}MaCanBo") == "canbo.mai"


def test_upstream_fault_keeps_code_string_and_detail() -> None:
    """An upstream SOAP Fault is an UpstreamFault with the fault's code, string and typed detail."""
    lookup = population("TraCuuThongTinCongDan", {"fill": {"MaYeuCau": "id", "MaCanBo": "userId"}})
    with pytest.raises(UpstreamFault) as fault:
        call(lookup, {"MaDichVu": "1", "SoDinhDanh": "000000000000"})
    extra = fault.value.extra
    assert extra["faultcode"].endswith("Client")
    assert extra["faultstring"] == "Không tìm thấy công dân có số định danh này"
    assert extra["faultdetail"]["LoiNghiepVu"]["MaLoi"] == "KHONG_TIM_THAY"


@pytest.mark.parametrize(("fail", "says"), [
    ("invalid", "breaks its own schema"),
    ("garbage", "no usable SOAP envelope"),
    ("empty", "no usable SOAP envelope"),
    ("http500", "no usable SOAP envelope"),
])
def test_broken_answers_are_502_saying_so(simulator: SoapSimulator, fail: str, says: str) -> None:
    """An answer that breaks its schema, or is not SOAP at all, is an UpstreamError (502) saying so."""
    simulator.mode = Mode(fail=fail)
    with pytest.raises(UpstreamError) as failed:
        call(adapter("personDetails", simulator), {"ssn": "1235"})
    assert failed.value.status == 502 and says in failed.value.detail


def test_hostile_answer_is_refused_not_expanded() -> None:
    """An upstream answering a billion-laughs document gets a 502, nothing expanded."""
    lol = "".join(f'<!ENTITY l{i} "{f"&l{i - 1};" * 10}">' for i in range(1, 10))
    bomb = f'<?xml version="1.0"?><!DOCTYPE e [<!ENTITY l0 "lol">{lol}]><e>&l9;</e>'.encode()

    async def app(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"text/xml")]})
        await send({"type": "http.response.body", "body": bomb})

    verify = connector({"id": VERIFY, "connector": "soap", "upstream": "http://bomb/",
                        "schema": "population/dancu.wsdl"}, app)
    with pytest.raises(UpstreamError) as failed:
        call(verify, {"MaYeuCau": "1", "MaDichVu": "1", "MaCanBo": "c", "SoDinhDanh": "001090012345",
                      "SoCMND": "", "HoVaTen": ""})
    assert "DTD" in failed.value.detail


def test_pass_through_forwards_the_envelope_as_it_came(simulator: SoapSimulator) -> None:
    """A SOAP client's envelope goes upstream byte for byte; the answer is read by the schema, and an
    upstream fault is kept as the upstream sent it."""
    request = (fixtures_dir("xroad-example-adapter") / "listPeopleRequest.xml").read_bytes()
    reply = call(adapter("listPeople", simulator), None, body=request, content_type="text/xml; charset=utf-8")
    assert simulator.recorder.items()[0]["body"].encode() == request
    assert reply.payload["people"]["person"][0]["ssn"] == "1230"  # read by the schema, for the face
    assert reply.wire_request == request and b"listPeopleResponse" in reply.wire_response
    simulator.mode = Mode(fail="fault")
    with pytest.raises(PassedFault) as fault:
        call(adapter("listPeople", simulator), None, body=request, content_type="text/xml")
    assert b"Simulated failure" in fault.value.envelope


def test_operations_are_chosen_by_the_catalog() -> None:
    """A service may call only its own operations: the catalog decides, not the client."""
    verify = population("XacThucThongTinCongDan")
    with pytest.raises(UnknownService):
        call(verify, {"SoDinhDanh": "001090012345"}, operation="TraCuuThongTinCongDan")
    with pytest.raises(SchemaError, match="no operation"):
        population("XacThucThongTinCongDan", {"operations": ["KhongCo"]})


def test_rest_client_gets_problem_json_keeping_the_fault(face: Any) -> None:  # noqa: F811
    """Through /r1, a JSON client gets the answer as JSON, and an upstream fault as problem+json that
    keeps the fault's code, string and detail."""
    token = face.token(PLAYGROUND_CLIENT)
    url = f"/r1/{PLAYGROUND}/personDetails/v1"
    headers = {"Authorization": f"Bearer {token}"}
    r = face.client.post(url, json={"ssn": "1235"}, headers=headers)
    assert r.status_code == 200, r.text
    assert r.json()["person"]["lastName"] == "Smith"
    bad = face.client.post(url, json={"ssn": ["x"]}, headers=headers)
    assert bad.status_code == 422 and bad.json()["errors"][0]["path"] == "$.ssn"
    face.simulator.mode = Mode(fail="fault")
    try:
        r = face.client.post(url, json={"ssn": "1235"}, headers=headers)
    finally:
        face.simulator.mode = Mode()
    assert r.status_code == 502 and r.headers["content-type"] == "application/problem+json"
    problem = r.json()
    assert problem["code"] == "Server.ServiceFailed"
    assert problem["faultcode"] == "SOAP-ENV:Server" and problem["faultstring"] == "Simulated failure"
    assert problem["faultdetail"] == {"reason": "the simulator was told to fail"}
    assert json.dumps(problem)


def test_schema_less_service_is_pass_through_only(tmp_path: Path) -> None:
    """Without a schema the connector forwards SOAP and refuses JSON it could not translate."""
    plain = connector({"id": "EE/BUSINESS/producer/PROVIDER/getState", "connector": "soap",
                       "upstream": "http://sim/"}, SoapSimulator().app())
    with pytest.raises(UnknownService, match="no schema"):
        call(plain, {"a": 1})
