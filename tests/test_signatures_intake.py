"""Signatures at intake (issue 14, items 2 and 3): the ``verify_signature`` step in an in-process
gateway, over the test PKI of tests/pki.py written into the configuration as its trust store.

Services: ``echo`` asks ``signatures: required``, ``items`` ``optional``, the population verify call
(JSON upstream, SOAP face by its WSDL) ``required``; a rule lets one client call ``echo`` with
``optional`` (the rule's setting wins). Upstreams are function connectors that count their calls.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner
from fastapi.testclient import TestClient
from lxml import etree

from gateway.app import create_app
from gateway.audit.record import AuditRecord
from gateway.cli import main
from gateway.config import load_config
from gateway.connector import Call, Reply
from gateway.console.users import UserStore
from gateway.runtime import Runtime, StartupError
from gateway.storage.db import create_engine, upgrade
from tests.helpers import FunctionConnector, InProcess, rest_only_config
from tests.pki import BODY, DOSSIER, Pki, make_pki, sign_jws, sign_xml
from tests.test_soap_face import DAN, OFFICIAL, PORTAL, VERIFY, envelope, fault_of, soap_config

CLIENT = "VN/GOV/000.00.00.H41/MOTCUA"
LENIENT = "VN/GOV/000.00.00.H60/MOTCUA"  # its rule says optional, over the service's required
ECHO = "VN/GOV/000.00.00.H41/DANHMUC/echo"
ITEMS = "VN/GOV/000.00.00.H41/DANHMUC/items"
ASKED = {ECHO: "required", ITEMS: "optional", VERIFY: "required"}
AUDITOR_PASSWORD = "mat-khau-du-dai-1"

RULES = [
    {"name": "echo-co-chu-ky", "services": [ECHO, ITEMS], "clients": [CLIENT], "scopes": ["exchange"]},
    {"name": "echo-chu-ky-tuy-chon", "services": [ECHO], "clients": [LENIENT], "scopes": ["exchange"],
     "signatures": "optional"},
    {"name": "xac-thuc-co-chu-ky", "services": [VERIFY], "clients": [PORTAL], "scopes": ["exchange"]},
]


class Gateway(InProcess):
    def __init__(self, client: TestClient, secrets: dict[str, str], pki: Pki) -> None:
        super().__init__(client, secrets)
        self.pki = pki
        self.upstream = FunctionConnector(_echo)
        for service in ASKED:
            self.runtime.connectors[service] = self.upstream

    def post(self, service: str, body: bytes, *, signature: bytes | None = None,
             content_type: str = "application/json", client: str = CLIENT) -> Any:
        headers = {"Authorization": f"Bearer {self.token(client)}", "Content-Type": content_type}
        if signature is not None:
            headers["X-JWS-Signature"] = signature.decode()
        return self.client.post(f"/r1/{service}", content=body, headers=headers)

    def leaf(self, exchange_id: str) -> dict[str, Any]:
        (stored,) = self.runtime.audit.by_exchange(exchange_id)
        return dict(json.loads(stored.leaf))

    def index(self, exchange_id: str) -> int:
        (stored,) = self.runtime.audit.by_exchange(exchange_id)
        return stored.idx


async def _echo(call: Call) -> Reply:
    return Reply({"echo": call.payload}, wire_request=call.body, wire_response=b"{}")


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    workdir = tmp_path_factory.mktemp("signatures-intake") / "gw"
    verify = {"id": VERIFY, "connector": "rest", "upstream": "http://json.test/verify",
              "schema": "population/dancu.wsdl", "timeout": 10}
    config_path, secrets = soap_config(workdir, services=[verify], clients=[], rules=[])
    data = yaml.safe_load(config_path.read_text())
    data.pop("signatures", None)  # the default folders below, not the demo CA init made
    for service in data["services"]:
        if service["id"] in ASKED:
            service["signatures"] = ASKED[service["id"]]
    config_path.write_text(yaml.safe_dump(data, allow_unicode=True, sort_keys=False))
    (workdir / "policies" / "00-signatures.yaml").write_text(yaml.safe_dump({"rules": RULES}))
    pki = make_pki(workdir / "trust")  # the default folders: trust/anchors, trust/revocation
    config = load_config(config_path)
    upgrade(config.database_url)
    users = UserStore(create_engine(config.database_url))
    users.add("kiemtoan", "auditor", AUDITOR_PASSWORD, "Lê Thị Kiểm Toán")
    users.engine.dispose()
    with TestClient(create_app(config), base_url="http://127.0.0.1") as client:
        yield Gateway(client, secrets, pki)


def _detached_7797(pki: Pki, body: bytes) -> bytes:
    """RFC 7797: an unencoded payload (``b64: false``) left out: ``header..signature``."""
    token = sign_jws(pki, pki.signer, body, b64=False)
    return token[:token.index(b".")] + b".." + token[token.rindex(b".") + 1:]


# --- passing ------------------------------------------------------------------------------------------

@pytest.mark.parametrize("form", ["rfc7515", "rfc7797"])
def test_a_validly_signed_json_body_passes_and_its_leaf_carries_the_verdict(gateway: Gateway,
                                                                             form: str) -> None:
    """A detached JWS of the exact body in X-JWS-Signature: the upstream is called, and the leaf
    keeps the signer's subject, serial and issuer, the digest of the body and the verdict ok."""
    pki = gateway.pki
    signature = sign_jws(pki, pki.signer, BODY, detached=True) if form == "rfc7515" else \
        _detached_7797(pki, BODY)
    before = gateway.upstream.calls
    r = gateway.post(ECHO, BODY, signature=signature)
    assert r.status_code == 200, r.text
    assert gateway.upstream.calls == before + 1
    leaf = gateway.leaf(r.headers["x-road-id"])
    verdict = leaf["signature"]
    assert verdict["valid"] is True and verdict["reason"] == "ok" and verdict["format"] == "jws"
    assert "CN=Nguyễn Văn An" in verdict["signer"]["subject"]
    assert verdict["signer"]["serial"] == format(pki.signer.cert.serial_number, "x")
    assert "CN=Test Signing CA" in verdict["signer"]["issuer"]
    assert verdict["algorithm"] and verdict["timeSource"] == "verification"
    assert leaf["outcome"] == "ok" and leaf["error"] is None


def test_an_xml_body_with_an_enveloped_signature_passes(gateway: Gateway) -> None:
    """An XML dossier signed enveloped (XML-DSig) is verified from the body itself."""
    r = gateway.post(ECHO, sign_xml(gateway.pki, gateway.pki.signer), content_type="application/xml")
    assert r.status_code == 200, r.text
    verdict = gateway.leaf(r.headers["x-road-id"])["signature"]
    assert verdict["valid"] is True and verdict["format"] == "xmldsig"


# --- refused, with required -----------------------------------------------------------------------------

def _case(pki: Pki, case: str) -> tuple[bytes, bytes | None]:
    """(body, X-JWS-Signature) for each way a signature fails."""
    if case == "no-signature":
        return BODY, None
    if case == "bad-signature":  # the body changed after it was signed
        return BODY.replace(b"Nguy", b"Ngu"), sign_jws(pki, pki.signer, BODY, detached=True)
    party = {"untrusted": pki.stranger, "revoked": pki.revoked, "wrong-usage": pki.wrong_usage,
             "expired": pki.expired}[case]
    return BODY, sign_jws(pki, party, BODY, detached=True)


@pytest.mark.parametrize(("case", "status"), [
    ("no-signature", 400), ("bad-signature", 400), ("untrusted", 403), ("revoked", 403),
    ("wrong-usage", 403), ("expired", 403)])
def test_required_refuses_before_the_upstream_and_audits_the_verdict(gateway: Gateway, case: str,
                                                                     status: int) -> None:
    """Unsigned, tampered, untrusted, revoked, wrong-usage or expired: Client.SignatureInvalid
    naming the reason, as problem+json; the connector is never called; the leaf keeps the verdict."""
    body, signature = _case(gateway.pki, case)
    before = gateway.upstream.calls
    r = gateway.post(ECHO, body, signature=signature)
    assert r.status_code == status, r.text
    assert gateway.upstream.calls == before, "a refused signature must never reach the upstream"
    assert r.headers["content-type"].startswith("application/problem+json")
    problem = r.json()
    assert problem["code"] == "Client.SignatureInvalid" and problem["reason"] == case
    leaf = gateway.leaf(r.headers["x-road-id"])
    assert leaf["outcome"] == "refused" and leaf["status"] == status
    assert leaf["error"] == "Client.SignatureInvalid" and leaf["rule"] == "echo-co-chu-ky"
    assert leaf["signature"]["reason"] == case and leaf["signature"]["valid"] is False


def test_a_tampered_xml_dossier_is_refused(gateway: Gateway) -> None:
    """A signed XML dossier changed afterwards: its reference digest no longer matches."""
    signed = sign_xml(gateway.pki, gateway.pki.signer, DOSSIER).replace(b"0000001", b"0000009")
    before = gateway.upstream.calls
    r = gateway.post(ECHO, signed, content_type="application/xml")
    assert r.status_code == 400 and r.json()["reason"] == "digest-mismatch"
    assert gateway.upstream.calls == before


# --- optional, and the rule over the service ---------------------------------------------------------

@pytest.mark.parametrize("case", ["no-signature", "revoked"])
def test_optional_passes_and_keeps_the_verdict(gateway: Gateway, case: str) -> None:
    """With optional, an unsigned or badly signed request goes through; the leaf says why not valid."""
    body, signature = _case(gateway.pki, case)
    r = gateway.post(ITEMS, body, signature=signature)
    assert r.status_code == 200, r.text
    verdict = gateway.leaf(r.headers["x-road-id"])["signature"]
    assert verdict["valid"] is False and verdict["reason"] == case


def test_the_rules_setting_wins_over_the_services(gateway: Gateway) -> None:
    """echo requires signatures; the rule deciding LENIENT's calls says optional: it passes."""
    r = gateway.post(ECHO, BODY, client=LENIENT)
    assert r.status_code == 200, r.text
    leaf = gateway.leaf(r.headers["x-road-id"])
    assert leaf["rule"] == "echo-chu-ky-tuy-chon" and leaf["signature"]["reason"] == "no-signature"


def test_a_leaf_without_a_verdict_has_no_signature_field() -> None:
    """Exchanges nobody asks signatures of keep their leaves' bytes: the field is written only when set."""
    plain = AuditRecord(exchange_id="x", ts_us=1, protocol="rest", outcome="ok", status=200)
    assert b"signature" not in plain.leaf()
    signed = AuditRecord(exchange_id="x", ts_us=1, protocol="rest", outcome="ok", status=200,
                         signature={"format": "jws", "valid": True, "reason": "ok"})
    assert json.loads(signed.leaf())["signature"]["reason"] == "ok"


def test_the_console_entry_view_shows_the_signature(gateway: Gateway) -> None:
    """An auditor's entry page of a signed exchange shows the verdict, the signer and the serial;
    an exchange refused for its signature shows the reason."""
    pki = gateway.pki
    signed = gateway.post(ECHO, BODY, signature=sign_jws(pki, pki.signer, BODY, detached=True))
    revoked = gateway.post(ECHO, BODY, signature=sign_jws(pki, pki.revoked, BODY, detached=True))
    page = gateway.client.get("/console/login")
    csrf = re.search(r'name="csrf" value="([^"]+)"', page.text)
    assert csrf is not None
    gateway.client.post("/console/login", data={"csrf": csrf.group(1), "username": "kiemtoan",
                                                "password": AUDITOR_PASSWORD, "next": ""})
    shown = gateway.client.get(f"/console/log/{gateway.index(signed.headers['x-road-id'])}")
    assert shown.status_code == 200, shown.text[:300]
    block = re.search(r'id="entry-signature">(.*?)</dd>', shown.text, re.S)
    assert block is not None
    assert "Nguyễn Văn An" in block.group(1) and format(pki.signer.cert.serial_number, "x") in block.group(1)
    refused = gateway.client.get(f"/console/log/{gateway.index(revoked.headers['x-road-id'])}")
    block = re.search(r'id="entry-signature">(.*?)</dd>', refused.text, re.S)
    assert block is not None and "revoked" in block.group(1)


# --- the SOAP face ----------------------------------------------------------------------------------

def test_soap_face_refusal_is_a_fault_with_the_code(gateway: Gateway) -> None:
    """An unsigned envelope to a service that requires signatures: a SOAP Fault
    Client.SignatureInvalid naming the reason, before the upstream, audited with the verdict."""
    body = (f'<d:XacThucThongTinCongDanRequest xmlns:d="{DAN}"><d:MaYeuCau>R-1</d:MaYeuCau>'
            "<d:MaDichVu>1.001193</d:MaDichVu><d:MaCanBo>canbo.mai</d:MaCanBo>"
            "<d:SoDinhDanh>001090012345</d:SoDinhDanh><d:SoCMND/><d:HoVaTen>Nguyễn Văn An</d:HoVaTen>"
            "</d:XacThucThongTinCongDanRequest>")
    before = gateway.upstream.calls
    r = gateway.client.post(f"/soap/{VERIFY}", content=envelope(body),
                            headers={"Authorization": f"Bearer {gateway.token(PORTAL)}",
                                     "Content-Type": "text/xml; charset=utf-8", **OFFICIAL})
    assert r.status_code == 500  # SOAP 1.1 faults travel as HTTP 500
    fault = fault_of(r)
    assert fault["code"] == "Client.SignatureInvalid" and "no-signature" in fault["detail"]
    assert gateway.upstream.calls == before
    leaf = gateway.leaf(r.headers["x-road-id"])
    assert leaf["protocol"] == "soap" and leaf["signature"]["reason"] == "no-signature"
    assert etree.fromstring(r.content) is not None


# --- start-up ---------------------------------------------------------------------------------------

def test_startup_and_check_refuse_an_empty_anchors_folder(tmp_path: Path) -> None:
    """A service asks for signatures and trust/anchors holds no certificate: the gateway does not
    start, and `lienthong check` names the folder and the configuration's line."""
    config, _ = rest_only_config(tmp_path)
    config_path = config.base_dir / "config.yaml"
    data = yaml.safe_load(config_path.read_text())
    next(s for s in data["services"] if s["id"] == ECHO)["signatures"] = "required"
    data["signatures"] = {"anchors": "trust/anchors", "claimed_time": False}
    config_path.write_text(yaml.safe_dump(data, allow_unicode=True, sort_keys=False))
    anchors = config.base_dir / "trust" / "anchors"
    anchors.mkdir(parents=True)
    config = load_config(config_path)
    with pytest.raises(StartupError, match=str(anchors)):
        Runtime.build(config)
    result = CliRunner().invoke(main, ["check", "--config", str(config_path)])
    assert result.exit_code != 0
    line = next(i for i, text in enumerate(config_path.read_text().splitlines(), 1)
                if text.strip().startswith("anchors:"))
    assert f"{config_path}:{line}" in result.output and str(anchors) in result.output
    assert f"service {ECHO}" in result.output
