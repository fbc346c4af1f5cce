"""The SOAP face's answers and error answers (gateway/soap/entry.py), in-process: X-Road header echo
and request hash, answers that do not fit the output schema, one-way operations, services without
a schema, pass-through answers, the path and method rules, the WSDL GET, and how every gateway error
becomes a SOAP 1.1 Fault with its code and detail."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
from collections.abc import Iterator, MutableMapping
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from lxml import etree

from gateway.app import create_app
from gateway.config import load_config
from gateway.connector import Call, Reply
from gateway.errors import InvalidBody, UpstreamError, UpstreamFault
from gateway.resources import schemas_dir
from gateway.soap.entry import SoapEntry, fault_for, is_soap_path
from gateway.storage.db import upgrade
from gateway.xml.contract import SchemaError
from tests.conftest import fixtures_dir
from tests.helpers import FunctionConnector, InProcess
from tests.test_soap_face import envelope, fault_of, soap_config

SOAP = "http://schemas.xmlsoap.org/soap/envelope/"
XROAD = "http://x-road.eu/xsd/xroad.xsd"
IDEN = "http://x-road.eu/xsd/identifiers"
LT = "urn:lienthong:fault"
DAN = "http://dancuquocgia.bca"
PORTAL = "VN/GOV/000.00.00.G22/DVCQG"
# A subsystem of its own, so that only this file's rule (not the demo's) decides
VERIFY = "VN/GOV/000.00.00.G01/KIEMTHU/XacThucThongTinCongDan"
PLAIN = "VN/GOV/000.00.00.G01/KIEMTHU/ThongBao"  # no schema
ONEWAY = "VN/GOV/000.00.00.G01/KIEMTHU/GhiNhan"  # described by XSD, no output
REQUEST = (f'<d:XacThucThongTinCongDanRequest xmlns:d="{DAN}"><d:MaYeuCau>R-1</d:MaYeuCau>'
           "<d:MaDichVu>1.001193</d:MaDichVu><d:MaCanBo>canbo.mai</d:MaCanBo>"
           "<d:SoDinhDanh>001090012345</d:SoDinhDanh><d:SoCMND/><d:HoVaTen>Nguyễn Văn An</d:HoVaTen>"
           "</d:XacThucThongTinCongDanRequest>")
PAYLOAD = {"MaYeuCau": "R-1", "MaDichVu": "1.001193", "MaCanBo": "canbo.mai", "SoDinhDanh": "001090012345",
           "SoCMND": "", "HoVaTen": "Nguyễn Văn An"}


class Gateway(InProcess):
    def soap(self, path: str, body: bytes, *, content_type: str = "text/xml; charset=utf-8",
             method: str = "POST", headers: dict[str, str] | None = None) -> httpx.Response:
        h = {"Content-Type": content_type, "Authorization": f"Bearer {self.token(PORTAL)}", **(headers or {})}
        response: httpx.Response = self.client.request(method, path, content=body, headers=h)
        return response

    def leaf(self, exchange_id: str) -> dict[str, Any]:
        (found,) = self.runtime.audit.by_exchange(exchange_id)
        return dict(json.loads(found.leaf))

    def upstream(self, service: str, answer: Any, *, forwards: bool = False) -> list[Call]:
        """Replace the service's connector by a function answering ``answer`` (a Reply, or a callable)."""
        calls: list[Call] = []

        async def fn(call: Call) -> Reply:
            calls.append(call)
            reply: Reply = answer(call) if callable(answer) else answer
            return reply

        connector = ForwardingConnector(fn) if forwards else FunctionConnector(fn)
        self.runtime.connectors[service] = connector
        return calls


@dataclass
class ForwardingConnector(FunctionConnector):
    """A function connector that, like the ``soap`` connector, takes the client's envelope as it came."""

    forwards_soap: bool = True


@pytest.fixture(scope="module")
def gw(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    population = fixtures_dir("population-db")
    services = [
        {"id": VERIFY, "connector": "rest", "upstream": "http://json.test/verify",
         "schema": "population/dancu.wsdl", "timeout": 10},
        {"id": PLAIN, "connector": "rest", "upstream": "http://json.test/plain", "timeout": 10},
        {"id": ONEWAY, "connector": "soap", "upstream": "http://soap.test/oneway", "timeout": 10,
         "schema": str(population / "XacThucThongTinCongDan.xsd"),
         "options": {"operations": {"GhiNhan": {"input": "XacThucThongTinCongDanRequest"}}}},
    ]
    rules = [{"name": "entry-units", "services": [VERIFY, PLAIN, ONEWAY], "clients": [PORTAL],
              "scopes": ["exchange"]}]
    config_path, secrets = soap_config(tmp_path_factory.mktemp("soap-entry") / "gw", services=services,
                                       clients=[PORTAL], rules=rules)
    config = load_config(config_path)
    upgrade(config.database_url)
    with TestClient(create_app(config)) as client:
        yield Gateway(client, secrets)


def xroad_header(service: str, message_id: str) -> str:
    s = service.split("/")
    c = PORTAL.split("/")
    codes = ("xRoadInstance", "memberClass", "memberCode", "subsystemCode", "serviceCode")
    client = "".join(f"<id:{n}>{v}</id:{n}>" for n, v in zip(codes, c, strict=False))
    named = "".join(f"<id:{n}>{v}</id:{n}>" for n, v in zip(codes, s, strict=False))
    return (f'<x:client xmlns:x="{XROAD}" xmlns:id="{IDEN}" id:objectType="SUBSYSTEM">{client}</x:client>'
            f'<x:service xmlns:x="{XROAD}" xmlns:id="{IDEN}" id:objectType="SERVICE">{named}</x:service>'
            f'<x:id xmlns:x="{XROAD}">{message_id}</x:id><x:userId xmlns:x="{XROAD}">canbo.mai</x:userId>'
            f'<x:protocolVersion xmlns:x="{XROAD}">4.0</x:protocolVersion>')


def detail_of(response: httpx.Response) -> dict[str, list[str]]:
    """The fault's detail: each child's local name -> its texts (lt:error as 'path: message')."""
    root = etree.fromstring(response.content)
    detail = root.find(f"{{{SOAP}}}Body/{{{SOAP}}}Fault/detail")
    out: dict[str, list[str]] = {}
    for node in [] if detail is None else detail:
        text = node.text or ""
        if node.get("path") is not None:
            text = f"{node.get('path')}: {text}"
        out.setdefault(etree.QName(node).localname, []).append(text)
    return out


# --- answers --------------------------------------------------------------------------------------

def test_xroad_answer_echoes_the_header_with_the_request_hash(gw: Gateway) -> None:
    """On /soap, a JSON service's answer is written by the output schema under the echoed X-Road
    header and its requestHash: base64 SHA-512 of the request, as in the HTTP header."""
    calls = gw.upstream(VERIFY, lambda call: Reply({"TonTai": True}))
    body = envelope(REQUEST, xroad_header(VERIFY, "entry-echo-1"))
    r = gw.soap("/soap", body)
    assert r.status_code == 200, r.text
    digest = base64.b64encode(hashlib.sha512(body).digest()).decode()
    assert r.headers["x-road-request-hash"] == digest and r.headers["x-road-id"] == "entry-echo-1"
    root = etree.fromstring(r.content)
    head = root.find(f"{{{SOAP}}}Header")
    assert head is not None
    assert [etree.QName(e).localname for e in head] == ["client", "service", "id", "userId",
                                                        "protocolVersion", "requestHash"]
    assert head[-1].text == digest
    assert root.findtext(f".//{{{DAN}}}TonTai") == "true"
    assert calls[0].payload == PAYLOAD and calls[0].headers.get("X-Road-UserId", "canbo.mai") == "canbo.mai"
    assert gw.leaf("entry-echo-1")["outcome"] == "ok"


def test_plain_answer_has_no_header(gw: Gateway) -> None:
    """Without X-Road fields the answer envelope has no Header at all; reply headers pass through."""
    gw.upstream(VERIFY, Reply({"TonTai": False}, headers={"X-Trace": "t-1"}))
    r = gw.soap(f"/soap/{VERIFY}", envelope(REQUEST))
    assert r.status_code == 200, r.text
    root = etree.fromstring(r.content)
    assert root.find(f"{{{SOAP}}}Header") is None
    assert root.findtext(f".//{{{DAN}}}TonTai") == "false"
    assert r.headers["x-trace"] == "t-1"


def test_answer_that_breaks_the_output_schema_is_a_server_fault(gw: Gateway) -> None:
    """A JSON answer the output schema cannot write is Server.ServiceFailed naming the JSON path,
    never a half-written envelope or a false verdict."""
    gw.upstream(VERIFY, Reply({"TonTai": "perhaps", "Extra": 1}))
    r = gw.soap(f"/soap/{VERIFY}", envelope(REQUEST))
    assert r.status_code == 500
    fault = fault_of(r)
    assert fault["code"] == "Server.ServiceFailed"
    assert "does not fit the XacThucThongTinCongDan response schema" in fault["string"]
    errors = detail_of(r)["error"]
    assert "$.TonTai: must be true or false" in errors
    assert "$.Extra: is not a field of KetQuaXacThucResponse" in errors
    leaf = gw.leaf(r.headers["x-road-id"])
    assert leaf["outcome"] == "failed" and leaf["error"] == "Server.ServiceFailed"


def test_upstream_error_status_is_a_server_fault(gw: Gateway) -> None:
    """A JSON answer with an HTTP error status is Server.ServiceFailed, its status and body in the detail."""
    gw.upstream(VERIFY, Reply({"message": "down"}, status=503))
    r = gw.soap(f"/soap/{VERIFY}", envelope(REQUEST))
    assert fault_of(r)["code"] == "Server.ServiceFailed"
    assert fault_of(r)["string"] == f"{VERIFY} answered HTTP 503"
    detail = detail_of(r)
    assert detail["status"] == ["503"] and json.loads(detail["answer"][0]) == {"message": "down"}
    assert len(detail["faultDetail"]) == 1  # the exchange id, as X-Road puts it


def test_upstream_soap_fault_keeps_its_code_and_string(gw: Gateway) -> None:
    """An upstream's fault read into JSON (UpstreamFault) is answered with the upstream's own code."""
    async def failing(call: Call) -> Reply:
        raise UpstreamFault("upstream fault", faultcode="dan:LoiNghiepVu", faultstring="Không tìm thấy",
                            faultdetail={"MaLoi": "404"})

    gw.runtime.connectors[VERIFY] = FunctionConnector(failing)
    r = gw.soap(f"/soap/{VERIFY}", envelope(REQUEST))
    fault = fault_of(r)
    assert (fault["code"], fault["string"]) == ("dan:LoiNghiepVu", "Không tìm thấy")
    assert json.loads(detail_of(r)["faultdetail"][0]) == {"MaLoi": "404"}


def test_one_way_operation_answers_202_empty(gw: Gateway) -> None:
    """An operation without an output message answers 202 with no body once the upstream took it."""
    calls = gw.upstream(ONEWAY, Reply({}))
    r = gw.soap(f"/soap/{ONEWAY}", envelope(REQUEST))
    assert r.status_code == 202 and r.content == b""
    assert calls[0].payload == PAYLOAD and calls[0].operation == "GhiNhan"


def test_service_without_schema_refuses_a_json_connector(gw: Gateway) -> None:
    gw.upstream(PLAIN, Reply({}))
    r = gw.soap(f"/soap/{PLAIN}", envelope("<x:Note xmlns:x='urn:x'/>"))
    fault = fault_of(r)
    assert fault["code"] == "Client.UnknownService"
    assert fault["string"] == f"{PLAIN} has no WSDL or XSD, so it cannot be called over SOAP"


def test_service_without_schema_passes_soap_through(gw: Gateway) -> None:
    """A forwarding connector gets the client's bytes as they came; its envelope goes back unchanged."""
    answer = (b"<?xml version='1.0'?><s:Envelope xmlns:s='" + SOAP.encode()
              + b"'><s:Body><ok/></s:Body></s:Envelope>")
    calls = gw.upstream(PLAIN, Reply(answer, status=200, content_type="text/xml; charset=iso-8859-1"),
                        forwards=True)
    sent = envelope("<x:Note xmlns:x='urn:x'>  spaced  </x:Note>")
    r = gw.soap(f"/soap/{PLAIN}", sent)
    assert r.status_code == 200 and r.content == answer
    assert r.headers["content-type"] == "text/xml; charset=iso-8859-1"
    assert calls[0].body == sent and calls[0].payload is None


def test_service_without_schema_cannot_answer_json(gw: Gateway) -> None:
    gw.upstream(PLAIN, Reply({"ok": True}), forwards=True)
    r = gw.soap(f"/soap/{PLAIN}", envelope("<x:Note xmlns:x='urn:x'/>"))
    fault = fault_of(r)
    assert fault["code"] == "Server.ServiceFailed"
    assert fault["string"] == f"{PLAIN} answered JSON that has no SOAP form here"


# --- refusals --------------------------------------------------------------------------------------

def test_body_of_no_operation_is_invalid_body(gw: Gateway) -> None:
    gw.upstream(VERIFY, lambda call: pytest.fail("must not be called"))
    r = gw.soap(f"/soap/{VERIFY}", envelope(f"<d:Unknown xmlns:d='{DAN}'/>"))
    fault = fault_of(r)
    assert fault["code"] == "Client.InvalidBody"
    assert fault["string"] == f"{{{DAN}}}Unknown is not the request of any operation of {VERIFY}"


def test_operation_the_service_may_not_call_is_unknown(gw: Gateway) -> None:
    """The WSDL has more operations than the service offers: another one's request is refused."""
    gw.upstream(VERIFY, lambda call: pytest.fail("must not be called"))
    r = gw.soap(f"/soap/{VERIFY}", envelope(f"<d:TraCuuThongTinCongDanRequest xmlns:d='{DAN}'/>"))
    fault = fault_of(r)
    assert fault["code"] == "Client.UnknownService"
    assert fault["string"] == f"{VERIFY} offers XacThucThongTinCongDan, not TraCuuThongTinCongDan"
    assert gw.leaf(r.headers["x-road-id"])["operation"] == "TraCuuThongTinCongDan"


def test_attachments_for_a_json_service_are_refused(gw: Gateway) -> None:
    gw.upstream(VERIFY, lambda call: pytest.fail("must not be called"))
    data = (b"--B\r\nContent-Type: text/xml\r\n\r\n" + envelope(REQUEST)
            + b"\r\n--B\r\nContent-Type: text/plain\r\n\r\nscan\r\n--B--\r\n")
    r = gw.soap(f"/soap/{VERIFY}", data, content_type='multipart/related; type="text/xml"; boundary=B')
    fault = fault_of(r)
    assert fault["code"] == "Client.InvalidContentType"
    assert fault["string"] == f"{VERIFY} takes no attachments: send a plain SOAP message"


def test_header_service_must_be_the_paths(gw: Gateway) -> None:
    """On /soap/{service} an X-Road header may name the service, but only the path's."""
    other = "VN/GOV/000.00.00.G01/KHAC/XacThucThongTinCongDan"
    r = gw.soap(f"/soap/{VERIFY}", envelope(REQUEST, xroad_header(other, "entry-mismatch")))
    fault = fault_of(r)
    assert fault["code"] == "Client.InconsistentHeaders"
    assert fault["string"] == f"the SOAP header names service {other}, the path {VERIFY}"


def test_schema_errors_are_listed_in_the_detail(gw: Gateway) -> None:
    """A body that breaks the input schema lists every problem as lt:error with its path."""
    gw.upstream(VERIFY, lambda call: pytest.fail("must not be called"))
    body = REQUEST.replace("<d:MaDichVu>1.001193</d:MaDichVu>", "").replace(
        "<d:SoCMND/>", "<d:SoCMND a='1'/>")
    r = gw.soap(f"/soap/{VERIFY}", envelope(body))
    assert fault_of(r)["code"] == "Client.InvalidBody"
    assert detail_of(r)["error"] == [
        "/XacThucThongTinCongDanRequest/MaCanBo: XacThucThongTinCongDanRequest has MaCanBo where "
        "MaDichVu was expected"]


def test_other_methods_are_not_allowed_and_audited(gw: Gateway) -> None:
    r = gw.soap(f"/soap/{VERIFY}", envelope(REQUEST), method="PUT")
    assert r.status_code == 500 and r.headers["allow"] == "GET, POST"
    assert fault_of(r)["code"] == "Client.MethodNotAllowed"
    leaf = gw.leaf(r.headers["x-road-id"])
    assert leaf["outcome"] == "refused" and leaf["error"] == "Client.MethodNotAllowed"


@pytest.mark.parametrize("path", ["/soap/VN/GOV/..%2F_sim/x", "/soap/VN/GOV/%2e%2e/x", "/soap/VN//GOV"])
def test_bad_service_paths_are_refused(gw: Gateway, path: str) -> None:
    """The service in /soap/... follows /r1's segment rules: a POST is refused and audited, a GET too."""
    r = gw.soap(path, envelope(REQUEST))
    assert r.status_code == 500 and fault_of(r)["code"] == "Client.BadPath"
    assert gw.leaf(r.headers["x-road-id"])["outcome"] == "refused"
    got = gw.client.get(path + "?wsdl")
    assert got.status_code == 400 and fault_of(got)["code"] == "Client.BadPath"


def test_unreadable_content_type_is_invalid_soap(gw: Gateway) -> None:
    """A Content-Type the MIME reader cannot take is still a SOAP Fault (Client.InvalidSoap), audited."""
    r = gw.soap(f"/soap/{VERIFY}", b"--B\r\n\r\n--B--", content_type="multipart/related; 0*")
    assert r.status_code == 500
    fault = fault_of(r)
    assert (fault["code"], fault["string"]) == ("Client.InvalidSoap",
                                                "the request could not be read as a SOAP message")
    assert gw.leaf(r.headers["x-road-id"])["error"] == "Client.InvalidSoap"


def test_http_exchange_id_is_used_without_an_xroad_id(gw: Gateway) -> None:
    """Without an X-Road header id the HTTP X-Road-Id names the exchange, unless it is unsound."""
    gw.upstream(VERIFY, Reply({"TonTai": True}))
    r = gw.soap(f"/soap/{VERIFY}", envelope(REQUEST), headers={"X-Road-Id": "http-id-7"})
    assert r.status_code == 200 and r.headers["x-road-id"] == "http-id-7"
    r = gw.soap(f"/soap/{VERIFY}", b"", headers={"X-Road-Id": "x" * 129})
    assert r.headers["x-road-id"] != "x" * 129 and len(r.headers["x-road-id"]) <= 128


# --- WSDL ------------------------------------------------------------------------------------------

def test_wsdl_get_rules(gw: Gateway) -> None:
    """GET needs ?wsdl (either case); a service without a schema has no WSDL; an XSD service gets one."""
    bare = gw.client.get(f"/soap/{VERIFY}")
    assert bare.status_code == 405 and bare.headers["allow"] == "GET, POST"
    assert fault_of(bare)["code"] == "Client.MethodNotAllowed"
    assert gw.client.get(f"/soap/{VERIFY}?WSDL").status_code == 200
    missing = gw.client.get(f"/soap/{PLAIN}?wsdl")
    assert missing.status_code == 404 and fault_of(missing)["code"] == "Client.UnknownService"
    generated = etree.fromstring(gw.client.get(f"/soap/{ONEWAY}?wsdl").content)
    wsdl = "http://schemas.xmlsoap.org/wsdl/"
    (operation,) = generated.iterfind(f"{{{wsdl}}}portType/{{{wsdl}}}operation")
    assert operation.get("name") == "GhiNhan" and operation.find(f"{{{wsdl}}}output") is None


# --- the safety net and start-up -----------------------------------------------------------------------

def test_a_crash_still_answers_a_soap_fault(gw: Gateway) -> None:
    """A bug in the entry point (here: a scope without headers) is a Server fault, never an HTML page."""
    entry: SoapEntry = gw.client.app.soap  # type: ignore[attr-defined]
    sent: list[MutableMapping[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: MutableMapping[str, Any]) -> None:
        sent.append(message)

    asyncio.run(entry({"type": "http", "method": "POST", "path": "/soap"}, receive, send))
    assert sent[0]["status"] == 500
    body = b"".join(m.get("body", b"") for m in sent[1:])
    root = etree.fromstring(body)
    assert root.findtext(f"{{{SOAP}}}Body/{{{SOAP}}}Fault/faultcode") == "Server.InternalError"
    assert "failed unexpectedly (KeyError) while answering POST /soap" in body.decode()


def test_a_service_naming_an_operation_its_wsdl_lacks_stops_start_up(tmp_path: Any) -> None:
    services = [{"id": "VN/GOV/000.00.00.G01/CSDLDC/KhongCo", "connector": "rest",
                 "upstream": "http://json.test/", "schema": "population/dancu.wsdl"}]
    config_path, _ = soap_config(tmp_path / "gw", services=services, clients=[], rules=[])
    with pytest.raises(SchemaError) as error:
        SoapEntry(load_config(config_path), lambda: None, lambda: 1000, schemas_dir())  # type: ignore[arg-type,return-value]
    assert str(error.value).startswith(
        "service VN/GOV/000.00.00.G01/CSDLDC/KhongCo: dancu.wsdl has no operation KhongCo (it has "
        "TraCuuThongTinCongDan, XacMinhThongTinNhanThan, XacThucThongTinCongDan)")


def test_is_soap_path() -> None:
    assert is_soap_path("/soap") and is_soap_path("/soap/VN/GOV/x")
    assert not is_soap_path("/soapy") and not is_soap_path("/r1/soap")


# --- fault_for ---------------------------------------------------------------------------------------

def _fault(wire: bytes) -> tuple[str, str, list[tuple[str, str | None, str | None]]]:
    root = etree.fromstring(wire)
    fault = root.find(f"{{{SOAP}}}Body/{{{SOAP}}}Fault")
    assert fault is not None
    detail = fault.find("detail")
    items = [] if detail is None else [(etree.QName(n).localname, n.get("path"), n.text) for n in detail]
    return fault.findtext("faultcode") or "", fault.findtext("faultstring") or "", items


def test_fault_for_lists_schema_errors_and_the_exchange_id() -> None:
    err = InvalidBody("the request does not match", errors=[{"path": "/a/b", "message": "too short"},
                                                            {"message": "no path"}])
    code, text, items = _fault(fault_for(err, "ex-9", None))
    assert (code, text) == ("Client.InvalidBody", "the request does not match")
    assert items == [("faultDetail", None, "ex-9"), ("error", "/a/b", "too short"), ("error", "", "no path")]


def test_fault_for_writes_extras_and_skips_what_cannot_be_an_element() -> None:
    """Extra values become lt: elements (JSON when not text); None and non-names are left out."""
    err = UpstreamError("bad", extra={"status": 502, "rule": "r1", "none": None, "not a name": "x",
                                      "answer": {"k": [1, 2]}})
    code, text, items = _fault(fault_for(err, None, None))
    assert (code, text) == ("Server.ServiceFailed", "bad")
    assert items == [("status", None, "502"), ("rule", None, "r1"), ("answer", None, '{"k":[1,2]}')]


def test_fault_for_upstream_fault_without_a_string_keeps_the_detail() -> None:
    err = UpstreamFault("the upstream failed", faultcode="soap:Server", faultstring="", faultdetail=None)
    code, text, items = _fault(fault_for(err, None, None))
    assert (code, text, items) == ("soap:Server", "the upstream failed", [])


def test_fault_for_echoes_a_header() -> None:
    node = etree.Element(f"{{{XROAD}}}id")
    node.text = "m-1"
    root = etree.fromstring(fault_for(InvalidBody("x"), "m-1", [node]))
    assert root.findtext(f"{{{SOAP}}}Header/{{{XROAD}}}id") == "m-1"
