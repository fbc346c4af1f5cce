"""The SOAP face, in-process: SOAP clients through the same pipeline, upstreams as ASGI apps or functions."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from fastapi.testclient import TestClient
from lxml import etree

from connectors.soap.connector import SoapConnector
from connectors.soap.simulator import SoapSimulator
from gateway.app import create_app
from gateway.config import load_config
from gateway.connector import Call, Reply
from gateway.init import initialise
from gateway.oauth.secrets import hash_secret, new_secret
from gateway.storage.db import upgrade
from gateway.xml.contract import allowed_operations, load_contract
from tests.conftest import fixtures_dir
from tests.helpers import FunctionConnector, InProcess, rest_and_flows

SOAP = "http://schemas.xmlsoap.org/soap/envelope/"
XROAD = "http://x-road.eu/xsd/xroad.xsd"
PRODUCER = "http://test.x-road.global/producer"
DAN = "http://dancuquocgia.bca"
PLAYGROUND_CLIENT = "PLAYGROUND/COM/1234567-8/TestClient"
PLAYGROUND = "PLAYGROUND/GOV/8765432-1/TestService"
FI_CLIENT = "FI_TEST/GOV/1234567-8/TestClient"
FI_SERVICE = "FI_TEST/GOV/9876543-1/DemoService"
VERIFY = "VN/GOV/000.00.00.G01/CSDLDC/XacThucThongTinCongDan"
PORTAL = "VN/GOV/000.00.00.G22/DVCQG"
OFFICIAL = {"X-Road-UserId": "canbo.mai", "X-Road-Issue": "H22.23-20261121-0000001"}


# --- a gateway configuration with SOAP services, for this file and the end-to-end ones --------------

def adapter_services(wsdl: Path, upstream: str) -> list[dict[str, Any]]:
    """The X-Road example adapter's operations as services, as its example requests address them."""
    return [{"id": f"{base}/{op}/v1", "connector": "soap", "upstream": upstream, "schema": str(wsdl),
             "timeout": 10}
            for base, ops in ((FI_SERVICE, ("helloService", "getRandom")),
                              (PLAYGROUND, ("listPeople", "personDetails")))
            for op in ops]


def members_of(service_ids: list[str], client_ids: list[str]) -> list[dict[str, Any]]:
    members: dict[str, set[str]] = {}
    for sid in [*service_ids, *client_ids]:
        parts = sid.split("/")
        members.setdefault("/".join(parts[:3]), set()).add(parts[3])
    return [{"id": m, "subsystems": [{"code": c} for c in sorted(subs)]} for m, subs in members.items()]


def soap_config(workdir: Path, *, services: list[dict[str, Any]], clients: list[str],
                rules: list[dict[str, Any]], keep_demo: bool = False, database: str | None = None,
                ports: Any = None) -> tuple[Path, dict[str, str]]:
    """``lienthong init`` plus the given services, clients (with new secrets) and policy rules."""
    kwargs: dict[str, Any] = {"database": database, "force": True}
    if ports is not None:
        kwargs["ports"] = ports
    init = initialise(workdir, **kwargs)
    data = yaml.safe_load(init.config_path.read_text())
    if not keep_demo:
        data["services"] = rest_and_flows(data["services"])
        for member in data["members"]:
            member.pop("routing", None)  # its receiving services are gone
    known = {m["id"]: m for m in data["members"]}
    for member in members_of([s["id"] for s in services], clients):
        if member["id"] in known:
            have = {s["code"] for s in known[member["id"]]["subsystems"]}
            known[member["id"]]["subsystems"] += [s for s in member["subsystems"] if s["code"] not in have]
        else:
            data["members"].append(member)
            known[member["id"]] = member
    data["services"] += services
    secrets = dict(init.secrets)
    for client in clients:
        if client not in secrets:
            secrets[client] = new_secret()
            data["clients"].append({"id": client, "secret_hash": hash_secret(secrets[client]),
                                    "scopes": ["exchange"]})
    (init.config_path.parent / "policies" / "zz-soap.yaml").write_text(
        yaml.safe_dump({"rules": rules}, allow_unicode=True))
    init.config_path.write_text(yaml.safe_dump(data, allow_unicode=True, sort_keys=False))
    return init.config_path, secrets


def envelope(body: str, header: str = "") -> bytes:
    head = f"<s:Header>{header}</s:Header>" if header else ""
    return (f'<?xml version="1.0" encoding="utf-8"?><s:Envelope xmlns:s="{SOAP}">{head}'
            f"<s:Body>{body}</s:Body></s:Envelope>").encode()


def xroad_header(client: str, service: str, *, message_id: str = "ID-1", user: str = "EE1234567890",
                 version: str = "4.0", issue: str | None = None) -> str:
    def ident(name: str, kind: str, codes: list[str], names: list[str]) -> str:
        inner = "".join(f"<id:{n}>{c}</id:{n}>" for n, c in zip(names, codes, strict=False))
        return (f'<xrd:{name} xmlns:xrd="{XROAD}" xmlns:id="http://x-road.eu/xsd/identifiers" '
                f'id:objectType="{kind}">{inner}</xrd:{name}>')

    c = client.split("/")
    s = service.split("/")
    out = ident("client", "SUBSYSTEM", c, ["xRoadInstance", "memberClass", "memberCode", "subsystemCode"])
    out += ident("service", "SERVICE", s, ["xRoadInstance", "memberClass", "memberCode", "subsystemCode",
                                           "serviceCode", "serviceVersion"])
    out += f'<xrd:id xmlns:xrd="{XROAD}">{message_id}</xrd:id>'
    out += f'<xrd:userId xmlns:xrd="{XROAD}">{user}</xrd:userId>'
    if issue:
        out += f'<xrd:issue xmlns:xrd="{XROAD}">{issue}</xrd:issue>'
    out += f'<xrd:protocolVersion xmlns:xrd="{XROAD}">{version}</xrd:protocolVersion>'
    return out


def fault_of(response: httpx.Response) -> dict[str, str]:
    root = etree.fromstring(response.content)
    fault = root.find(f"{{{SOAP}}}Body/{{{SOAP}}}Fault")
    assert fault is not None, response.text
    return {"code": fault.findtext("faultcode") or "", "string": fault.findtext("faultstring") or "",
            "detail": "" if fault.find("detail") is None else etree.tostring(fault.find("detail")).decode()}


def body_of(response: httpx.Response) -> Any:
    root = etree.fromstring(response.content)
    body = root.find(f"{{{SOAP}}}Body")
    assert body is not None
    return body[0]


# --- the in-process gateway -------------------------------------------------------------------------

class Face(InProcess):
    def __init__(self, client: TestClient, secrets: dict[str, str], simulator: SoapSimulator) -> None:
        super().__init__(client, secrets)
        self.simulator = simulator

    def soap(self, path: str, body: bytes, client: str | None, **headers: str) -> httpx.Response:
        h = {"Content-Type": "text/xml; charset=utf-8", **headers}
        if client:
            h["Authorization"] = f"Bearer {self.token(client)}"
        return self.client.post(path, content=body, headers=h)

    def leaf(self, exchange_id: str) -> dict[str, Any]:
        leaves = self.runtime.audit.by_exchange(exchange_id)
        assert len(leaves) == 1
        return dict(json.loads(leaves[0].leaf))


@pytest.fixture(scope="module")
def face(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Face]:
    adapter = fixtures_dir("xroad-example-adapter")
    services = [*adapter_services(adapter / "example-adapter.wsdl", "http://adapter.test/"),
                {"id": VERIFY, "connector": "rest", "upstream": "http://json.test/verify",
                 "schema": "population/dancu.wsdl", "timeout": 10}]
    rules = [{"name": "xroad-example", "services": [f"{FI_SERVICE}/*", f"{PLAYGROUND}/*"],
              "clients": [FI_CLIENT, PLAYGROUND_CLIENT], "scopes": ["exchange"]},
             {"name": "xac-thuc-soap", "services": [VERIFY], "clients": [PORTAL], "scopes": ["exchange"],
              "require_user_id": True, "subjects": ["SoDinhDanh"]}]
    config_path, secrets = soap_config(tmp_path_factory.mktemp("soap-face") / "gw", services=services,
                                       clients=[FI_CLIENT, PLAYGROUND_CLIENT], rules=rules)
    config = load_config(config_path)
    upgrade(config.database_url)
    simulator = SoapSimulator(responses=adapter)
    with TestClient(create_app(config)) as client:
        gateway = Face(client, secrets, simulator)
        http = httpx.AsyncClient(transport=httpx.ASGITransport(app=simulator.app()))
        for service in config.services:
            if service.connector == "soap":
                contract = load_contract(Path(service.schema_ or ""), service.options)
                gateway.runtime.connectors[service.id] = SoapConnector(
                    service, http, contract, allowed_operations(contract, service.operation_name, {}))
        yield gateway


def verify_answer(call: Call) -> Reply:
    return Reply({"TonTai": call.payload.get("SoDinhDanh") == "001090012345"},
                 wire_request=json.dumps(call.payload).encode(), wire_response=b"{}")


# --- tests --------------------------------------------------------------------------------------------

def test_xroad_request_reaches_the_soap_upstream_intact(face: Face) -> None:
    """An X-Road client's envelope is forwarded as it came and the provider's answer comes back."""
    face.simulator.recorder.clear()
    request = (fixtures_dir("xroad-example-adapter") / "personDetailsRequest.xml").read_bytes()
    r = face.soap("/soap", request, PLAYGROUND_CLIENT)
    assert r.status_code == 200, r.text
    (received,) = face.simulator.recorder.items()
    assert received["body"].encode() == request
    answer = body_of(r)
    assert answer.tag == f"{{{PRODUCER}}}personDetailsResponse"
    root = etree.fromstring(r.content)
    assert root.findtext(f".//{{{XROAD}}}id") == "ccddc3c00618d5e1ce85f74fe1280d5cadb09876"
    leaf = face.leaf("ccddc3c00618d5e1ce85f74fe1280d5cadb09876")
    assert leaf["protocol"] == "soap" and leaf["outcome"] == "ok" and leaf["operation"] == "personDetails"
    assert leaf["request"]["sha256"] == hashlib.sha256(request).hexdigest()


def test_json_upstream_answers_a_soap_client(face: Face) -> None:
    """A SOAP request for a JSON service is decoded by schema, and the JSON answer encoded back."""
    calls: list[Call] = []

    async def upstream(call: Call) -> Reply:
        calls.append(call)
        return verify_answer(call)

    face.runtime.connectors[VERIFY] = FunctionConnector(upstream)
    body = (f'<d:XacThucThongTinCongDanRequest xmlns:d="{DAN}"><d:MaYeuCau>R-1</d:MaYeuCau>'
            "<d:MaDichVu>1.001193</d:MaDichVu><d:MaCanBo>canbo.mai</d:MaCanBo>"
            "<d:SoDinhDanh>001090012345</d:SoDinhDanh><d:SoCMND/><d:HoVaTen>Nguyễn Văn An</d:HoVaTen>"
            "</d:XacThucThongTinCongDanRequest>")
    r = face.soap(f"/soap/{VERIFY}", envelope(body), PORTAL, **OFFICIAL)
    assert r.status_code == 200, r.text
    answer = body_of(r)
    assert answer.tag == f"{{{DAN}}}KetQuaXacThucResponse"
    assert answer.findtext(f"{{{DAN}}}TonTai") == "true"
    assert calls[0].payload == {"MaYeuCau": "R-1", "MaDichVu": "1.001193", "MaCanBo": "canbo.mai",
                                "SoDinhDanh": "001090012345", "SoCMND": "", "HoVaTen": "Nguyễn Văn An"}
    assert calls[0].content_type == "application/json"
    leaf = face.leaf(r.headers["x-road-id"])
    assert len(leaf["subjects"]) == 1 and "001090012345" not in json.dumps(leaf)


def test_invalid_body_is_a_client_fault_with_paths(face: Face) -> None:
    """A body that breaks the schema is a Client.InvalidBody fault naming where, never reaching upstream."""
    face.runtime.connectors[VERIFY] = FunctionConnector(lambda call: pytest.fail("must not be called"))
    body = (f'<d:XacThucThongTinCongDanRequest xmlns:d="{DAN}"><d:MaYeuCau>R-1</d:MaYeuCau>'
            "<d:SoDinhDanh>12</d:SoDinhDanh></d:XacThucThongTinCongDanRequest>")
    r = face.soap(f"/soap/{VERIFY}", envelope(body), PORTAL, **OFFICIAL)
    assert r.status_code == 500
    fault = fault_of(r)
    assert fault["code"] == "Client.InvalidBody"
    assert "/XacThucThongTinCongDanRequest/SoDinhDanh" in fault["detail"]


@pytest.mark.parametrize(("case", "code"), [
    ("no-token", "Client.Unauthorized"),
    ("client-mismatch", "Client.AccessDenied"),
    ("unknown-service", "Client.UnknownService"),
    ("bad-version", "Client.InvalidProtocolVersion"),
    ("not-xml", "Client.InvalidSoap"),
])
def test_refusals_are_faults_and_audited(face: Face, case: str, code: str) -> None:
    """Every refusal is a SOAP Fault with an X-Road style code, and has its audit leaf."""
    hello = f'<p:helloService xmlns:p="{PRODUCER}"><p:name>An</p:name></p:helloService>'
    service = f"{FI_SERVICE}/helloService/v1"
    message = {
        "no-token": (envelope(hello, xroad_header(FI_CLIENT, service, message_id=f"m-{case}")), None),
        "client-mismatch": (envelope(hello, xroad_header(FI_CLIENT, service, message_id=f"m-{case}")),
                            PLAYGROUND_CLIENT),
        "unknown-service": (envelope(hello, xroad_header(FI_CLIENT, "FI_TEST/GOV/0000000-0/Demo/helloService",
                                                         message_id=f"m-{case}")), FI_CLIENT),
        "bad-version": (envelope(hello, xroad_header(FI_CLIENT, service, message_id=f"m-{case}",
                                                     version="3.1")), FI_CLIENT),
        "not-xml": (b"<not-xml", FI_CLIENT),
    }[case]
    r = face.soap("/soap", message[0], message[1])
    assert r.status_code == 500 and r.headers["content-type"].startswith("text/xml")
    assert fault_of(r)["code"] == code
    leaf = face.leaf(r.headers["x-road-id"])
    assert leaf["outcome"] == "refused" and leaf["error"] == code and leaf["protocol"] == "soap"


def test_wsdl_is_published_with_the_gateway_address(face: Face) -> None:
    """GET ?wsdl answers the WSDL with every soap:address pointing at this gateway's endpoint."""
    service = f"{PLAYGROUND}/listPeople/v1"
    r = face.client.get(f"/soap/{service}?wsdl")
    assert r.status_code == 200
    root = etree.fromstring(r.content)
    (address,) = root.iter("{http://schemas.xmlsoap.org/wsdl/soap/}address")
    # The configured address (the listening one here), whatever Host the request named.
    assert address.get("location") == f"http://127.0.0.1:8080/soap/{service}"
    assert face.client.get("/soap/VN/GOV/x/Y/none?wsdl").status_code == 404
