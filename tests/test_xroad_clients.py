"""Member-level clients, as X-Road accepts them: a member (``INSTANCE/CLASS/CODE``) may be a client in
the catalog, get a token and call as itself, on /r1 (``X-Road-Client``) and on /soap (``client
objectType="MEMBER"``). As in X-Road, a member and each of its subsystems are different clients: a
token acts only as the client it was issued to, and a policy pattern names a member or a subsystem
exactly (X-Road's access rights compare the client id whole)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from fastapi.testclient import TestClient
from lxml import etree

from connectors.soap.connector import xroad_header
from gateway.app import create_app
from gateway.config import Config, Service, load_config
from gateway.connector import Call, Reply
from gateway.identifiers import IdentifierError, MemberId, SubsystemId, normalise_client, parse_client
from gateway.oauth.secrets import hash_secret, new_secret
from gateway.runtime import Runtime
from gateway.soap import envelope as soap
from gateway.storage.db import upgrade
from tests.helpers import FunctionConnector, rest_only_config

MEMBER = "VN/GOV/000.00.00.H41"  # Nghệ An, the member
SUBSYSTEM = f"{MEMBER}/MOTCUA"  # ... and its one-stop system
PROVIDER = "VN/GOV/000.00.00.G09/HOTICH"
FOR_MEMBER = f"{PROVIDER}/member"
FOR_SUBSYSTEM = f"{PROVIDER}/subsystem"
SOAP_SERVICE = f"{PROVIDER}/getState"
XROAD = soap.XROAD
IDEN = soap.IDEN
SOAP_NS = soap.SOAP


class PassThrough(FunctionConnector):
    forwards_soap = True  # the SOAP face hands it the client's envelope as it came


@dataclass
class Gateway:
    client: TestClient
    tokens: dict[str, str]
    seen: list[Call]

    @property
    def runtime(self) -> Runtime:
        return self.client.app.api.state.runtime  # type: ignore[attr-defined,no-any-return]

    def rest(self, service: str, token_of: str, **headers: str) -> Any:
        return self.client.post(f"/r1/{service}", json={"a": 1},
                                headers={"Authorization": f"Bearer {self.tokens[token_of]}", **headers})

    def soap(self, body: bytes, token_of: str) -> Any:
        return self.client.post("/soap", content=body, headers={
            "Authorization": f"Bearer {self.tokens[token_of]}", "Content-Type": "text/xml; charset=utf-8"})


def _config(workdir: Path) -> tuple[Config, dict[str, str]]:
    config, secrets = rest_only_config(workdir)
    path = config.base_dir / "config.yaml"
    data = yaml.safe_load(path.read_text())
    data["members"].append({"id": "VN/GOV/000.00.00.G09", "subsystems": [{"code": "HOTICH"}]})
    data["services"] += [{"id": sid, "connector": "rest", "upstream": "http://127.0.0.1:9/"}
                         for sid in (FOR_MEMBER, FOR_SUBSYSTEM, SOAP_SERVICE)]
    secrets[MEMBER] = new_secret()
    data["clients"].append({"id": MEMBER, "secret_hash": hash_secret(secrets[MEMBER]),
                            "scopes": ["exchange"]})
    path.write_text(yaml.safe_dump(data, allow_unicode=True, sort_keys=False))
    (config.base_dir / "policies" / "zz-members.yaml").write_text(yaml.safe_dump({"rules": [
        {"name": "member-only", "services": [FOR_MEMBER, SOAP_SERVICE], "clients": [MEMBER],
         "scopes": ["exchange"]},
        {"name": "subsystem-only", "services": [FOR_SUBSYSTEM], "clients": [SUBSYSTEM],
         "scopes": ["exchange"]},
    ]}))
    return load_config(path), secrets


@pytest.fixture(scope="module")
def gw(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    config, secrets = _config(tmp_path_factory.mktemp("members"))
    upgrade(config.database_url)
    seen: list[Call] = []

    async def echo(call: Call) -> Reply:
        seen.append(call)
        if call.body.startswith(b"<"):
            return Reply(call.body, content_type="text/xml; charset=utf-8")
        return Reply({"client": call.headers.get("X-Road-Client")})

    with TestClient(create_app(config)) as client:
        tokens = {}
        for who in (MEMBER, SUBSYSTEM):
            r = client.post("/oauth/token", data={"grant_type": "client_credentials"},
                            auth=(who, secrets[who]))
            assert r.status_code == 200, r.text
            tokens[who] = r.json()["access_token"]
        gateway = Gateway(client, tokens, seen)
        for sid in (FOR_MEMBER, FOR_SUBSYSTEM):
            gateway.runtime.connectors[sid] = FunctionConnector(echo)
        gateway.runtime.connectors[SOAP_SERVICE] = PassThrough(echo)
        yield gateway


def xroad_query(client: str, object_type: str = "MEMBER") -> bytes:
    names = ["xRoadInstance", "memberClass", "memberCode", "subsystemCode"]
    codes = "".join(f"<id:{n}>{c}</id:{n}>" for n, c in zip(names, client.split("/"), strict=False))
    service = "".join(f"<id:{n}>{c}</id:{n}>" for n, c in zip(
        [*names, "serviceCode"], SOAP_SERVICE.split("/"), strict=True))
    return (f'<?xml version="1.0" encoding="utf-8"?><s:Envelope xmlns:s="{SOAP_NS}" xmlns:xrd="{XROAD}" '
            f'xmlns:id="{IDEN}"><s:Header><xrd:client id:objectType="{object_type}">{codes}</xrd:client>'
            f'<xrd:service id:objectType="SERVICE">{service}</xrd:service><xrd:id>q-1</xrd:id>'
            '<xrd:protocolVersion>4.0</xrd:protocolVersion></s:Header>'
            '<s:Body><xrd:getState/></s:Body></s:Envelope>').encode()


# --- identifiers and the catalog ---------------------------------------------------------------------------

def test_a_client_id_is_a_member_or_a_subsystem() -> None:
    """Three parts are a member, four a subsystem, in either form; anything else is no client."""
    assert parse_client("VN:GOV:000.00.00.H41") == MemberId("VN", "GOV", "000.00.00.H41")
    assert parse_client(SUBSYSTEM) == SubsystemId("VN", "GOV", "000.00.00.H41", "MOTCUA")
    assert normalise_client("VN:GOV:000.00.00.H41") == MEMBER
    for bad in ("VN/GOV", "VN/GOV/a/b/c", "VN/GOV//x"):
        with pytest.raises(IdentifierError):
            normalise_client(bad)


def test_the_catalog_takes_declared_members_as_clients(tmp_path: Path) -> None:
    """A catalog client may be a declared member; an undeclared member is refused naming the line."""
    config, _ = _config(tmp_path)
    assert config.client(MEMBER) is not None and config.declares(MEMBER) and config.declares(SUBSYSTEM)
    assert not config.declares("VN/GOV/000.00.00.Z99")
    path = config.base_dir / "config.yaml"
    data = yaml.safe_load(path.read_text())
    data["clients"].append({"id": "VN/GOV/000.00.00.Z99", "secret_hash": hash_secret(new_secret())})
    path.write_text(yaml.safe_dump(data, allow_unicode=True, sort_keys=False))
    with pytest.raises(Exception, match="not a member or a subsystem declared"):
        load_config(path)


# --- REST --------------------------------------------------------------------------------------------------

def test_member_client_calls_as_itself_on_rest(gw: Gateway) -> None:
    """A member's token calls with X-Road-Client naming the member (or none); upstream and the audit
    see the member."""
    for headers in ({"X-Road-Client": MEMBER}, {"X-Road-Client": "VN:GOV:000.00.00.H41"}, {}):
        r = gw.rest(FOR_MEMBER, MEMBER, **headers)
        assert r.status_code == 200, r.text
        assert r.json() == {"client": MEMBER}
    log = gw.runtime.audit
    assert b'"client":"VN/GOV/000.00.00.H41"' in bytes(log.read(log.size() - 1, 1)[0].leaf)


def test_policies_name_members_and_subsystems_exactly(gw: Gateway) -> None:
    """A rule naming the member does not admit its subsystem, nor the other way round (X-Road's
    access rights compare the client id whole)."""
    assert gw.rest(FOR_MEMBER, MEMBER).status_code == 200
    assert gw.rest(FOR_SUBSYSTEM, SUBSYSTEM).status_code == 200
    for service, who in ((FOR_MEMBER, SUBSYSTEM), (FOR_SUBSYSTEM, MEMBER)):
        r = gw.rest(service, who)
        assert r.status_code == 403 and r.json()["rule"] == "default-deny", r.text


@pytest.mark.parametrize(("token_of", "claimed"), [(SUBSYSTEM, MEMBER), (MEMBER, SUBSYSTEM)])
def test_a_token_does_not_act_as_its_member_or_subsystem(gw: Gateway, token_of: str, claimed: str) -> None:
    """A subsystem's token naming its own member (or a member's naming its subsystem) is refused: in
    X-Road an information system is authenticated per client, and these are two clients."""
    before = len(gw.seen)
    r = gw.rest(FOR_MEMBER, token_of, **{"X-Road-Client": claimed})
    assert r.status_code == 403 and r.json()["code"] == "Client.AccessDenied"
    assert 'error="insufficient_scope"' in r.headers["www-authenticate"]
    assert len(gw.seen) == before


def test_an_undeclared_client_is_an_unknown_member(gw: Gateway) -> None:
    """X-Road-Client naming a member nobody declared is X-Road's UnknownMember, on both faces."""
    r = gw.rest(FOR_MEMBER, MEMBER, **{"X-Road-Client": "VN/GOV/000.00.00.Z99"})
    assert r.status_code == 403 and r.json()["code"] == "Server.ClientProxy.UnknownMember"
    r = gw.soap(xroad_query("VN/GOV/000.00.00.Z99"), MEMBER)
    assert r.status_code == 500 and _fault_code(r.content) == "Server.ClientProxy.UnknownMember"


# --- SOAP --------------------------------------------------------------------------------------------------

def _fault_code(content: bytes) -> str | None:
    return etree.fromstring(content).findtext(f"{{{SOAP_NS}}}Body/{{{SOAP_NS}}}Fault/faultcode")


def test_member_client_header_on_soap(gw: Gateway) -> None:
    """``<xroad:client objectType="MEMBER">`` with the member's token is accepted and forwarded as it
    came; the member's header with the subsystem's token is refused."""
    query = xroad_query(MEMBER)
    r = gw.soap(query, MEMBER)
    assert r.status_code == 200, r.text
    assert gw.seen[-1].body == query and gw.seen[-1].headers["X-Road-Client"] == MEMBER
    before = len(gw.seen)
    r = gw.soap(query, SUBSYSTEM)
    assert r.status_code == 500 and _fault_code(r.content) == "Client.AccessDenied"
    assert len(gw.seen) == before


def test_member_header_with_a_subsystem_code_is_refused(gw: Gateway) -> None:
    """A MEMBER identifier that names a subsystem is not a member."""
    r = gw.soap(xroad_query(SUBSYSTEM, "MEMBER"), SUBSYSTEM)
    assert r.status_code == 500 and _fault_code(r.content) == "Client.InvalidClientIdentifier"


def test_connector_names_a_member_client_as_a_member() -> None:
    """The X-Road header the SOAP connector writes for a member client says objectType MEMBER."""
    service = Service.model_validate({"id": SOAP_SERVICE, "connector": "soap", "upstream": "http://x/"})
    for client, kind, codes in ((MEMBER, "MEMBER", 3), (SUBSYSTEM, "SUBSYSTEM", 4)):
        header = xroad_header(Call(exchange_id="e", service=service, operation="getState",
                                   headers={"X-Road-Client": client}))
        node = next(e for e in header if etree.QName(e).localname == "client")
        assert node.get(f"{{{IDEN}}}objectType") == kind and len(node) == codes
