"""The ``rest`` and ``soap`` connectors against function-backed upstreams (httpx.MockTransport): what
goes on the wire, and how every kind of answer (empty, untyped, broken, a fault, multipart) comes
back or becomes the gateway's own error."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from lxml import etree

from connectors.rest.connector import RestConnector
from connectors.rest.connector import create as create_rest
from connectors.soap.connector import SoapConnector, is_soap, xroad_header
from connectors.soap.connector import create as create_soap
from gateway.config import Service
from gateway.connector import Call, ConnectorContext, Reply
from gateway.errors import UnknownService, UpstreamError, UpstreamFault
from gateway.resources import schemas_dir
from gateway.soap.faults import PassedFault

SOAP = "http://schemas.xmlsoap.org/soap/envelope/"
DAN = "http://dancuquocgia.bca"
XROAD = "http://x-road.eu/xsd/xroad.xsd"
IDEN = "http://x-road.eu/xsd/identifiers"
VERIFY = "VN/GOV/000.00.00.G01/CSDLDC/XacThucThongTinCongDan"
ITEMS = "VN/GOV/000.00.00.H41/DANHMUC/items"
XML = "text/xml; charset=utf-8"

Handler = Callable[[httpx.Request], httpx.Response]


def http_of(handler: Handler) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.MockTransport(handler))


def run(connector: Any, call: Call) -> Reply:
    async def once() -> Reply:
        reply: Reply = await connector.call(call)
        return reply

    return asyncio.run(once())


# -- rest ------------------------------------------------------------------------------------------


def rest(handler: Handler) -> RestConnector:
    service = Service.model_validate({"id": ITEMS, "connector": "rest", "upstream": "http://upstream/api/"})
    return create_rest(service, ConnectorContext(http=http_of(handler), schemas_dir=schemas_dir()))


def rest_call(**fields: Any) -> Call:
    service = Service.model_validate({"id": ITEMS, "connector": "rest", "upstream": "http://upstream/api/"})
    return Call(exchange_id="ex-1", service=service, operation="items", **fields)


def test_rest_forwards_only_the_xroad_headers_whatever_their_case() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(204)

    reply = run(rest(handler), rest_call(method="GET", path="/a/b", query="x=1&y=2", headers={
        "x-road-id": "ex-1", "X-ROAD-USERID": "canbo.an", "X-Road-Issue": "H60-1",
        "Authorization": "Bearer t", "X-Road-Represented-Party": "p"}))
    (request,) = seen
    assert str(request.url) == "http://upstream/api/a/b?x=1&y=2"
    assert request.headers["X-Road-Id"] == "ex-1" and request.headers["X-Road-UserId"] == "canbo.an"
    assert "authorization" not in request.headers and "x-road-represented-party" not in request.headers
    assert "content-type" not in request.headers  # no body, no content type
    assert (reply.status, reply.payload, reply.wire_response) == (204, None, b"")


def test_rest_sends_the_body_with_the_clients_content_type() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(201, json={"id": 6})

    reply = run(rest(handler), rest_call(body=b"<x/>", content_type="application/xml"))
    assert seen[0].headers["content-type"] == "application/xml"
    assert seen[0].content == b"<x/>"
    assert (reply.status, reply.payload, reply.wire_request) == (201, {"id": 6}, b"<x/>")


@pytest.mark.parametrize(("headers", "content", "payload"), [
    ({}, b'{"a": 1}', {"a": 1}),  # no content type, but JSON: read as JSON
    ({}, b"plain words", {"text": "plain words"}),
    ({"content-type": "text/plain; charset=utf-8"}, b'{"a": 1}', {"text": '{"a": 1}'}),
    ({"content-type": "application/problem+json"}, b'{"title": "x"}', {"title": "x"}),
    ({"content-type": "APPLICATION/JSON ; charset=utf-8"}, b"[1]", [1]),
])
def test_rest_reads_answers_by_their_content_type(headers: dict[str, str], content: bytes,
                                                  payload: Any) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        response = httpx.Response(200, content=content, headers=headers)
        assert "content-type" in response.headers or not headers
        return response

    assert run(rest(handler), rest_call(method="GET")).payload == payload


def test_rest_4xx_is_the_upstreams_answer_and_5xx_an_error() -> None:
    answer = run(rest(lambda r: httpx.Response(409, json={"error": "conflict"})), rest_call())
    assert (answer.status, answer.payload) == (409, {"error": "conflict"})
    with pytest.raises(UpstreamError) as caught:
        run(rest(lambda r: httpx.Response(503, content=b"x" * 500)), rest_call(path="/p"))
    assert str(caught.value.detail) == "http://upstream/api/p failed with HTTP 503"
    assert caught.value.extra == {"status": 503, "body": "x" * 200}


def test_rest_json_that_is_not_json_is_an_upstream_error() -> None:
    broken = lambda r: httpx.Response(200, content=b"{oops", headers={"content-type": "application/json"})  # noqa: E731
    with pytest.raises(UpstreamError):
        run(rest(broken), rest_call())


def test_rest_takes_no_options() -> None:
    service = Service.model_validate({"id": ITEMS, "connector": "rest", "upstream": "http://u",
                                      "options": {"path": "/x"}})
    with pytest.raises(ValueError, match="path"):
        create_rest(service, ConnectorContext(http=http_of(lambda r: httpx.Response(200)),
                                              schemas_dir=schemas_dir()))


# -- soap: the population database's verify call, with answers chosen by the test ---------------------


def verify_service(options: dict[str, Any] | None = None, *, schema: bool = True) -> Service:
    data: dict[str, Any] = {"id": VERIFY, "connector": "soap", "upstream": "http://population/dancu",
                            "options": options or {}}
    if schema:
        data["schema"] = "population/dancu.wsdl"
    return Service.model_validate(data)


def soap(handler: Handler, options: dict[str, Any] | None = None, *, schema: bool = True) -> SoapConnector:
    return create_soap(verify_service(options, schema=schema),
                       ConnectorContext(http=http_of(handler), schemas_dir=schemas_dir()))


def soap_call(payload: Any = None, **fields: Any) -> Call:
    headers = fields.pop("headers", {"X-Road-Id": "ex-9", "X-Road-UserId": "canbo.mai"})
    return Call(exchange_id="ex-9", service=verify_service(), operation=fields.pop("operation",
                "XacThucThongTinCongDan"), payload=payload, headers=headers, **fields)


PERSON = {"MaYeuCau": "R-1", "MaDichVu": "1.001193", "MaCanBo": "canbo.mai", "SoDinhDanh": "001090012345",
          "SoCMND": "", "HoVaTen": "Nguyễn Văn An"}


def envelope(body: str, header: str = "") -> bytes:
    head = f"<s:Header>{header}</s:Header>" if header else ""
    return (f'<s:Envelope xmlns:s="{SOAP}" xmlns:dan="{DAN}">{head}<s:Body>{body}</s:Body>'
            "</s:Envelope>").encode()


ANSWER = envelope("<dan:KetQuaXacThucResponse><dan:TonTai>true</dan:TonTai></dan:KetQuaXacThucResponse>")


def answer(status: int, content: bytes, content_type: str = XML) -> Handler:
    return lambda request: httpx.Response(status, content=content, headers={"content-type": content_type})


def test_soap_json_call_gets_typed_json_back() -> None:
    reply = run(soap(answer(200, ANSWER)), soap_call(PERSON))
    assert reply.payload == {"TonTai": True}
    assert reply.wire_response == ANSWER


@pytest.mark.parametrize(("status", "content", "content_type", "says"), [
    (500, b"internal", "text/plain", "answered HTTP 500 with no usable SOAP envelope"),
    (200, envelope("<dan:Other/>"), XML, "where {http://dancuquocgia.bca}KetQuaXacThucResponse was expected"),
    (502, ANSWER, XML, "answered HTTP 502"),
    (200, b"<notsoap/>", XML, "answered HTTP 200 without a SOAP Body"),
    (200, envelope("<dan:KetQuaXacThucResponse><dan:TonTai>maybe</dan:TonTai></dan:KetQuaXacThucResponse>"),
     XML, "breaks its own schema"),
    (200, b"--b\r\nContent-Type: text/xml\r\n\r\n<x", "multipart/related; boundary=b", "answered HTTP 200"),
])
def test_soap_broken_answers_are_upstream_errors(status: int, content: bytes, content_type: str,
                                                 says: str) -> None:
    with pytest.raises(UpstreamError) as caught:
        run(soap(answer(status, content, content_type)), soap_call(PERSON))
    assert not isinstance(caught.value, UpstreamFault)
    assert says in str(caught.value.detail)


def test_soap_multipart_answer_is_read_from_its_soap_part() -> None:
    multipart = (b"--MIME\r\nContent-Type: text/xml; charset=utf-8\r\n\r\n" + ANSWER
                 + b"\r\n--MIME\r\nContent-Type: application/octet-stream\r\n\r\nbytes\r\n--MIME--\r\n")
    reply = run(soap(answer(200, multipart, 'multipart/related; type="text/xml"; boundary=MIME')),
                soap_call(PERSON))
    assert reply.payload == {"TonTai": True}


def fault_detail(detail: str) -> Any:
    fault = envelope(f"<s:Fault><faultcode>s:Client</faultcode><faultstring>Sai</faultstring>{detail}"
                     "</s:Fault>")
    with pytest.raises(UpstreamFault) as caught:
        run(soap(answer(500, fault)), soap_call(PERSON))
    extra = caught.value.extra or {}
    assert (extra.get("faultcode"), extra.get("faultstring")) == ("s:Client", "Sai")
    return extra.get("faultdetail")


@pytest.mark.parametrize(("detail", "expected"), [
    ("", None),
    ("<detail/>", None),
    ("<detail>  Số định danh không hợp lệ  </detail>", "Số định danh không hợp lệ"),
    ("<detail><LoiNghiepVu>KHONG_TIM_THAY</LoiNghiepVu></detail>", {"LoiNghiepVu": "KHONG_TIM_THAY"}),
])
def test_soap_fault_details_become_json(detail: str, expected: Any) -> None:
    assert fault_detail(detail) == expected


def test_soap_fault_detail_elements_of_one_name_in_two_namespaces_are_both_kept() -> None:
    got = fault_detail("<detail><a:ma xmlns:a='urn:a'>E01</a:ma><b:ma xmlns:b='urn:b'>E02</b:ma></detail>")
    assert got == {"ma": "E01", "{urn:b}ma": "E02"}


def test_soap_fault_detail_keeps_repeated_elements() -> None:
    assert fault_detail("<detail><ma>E01</ma><ma>E02</ma></detail>") == {"ma": ["E01", "E02"]}
    assert fault_detail("<detail><ma>1</ma><ma>2</ma><ma>3</ma><x>y</x></detail>") == {
        "ma": ["1", "2", "3"], "x": "y"}


def test_soap_fills_and_defaults_missing_fields_from_the_exchange() -> None:
    seen: list[bytes] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request.content)
        return httpx.Response(200, content=ANSWER, headers={"content-type": XML})

    connector = soap(handler, {"fill": {"MaYeuCau": "id", "MaCanBo": "userId"},
                               "defaults": {"MaDichVu": "1.001193"}})
    partial = {k: v for k, v in PERSON.items() if k not in ("MaYeuCau", "MaCanBo", "MaDichVu")}
    run(connector, soap_call(partial, headers={"x-road-id": "ex-lower", "X-Road-UserId": "canbo.b"}))
    body = etree.fromstring(seen[0]).find(f"{{{SOAP}}}Body")
    assert body is not None
    request = body[0]
    assert request.findtext(f"{{{DAN}}}MaYeuCau") == "ex-lower"  # header names match in any case
    assert request.findtext(f"{{{DAN}}}MaCanBo") == "canbo.b"
    assert request.findtext(f"{{{DAN}}}MaDichVu") == "1.001193"


def test_soap_xroad_headers_are_sent_when_asked() -> None:
    seen: list[bytes] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request.content)
        return httpx.Response(200, content=ANSWER, headers={"content-type": XML})

    run(soap(handler, {"xroad_headers": True}), soap_call(PERSON, headers={
        "X-Road-Id": "ex-9", "X-Road-Client": "VN/GOV/000.00.00.H60/MOTCUA", "X-Road-Issue": "H60-1"}))
    header = etree.fromstring(seen[0]).find(f"{{{SOAP}}}Header")
    assert header is not None
    assert [etree.QName(e).localname for e in header] == ["client", "service", "id", "issue",
                                                          "protocolVersion"]
    run(soap(handler, {"xroad_headers": False}), soap_call(PERSON))
    assert etree.fromstring(seen[1]).find(f"{{{SOAP}}}Header") is None


def identifier(node: Any) -> tuple[str | None, list[str]]:
    return node.get(f"{{{IDEN}}}objectType"), [c.text for c in node]


def test_xroad_header_names_a_member_a_subsystem_or_nobody() -> None:
    service = Service.model_validate({"id": VERIFY + "/v2", "connector": "soap", "upstream": "http://p"})
    member = xroad_header(Call(exchange_id="e", service=service, operation="XacThucThongTinCongDan",
                               headers={"X-Road-Client": "VN/GOV/000.00.00.G22"}))
    assert identifier(member[0]) == ("MEMBER", ["VN", "GOV", "000.00.00.G22"])
    assert identifier(member[1]) == ("SERVICE", ["VN", "GOV", "000.00.00.G01", "CSDLDC",
                                                 "XacThucThongTinCongDan", "v2"])
    assert [etree.QName(e).localname for e in member] == ["client", "service", "protocolVersion"]
    assert member[-1].text == "4.0"
    nobody = xroad_header(Call(exchange_id="e", service=service, operation="op",
                               headers={"X-Road-Client": "not//an id"}))
    assert [etree.QName(e).localname for e in nobody] == ["service", "protocolVersion"]


def test_soap_operations_outside_the_catalog_are_unknown() -> None:
    with pytest.raises(UnknownService, match="offers XacThucThongTinCongDan, not TraCuuThongTinCongDan"):
        run(soap(answer(200, ANSWER)), soap_call(PERSON, operation="TraCuuThongTinCongDan"))


def test_schema_less_service_refuses_json() -> None:
    with pytest.raises(UnknownService, match="has no schema: it takes SOAP requests only"):
        run(soap(answer(200, ANSWER), schema=False), soap_call(PERSON))


REQUEST = envelope("<dan:XacThucThongTinCongDanRequest>" + "".join(
    f"<dan:{k}>{v}</dan:{k}>" for k, v in PERSON.items()) + "</dan:XacThucThongTinCongDanRequest>")


def test_pass_through_without_a_schema_gives_the_answer_back_as_it_came() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, content=ANSWER, headers={"content-type": XML})

    reply = run(soap(handler, schema=False), soap_call(None, body=REQUEST, content_type="text/xml"))
    assert seen[0].headers["soapaction"] == '""'
    assert seen[0].content == REQUEST
    assert (reply.payload, reply.content_type, reply.wire_request) == (ANSWER, XML, REQUEST)


def test_pass_through_with_validation_off_keeps_the_bytes() -> None:
    reply = run(soap(answer(200, ANSWER), {"validate_response": False}),
                soap_call(None, body=REQUEST, content_type=XML))
    assert reply.payload == ANSWER


def test_pass_through_reads_by_the_schema_when_it_can() -> None:
    reply = run(soap(answer(200, ANSWER)), soap_call(None, body=REQUEST, content_type=XML))
    assert reply.payload == {"TonTai": True}


def test_pass_through_error_status_and_fault() -> None:
    with pytest.raises(UpstreamError, match="answered HTTP 503") as caught:
        run(soap(answer(503, ANSWER)), soap_call(None, body=REQUEST, content_type=XML))
    assert caught.value.extra == {"status": 503}
    fault = envelope("<s:Fault><faultcode>s:Server</faultcode><faultstring>Bận</faultstring></s:Fault>")
    with pytest.raises(PassedFault) as passed:
        run(soap(answer(500, fault)), soap_call(None, body=REQUEST, content_type=XML))
    assert passed.value.envelope == fault


@pytest.mark.parametrize(("content_type", "soap_like"), [
    ("text/xml; charset=utf-8", True), ("application/soap+xml", True),
    ("multipart/related; boundary=x", True),
    ("application/json", False), ("", False),
])
def test_is_soap(content_type: str, soap_like: bool) -> None:
    assert is_soap(content_type) is soap_like


def test_fill_naming_a_field_no_request_has_is_refused_at_creation() -> None:
    with pytest.raises(ValueError, match=r"options\.fill/defaults name Nowhere, which no request of "
                                         r"XacThucThongTinCongDan has"):
        soap(answer(200, ANSWER), {"fill": {"Nowhere": "id"}})
