"""X-Road's metadata services (PR-META for SOAP, PR-MREST for REST), answered from the catalog and
the policies: in-process against the X-Road example adapter's services, and through real sockets
against the demo catalog."""

from __future__ import annotations

import email.parser
import email.policy
import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from lxml import etree

from gateway.app import create_app
from gateway.config import load_config
from gateway.metadata import REST_CODES, SOAP_CODES, MetaCall, client_list, endpoint_paths, meta_call
from gateway.policy import Policy
from gateway.policy.rules import Rule
from gateway.soap.envelope import split_mime
from gateway.soap.metadata import XROAD_ENDPOINT
from gateway.storage.db import upgrade
from tests.conftest import Stack, fixtures_dir, random_id
from tests.helpers import InProcess
from tests.test_soap_face import (
    FI_CLIENT,
    FI_SERVICE,
    PLAYGROUND,
    PLAYGROUND_CLIENT,
    SOAP,
    XROAD,
    adapter_services,
    fault_of,
    soap_config,
)

IDEN = "http://x-road.eu/xsd/identifiers"
CODES = ("xRoadInstance", "memberClass", "memberCode", "subsystemCode", "serviceCode", "serviceVersion")


# --- the request shapes of X-Road's examples, addressed to this catalog --------------------------------

def corpus_query(name: str, client: str, provider: str, message_id: str | None = None) -> bytes:
    """One of X-Road's metaservice queries (the proxy's test corpus, PR-META C.2 and C.4) with its
    client and provider replaced by identifiers of this catalog, and its message id when given."""
    root = etree.fromstring((fixtures_dir("xroad-queries") / name).read_bytes())
    if message_id is not None:
        root.find(f".//{{{XROAD}}}id").text = message_id
    code = root.findtext(f".//{{{XROAD}}}service/{{{IDEN}}}serviceCode")
    _identify(root.find(f".//{{{XROAD}}}client"), "SUBSYSTEM", client.split("/"))
    _identify(root.find(f".//{{{XROAD}}}service"), "SERVICE", [*provider.split("/"), code or ""])
    return etree.tostring(root, xml_declaration=True, encoding="utf-8")


def _identify(node: Any, object_type: str, parts: list[str]) -> None:
    for child in list(node):
        node.remove(child)
    node.set(f"{{{IDEN}}}objectType", object_type)
    for name, value in zip(CODES, parts, strict=False):
        etree.SubElement(node, f"{{{IDEN}}}{name}").text = value


def get_wsdl_query(client: str, provider: str, code: str, version: str | None) -> bytes:
    """PR-META C.6's getWsdl request."""
    c, p = client.split("/"), provider.split("/")
    ident = "".join(f"<iden:{n}>{v}</iden:{n}>" for n, v in zip(CODES, c, strict=False))
    target = "".join(f"<iden:{n}>{v}</iden:{n}>" for n, v in zip(CODES, [*p, "getWsdl", "v1"], strict=False))
    wanted = f"<xro:serviceCode>{code}</xro:serviceCode>" + (
        f"<xro:serviceVersion>{version}</xro:serviceVersion>" if version else "")
    return (f'<soapenv:Envelope xmlns:soapenv="{SOAP}" xmlns:xro="{XROAD}" xmlns:iden="{IDEN}">'
            "<soapenv:Header><xro:protocolVersion>4.x</xro:protocolVersion><xro:issue>123</xro:issue>"
            "<xro:id>getwsdl-1</xro:id><xro:userId>123</xro:userId>"
            f'<xro:service iden:objectType="SERVICE">{target}</xro:service>'
            f'<xro:client iden:objectType="SUBSYSTEM">{ident}</xro:client>'
            f"</soapenv:Header><soapenv:Body><xro:getWsdl>{wanted}</xro:getWsdl></soapenv:Body>"
            "</soapenv:Envelope>").encode()


def listed(response: httpx.Response, code: str) -> list[str]:
    """The service ids of a listMethods/allowedMethodsResponse, each checked for PR-META's shape."""
    root = etree.fromstring(response.content)
    (answer,) = root.find(f"{{{SOAP}}}Body")
    assert answer.tag == f"{{{XROAD}}}{code}Response"
    out = []
    for service in answer:
        assert service.tag == f"{{{XROAD}}}service"
        assert service.get(f"{{{IDEN}}}objectType") == "SERVICE"
        names = [etree.QName(c).localname for c in service]
        assert names == list(CODES[:len(names)]) and len(names) >= 5
        out.append("/".join(c.text or "" for c in service))
    return out


def rest_ids(answer: dict[str, Any]) -> list[str]:
    """The service ids of a PR-MREST listMethods/allowedMethods answer, each checked for its shape."""
    out = []
    for item in answer["service"]:
        assert item["object_type"] == "SERVICE" and item["service_type"] in ("REST", "OPENAPI", "WSDL")
        assert all(set(e) == {"method", "path"} for e in item["endpoint_list"])
        parts = [item["xroad_instance"], item["member_class"], item["member_code"], item["subsystem_code"],
                 item["service_code"], *([item["service_version"]] if "service_version" in item else [])]
        out.append("/".join(parts))
    return out


# --- pure parts ----------------------------------------------------------------------------------------

def test_a_metaservice_is_named_by_its_code_under_a_provider() -> None:
    """Subsystem and member providers, with or without a version; other ids are not metaservices."""
    assert meta_call("VN/GOV/G01/CSDLDC/listMethods", REST_CODES) == MetaCall("VN/GOV/G01/CSDLDC",
                                                                                "listMethods")
    assert meta_call("FI/COM/111/SUB/getWsdl/v1", SOAP_CODES) == MetaCall("FI/COM/111/SUB", "getWsdl")
    assert meta_call("EE/BUSINESS/producer/listMethods", SOAP_CODES) == MetaCall("EE/BUSINESS/producer",
                                                                                   "listMethods")
    assert meta_call("VN/GOV/G01/CSDLDC/getWsdl", REST_CODES) is None
    assert meta_call("VN/GOV/G01/CSDLDC/XacThuc", REST_CODES) is None
    assert meta_call("VN/listMethods", REST_CODES) is None


def test_endpoints_follow_the_extra_path() -> None:
    """No extra path: the service's own address; a prefix: it and everything under it."""
    cfg = load_config_with_services([{"extra_path": None}, {"extra_path": "/"}, {"extra_path": "/items"}])
    assert [endpoint_paths(s) for s in cfg.services] == [["/"], ["/", "/**"], ["/items", "/items/**"]]


def load_config_with_services(variants: list[dict[str, Any]]) -> Any:
    from gateway.config import Config

    return Config.model_validate({
        "members": [{"id": "VN/GOV/X", "name": "X", "subsystems": [{"code": "S", "name": "S sys"}]}],
        "services": [{"id": f"VN/GOV/X/S/svc{i}", "connector": "rest", "upstream": "http://u", **v}
                     for i, v in enumerate(variants)]})


def test_a_provider_is_a_subsystem_or_a_whole_member() -> None:
    """A member-level provider (X-Road 5 style, as in the corpus) stands for all its subsystems;
    a provider the catalog does not declare is an unknown service."""
    from gateway.errors import UnknownService
    from gateway.metadata import provided

    cfg = load_config_with_services([{}, {}])
    assert [s.id for s in provided(cfg, "VN/GOV/X/S")] == ["VN/GOV/X/S/svc0", "VN/GOV/X/S/svc1"]
    assert provided(cfg, "VN/GOV/X") == provided(cfg, "VN/GOV/X/S")
    with pytest.raises(UnknownService):
        provided(cfg, "VN/GOV/X/T")


def test_client_list_holds_members_and_subsystems_of_one_instance() -> None:
    """listClients: each member, then its subsystems with both names; another instance is empty."""
    cfg = load_config_with_services([])
    items = client_list(cfg)
    assert [(i.id, i.object_type, i.name, i.subsystem_name) for i in items] == [
        ("VN/GOV/X", "MEMBER", "X", None), ("VN/GOV/X/S", "SUBSYSTEM", "X", "S sys")]
    assert client_list(cfg, "FI") == []


def test_allowed_is_the_policy_engines_decision() -> None:
    """A rule's scopes count; its per-call needs (official, purpose) do not hide the service."""
    from gateway.metadata import may_call

    cfg = load_config_with_services([{}, {}])
    rule = Rule.model_validate({"name": "r", "services": ["VN/GOV/X/S/svc0"], "clients": ["VN/GOV/C/A"],
                                "scopes": ["exchange"], "require_user_id": True, "require_issue": True})
    policy = Policy([rule])
    svc0, svc1 = cfg.services
    assert may_call(policy, "VN/GOV/C/A", frozenset({"exchange"}), svc0)
    assert not may_call(policy, "VN/GOV/C/A", frozenset(), svc0)  # the token lacks the scope
    assert not may_call(policy, "VN/GOV/C/B", frozenset({"exchange"}), svc0)
    assert not may_call(policy, "VN/GOV/C/A", frozenset({"exchange"}), svc1)


# --- in-process: the X-Road example adapter's services --------------------------------------------------

FI_PROVIDER = FI_SERVICE
PG_PROVIDER = PLAYGROUND
HELLO = f"{FI_SERVICE}/helloService/v1"
RANDOM = f"{FI_SERVICE}/getRandom/v1"


class Gateway(InProcess):
    """The metadata tests' gateway (tests/helpers.py InProcess)."""

    def auth(self, client: str | None) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token(client)}"} if client else {}

    def soap(self, body: bytes, client: str | None) -> httpx.Response:
        return self.client.post("/soap", content=body,
                                headers={"Content-Type": "text/xml; charset=utf-8", **self.auth(client)})

    def get(self, path: str, client: str | None, **headers: str) -> httpx.Response:
        return self.client.get(path, headers={**self.auth(client), **headers})

    def leaf(self, exchange_id: str) -> dict[str, Any]:
        (leaf,) = self.runtime.audit.by_exchange(exchange_id)
        return dict(json.loads(leaf.leaf))


@pytest.fixture(scope="module")
def gw(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    adapter = fixtures_dir("xroad-example-adapter")
    rules = [{"name": "fi-hello", "services": [HELLO], "clients": [FI_CLIENT], "scopes": ["exchange"],
              "require_user_id": True},
             {"name": "playground", "services": [f"{PLAYGROUND}/*"], "clients": [PLAYGROUND_CLIENT],
              "scopes": ["exchange"]}]
    config_path, secrets = soap_config(
        tmp_path_factory.mktemp("metadata") / "gw",
        services=[*adapter_services(adapter / "example-adapter.wsdl", "http://adapter.test/"),
                  {"id": f"{PLAYGROUND}/listMethods", "connector": "rest", "upstream": "http://adapter.test/",
                   "timeout": 10}],
        clients=[FI_CLIENT, PLAYGROUND_CLIENT], rules=rules, keep_demo=True)
    config = load_config(config_path)
    upgrade(config.database_url)
    with TestClient(create_app(config)) as client:
        yield Gateway(client, secrets)


def test_soap_list_methods_lists_every_soap_service_of_the_provider(gw: Gateway) -> None:
    """PR-META C.2/C.3: listMethods names each service of the provider, whoever asks."""
    query = corpus_query("listMethods.query", PLAYGROUND_CLIENT, FI_PROVIDER)
    r = gw.soap(query, PLAYGROUND_CLIENT)
    assert r.status_code == 200, r.text
    assert sorted(listed(r, "listMethods")) == sorted([HELLO, RANDOM])
    root = etree.fromstring(r.content)
    assert root.findtext(f"{{{SOAP}}}Header/{{{XROAD}}}requestHash")  # the header echoed, as X-Road does
    assert root.findtext(f"{{{SOAP}}}Header/{{{XROAD}}}id") == "411d6755661409fed365ad8135f8210be07613da"


def test_soap_allowed_methods_lists_what_the_client_may_call(gw: Gateway) -> None:
    """PR-META C.4/C.5: allowedMethods keeps the services a policy rule lets this client call."""
    query = corpus_query("allowedMethods.query", FI_CLIENT, FI_PROVIDER, message_id=random_id())
    r = gw.soap(query, FI_CLIENT)
    assert r.status_code == 200, r.text
    assert listed(r, "allowedMethods") == [HELLO]
    leaf = gw.leaf(r.headers["x-road-id"])
    assert leaf["protocol"] == "soap" and leaf["operation"] == "allowedMethods"
    assert leaf["outcome"] == "ok" and leaf["client"] == FI_CLIENT


def test_soap_allowed_methods_is_empty_for_a_client_no_rule_admits(gw: Gateway) -> None:
    """A client that may call none of the provider's services gets an empty list."""
    r = gw.soap(corpus_query("allowedMethods.query", PLAYGROUND_CLIENT, FI_PROVIDER), PLAYGROUND_CLIENT)
    assert r.status_code == 200, r.text
    assert listed(r, "allowedMethods") == []


def test_soap_metaservice_of_an_unknown_provider_is_a_fault(gw: Gateway) -> None:
    """A provider the catalog does not declare: Client.UnknownService."""
    r = gw.soap(corpus_query("listMethods.query", FI_CLIENT, "FI_TEST/GOV/9876543-1/Nowhere"), FI_CLIENT)
    assert r.status_code == 500
    assert fault_of(r)["code"] == "Client.UnknownService"


def test_soap_metaservice_needs_a_token(gw: Gateway) -> None:
    """No bearer token: a SOAP Fault, audited, never the list."""
    r = gw.soap(corpus_query("listMethods.query", FI_CLIENT, FI_PROVIDER), None)
    assert r.status_code == 500  # SOAP 1.1 sends every fault with 500
    assert fault_of(r)["code"] == "Client.Unauthorized"
    assert b"listMethodsResponse" not in r.content


def test_soap_metaservice_client_must_be_the_tokens(gw: Gateway) -> None:
    """The header's client is checked against the token, as for every exchange."""
    r = gw.soap(corpus_query("allowedMethods.query", PLAYGROUND_CLIENT, FI_PROVIDER), FI_CLIENT)
    assert r.status_code == 500
    assert fault_of(r)["code"] == "Client.AccessDenied"


def test_soap_metaservice_body_must_be_its_element(gw: Gateway) -> None:
    """A listMethods request whose body is another element is refused."""
    query = corpus_query("listMethods.query", FI_CLIENT, FI_PROVIDER).replace(
        b"<xroad:listMethods/>", b"<xroad:listMethodsX/>")
    r = gw.soap(query, FI_CLIENT)
    assert r.status_code == 500
    assert fault_of(r)["code"].startswith("Client.")


def test_get_wsdl_answers_the_wsdl_as_an_attachment(gw: Gateway) -> None:
    """PR-META C.6-C.8: getWsdlResponse echoes the service, the WSDL follows as a MIME part, its
    address replaced by X-Road's placeholder."""
    r = gw.soap(get_wsdl_query(FI_CLIENT, FI_PROVIDER, "getRandom", "v1"), FI_CLIENT)
    assert r.status_code == 200, r.text
    content_type = r.headers["content-type"]
    assert content_type.startswith("multipart/related")
    envelope = etree.fromstring(split_mime(r.content, content_type, 10_000_000))
    (answer,) = envelope.find(f"{{{SOAP}}}Body")
    assert answer.tag == f"{{{XROAD}}}getWsdlResponse"
    assert [answer.findtext(f"{{{XROAD}}}serviceCode"), answer.findtext(f"{{{XROAD}}}serviceVersion")] == \
        ["getRandom", "v1"]
    assert envelope.findtext(f"{{{SOAP}}}Header/{{{XROAD}}}requestHash")
    message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
        f"Content-Type: {content_type}\r\n\r\n".encode() + r.content)
    parts = list(message.iter_parts())  # type: ignore[attr-defined]
    assert len(parts) == 2
    wsdl = etree.fromstring(parts[1].get_payload(decode=True))
    assert etree.QName(wsdl).localname == "definitions"
    addresses = {n.get("location") for n in wsdl.iter("{http://schemas.xmlsoap.org/wsdl/soap/}address")}
    assert addresses == {XROAD_ENDPOINT}


def test_get_wsdl_of_an_unknown_service_is_a_fault(gw: Gateway) -> None:
    """getWsdl for a service code the provider does not have: Client.UnknownService."""
    r = gw.soap(get_wsdl_query(FI_CLIENT, FI_PROVIDER, "noSuchService", None), FI_CLIENT)
    assert r.status_code == 500
    assert fault_of(r)["code"] == "Client.UnknownService"


def test_rest_list_and_allowed_methods(gw: Gateway) -> None:
    """PR-MREST B.1/B.2 shapes: every service, then only those the client may call."""
    r = gw.get(f"/r1/{FI_PROVIDER}/listMethods", PLAYGROUND_CLIENT, **{"X-Road-Client": PLAYGROUND_CLIENT})
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "application/json"
    assert sorted(rest_ids(r.json())) == sorted([HELLO, RANDOM])
    assert r.json()["service"][0]["endpoint_list"] == [{"method": "*", "path": "/"}]
    r = gw.get(f"/r1/{FI_PROVIDER}/allowedMethods", FI_CLIENT)
    assert r.status_code == 200 and rest_ids(r.json()) == [HELLO]
    leaf = gw.leaf(r.headers["x-road-id"])
    assert leaf["protocol"] == "rest" and leaf["operation"] == "allowedMethods"
    assert leaf["service"] == f"{FI_PROVIDER}/allowedMethods"
    r = gw.get(f"/r1/{FI_PROVIDER}/allowedMethods", PLAYGROUND_CLIENT)
    assert r.status_code == 200 and r.json() == {"service": []}


def test_rest_metaservice_refusals(gw: Gateway) -> None:
    """No token 401, unknown provider 404, a foreign X-Road-Client 403, POST 405: problem+json."""
    cases = [(gw.get(f"/r1/{FI_PROVIDER}/listMethods", None), 401),
             (gw.get("/r1/FI_TEST/GOV/9876543-1/Nowhere/listMethods", FI_CLIENT), 404),
             (gw.get(f"/r1/{FI_PROVIDER}/allowedMethods", FI_CLIENT, **{"X-Road-Client": PLAYGROUND_CLIENT}),
              403),
             (gw.client.post(f"/r1/{FI_PROVIDER}/listMethods", headers=gw.auth(FI_CLIENT)), 405)]
    for response, status in cases:
        assert response.status_code == status, response.text
        assert response.headers["content-type"] == "application/problem+json"
        assert "service" not in response.json()
        assert gw.leaf(response.headers["x-road-id"])["status"] == status


def test_rest_get_openapi(gw: Gateway) -> None:
    """getOpenAPI?serviceCode=: an OpenAPI 3 description pointing at the gateway's /r1."""
    r = gw.get(f"/r1/{FI_PROVIDER}/getOpenAPI?serviceCode=helloService", FI_CLIENT)
    assert r.status_code == 200, r.text
    doc = r.json()
    assert doc["openapi"].startswith("3.") and f"/{HELLO}" in doc["paths"]
    assert doc["servers"][0]["url"].endswith("/r1")
    assert gw.get(f"/r1/{FI_PROVIDER}/getOpenAPI?serviceCode=nope", FI_CLIENT).status_code == 404
    assert gw.get(f"/r1/{FI_PROVIDER}/getOpenAPI", FI_CLIENT).status_code == 400


def test_list_clients_xml_and_json(gw: Gateway) -> None:
    """PR-META C.1: the clientList XML by default, its JSON form when asked; a token is needed."""
    r = gw.get("/listClients?xRoadInstance=FI_TEST", FI_CLIENT)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("text/xml")
    root = etree.fromstring(r.content)
    assert root.tag == f"{{{XROAD}}}clientList"
    ids = {(m.find(f"{{{XROAD}}}id").get(f"{{{IDEN}}}objectType"),
            "/".join(c.text or "" for c in m.find(f"{{{XROAD}}}id"))) for m in root}
    assert ("SUBSYSTEM", FI_CLIENT) in ids and ("MEMBER", "FI_TEST/GOV/1234567-8") in ids
    assert ("SUBSYSTEM", FI_PROVIDER) in ids
    r = gw.get("/listClients?xRoadInstance=FI_TEST", FI_CLIENT, Accept="application/json")
    members = r.json()["member"]
    assert {"object_type": "SUBSYSTEM", "xroad_instance": "FI_TEST", "member_class": "GOV",
            "member_code": "1234567-8", "subsystem_code": "TestClient"} in [m["id"] for m in members]
    vn = gw.get("/listClients", FI_CLIENT, Accept="application/json").json()["member"]
    assert vn and all(m["id"]["xroad_instance"] == "VN" for m in vn)
    refused = gw.get("/listClients", None)
    assert refused.status_code == 401 and refused.headers["content-type"] == "application/problem+json"
    assert gw.leaf(refused.headers["x-road-id"])["service"] == "listClients"


def test_a_catalog_service_under_a_metaservice_code_is_served_as_registered(gw: Gateway) -> None:
    """The catalog registers PLAYGROUND's listMethods as a service: the policies decide, as for any."""
    r = gw.get(f"/r1/{PLAYGROUND}/listMethods", FI_CLIENT)
    assert r.status_code == 403 and r.json()["rule"] == "default-deny"


def test_an_ordinary_exchange_is_not_a_metaservice(gw: Gateway) -> None:
    """A service id that only ends like a metaservice's path segment still goes to the pipeline."""
    r = gw.get(f"/r1/{FI_PROVIDER}/listMethods/extra", FI_CLIENT)
    assert r.status_code == 404 and r.json()["code"] == "Client.UnknownService"


# --- through real sockets: the demo catalog served by processes ------------------------------------------

POPULATION = "VN/GOV/000.00.00.G01/CSDLDC"
VERIFY = f"{POPULATION}/XacThucThongTinCongDan"
LOOKUP = f"{POPULATION}/TraCuuThongTinCongDan"
MOTCUA = "VN/GOV/000.00.00.H60/MOTCUA"  # Tuyên Quang's one-stop system
PORTAL = "VN/GOV/000.00.00.G22/DVCQG"
AUDITOR = "VN/GOV/000.00.00.G22/KIEMTOAN"  # a token without the exchange scope


@pytest.mark.slow
def test_e2e_rest_metadata(stack: Stack) -> None:
    """Per client, allowedMethods is what the demo policies allow; listMethods is everything."""
    def get(path: str, client: str | None) -> httpx.Response:
        headers = {"Authorization": f"Bearer {stack.token(client)}"} if client else {}
        return httpx.get(f"{stack.base}{path}", headers=headers, timeout=30)

    catalog = {s.id for s in load_config(stack.config_path).services if s.id.startswith(f"{POPULATION}/")}
    assert set(rest_ids(get(f"/r1/{POPULATION}/listMethods", MOTCUA).json())) == catalog
    by_motcua = set(rest_ids(get(f"/r1/{POPULATION}/allowedMethods", MOTCUA).json()))
    assert VERIFY in by_motcua and LOOKUP not in by_motcua
    assert {LOOKUP, VERIFY} <= set(rest_ids(get(f"/r1/{POPULATION}/allowedMethods", PORTAL).json()))
    assert rest_ids(get(f"/r1/{POPULATION}/allowedMethods", AUDITOR).json()) == []
    assert get(f"/r1/{POPULATION}/allowedMethods", None).status_code == 401
    assert get("/r1/VN/GOV/000.00.00.G01/NOWHERE/listMethods", MOTCUA).status_code == 404
    assert get("/listClients", MOTCUA).status_code == 200


@pytest.mark.slow
def test_e2e_soap_allowed_methods(stack: Stack) -> None:
    """X-Road's allowedMethods query through the SOAP face of a running gateway."""
    body = corpus_query("allowedMethods.query", MOTCUA, POPULATION)
    headers = {"Content-Type": "text/xml; charset=utf-8"}
    r = httpx.post(f"{stack.base}/soap", content=body, timeout=30,
                   headers={**headers, "Authorization": f"Bearer {stack.token(MOTCUA)}"})
    assert r.status_code == 200, r.text
    assert VERIFY in listed(r, "allowedMethods") and LOOKUP not in listed(r, "allowedMethods")
    refused = httpx.post(f"{stack.base}/soap", content=body, headers=headers, timeout=30)
    assert refused.status_code == 500 and fault_of(refused)["code"] == "Client.Unauthorized"



def test_the_openapi_document_describes_the_rest_metaservices(gw: Gateway) -> None:
    """The documentation-only entries: the three /r1 metaservices and /listClients, with a token."""
    paths = gw.client.get("/openapi.json").json()["paths"]
    provider = "/r1/{instance}/{class}/{member}/{subsystem}"
    for code in ("listMethods", "allowedMethods", "getOpenAPI"):
        operation = paths[f"{provider}/{code}"]["get"]
        assert operation["security"] == [{"bearerToken": []}] and "401" in operation["responses"]
    assert any(p["name"] == "serviceCode" for p in paths[f"{provider}/getOpenAPI"]["get"]["parameters"])
    assert "text/xml" in paths["/listClients"]["get"]["responses"]["200"]["content"]
