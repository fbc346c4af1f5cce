"""The upstream simulators' protocols at unit level: the SOAP simulator (echo, replay, failure
switches, malformed requests answered with a SOAP Fault), the REST simulator and the failure
switches every JSON simulator shares, and what all simulators share (the recorder, ports, serving).

Every app is driven in-process through httpx's ASGI transport; ``serve`` alone opens sockets."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import signal
import socket
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from lxml import etree

from connectors.rest.simulator import FAIL_MODES, GARBAGE, HTTP500, Faults, create_app, read_body
from connectors.soap.simulator import FAILURES, Mode, SoapSimulator, _recorded
from connectors.soap.simulator import create_app as soap_app
from gateway import simulation
from gateway.simulation import Recorder, free_port, serve

SOAP_NS = "http://schemas.xmlsoap.org/soap/envelope/"
XROAD = "http://x-road.eu/xsd/xroad.xsd"
IDEN = "http://x-road.eu/xsd/identifiers"
XML = "text/xml; charset=utf-8"

PLAIN = (f'<s:Envelope xmlns:s="{SOAP_NS}"><s:Body><t:hello xmlns:t="urn:test">'
         '<t:name>An</t:name><t:age>30</t:age></t:hello></s:Body></s:Envelope>').encode()

WITH_XROAD = f"""<s:Envelope xmlns:s="{SOAP_NS}" xmlns:x="{XROAD}" xmlns:i="{IDEN}">
<s:Header>
 <x:client i:objectType="SUBSYSTEM"><i:xRoadInstance>VN</i:xRoadInstance><i:memberClass>GOV</i:memberClass>
  <i:memberCode>000.00.00.H60</i:memberCode><i:subsystemCode>MOTCUA</i:subsystemCode></x:client>
 <x:service i:objectType="SERVICE"><i:xRoadInstance>VN</i:xRoadInstance><i:memberClass>GOV</i:memberClass>
  <i:memberCode>000.00.00.G01</i:memberCode><i:subsystemCode>CSDLDC</i:subsystemCode>
  <i:serviceCode>getThing</i:serviceCode></x:service>
 <x:id>req-42</x:id><x:protocolVersion>4.0</x:protocolVersion>
</s:Header>
<s:Body><t:getThingRequest xmlns:t="urn:test"><t:code>7</t:code></t:getThingRequest></s:Body>
</s:Envelope>""".encode()


def client_for(app: Any) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://sim")


def fault_of(content: bytes) -> tuple[str, str]:
    root = etree.fromstring(content)
    fault = root.find(f"{{{SOAP_NS}}}Body/{{{SOAP_NS}}}Fault")
    assert fault is not None, content
    return fault.findtext("faultcode") or "", fault.findtext("faultstring") or ""


def body_child(content: bytes) -> Any:
    root = etree.fromstring(content)
    body = root.find(f"{{{SOAP_NS}}}Body")
    assert body is not None
    return body[0]


# -- the SOAP simulator's switches (pure) ----------------------------------------------------------


def test_mode_parse_takes_digit_strings_from_a_query() -> None:
    """delay_ms arrives as text in a query string and is read as a number."""
    assert Mode.parse({"delay_ms": "250"}, Mode()) == Mode(delay_ms=250)


@pytest.mark.parametrize("delay", [-1, 600_001, True, 1.5, "abc", "-5", None])
def test_mode_parse_refuses_delays_out_of_range(delay: Any) -> None:
    """A delay must be a whole number of milliseconds from 0 to 600000 (no bool, no float)."""
    with pytest.raises(ValueError, match="delay_ms must be an integer from 0 to 600000"):
        Mode.parse({"delay_ms": delay}, Mode())


def test_mode_parse_names_every_unknown_switch_sorted() -> None:
    with pytest.raises(ValueError, match="unknown switches: times, zzz"):
        Mode.parse({"zzz": 1, "times": 2, "fail": "fault"}, Mode())


def test_mode_parse_keeps_what_it_is_not_told() -> None:
    """Switches not named keep the base mode's values; an empty fail clears the failure."""
    base = Mode(delay_ms=5, fail="garbage")
    assert Mode.parse({"fail": "fault"}, base) == Mode(delay_ms=5, fail="fault")
    assert Mode.parse({"fail": ""}, base) == Mode(delay_ms=5, fail=None)
    assert Mode.parse({"fail": None, "delay_ms": 0}, base) == Mode()


def test_mode_parse_refuses_an_unknown_failure() -> None:
    with pytest.raises(ValueError, match="fail must be one of fault, http500, garbage, invalid, empty"):
        Mode.parse({"fail": "explode"}, Mode())


def test_recorded_answer_keeps_its_content_type_and_body() -> None:
    """A recorded HTTP answer (CRLF or LF) gives its Content-Type header and the bytes after the head."""
    data = (b"HTTP/1.1 200 OK\r\nX-Other: 1\r\nContent-Type: multipart/related; boundary=b1\r\n\r\n"
            b"--b1\r\nbody\r\n")
    assert _recorded(data) == ("multipart/related; boundary=b1", b"--b1\nbody\n")
    assert _recorded(b"HTTP/1.1 200 OK\n\n<x/>") == (XML, b"<x/>")


# -- the SOAP simulator over HTTP ------------------------------------------------------------------


async def test_echo_answers_the_request_content_under_name_response() -> None:
    """With no responses folder, {ns}name is answered by {ns}nameResponse holding a copy of its children."""
    async with client_for(soap_app()) as c:
        r = await c.post("/any/path", content=PLAIN, headers={"content-type": XML})
    assert r.status_code == 200
    assert r.headers["content-type"] == XML
    answer = body_child(r.content)
    assert answer.tag == "{urn:test}helloResponse"
    assert [(etree.QName(e).localname, e.text) for e in answer] == [("name", "An"), ("age", "30")]
    assert etree.fromstring(r.content).find(f"{{{SOAP_NS}}}Header") is None


async def test_echo_of_an_element_without_namespace() -> None:
    request = f'<s:Envelope xmlns:s="{SOAP_NS}"><s:Body><ping>hi</ping></s:Body></s:Envelope>'.encode()
    async with client_for(soap_app()) as c:
        r = await c.post("/", content=request, headers={"content-type": "text/xml"})
    answer = body_child(r.content)
    assert (answer.tag, answer.text) == ("pingResponse", "hi")


async def test_xroad_header_is_echoed_with_the_request_hash() -> None:
    """An X-Road request gets its header back plus requestHash: base64 SHA-512 of what was sent."""
    async with client_for(soap_app()) as c:
        r = await c.post("/", content=WITH_XROAD, headers={"content-type": XML})
    root = etree.fromstring(r.content)
    header = root.find(f"{{{SOAP_NS}}}Header")
    assert header is not None
    names = [etree.QName(e).localname for e in header]
    assert names == ["client", "service", "id", "protocolVersion", "requestHash"]
    assert header.findtext(f"{{{XROAD}}}id") == "req-42"
    expected = base64.b64encode(hashlib.sha512(WITH_XROAD).digest()).decode()
    assert header.findtext(f"{{{XROAD}}}requestHash") == expected
    assert body_child(r.content).tag == "{urn:test}getThingRequestResponse"


@pytest.mark.parametrize(("body", "content_type", "says"), [
    (b"", XML, "the request is empty"),
    (b"{}", "application/json", "a SOAP request is text/xml (or multipart/related), not application/json"),
    (b"<a/>", XML, "the document is a, not a SOAP 1.1 Envelope"),
    (b"<x", XML, "not well-formed"),
    (b'<?xml version="1.0"?><!DOCTYPE x [<!ENTITY a "b">]><x>&a;</x>', XML, "DTD"),
    (b'<e:Envelope xmlns:e="http://www.w3.org/2003/05/soap-envelope"><e:Body><a/></e:Body></e:Envelope>',
     XML, "SOAP 1.2 is not supported"),
    (f'<s:Envelope xmlns:s="{SOAP_NS}"><s:Body><a/><b/></s:Body></s:Envelope>'.encode(), XML,
     "exactly one element"),
    (f'<s:Envelope xmlns:s="{SOAP_NS}"></s:Envelope>'.encode(), XML, "has no Body"),
])
async def test_malformed_requests_get_a_client_fault(body: bytes, content_type: str, says: str) -> None:
    """Anything that is not one SOAP 1.1 request is a SOAP-ENV:Client Fault (HTTP 500, as SOAP 1.1
    says), recorded as "invalid", never an unhandled error."""
    simulator = SoapSimulator()
    async with client_for(simulator.app()) as c:
        r = await c.post("/", content=body, headers={"content-type": content_type, "SOAPAction": '"x"'})
    assert r.status_code == 500
    assert r.headers["content-type"] == XML
    code, text = fault_of(r.content)
    assert code == "SOAP-ENV:Client"
    assert says in text
    (item,) = simulator.recorder.items()
    assert (item["kind"], item["content_type"], item["soap_action"]) == ("invalid", content_type, '"x"')


async def test_get_without_wsdl_is_405_allowing_post() -> None:
    async with client_for(soap_app()) as c:
        plain = await c.get("/")
        asked = await c.get("/?wsdl")  # no WSDL configured
    for r in (plain, asked):
        assert r.status_code == 405
        assert r.headers["allow"] == "POST"
        assert r.text == "POST SOAP 1.1 requests here"


async def test_wsdl_is_served_with_its_address_pointing_here(tmp_path: Path) -> None:
    wsdl = tmp_path / "svc.wsdl"
    wsdl.write_text('<definitions xmlns="http://schemas.xmlsoap.org/wsdl/" '
                    'xmlns:soap="http://schemas.xmlsoap.org/wsdl/soap/"><service name="S"><port name="P">'
                    '<soap:address location="http://elsewhere.example/x"/></port></service></definitions>')
    async with client_for(soap_app(wsdl=wsdl)) as c:
        r = await c.get("/svc/endpoint?wsdl")
    assert r.status_code == 200
    address = etree.fromstring(r.content).find(".//{http://schemas.xmlsoap.org/wsdl/soap/}address")
    assert address is not None
    assert address.get("location") == "http://sim/svc/endpoint"


@pytest.mark.parametrize("fail", FAILURES)
async def test_each_failure_by_query_string(fail: str) -> None:
    """?fail= steers one request; the simulator's own mode is left as it was."""
    simulator = SoapSimulator()
    async with client_for(simulator.app()) as c:
        r = await c.post(f"/?fail={fail}", content=WITH_XROAD, headers={"content-type": XML})
        after = await c.post("/", content=PLAIN, headers={"content-type": XML})
    assert after.status_code == 200
    assert simulator.mode == Mode()
    if fail == "fault":
        assert r.status_code == 500
        assert fault_of(r.content) == ("SOAP-ENV:Server", "Simulated failure")
        root = etree.fromstring(r.content)
        assert root.findtext(f".//{{{XROAD}}}id") == "req-42"  # the header is echoed in the fault
        assert root.find(f".//{{{XROAD}}}requestHash") is None
        assert root.findtext(".//{urn:lienthong:simulator}reason") == "the simulator was told to fail"
    elif fail == "http500":
        assert (r.status_code, r.content, r.headers["content-type"]) == (500, b"internal error", "text/plain")
    elif fail == "garbage":
        assert (r.status_code, r.content) == (200, b"this is not XML")
    elif fail == "empty":
        assert (r.status_code, r.content) == (200, b"")
    else:  # invalid: the usual answer plus an element no schema allows
        answer = body_child(r.content)
        assert answer.tag == "{urn:test}getThingRequestResponse"
        assert [(etree.QName(e).localname, e.text) for e in answer] == [
            ("code", "7"), ("unexpected", "not in the schema")]


async def test_fault_without_xroad_header_has_no_header() -> None:
    async with client_for(soap_app()) as c:
        r = await c.post("/?fail=fault", content=PLAIN, headers={"content-type": XML})
    assert etree.fromstring(r.content).find(f"{{{SOAP_NS}}}Header") is None


@pytest.mark.parametrize(("query", "says"), [("delay_ms=abc", "delay_ms must be an integer"),
                                             ("fail=explode", "fail must be one of"),
                                             ("wsdl", "unknown switches: wsdl")])
async def test_bad_switches_in_the_query_are_400(query: str, says: str) -> None:
    simulator = SoapSimulator()
    async with client_for(simulator.app()) as c:
        r = await c.post(f"/?{query}", content=PLAIN, headers={"content-type": XML})
    assert r.status_code == 400
    assert says in r.text
    assert simulator.recorder.items() == []


async def test_mode_endpoint_sets_reads_and_refuses() -> None:
    simulator = SoapSimulator()
    async with client_for(simulator.app()) as c:
        assert (await c.get("/_sim/mode")).json() == {"delay_ms": 0, "fail": None}
        r = await c.post("/_sim/mode", json={"fail": "garbage", "delay_ms": 0})
        assert r.json() == {"delay_ms": 0, "fail": "garbage"}
        assert (await c.post("/", content=PLAIN, headers={"content-type": XML})).content == b"this is not XML"
        for bad, says in [(b"[1]", "send a JSON object"), (b"{", "Expecting"), (b"\xff", "utf-8"),
                          (b'{"fail": "nope"}', "fail must be one of"), (b'{"x": 1}', "unknown switches: x")]:
            refused = await c.post("/_sim/mode", content=bad, headers={"content-type": "application/json"})
            assert refused.status_code == 400, bad
            assert says in refused.json()["error"]
        assert (await c.get("/_sim/mode")).json() == {"delay_ms": 0, "fail": "garbage"}  # unchanged


async def test_received_and_reset() -> None:
    simulator = SoapSimulator()
    async with client_for(simulator.app()) as c:
        await c.post("/", content=WITH_XROAD, headers={"content-type": XML, "SOAPAction": '"getThing"'})
        got = (await c.get("/_sim/received")).json()
        assert got["total"] == 1
        (item,) = got["items"]
        assert (item["kind"], item["x_road_id"], item["soap_action"]) == ("getThingRequest", "req-42",
                                                                        '"getThing"')
        assert item["body"].encode() == WITH_XROAD
        assert (await c.post("/_sim/reset")).json() == {"ok": True}
        assert (await c.get("/_sim/received")).json() == {"total": 0, "items": []}


# -- replay from a folder of example responses -----------------------------------------------------


def envelope(inner: str, header: str = "") -> str:
    head = f"<s:Header>{header}</s:Header>" if header else ""
    return f'<s:Envelope xmlns:s="{SOAP_NS}" xmlns:x="{XROAD}">{head}<s:Body>{inner}</s:Body></s:Envelope>'


async def test_replay_takes_stem_response_and_replaces_the_xroad_header(tmp_path: Path) -> None:
    """For getThingRequest the file getThingResponse.xml answers; its X-Road header is the request's."""
    (tmp_path / "getThingResponse.xml").write_text(envelope(
        '<t:getThingResponse xmlns:t="urn:test"><t:value>recorded</t:value></t:getThingResponse>',
        header="<x:id>stale-id</x:id><other xmlns='urn:keep'>kept</other>"))
    async with client_for(soap_app(responses=tmp_path)) as c:
        r = await c.post("/", content=WITH_XROAD, headers={"content-type": XML})
    root = etree.fromstring(r.content)
    header = root.find(f"{{{SOAP_NS}}}Header")
    assert header is not None
    assert header.findtext("{urn:keep}other") == "kept"
    assert [e.text for e in header.iter(f"{{{XROAD}}}id")] == ["req-42"]
    assert header.find(f"{{{XROAD}}}requestHash") is not None
    assert root.findtext(".//{urn:test}value") == "recorded"


async def test_replay_adds_a_header_when_the_template_has_none(tmp_path: Path) -> None:
    (tmp_path / "getThingResponse.xml").write_text(envelope('<r xmlns="urn:test">1</r>'))
    async with client_for(soap_app(responses=tmp_path)) as c:
        with_header = await c.post("/", content=WITH_XROAD, headers={"content-type": XML})
    root = etree.fromstring(with_header.content)
    assert root[0].tag == f"{{{SOAP_NS}}}Header"
    assert root.findtext(f".//{{{XROAD}}}id") == "req-42"


async def test_replay_by_answer_file_and_echo_when_none_matches(tmp_path: Path) -> None:
    """``name.answer`` answers too; an operation without a file is echoed."""
    (tmp_path / "hello.answer").write_text(envelope('<r xmlns="urn:test">from answer</r>'))
    async with client_for(soap_app(responses=tmp_path)) as c:
        answered = await c.post("/", content=PLAIN, headers={"content-type": XML})
        echoed = await c.post("/", content=WITH_XROAD, headers={"content-type": XML})
    assert body_child(answered.content).text == "from answer"
    assert etree.fromstring(answered.content).find(f"{{{SOAP_NS}}}Header") is None
    assert body_child(echoed.content).tag == "{urn:test}getThingRequestResponse"


async def test_recorded_multipart_answer_is_replayed_as_it_is(tmp_path: Path) -> None:
    recorded = (b"HTTP/1.1 200 OK\r\nContent-Type: multipart/related; boundary=XYZ\r\n\r\n"
                b"--XYZ\r\nContent-Type: text/xml\r\n\r\n<e/>\r\n--XYZ--\r\n")
    (tmp_path / "getThingResponse.txt").write_bytes(recorded)
    async with client_for(soap_app(responses=tmp_path)) as c:
        r = await c.post("/", content=WITH_XROAD, headers={"content-type": XML})
    assert r.status_code == 200
    assert r.headers["content-type"] == "multipart/related; boundary=XYZ"
    assert r.content == b"--XYZ\nContent-Type: text/xml\n\n<e/>\n--XYZ--\n"


async def test_hostile_template_is_not_expanded_but_echoed(tmp_path: Path) -> None:
    """A template with a DTD is refused by the hardened parser; the request is echoed instead."""
    (tmp_path / "helloResponse.xml").write_text('<?xml version="1.0"?><!DOCTYPE s [<!ENTITY e "boom">]>'
                                                + envelope('<r xmlns="urn:test">&e;</r>'))
    async with client_for(soap_app(responses=tmp_path)) as c:
        r = await c.post("/", content=PLAIN, headers={"content-type": XML})
    assert b"boom" not in r.content
    assert body_child(r.content).tag == "{urn:test}helloResponse"


# -- the REST simulator and the shared failure switches --------------------------------------------


@pytest.fixture
async def rest() -> AsyncIterator[httpx.AsyncClient]:
    async with client_for(create_app(2026)) as c:
        yield c


async def test_echo_answers_text_for_a_body_that_is_not_json(rest: httpx.AsyncClient) -> None:
    r = await rest.post("/echo?a=1", content=b"\xff plain", headers={"content-type": "text/plain",
                                                                      "X-Road-Id": "e-1", "Other": "x"})
    assert r.status_code == 200
    assert r.json() == {"method": "POST", "path": "/echo", "query": "a=1", "contentType": "text/plain",
                        "headers": {"x-road-id": "e-1"}, "text": "\ufffd plain"}


async def test_echo_of_no_body_is_json_null(rest: httpx.AsyncClient) -> None:
    r = await rest.post("/echo")
    assert r.json()["json"] is None
    assert r.json()["contentType"] == ""


async def test_record_switch_stops_recording_echoes(rest: httpx.AsyncClient) -> None:
    r = await rest.post("/_sim/mode", json={"record": False})
    assert r.json() == {"delay_ms": 0, "fail": None, "times": None, "record": False}
    await rest.post("/echo", json={"a": 1})
    assert (await rest.get("/_sim/received")).json()["total"] == 0
    await rest.post("/_sim/reset")  # reset turns recording on again
    await rest.post("/echo", json={"a": 1})
    assert (await rest.get("/_sim/received")).json()["total"] == 1


@pytest.mark.parametrize("body", [b"[1, 2]", b"not json", b'"text"', b""])
async def test_adding_anything_but_an_object_is_422(rest: httpx.AsyncClient, body: bytes) -> None:
    r = await rest.post("/items", content=body, headers={"content-type": "application/json"})
    assert r.status_code == 422
    assert r.json() == {"error": "invalid_body", "message": "Cần một đối tượng JSON"}
    assert (await rest.get("/items")).json()["total"] == 5


async def test_added_item_gets_the_next_id_whatever_it_claims(rest: httpx.AsyncClient) -> None:
    r = await rest.post("/items", json={"id": 99, "ten": "Mới"})
    assert (r.status_code, r.headers["location"], r.json()) == (201, "/items/6", {"id": 6, "ten": "Mới"})
    assert (await rest.get("/items/6")).json() == {"id": 6, "ten": "Mới"}
    await rest.post("/_sim/reset")
    assert (await rest.get("/items/6")).status_code == 404
    assert (await rest.get("/items")).json()["total"] == 5


async def test_unknown_item_names_it(rest: httpx.AsyncClient) -> None:
    r = await rest.get("/items/abc")
    assert (r.status_code, r.json()) == (404, {"error": "not_found", "message": "Không tìm thấy mục abc"})


async def test_plain_text_route_and_unknown_routes(rest: httpx.AsyncClient) -> None:
    text = await rest.get("/text")
    assert (text.text, text.headers["content-type"]) == ("Xin chào từ hệ thống giả lập",
                                                         "text/plain; charset=utf-8")
    assert (await rest.get("/nowhere")).status_code == 404
    assert (await rest.put("/items")).status_code == 405
    assert (await rest.get("/echo")).status_code == 404  # only POST /echo is the echo


@pytest.mark.parametrize(("body", "says"), [
    (b"[]", "the mode is a JSON object"),
    (b"{", "unexpected end of data"),
    (b'{"delay_ms": -1}', "delay_ms must be a whole number"),
    (b'{"delay_ms": true}', "delay_ms must be a whole number"),
    (b'{"delay_ms": 1.5}', "delay_ms must be a whole number"),
    (b'{"fail": "explode"}', "fail must be null or one of http500, error_code, drop, garbage"),
    (b'{"fail": "http500", "times": 0}', "times must be null (always) or a number of requests"),
    (b'{"fail": "http500", "times": true}', "times must be null"),
    (b'{"record": "yes"}', "unknown switch 'record'"),
    (b'{"colour": 1}', "unknown switch 'colour'"),
])
async def test_invalid_modes_are_400_and_change_nothing(rest: httpx.AsyncClient, body: bytes,
                                                        says: str) -> None:
    r = await rest.post("/_sim/mode", content=body)
    assert r.status_code == 400
    assert r.json()["error"] == "invalid_mode"
    assert says in r.json()["message"]
    state = (await rest.get("/_sim/mode")).json()
    assert state == {"delay_ms": 0, "fail": None, "times": None, "record": True}


async def test_refused_mode_with_a_valid_failure_changes_nothing(rest: httpx.AsyncClient) -> None:
    r = await rest.post("/_sim/mode", json={"fail": "http500", "record": "not a bool"})
    assert r.status_code == 400
    assert (await rest.get("/_sim/mode")).json()["fail"] is None


async def test_error_code_failure_is_the_simulators_own_error_for_times_requests(
        rest: httpx.AsyncClient) -> None:
    r = await rest.post("/_sim/mode", json={"fail": "error_code", "times": 2})
    assert r.json()["times"] == 2
    first = await rest.get("/items")
    second = await rest.post("/echo", content=b"x")
    third = await rest.get("/items")
    assert (first.status_code, first.json()["error_code"]) == (400, "99")
    assert second.json()["message"] == "Lỗi nghiệp vụ giả lập"
    assert third.status_code == 200
    assert (await rest.get("/_sim/mode")).json()["fail"] is None
    faults = [i for i in (await rest.get("/_sim/received")).json()["items"] if i["kind"] == "fault"]
    assert [(i["fail"], i["method"], i["path"], i["body"]) for i in faults] == [
        ("error_code", "GET", "/items", ""), ("error_code", "POST", "/echo", "x")]


async def test_http500_and_garbage_answers(rest: httpx.AsyncClient) -> None:
    await rest.post("/_sim/mode", json={"fail": "http500"})
    r = await rest.get("/items")
    assert (r.status_code, r.content, r.headers["content-type"]) == (500, HTTP500, "text/html; charset=utf-8")
    await rest.post("/_sim/mode", json={"fail": "garbage"})
    r = await rest.get("/items")
    assert (r.status_code, r.content) == (200, GARBAGE)
    with pytest.raises(orjson.JSONDecodeError):
        orjson.loads(r.content)


async def test_sim_paths_are_never_failed(rest: httpx.AsyncClient) -> None:
    await rest.post("/_sim/mode", json={"fail": "http500"})
    assert (await rest.get("/_sim/received")).status_code == 200
    assert (await rest.get("/_sim/mode")).status_code == 200


async def test_a_new_failure_forgets_the_old_count(rest: httpx.AsyncClient) -> None:
    await rest.post("/_sim/mode", json={"fail": "http500", "times": 3})
    r = await rest.post("/_sim/mode", json={"fail": "garbage"})
    assert r.json()["times"] is None
    r = await rest.post("/_sim/mode", json={"delay_ms": 0})  # fail untouched: times kept
    assert (r.json()["fail"], r.json()["times"]) == ("garbage", None)


async def test_drop_outside_uvicorn_promises_a_body_it_never_sends() -> None:
    """Under a server that is not uvicorn, "drop" degrades to a truncated answer the client sees fail."""
    faults = Faults(Recorder(), (500, b"{}"))
    faults.configure({"fail": "drop"})

    async def never(scope: Any, receive: Any, send: Any) -> None:
        raise AssertionError("the wrapped app must not be reached")

    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"{}", "more_body": False}

    async def send(message: Any) -> None:
        sent.append(dict(message))

    await faults.wrap(never)({"type": "http", "path": "/api", "method": "POST"}, receive, send)
    start, body = sent
    assert dict(start["headers"])[b"content-length"] == b"1000"
    assert body == {"type": "http.response.body", "body": b'{"error_code":', "more_body": True}


def test_faults_configure_is_all_or_nothing() -> None:
    faults = Faults(Recorder(), (500, b""))
    faults.configure({"delay_ms": 10, "fail": "garbage", "times": 1})
    with pytest.raises(ValueError, match="times"):
        faults.configure({"delay_ms": 20, "fail": "http500", "times": -3})
    assert faults.state() == {"delay_ms": 10, "fail": "garbage", "times": 1}
    assert set(FAIL_MODES) == {"http500", "error_code", "drop", "garbage"}


async def test_mode_of_a_simulator_without_switches_of_its_own() -> None:
    """Faults.routes without ``extra`` refuses every key it does not own, naming them."""
    from starlette.applications import Starlette

    faults = Faults(Recorder(), (500, b""))
    async with client_for(Starlette(routes=faults.routes())) as c:
        r = await c.post("/_sim/mode", json={"b": 1, "a": 2})
        assert (r.status_code, r.json()["message"]) == (400, "unknown switches: a, b")
        assert (await c.post("/_sim/mode", json={"delay_ms": 3})).json() == {
            "delay_ms": 3, "fail": None, "times": None}
        assert (await c.post("/_sim/reset")).json() == {"ok": True}
    assert faults.delay_ms == 0


async def test_read_body_joins_every_chunk() -> None:
    messages: list[dict[str, Any]] = [{"body": b"ab", "more_body": True}, {"body": b"", "more_body": True},
                                      {"more_body": True}, {"body": b"cd"}]

    async def receive() -> dict[str, Any]:
        return messages.pop(0)

    assert await read_body(receive) == b"abcd"


# -- what every simulator shares -------------------------------------------------------------------


def test_recorder_keeps_the_newest_and_counts_them_all() -> None:
    recorder = Recorder(limit=2)
    for n in range(3):
        recorder.add("k", f"b{n}".encode(), n=n)
    assert recorder.total == 3
    assert [(i["body"], i["n"]) for i in recorder.items()] == [("b1", 1), ("b2", 2)]
    recorder.clear()
    assert (recorder.total, recorder.items()) == (0, [])


def test_recorder_keeps_bytes_that_are_not_utf8_as_base64() -> None:
    recorder = Recorder()
    recorder.add("bin", b"\xff\x00ok")
    (item,) = recorder.items()
    assert (item["body"], item["body_b64"]) == (None, base64.b64encode(b"\xff\x00ok").decode())
    recorder.add("text", "Hà Giang".encode())
    assert recorder.items()[1]["body"] == "Hà Giang"
    assert recorder.items()[1]["body_b64"] is None


def test_free_port_is_below_the_ephemeral_range_and_bindable() -> None:
    port = free_port()
    assert 20_000 <= port < simulation._ephemeral_low()
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", port))


def test_free_port_does_not_hand_out_a_port_twice(monkeypatch: pytest.MonkeyPatch) -> None:
    """A stack's ports are picked before any is bound: a draw that repeats would put two servers on
    one port ("address already in use"). The second draw of the same port is passed over."""
    port = free_port()
    draws, real = iter([port, port]), simulation.random.randrange
    monkeypatch.setattr(simulation.random, "randrange", lambda low, high: next(draws, 0) or real(low, high))
    again = free_port()
    assert again != port
    assert again in simulation._handed


def test_free_port_falls_back_to_the_kernel_when_the_range_is_too_narrow(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(simulation, "_ephemeral_low", lambda: 20_500)
    port = free_port()
    assert port > 0
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", port))


async def test_serve_runs_every_app_until_told_to_stop() -> None:
    """Two simulators served at once on loopback; the SIGTERM handler serve installs stops both."""
    ports = [free_port(), free_port()]
    apps = [("rest", create_app(1), "127.0.0.1", ports[0]), ("soap", soap_app(), "127.0.0.1", ports[1])]
    saved = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    task = asyncio.create_task(serve(apps))
    try:
        async with httpx.AsyncClient(timeout=5) as c:
            for _ in range(200):
                try:
                    items = await c.get(f"http://127.0.0.1:{ports[0]}/items")
                    mode = await c.get(f"http://127.0.0.1:{ports[1]}/_sim/mode")
                    break
                except httpx.TransportError:
                    await asyncio.sleep(0.05)
            else:
                pytest.fail("the simulators did not start")
            assert items.json()["total"] == 5
            assert mode.json() == {"delay_ms": 0, "fail": None}
            stop = signal.getsignal(signal.SIGTERM)
            assert callable(stop)
            stop(signal.SIGTERM, None)
            await asyncio.wait_for(task, timeout=30)
            for port in ports:  # nothing listens any more
                with pytest.raises(httpx.ConnectError):
                    await c.get(f"http://127.0.0.1:{port}/_sim/received")
    finally:
        if not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        for sig, handler in saved.items():
            signal.signal(sig, handler)
