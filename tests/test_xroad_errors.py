"""X-Road's error conventions and message checks.

- REST (X-Road REST message protocol r1, sections 4.3 and 4.6): an error the gateway raised carries
  ``X-Road-Error`` naming its type beside the problem+json body; ``X-Road-Request-Hash`` is base64
  SHA-512(SHA-512(headers) + SHA-512(body)), checked against a naive reference written from the spec;
- SOAP: processing instructions refused in requests (pass-through included) and in upstream answers;
  MIME parts checked as X-Road's decoder checks them; a Fault sent as a request answered back as
  X-Road does; an identifier without a known objectType is X-Road's ``Client.InvalidXml``;
- a token used under another client's name: 403 with an RFC 6750 ``insufficient_scope`` challenge.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest
from lxml import etree

from connectors.soap.connector import create
from gateway.config import Service
from gateway.connector import Call, ConnectorContext
from gateway.errors import UpstreamError
from gateway.resources import schemas_dir
from gateway.soap import envelope as soap
from gateway.soap.faults import (
    ClientFault,
    InvalidContentType,
    InvalidSoap,
    InvalidXml,
    MimeParsingFailed,
    MissingSoap,
)
from gateway.xml import safe
from tests.test_xroad_clients import FOR_MEMBER, MEMBER, SUBSYSTEM, Gateway, _fault_code, gw, xroad_query

__all__ = ["gw"]  # the module fixture, shared with tests/test_xroad_clients.py

LIMITS = safe.Limits()
BOUNDARY = "b0undary"


def reference_hash(method: str, target: str, headers: list[tuple[str, str]], body: bytes) -> str:
    """X-Road REST r1 section 4.3, read plainly: base64(SHA512(SHA512(headers) + SHA512(body))), or
    base64(SHA512(headers)) without a body; the headers serialised as X-Road's RestRequest does."""
    text = f"{method}\r\n{target}\r\n" + "".join(f"{k}:{v}\r\n" for k, v in headers)
    head = hashlib.sha512(text.encode()).digest()
    if not body:
        return base64.b64encode(head).decode()
    return base64.b64encode(hashlib.sha512(head + hashlib.sha512(body).digest()).digest()).decode()


# --- REST -----------------------------------------------------------------------------------------

def test_gateway_errors_carry_x_road_error(gw: Gateway) -> None:
    """A refusal or failure the gateway produced names its type in X-Road-Error; a reply does not."""
    r = gw.client.post(f"/r1/{FOR_MEMBER}", json={})
    assert r.status_code == 401 and r.headers["x-road-error"] == "Client.Unauthorized"
    r = gw.rest("VN/GOV/000.00.00.G09/HOTICH/nothing", MEMBER)
    assert r.status_code == 404 and r.headers["x-road-error"] == "Client.UnknownService" == r.json()["code"]
    r = gw.rest(FOR_MEMBER, SUBSYSTEM)  # no rule: X-Road's missing access right
    assert r.status_code == 403 and r.headers["x-road-error"] == "Server.ServerProxy.AccessDenied"
    r = gw.rest(FOR_MEMBER, SUBSYSTEM, **{"X-Road-Client": MEMBER})  # not the token's client
    assert r.status_code == 403 and r.headers["x-road-error"] == "Client.AccessDenied"
    r = gw.rest(FOR_MEMBER, MEMBER)
    assert r.status_code == 200 and "x-road-error" not in r.headers


def test_request_hash_is_x_roads(gw: Gateway) -> None:
    """X-Road-Request-Hash is base64 SHA-512 over the request line, X-Road headers and body, as the
    REST protocol defines it; it changes with the body and the headers."""
    headers = {"Authorization": f"Bearer {gw.tokens[MEMBER]}", "X-Road-Client": MEMBER, "X-Road-Id": "h-1",
               "X-Road-UserId": "canbo.mai", "Content-Type": "application/json"}
    r = gw.client.post(f"/r1/{FOR_MEMBER}?q=1", content=b'{"a":1}', headers=headers)
    assert r.status_code == 200
    expected = reference_hash("POST", f"/r1/{FOR_MEMBER}?q=1", [
        ("x-road-client", MEMBER), ("x-road-id", "h-1"), ("x-road-userid", "canbo.mai")], b'{"a":1}')
    assert r.headers["x-road-request-hash"] == expected
    assert len(base64.b64decode(expected)) == 64
    other = gw.client.post(f"/r1/{FOR_MEMBER}?q=1", content=b'{"a":2}', headers=headers)
    assert other.headers["x-road-request-hash"] != expected
    bare = gw.client.get(f"/r1/{FOR_MEMBER}", headers={"Authorization": f"Bearer {gw.tokens[MEMBER]}",
                                                        "X-Road-Id": "h-2"})
    assert bare.headers["x-road-request-hash"] == reference_hash("GET", f"/r1/{FOR_MEMBER}",
                                                                 [("x-road-id", "h-2")], b"")


def test_token_under_another_name_gets_a_bearer_challenge(gw: Gateway) -> None:
    """403 for a token used under another client's name carries WWW-Authenticate (RFC 6750 section
    3.1): insufficient_scope, since the token is valid but does not reach that client."""
    r = gw.rest(FOR_MEMBER, SUBSYSTEM, **{"X-Road-Client": MEMBER})
    assert r.status_code == 403
    challenge = r.headers["www-authenticate"]
    assert challenge.startswith('Bearer realm="lienthong", error="insufficient_scope", error_description="')
    assert MEMBER not in challenge  # nothing the caller sent is echoed into the header


# --- processing instructions ----------------------------------------------------------------------

@pytest.mark.parametrize("doc", [
    b'<?xml version="1.0"?><?xml-stylesheet href="x.xsl"?><a/>',
    b"<a><b><?php echo 1; ?></b></a>",
    b"<a/><?after it?>",
])
def test_processing_instructions_are_refused(doc: bytes) -> None:
    """A processing instruction anywhere, before, inside or after the root, refuses the document."""
    with pytest.raises(safe.XmlRefused) as refused:
        safe.parse(doc)
    assert refused.value.kind == "processing-instruction"


def test_xml_declaration_and_comments_still_pass() -> None:
    """The XML declaration is not a processing instruction; comments are dropped as before."""
    root = safe.parse(b'<?xml version="1.0" encoding="utf-8"?><a><!-- c --><b>t</b></a>')
    assert etree.tostring(root) == b"<a><b>t</b></a>"


def test_pass_through_request_with_a_processing_instruction_is_refused(gw: Gateway) -> None:
    """A SOAP request for a pass-through service is refused, not forwarded, when it holds a PI."""
    query = xroad_query(MEMBER).replace(b"<s:Body>", b"<s:Body><?evil x?>")
    before = len(gw.seen)
    r = gw.soap(query, MEMBER)
    assert r.status_code == 500 and _fault_code(r.content) == "Client.InvalidSoap"
    assert len(gw.seen) == before


def test_soap_request_hash_header_is_x_roads(gw: Gateway) -> None:
    """On the SOAP face X-Road-Request-Hash is X-Road's requestHash: base64 SHA-512 of the message."""
    query = xroad_query(MEMBER)
    r = gw.soap(query, MEMBER)
    assert r.headers["x-road-request-hash"] == base64.b64encode(hashlib.sha512(query).digest()).decode()


def test_upstream_answer_with_a_processing_instruction_is_refused() -> None:
    """An upstream answer holding a PI is an upstream error (502), on a pass-through too."""
    answer = (f'<?xml version="1.0"?><?x-upstream y?><s:Envelope xmlns:s="{soap.SOAP}"><s:Body>'
              "<getStateResponse/></s:Body></s:Envelope>").encode()

    async def app(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"text/xml")]})
        await send({"type": "http.response.body", "body": answer})

    service = Service.model_validate({"id": "VN/GOV/000.00.00.G09/HOTICH/getState", "connector": "soap",
                                      "upstream": "http://upstream/"})
    http = httpx.AsyncClient(transport=httpx.ASGITransport(app=app))
    connector = create(service, ConnectorContext(http=http, schemas_dir=schemas_dir()))
    call = Call(exchange_id="e", service=service, operation="getState", body=xroad_query(MEMBER),
                content_type="text/xml; charset=utf-8")
    with ThreadPoolExecutor(1) as pool, pytest.raises(UpstreamError) as failed:
        pool.submit(asyncio.run, connector.call(call)).result()
    assert "processing instruction" in failed.value.detail


# --- MIME, faults, identifiers --------------------------------------------------------------------

def mime(*parts: str) -> bytes:
    body = "".join(f"--{BOUNDARY}\r\n{p}\r\n" for p in parts) + f"--{BOUNDARY}--\r\n"
    return body.encode()


def read_mime(data: bytes) -> soap.Envelope:
    return soap.read(data, f'multipart/related; type="text/xml"; boundary={BOUNDARY}', LIMITS, xroad=True)


SOAP_PART = "Content-Type: text/xml\r\n\r\n" + xroad_query(MEMBER).decode()


@pytest.mark.parametrize(("data", "error"), [
    (mime(SOAP_PART, "Cont-Type: text/plain\r\n\r\nblaah"), InvalidContentType),
    (mime("X-Nothing: here\r\n\r\n" + xroad_query(MEMBER).decode()), InvalidContentType),
    (mime(SOAP_PART, "Content-Type: text/plain\r\nbroken header line\r\n\r\nblaah"), MimeParsingFailed),
    (mime("Content-Type: multipart/mixed; boundary=inner\r\n\r\n--inner\r\nContent-Type: text/plain\r\n\r\n"
          "x\r\n--inner--"), InvalidContentType),
    (f"--{BOUNDARY}--\r\n".encode(), MissingSoap),
])
def test_mime_parts_are_checked_as_x_road_does(data: bytes, error: type[Exception]) -> None:
    """A part without Content-Type, a part whose header is broken, a SOAP part that is not XML, and a
    message without parts are each refused with X-Road's code."""
    with pytest.raises(error):
        read_mime(data)


def test_a_well_formed_multipart_still_reads() -> None:
    """The SOAP part and a typed attachment pass."""
    parsed = read_mime(mime(SOAP_PART, "Content-Type: text/plain\r\nContent-Id: <a1>\r\n\r\nblaah"))
    assert parsed.multipart and etree.QName(parsed.body).localname == "getState"


def test_a_fault_sent_as_a_request_is_answered_back() -> None:
    """X-Road answers a client's Fault with the client's own code, prefixed Client."""
    fault = (f'<s:Envelope xmlns:s="{soap.SOAP}"><s:Body><s:Fault><faultcode>CODE</faultcode>'
             "<faultstring>S</faultstring></s:Fault></s:Body></s:Envelope>")
    with pytest.raises(ClientFault) as answered:
        soap.read(fault.encode(), "text/xml", LIMITS, xroad=False)
    assert answered.value.code == "Client.CODE"
    odd = fault.replace("CODE", "<b>not a code</b>").replace("<b>not a code</b>", "no such code!")
    with pytest.raises(ClientFault) as plain:
        soap.read(odd.encode(), "text/xml", LIMITS, xroad=False)
    assert plain.value.code == "Client.InvalidBody"


@pytest.mark.parametrize("object_type", [None, "SERVICE", "WHATEVER"])
def test_client_without_a_known_object_type_is_invalid_xml(object_type: str | None) -> None:
    """A client identifier without objectType, or with one a client cannot have, is Client.InvalidXml."""
    query = xroad_query(MEMBER)
    if object_type is None:
        query = query.replace(b'<xrd:client id:objectType="MEMBER">', b"<xrd:client>")
    else:
        query = query.replace(b'id:objectType="MEMBER"', f'id:objectType="{object_type}"'.encode())
    with pytest.raises(InvalidXml):
        soap.read(query, "text/xml", LIMITS, xroad=True)


def test_soap_refusals_keep_their_codes() -> None:
    """A document that is not SOAP at all is still Client.InvalidSoap."""
    with pytest.raises(InvalidSoap):
        soap.read(b"<notsoap/>", "text/xml", LIMITS, xroad=True)
