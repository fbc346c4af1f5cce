"""The population database speaks its published schemas: what the gateway sends and the simulator
answers validate against the XSDs in ../shared/fixtures/population-db, the project's WSDL declares the
same elements, and through the running gateway a DTD or a value that breaks its type is a 502."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import xmlschema
from lxml import etree
from xmlschema.validators import XsdElement, XsdGroup
from zeep.transports import Transport

from connectors import synthetic
from connectors.population import DANCU, NAMESPACE, QLDC, WSDL
from connectors.population.connector import create
from connectors.population.simulator import PopulationDatabase
from connectors.soap.connector import SoapConnector
from gateway.config import Service
from gateway.connector import Call, ConnectorContext
from gateway.resources import schemas_dir
from gateway.xml.catalog import load_wsdl
from gateway.xml.contract import load_contract
from tests.conftest import Stack, fixtures_dir

SOAP_ENV = "http://schemas.xmlsoap.org/soap/envelope/"
VERIFY, IDENTITY = "XacThucThongTinCongDan", "XacMinhThongTinNhanThan"
PORTAL = "VN/GOV/000.00.00.G22/DVCQG"
SERVICES = "VN/GOV/000.00.00.G01/CSDLDC"
OFFICIAL = {"X-Road-UserId": "VN-canbo.tranthimai", "X-Road-Issue": "H22.23-20261121-0000001"}
PEOPLE = synthetic.people(count=1000, seed=2026)


@pytest.fixture(scope="module")
def published() -> Path:
    """The published schemas, or a skip naming ../shared/fixtures/population-db."""
    return fixtures_dir("population-db")


def _xsd(folder: Path, name: str) -> xmlschema.XMLSchemaBase:
    return xmlschema.XMLSchema10(str(folder / name))


def _body(envelope: bytes) -> Any:
    return etree.fromstring(envelope).find(f"{{{SOAP_ENV}}}Body")[0]


def _connector(operation: str) -> SoapConnector:
    context = ConnectorContext(http=httpx.AsyncClient(), schemas_dir=schemas_dir())
    return create(Service(id=f"{SERVICES}/{operation}", connector="population",
                          upstream="http://127.0.0.1:9/dancu"), context)


def _request(operation: str, payload: dict[str, Any], **headers: str) -> bytes:
    connector = _connector(operation)
    assert connector.contract is not None
    service = Service(id=f"{SERVICES}/{operation}", connector="population", upstream="http://x/")
    call = Call(exchange_id="lt-1", service=service, operation=operation, payload=payload,
                headers={"X-Road-Id": "lt-1", **headers})
    return connector.request(connector.contract.operations[operation], call)


def _verify(person: synthetic.Person, **fields: str) -> dict[str, str]:
    return {"MaDichVu": "1.001193.000.00.00.H22", "SoDinhDanh": person.so_dinh_danh,
            "SoCMND": person.so_cmnd, "HoVaTen": person.ho_va_ten, **fields}


def _identity(person: synthetic.Person, **fields: str) -> dict[str, str]:
    return {"MaDVC": "1.001193.000.00.00.H22", "MaTichHop": "LGSP.G22", "MaDonVi": "000.00.00.G22",
            "SoDinhDanh": person.so_dinh_danh, "SoCMND": person.so_cmnd, "HoVaTen": person.ho_va_ten,
            "NgayThangNamSinh": person.ngay_sinh, **fields}


# --- the project's WSDL declares the published elements -------------------------------------------------

def _shape(element: Any) -> Any:
    """An element's structure as a plain value: name, type, occurrences, children, attributes."""
    kind = element.type
    occurs = (element.min_occurs, element.max_occurs)
    if kind.is_simple():
        return (element.name, _builtin(kind), occurs)
    attributes = sorted((a.name, _builtin(a.type), a.use) for a in kind.attributes.values() if a.name)
    children = [_shape(child) for child in _elements(kind.content)]
    return (element.name, occurs, children, attributes)


def _builtin(kind: Any) -> str:
    while not (kind.is_global() and kind.target_namespace == "http://www.w3.org/2001/XMLSchema"):
        if kind.is_restriction() and (kind.enumeration or kind.patterns):
            return f"restricted {kind.name}"  # a facet the published schema does not have
        kind = kind.base_type
    return str(kind.name)


def _elements(group: Any) -> Iterator[Any]:
    for item in group:
        if isinstance(item, XsdGroup):
            yield from _elements(item)
        elif isinstance(item, XsdElement):
            yield item


@pytest.mark.parametrize(("file", "tag"), [
    ("XacThucThongTinCongDan.xsd", f"{{{NAMESPACE}}}XacThucThongTinCongDanRequest"),
    ("XacThucThongTinCongDan.xsd", f"{{{NAMESPACE}}}KetQuaXacThucResponse"),
    ("XacMinhThongTinNhanThanRequest.xsd", f"{{{QLDC}}}XacMinhThongTinNhanThanRequest"),
    ("XacMinhThongTinNhanThanResponse.xsd", f"{{{DANCU}}}XacMinhThongTinNhanThanResponse"),
    ("XacMinhThongTinNhanThanResponse.xsd", f"{{{DANCU}}}CongdanCollection"),
    ("CongdanCollection.xsd", f"{{{DANCU}}}CongdanCollection"),
])
def test_wsdl_declares_the_published_element(published: Path, file: str, tag: str) -> None:
    """Each published element is in the WSDL with the same names, order, occurrences and types."""
    theirs = _xsd(published, file).maps.elements[tag]
    ours = load_wsdl(schemas_dir() / WSDL).schema.maps.elements[tag]
    assert _shape(ours) == _shape(theirs)


def test_wsdl_binds_the_published_elements() -> None:
    """The verify and identity operations take and answer exactly the published elements."""
    operations = load_contract(schemas_dir() / WSDL).operations
    assert (operations[VERIFY].input.tag, operations[VERIFY].output.tag) == (  # type: ignore[union-attr]
        f"{{{NAMESPACE}}}XacThucThongTinCongDanRequest", f"{{{NAMESPACE}}}KetQuaXacThucResponse")
    assert (operations[IDENTITY].input.tag, operations[IDENTITY].output.tag) == (  # type: ignore[union-attr]
        f"{{{QLDC}}}XacMinhThongTinNhanThanRequest", f"{{{DANCU}}}XacMinhThongTinNhanThanResponse")


# --- requests and answers against the published XSDs ------------------------------------------------------

@pytest.mark.parametrize("person", PEOPLE[:20], ids=lambda p: p.so_dinh_danh)
def test_gateway_requests_validate_against_the_published_xsds(published: Path,
                                                              person: synthetic.Person) -> None:
    """The envelopes the gateway writes from JSON (MaYeuCau and MaCanBo filled) are valid as published."""
    verify = _body(_request(VERIFY, _verify(person), **{"X-Road-UserId": "canbo.an"}))
    _xsd(published, "XacThucThongTinCongDan.xsd").validate(verify)
    assert [etree.QName(e).localname for e in verify] == ["MaYeuCau", "MaDichVu", "MaCanBo", "SoDinhDanh",
                                                          "SoCMND", "HoVaTen"]
    identity = _body(_request(IDENTITY, _identity(person, MaCanBo="canbo.an")))
    _xsd(published, "XacMinhThongTinNhanThanRequest.xsd").validate(identity)


def test_empty_values_are_sent_as_empty_elements(published: Path) -> None:
    """A field the client has no value for is an empty element, still valid as published."""
    verify = _body(_request(VERIFY, _verify(PEOPLE[0], SoCMND="", HoVaTen=""), **{"X-Road-UserId": "c"}))
    _xsd(published, "XacThucThongTinCongDan.xsd").validate(verify)
    assert verify.findtext(f"{{{NAMESPACE}}}SoCMND") == ""


def test_simulator_answers_validate_against_the_published_xsds(published: Path) -> None:
    """The simulator's verify answers (true and false) and identity collections are valid as published."""
    database = PopulationDatabase(seed=2026)
    verify = _xsd(published, "XacThucThongTinCongDan.xsd")
    collection = _xsd(published, "XacMinhThongTinNhanThanResponse.xsd")
    header = {"MaYeuCau": "x", "MaCanBo": "c"}
    for person in PEOPLE[:60]:
        verify.validate(_body(database.verify({**header, **_verify(person)})))
        verify.validate(_body(database.verify({**header, **_verify(person, HoVaTen="Không Ai")})))
        collection.validate(_body(database.identity({**header, **_identity(person)})))


def test_published_sample_goes_through_the_codec(published: Path) -> None:
    """The published input reads into JSON with its own field names, writes back the same, and its
    output reads as {"TonTai": true}."""
    text = (published / "XacThucThongTinCongDan.input-output.txt").read_text("utf-8")
    request, answer = text.split("Output:", 1)
    request = request[request.rindex("<soapenv:Envelope"):]  # the file repeats the start tag
    operation = load_contract(schemas_dir() / WSDL).operations[VERIFY]
    payload = operation.input.to_json(_body(request.strip().encode()))
    assert payload == {"MaYeuCau": "string", "MaDichVu": "033", "MaCanBo": "VDXP_VPCP ",
                       "SoDinhDanh": "string", "SoCMND": "string", "HoVaTen": "string"}
    written = etree.Element("Body")
    operation.input.to_xml(payload, written)
    _xsd(published, "XacThucThongTinCongDan.xsd").validate(written[0])
    connector = _connector(VERIFY)
    assert connector.reply(operation, 200, answer.strip().encode(), "text/xml") == {"TonTai": True}


class _LocalOnly(Transport):
    def _load_remote_data(self, url: str) -> bytes:
        raise ValueError(f"refusing to fetch {url}")


def test_a_zeep_client_of_the_wsdl_writes_published_requests(published: Path) -> None:
    """A third-party client (zeep) reading the project's WSDL writes requests valid as published."""
    import zeep

    client = zeep.Client(str(schemas_dir() / WSDL), transport=_LocalOnly())  # type: ignore[no-untyped-call]
    person = PEOPLE[1]
    for operation, payload, file in [
            (VERIFY, {"MaYeuCau": "R1", "MaCanBo": "c", **_verify(person)}, "XacThucThongTinCongDan.xsd"),
            (IDENTITY, {"MaYeuCau": "R2", "MaCanBo": "c", **_identity(person)},
             "XacMinhThongTinNhanThanRequest.xsd")]:
        message = client.create_message(client.service, operation, **payload)
        _xsd(published, file).validate(message.find(f"{{{SOAP_ENV}}}Body")[0])


# --- through the running gateway (real sockets) -------------------------------------------------------

def _call(stack: Stack, operation: str, body: Any, token: str) -> httpx.Response:
    return httpx.post(f"{stack.base}/r1/{SERVICES}/{operation}", content=json.dumps(body), timeout=30,
                      headers={"Content-Type": "application/json", "Authorization": f"Bearer {token}",
                               **OFFICIAL})


def _received(stack: Stack, marker: str) -> Any:
    items = httpx.get(f"{stack.sims['population']}/_sim/received").json()["items"]
    return _body(next(i["body"] for i in reversed(items) if marker in (i["body"] or "")).encode())


def _failing(stack: Stack, fail: str | None) -> None:
    httpx.post(f"{stack.sims['population']}/_sim/mode", json={"fail": fail}).raise_for_status()


def test_verify_round_trip_speaks_the_published_schema(stack: Stack) -> None:
    """JSON -> SOAP -> JSON through the gateway: the upstream receives a published request."""
    folder = fixtures_dir("population-db")
    person = PEOPLE[5]
    token = stack.token(PORTAL)
    r = _call(stack, VERIFY, {**_verify(person), "MaYeuCau": "SCHEMA-1"}, token)
    assert r.status_code == 200, r.text
    assert r.json() == {"TonTai": True}
    sent = _received(stack, "SCHEMA-1")
    _xsd(folder, "XacThucThongTinCongDan.xsd").validate(sent)
    assert sent.findtext(f"{{{NAMESPACE}}}MaCanBo") == OFFICIAL["X-Road-UserId"]
    old = _call(stack, VERIFY, {**_verify(person), "MaDonVi": "000.00.00.G22"}, token)
    assert old.status_code == 422 and [e["path"] for e in old.json()["errors"]] == ["$.MaDonVi"]


def test_identity_round_trip_speaks_the_published_schema(stack: Stack) -> None:
    """The identity check goes out as the published request and its CongdanCollection comes back."""
    folder = fixtures_dir("population-db")
    person = PEOPLE[6]
    r = _call(stack, IDENTITY, {**_identity(person), "MaYeuCau": "SCHEMA-2"}, stack.token(PORTAL))
    assert r.status_code == 200, r.text
    (citizen,) = r.json()["CongdanCollection"]["CongDan"]
    assert citizen["SoDinhDanh"] == person.so_dinh_danh and citizen["SoCMND"] == person.so_cmnd
    _xsd(folder, "XacMinhThongTinNhanThanRequest.xsd").validate(_received(stack, "SCHEMA-2"))


def test_soap_client_round_trip(stack: Stack) -> None:
    """A SOAP client's published request goes through /soap and gets the published answer."""
    person = PEOPLE[7]
    fields = {"MaYeuCau": "SCHEMA-3", **_verify(person), "MaCanBo": "canbo.mai"}
    order = ["MaYeuCau", "MaDichVu", "MaCanBo", "SoDinhDanh", "SoCMND", "HoVaTen"]
    children = "".join(f"<dan:{k}>{fields[k]}</dan:{k}>" for k in order)
    envelope = (f'<soapenv:Envelope xmlns:soapenv="{SOAP_ENV}" xmlns:dan="{NAMESPACE}"><soapenv:Header/>'
                f"<soapenv:Body><dan:XacThucThongTinCongDanRequest>{children}"
                "</dan:XacThucThongTinCongDanRequest></soapenv:Body></soapenv:Envelope>").encode()
    r = httpx.post(f"{stack.base}/soap/{SERVICES}/{VERIFY}", content=envelope, timeout=30,
                   headers={"Content-Type": "text/xml; charset=utf-8",
                            "Authorization": f"Bearer {stack.token(PORTAL)}", **OFFICIAL})
    assert r.status_code == 200, r.text
    answer = _body(r.content)
    _xsd(fixtures_dir("population-db"), "XacThucThongTinCongDan.xsd").validate(answer)
    assert answer.findtext(f"{{{NAMESPACE}}}TonTai") == "true"


@pytest.mark.parametrize("fail", ["dtd", "bad-value"])
def test_broken_answers_are_502_never_false(stack: Stack, fail: str) -> None:
    """An answer with a DTD, or with TonTai banana, is a 502 problem, never {"TonTai": false} (what
    broke is withheld from the client by the rule's minimisation; the connector tests show it)."""
    token = stack.token(PORTAL)
    _failing(stack, fail)
    try:
        r = _call(stack, VERIFY, _verify(PEOPLE[8]), token)
    finally:
        _failing(stack, None)
    assert r.status_code == 502, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    problem = r.json()
    assert problem["status"] == 502 and "TonTai" not in problem
    assert _call(stack, VERIFY, _verify(PEOPLE[8]), token).json() == {"TonTai": True}
