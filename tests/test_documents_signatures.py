"""Signed edXML documents (issue 16, item 4): the XML-DSig ``ds:Signature`` in ``edXML:edXMLHeader``
verified by the signatures core (gateway/signatures/xml.py), then at intake on a document service
asking ``signatures: required`` (a rule saying ``optional`` for one system), in an in-process gateway
whose trust store is the test PKI of tests/pki.py.

The accepted shape: one signature in the header, one reference over the whole document (``URI=""``,
enveloped), so the attachments outside the envelope are signed too (connectors/dms/signing.py).
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from fastapi.testclient import TestClient
from lxml import etree
from signxml.signer import XMLSigner

from connectors.dms import data
from connectors.dms.signing import sign
from gateway.app import create_app
from gateway.config import load_config
from gateway.edxml import parse
from gateway.edxml.codec import DS, NS
from gateway.signatures import Verdict, verify
from gateway.simulation import free_port
from gateway.storage.db import upgrade
from tests.helpers import InProcess
from tests.pki import Party, Pki, make_pki, pems
from tests.test_documents_e2e import H41, H60, MINISTRY, NA_DMS, SERVICE, TQ_DMS, configure

PLATFORM_DMS = "VN/GOV/000.00.00.G22/TRUCVB"


def _signed(pki: Pki, party: Party, body: bytes) -> bytes:
    chain = [party] if party is pki.stranger else pki.chain(party)
    return sign(body, party.key, [p.cert for p in chain])


def _package(number: int, recipients: list[str] | None = None) -> bytes:
    return data.package_bytes(H60, recipients or [H41], number, attachments=3, attachment_size=4096)


def _check(pki: Pki, body: bytes) -> Verdict:
    return verify(body, "application/xml", trust=pki.trust)


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("trust"))


# --- the verifier -------------------------------------------------------------------------------------

def test_a_package_signed_in_its_header_is_valid_and_still_a_package(pki: Pki) -> None:
    """The signature sits in edXMLHeader after the trace, as QCVN 102 puts it; the codec keeps it."""
    signed = _signed(pki, pki.signer, _package(1))
    verdict = _check(pki, signed)
    assert (verdict.format, verdict.reason, verdict.valid) == ("xmldsig", "ok", True), verdict.message
    assert verdict.subject is not None and "Nguyễn Văn An" in verdict.subject and verdict.digest
    root = etree.fromstring(signed)
    (signature,) = root.iter(f"{{{DS}}}Signature")
    assert signature.getparent().tag == f"{{{NS}}}edXMLHeader"
    with parse(signed) as package:
        assert package.signature is not None and len(package.attachments) == 3


def test_a_signed_status_message_is_valid(pki: Pki) -> None:
    status = data.status_bytes(f"{H60},2026/11/21,1/UBND-VP", H60, "03", H41)
    verdict = _check(pki, _signed(pki, pki.ec_signer, status))
    assert verdict.valid, verdict.message


def test_tampered_header_or_attachment_is_a_digest_mismatch(pki: Pki) -> None:
    """The subject changed, or one byte of an attachment (outside the envelope): both are signed."""
    signed = _signed(pki, pki.signer, _package(2))
    subject = data.SUBJECTS[2 % len(data.SUBJECTS)].encode()
    assert subject in signed
    assert _check(pki, signed.replace(subject, subject + " (sửa)".encode())).reason == "digest-mismatch"
    root = etree.fromstring(signed)
    encoded = root.find(f"{{{NS}}}AttachmentEncoded/{{{NS}}}Attachment/{{{NS}}}ContentTransferEncoded")
    raw = bytearray(base64.b64decode("".join(encoded.text.split())))
    raw[10] ^= 1
    encoded.text = base64.b64encode(bytes(raw)).decode()
    verdict = _check(pki, etree.tostring(root, xml_declaration=True, encoding="UTF-8"))
    assert (verdict.reason, verdict.valid) == ("digest-mismatch", False)


@pytest.mark.parametrize("who", ["stranger", "revoked", "wrong_usage"])
def test_signers_not_accepted(pki: Pki, who: str) -> None:
    party = getattr(pki, who)
    verdict = _check(pki, _signed(pki, party, _package(3)))
    expected = {"stranger": "untrusted"}.get(who, who.replace("_", "-"))
    assert (verdict.reason, verdict.valid) == (expected, False)


def test_shapes_not_verified(pki: Pki) -> None:
    """A signature at the root (not in the header), or over the header alone, is unsupported: the
    header alone says nothing of the attachments."""
    at_root = XMLSigner(signature_algorithm="ecdsa-sha256").sign(
        etree.fromstring(_package(4)), key=pki.ec_signer.pem_key, cert=pems(pki, pki.ec_signer))
    verdict = _check(pki, etree.tostring(at_root))
    assert verdict.reason == "unsupported" and "edXMLHeader" in verdict.message
    root = etree.fromstring(_package(5))
    header = root.find(f"{{{NS}}}edXMLEnvelope/{{{NS}}}edXMLHeader")
    header.set("Id", "hdr")
    etree.SubElement(header, f"{{{DS}}}Signature", {"Id": "placeholder"}, nsmap={"ds": DS})
    partial = XMLSigner(signature_algorithm="ecdsa-sha256").sign(
        root, key=pki.ec_signer.pem_key, cert=pems(pki, pki.ec_signer), reference_uri="#hdr")
    verdict = _check(pki, etree.tostring(partial))
    assert verdict.reason == "unsupported" and "not the whole edXML document" in verdict.message


# --- at intake ------------------------------------------------------------------------------------------

class Desk(InProcess):
    def post(self, body: bytes, client: str = TQ_DMS) -> Any:
        return self.client.post(f"/r1/{SERVICE}", content=body, headers={
            "Authorization": f"Bearer {self.token(client)}", "Content-Type": "application/xml"})

    def get(self, path: str, client: str = NA_DMS) -> Any:
        headers = {"Authorization": f"Bearer {self.token(client)}"}
        return self.client.get(f"/r1/{SERVICE}{path}", headers=headers)

    def leaf(self, exchange_id: str) -> dict[str, Any]:
        (stored,) = self.runtime.audit.by_exchange(exchange_id)
        return dict(json.loads(stored.leaf))


@pytest.fixture(scope="module")
def desk(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Desk, Pki]]:
    workdir = tmp_path_factory.mktemp("documents-signed") / "gw"
    database = f"sqlite:///{workdir.parent / 'gw.db'}"
    config_path, secrets = configure(workdir, database, free_port(), free_port())
    cfg = yaml.safe_load(config_path.read_text())
    cfg.pop("signatures", None)  # the default folders (trust/anchors, trust/revocation): the test PKI
    for service in cfg["services"]:
        if service["id"] == SERVICE:
            service["signatures"] = "required"
    config_path.write_text(yaml.safe_dump(cfg, allow_unicode=True, sort_keys=False))
    policy_path = config_path.parent / "policies" / "demo.yaml"  # its rule lien-thong-van-ban
    policy = yaml.safe_load(policy_path.read_text())
    (rule,) = [r for r in policy["rules"] if r["name"] == "lien-thong-van-ban"]
    rule["clients"] = [c for c in rule["clients"] if c != PLATFORM_DMS]
    policy["rules"].append({**rule, "name": "van-ban-chu-ky-tuy-chon", "clients": [PLATFORM_DMS],
                            "signatures": "optional"})
    policy_path.write_text(yaml.safe_dump(policy, allow_unicode=True, sort_keys=False))
    pki = make_pki(config_path.parent / "trust")
    config = load_config(config_path)
    upgrade(config.database_url)
    with TestClient(create_app(config), base_url="http://127.0.0.1") as client:
        yield Desk(client, secrets), pki


def test_a_signed_package_is_accepted_and_its_verdict_audited(desk: tuple[Desk, Pki]) -> None:
    gw, pki = desk
    r = gw.post(_signed(pki, pki.signer, _package(11)))
    assert r.status_code == 202, r.text
    leaf = gw.leaf(r.headers["x-road-id"])
    assert leaf["operation"] == "send" and leaf["document"]["id"].endswith(",11/UBND-VP")
    assert leaf["signature"]["valid"] is True and leaf["signature"]["format"] == "xmldsig"
    assert "Nguyễn Văn An" in leaf["signature"]["signer"]["subject"]
    # Pulling carries no document to sign: pending, fetch and confirm pass without a signature.
    pending = gw.get("/pending")
    assert pending.status_code == 200, pending.text
    (item,) = [i for i in pending.json()["items"] if i["documentId"].endswith(",11/UBND-VP")]
    fetched = gw.get(f"/messages/{item['id']}")
    assert fetched.status_code == 200 and b"<ds:Signature" in fetched.content
    assert "signature" not in gw.leaf(pending.headers["x-road-id"])
    confirmed = gw.client.post(f"/r1/{SERVICE}/messages/{item['id']}/confirm",
                               headers={"Authorization": f"Bearer {gw.token(NA_DMS)}"})
    assert confirmed.status_code == 200, confirmed.text
    # The recipient's signed status goes back the same way.
    status = data.status_bytes(f"{H60},2026/11/21,11/UBND-VP", H60, "03", H41)
    answered = gw.post(_signed(pki, pki.ec_signer, status), client=NA_DMS)
    assert answered.status_code == 202, answered.text
    assert gw.leaf(answered.headers["x-road-id"])["signature"]["valid"] is True


@pytest.mark.parametrize(("case", "status"), [("no-signature", 400), ("digest-mismatch", 400),
                                              ("untrusted", 403), ("revoked", 403)])
def test_required_refuses_and_stores_nothing(desk: tuple[Desk, Pki], case: str, status: int) -> None:
    gw, pki = desk
    number = {"no-signature": 21, "digest-mismatch": 22, "untrusted": 23, "revoked": 24}[case]
    body = _package(number)
    if case == "digest-mismatch":
        subject = data.SUBJECTS[number % len(data.SUBJECTS)].encode()
        body = _signed(pki, pki.signer, body).replace(subject, subject + b"!")
    elif case != "no-signature":
        body = _signed(pki, pki.stranger if case == "untrusted" else pki.revoked, body)
    r = gw.post(body)
    assert r.status_code == status, r.text
    problem = r.json()
    assert problem["code"] == "Client.SignatureInvalid" and problem["reason"] == case
    leaf = gw.leaf(r.headers["x-road-id"])
    assert leaf["outcome"] == "refused" and leaf["signature"]["reason"] == case
    assert not [i for i in gw.get("/pending").json()["items"]
                if i["documentId"].endswith(f",{number}/UBND-VP")], "a refused document was stored"


def test_a_rule_saying_optional_takes_an_unsigned_document_and_records_why(desk: tuple[Desk, Pki]) -> None:
    gw, _ = desk
    body = data.package_bytes(MINISTRY, [H41], 31)
    r = gw.post(body, client=PLATFORM_DMS)
    assert r.status_code == 202, r.text
    leaf = gw.leaf(r.headers["x-road-id"])
    assert leaf["rule"] == "van-ban-chu-ky-tuy-chon"
    assert leaf["signature"]["valid"] is False and leaf["signature"]["reason"] == "no-signature"


def test_signing_helper_refuses_what_is_not_edxml(pki: Pki, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="edXMLHeader"):
        _signed(pki, pki.signer, b"<Goi><HoSo>1</HoSo></Goi>")
