"""Signed requests end to end, through real sockets (issue 14, "done when"): ``lienthong serve`` and the
demo's simulators as processes on loopback, the trust store of tests/pki.py configured, httpx as
the client; on SQLite and PostgreSQL.

The demo catalog with three services asking ``signatures: required``: the shared catalogue's
``echo`` (sync REST, JSON with a detached JWS or XML with an enveloped signature), the citizen
verification's SOAP face, and the portal's dossier push (store and forward). Valid, forged, expired,
revoked and untrusted signatures, and a few hostile ones: each refused with its status and reason,
never reaching an upstream, never stored for delivery, audited with its verdict; the valid ones
reach their upstream, and the pushed dossier is delivered with the verdict in its intake's record.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from lxml import etree

from gateway.audit.log import AuditLog
from gateway.delivery.tables import deliveries
from gateway.storage.db import create_engine
from tests.conftest import PG_URL, Stack, _fresh_pg_database, start_stack, stop
from tests.pki import DAY, NOW, Party, Pki, make_pki, sign_jws, sign_xades, sign_xml

pytestmark = pytest.mark.slow

MOTCUA = "VN/GOV/000.00.00.H60/MOTCUA"
PORTAL = "VN/GOV/000.00.00.G22/DVCQG"
ECHO = "VN/GOV/000.00.00.H41/DANHMUC/echo"
PUSH = "VN/GOV/000.00.00.G22/DVCQG/DongBoHoSoMC"
VERIFY = "VN/GOV/000.00.00.G01/CSDLDC/XacThucThongTinCongDan"
REQUIRED = (ECHO, PUSH, VERIFY)
OFFICIAL = {"X-Road-UserId": "VN-canbo.tranthimai", "X-Road-Issue": "H22.23-20261121-0000001"}
SOAP = "http://schemas.xmlsoap.org/soap/envelope/"
DAN = "http://dancuquocgia.bca"
DS = "http://www.w3.org/2000/09/xmldsig#"


@dataclass
class Signed:
    """The running gateway, its PKI, and what a test needs to look into its database."""

    stack: Stack
    pki: Pki
    tokens: dict[str, str]

    def token(self, client: str) -> str:
        if client not in self.tokens:
            self.tokens[client] = self.stack.token(client)
        return self.tokens[client]

    def post(self, service: str, body: bytes, *, client: str = MOTCUA, content_type: str = "application/json",
             signature: bytes | None = None, **headers: str) -> httpx.Response:
        sent = {"Authorization": f"Bearer {self.token(client)}", "Content-Type": content_type, **headers}
        if signature is not None:
            sent["X-JWS-Signature"] = signature.decode()
        return httpx.post(f"{self.stack.base}/r1/{service}", content=body, headers=sent, timeout=30)

    def soap(self, envelope: bytes) -> httpx.Response:
        headers = {"Authorization": f"Bearer {self.token(PORTAL)}", "Content-Type": "text/xml; charset=utf-8",
                   **OFFICIAL}
        return httpx.post(f"{self.stack.base}/soap/{VERIFY}", content=envelope, headers=headers, timeout=30)

    def leaf(self, exchange_id: str) -> dict[str, Any]:
        engine = create_engine(self.stack.database)
        try:
            (stored,) = AuditLog(engine).by_exchange(exchange_id)
            return dict(json.loads(stored.leaf))
        finally:
            engine.dispose()

    def stored(self, exchange_id: str) -> int:
        """Deliveries the gateway stored for an exchange."""
        engine = create_engine(self.stack.database)
        try:
            with engine.connect() as conn:
                count = conn.execute(sa.select(sa.func.count()).select_from(deliveries)
                                     .where(deliveries.c.exchange_id == exchange_id)).scalar_one()
            return int(count)
        finally:
            engine.dispose()

    def received(self, sim: str, marker: str) -> list[str]:
        """Bodies a simulator received that contain ``marker``."""
        items = httpx.get(f"{self.stack.sims[sim]}/_sim/received", timeout=10).json()["items"]
        return [item["body"] for item in items if item.get("body") and marker in item["body"]]


@pytest.fixture(scope="module", params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def signed(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Signed]:
    database = None
    if request.param == "postgresql":
        if not PG_URL:
            pytest.skip("no PostgreSQL: set LIENTHONG_TEST_PG_URL or run 'make test', which starts one")
        database = _fresh_pg_database()
    root = tmp_path_factory.mktemp(f"signed-{request.param}")
    pki = make_pki(root / "pki")  # beside the gateway's folder: `lienthong init` owns that one

    def edit(cfg: dict[str, Any]) -> None:
        for service in cfg["services"]:
            if service["id"] in REQUIRED:
                service["signatures"] = "required"
        cfg["signatures"] = {"anchors": str(root / "pki" / "anchors"),
                             "revocation": str(root / "pki" / "revocation")}

    stack, procs = start_stack(root / "gw", database, edit=edit)
    try:
        yield Signed(stack, pki, {})
    finally:
        stop(procs)


def code() -> str:
    return f"H60.23-20261121-{uuid.uuid4().int % 10_000_000:07d}"


def dossier(mahoso: str) -> bytes:
    return json.dumps({
        "MaHoSo": mahoso, "MaTTHC": "1.001193.000.00.00.H22", "TenTTHC": "Đăng ký khai sinh",
        "MaLinhVuc": "G22.HT", "TenLinhVuc": "Hộ tịch", "SoBienNhan": "000001/BN", "ChuHoSo": "Nguyễn Văn An",
        "LoaiDoiTuong": "1", "MaDoiTuong": "001060301193", "Email": "an.nguyen@example.vn",
        "SoDienThoai": "0912345678", "TrichYeuHoSo": "Đăng ký khai sinh", "NgayTiepNhan": "20261121090000",
        "NgayHenTra": "20261126170000", "TrangThaiHoSo": "2", "HinhThuc": "1",
        "DonViXuLy": "UBND tỉnh Tuyên Quang", "TaiLieuNop": [], "DanhSachLePhi": [],
        "DanhSachHoSoBoSung": [], "DanhSachGiayToKetQua": []}, ensure_ascii=False).encode()


def xml_dossier(mahoso: str) -> bytes:
    return (f"<HoSo Id='hs1'><MaHoSo>{mahoso}</MaHoSo><ChuHoSo>Nguyễn Văn An</ChuHoSo>"
            "<TenTTHC>Đăng ký khai sinh</TenTTHC></HoSo>").encode()


def party_of(pki: Pki, case: str) -> Party:
    return {"valid": pki.signer, "forged": pki.signer, "expired": pki.expired, "revoked": pki.revoked,
            "untrusted": pki.stranger}[case]


EXPECTED = {"forged": (400, "bad-signature"), "expired": (403, "expired"), "revoked": (403, "revoked"),
            "untrusted": (403, "untrusted")}


def _refused(r: httpx.Response, status: int, reason: str) -> None:
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    problem = r.json()
    assert (problem["code"], problem["reason"]) == ("Client.SignatureInvalid", reason)


# --- REST, sync ------------------------------------------------------------------------------------

@pytest.mark.parametrize("case", ["valid", "forged", "expired", "revoked", "untrusted"])
def test_rest_json_with_a_detached_jws(signed: Signed, case: str) -> None:
    """echo requires signatures: a valid detached JWS reaches the upstream with the verdict in the
    leaf; a forged, expired, revoked or untrusted one is refused before it, audited with its reason."""
    marker = code()
    body = json.dumps({"MaHoSo": marker, "ChuHoSo": "Nguyễn Văn An"}, ensure_ascii=False).encode()
    signature = sign_jws(signed.pki, party_of(signed.pki, case), body, detached=True)
    if case == "forged":
        body = body.replace(b"Nguy", b"Ngu")
    r = signed.post(ECHO, body, signature=signature)
    leaf = signed.leaf(r.headers["x-road-id"])
    if case == "valid":
        assert r.status_code == 200, r.text
        assert signed.received("rest", marker), "the upstream did not get the signed request"
        assert leaf["outcome"] == "ok" and leaf["signature"]["reason"] == "ok"
        assert leaf["signature"]["signer"]["serial"] == format(signed.pki.signer.cert.serial_number, "x")
        return
    status, reason = EXPECTED[case]
    _refused(r, status, reason)
    assert not signed.received("rest", marker), "a refused request reached the upstream"
    assert leaf["outcome"] == "refused" and leaf["status"] == status
    assert leaf["signature"]["reason"] == reason and leaf["signature"]["valid"] is False


@pytest.mark.parametrize("case", ["valid", "forged", "expired", "revoked", "untrusted"])
def test_rest_xml_with_an_enveloped_signature(signed: Signed, case: str) -> None:
    """The same through an XML dossier signed enveloped (XML-DSig; XAdES for the expired signer,
    signed today, after its certificate ended)."""
    marker = code()
    party = party_of(signed.pki, case)
    body = (sign_xades(signed.pki, party, at=NOW, body=xml_dossier(marker)) if case == "expired"
            else sign_xml(signed.pki, party, xml_dossier(marker)))
    if case == "forged":
        body = body.replace(marker.encode(), code().encode())
        marker = marker[:-7]  # nothing with this dossier's prefix may reach the upstream
    r = signed.post(ECHO, body, content_type="application/xml")
    if case == "valid":
        assert r.status_code == 200, r.text
        assert signed.leaf(r.headers["x-road-id"])["signature"]["format"] == "xmldsig"
        assert signed.received("rest", marker)
        return
    status, reason = EXPECTED[case]
    if case == "forged":
        reason = "digest-mismatch"
    _refused(r, status, reason)
    assert signed.leaf(r.headers["x-road-id"])["signature"]["reason"] == reason


@pytest.mark.parametrize("hostile", ["wrapped", "sha1", "garbage-certificate", "oversized-header"])
def test_rest_hostile_signatures_are_a_4xx(signed: Signed, hostile: str) -> None:
    """Signature wrapping, SHA-1, an unreadable KeyInfo certificate and a JWS header of a megabyte:
    each a precise 4xx, never a 5xx, and never the upstream."""
    pki = signed.pki
    marker = code()
    if hostile == "wrapped":
        original = etree.fromstring(sign_xml(pki, pki.signer, xml_dossier(marker)))
        forged = etree.fromstring(xml_dossier(marker.replace("H60", "H99")))
        forged.append(original)
        r = signed.post(ECHO, etree.tostring(forged), content_type="application/xml")
        _refused(r, 400, "unsupported")
    elif hostile == "sha1":
        tree = etree.fromstring(sign_xml(pki, pki.signer, xml_dossier(marker)))
        tree.find(f".//{{{DS}}}DigestMethod").set("Algorithm", f"{DS}sha1")
        r = signed.post(ECHO, etree.tostring(tree), content_type="application/xml")
        _refused(r, 400, "unsupported")
        assert "SHA-1" in r.json()["detail"]
    elif hostile == "garbage-certificate":
        tree = etree.fromstring(sign_xml(pki, pki.signer, xml_dossier(marker)))
        tree.find(f".//{{{DS}}}X509Certificate").text = "MIIBAAAA"
        r = signed.post(ECHO, etree.tostring(tree), content_type="application/xml")
        assert r.status_code == 400 and r.json()["code"] == "Client.SignatureInvalid", r.text
    else:
        body = json.dumps({"MaHoSo": marker}).encode()
        r = signed.post(ECHO, body, signature=b"eyJ" + b"A" * 1_000_000 + b"..c2ln")
        assert 400 <= r.status_code < 500, r.status_code
    assert not signed.received("rest", marker)


# --- SOAP ----------------------------------------------------------------------------------------------

def _verify_request(request_id: str, signature: str = "") -> str:
    return (f'<d:XacThucThongTinCongDanRequest xmlns:d="{DAN}"><d:MaYeuCau>{request_id}</d:MaYeuCau>'
            "<d:MaDichVu>1.001193</d:MaDichVu><d:MaCanBo>canbo.mai</d:MaCanBo>"
            "<d:SoDinhDanh>001090012345</d:SoDinhDanh><d:SoCMND/><d:HoVaTen>Nguyễn Văn An</d:HoVaTen>"
            f"{signature}</d:XacThucThongTinCongDanRequest>")


def _envelope(body: str, after_body: str = "") -> bytes:
    return (f'<?xml version="1.0" encoding="utf-8"?><s:Envelope xmlns:s="{SOAP}">'
            f"<s:Body>{body}</s:Body>{after_body}</s:Envelope>").encode()


def _fault(r: httpx.Response) -> tuple[str, str]:
    root = etree.fromstring(r.content)
    fault = root.find(f"{{{SOAP}}}Body/{{{SOAP}}}Fault")
    assert fault is not None, r.text
    detail = fault.find("detail")
    return fault.findtext("faultcode") or "", "" if detail is None else etree.tostring(detail).decode()


def _signed_request(pki: Pki, party: Party, request_id: str) -> str:
    """The request element signed by itself (enveloped, its own Id), as a client would sign its
    dossier before putting it in a SOAP body."""
    tag = "<d:XacThucThongTinCongDanRequest "
    element = etree.fromstring(_verify_request(request_id).replace(tag, f"{tag}Id='yc' ", 1))
    signed = sign_xml(pki, party, etree.tostring(element))
    return signed.decode()


@pytest.mark.parametrize("case", ["unsigned", "valid", "revoked", "untrusted", "after-body"])
def test_soap_entry(signed: Signed, case: str) -> None:
    """The SOAP face carries no signed request yet (docs/signatures.md): an unsigned envelope is a
    Fault Client.SignatureInvalid (no-signature); a request element signed by itself (valid,
    revoked or untrusted alike) is refused by the operation's schema before any verification
    (Client.InvalidBody: the ds:Signature is not in the WSDL's request); a ds:Signature after the
    Body is refused by the envelope reader. Never the upstream, never a 5xx other than SOAP's own
    Fault status, each audited."""
    request_id = f"SIG-{uuid.uuid4().hex[:10]}"
    if case == "unsigned":
        envelope = _envelope(_verify_request(request_id))
    elif case == "after-body":
        signature = etree.fromstring(sign_xml(signed.pki, signed.pki.signer)).find(f"{{{DS}}}Signature")
        envelope = _envelope(_verify_request(request_id), etree.tostring(signature).decode())
    else:
        envelope = _envelope(_signed_request(signed.pki, party_of(signed.pki, case), request_id))
    r = signed.soap(envelope)
    assert r.status_code == 500 and r.headers["content-type"].startswith("text/xml"), r.text
    faultcode, detail = _fault(r)
    assert faultcode.startswith("Client"), (faultcode, detail)
    leaf = signed.leaf(r.headers["x-road-id"])
    assert leaf["protocol"] == "soap" and leaf["outcome"] == "refused"
    if case == "after-body":
        assert "Signature" in r.text
    elif case == "unsigned":
        assert faultcode == "Client.SignatureInvalid" and "no-signature" in detail
        assert leaf["signature"]["reason"] == "no-signature"
    else:
        assert faultcode == "Client.InvalidBody" and "Signature" in r.text, r.text
    assert not signed.received("population", request_id), "a refused SOAP request reached the upstream"


def _signed_envelope(pki: Pki, party: Party, request_id: str) -> bytes:
    """The whole envelope signed (URI=""), the ds:Signature a block of soap:Header: the shape the
    SOAP face verifies (docs/signatures.md#signed-soap-requests)."""
    envelope = (f'<s:Envelope xmlns:s="{SOAP}"><s:Header><ds:Signature xmlns:ds="{DS}" Id="placeholder"/>'
                f"</s:Header><s:Body>{_verify_request(request_id)}</s:Body></s:Envelope>").encode()
    return sign_xml(pki, party, envelope)


@pytest.mark.parametrize("case", ["valid", "forged", "expired", "revoked", "untrusted"])
def test_soap_entry_with_the_whole_envelope_signed_in_its_header(signed: Signed, case: str) -> None:
    """A signature over the whole envelope in soap:Header: a valid one passes to the upstream with
    its verdict audited; forged (the Body changed after signing), expired, revoked and untrusted
    ones are a Client.SignatureInvalid Fault naming the reason, never reaching the upstream."""
    request_id = f"SIG-{uuid.uuid4().hex[:10]}"
    envelope = _signed_envelope(signed.pki, party_of(signed.pki, case), request_id)
    if case == "forged":
        envelope = envelope.replace(b"canbo.mai", b"canbo.gia")
    r = signed.soap(envelope)
    leaf = signed.leaf(r.headers["x-road-id"])
    assert leaf["protocol"] == "soap"
    if case == "valid":
        assert r.status_code == 200, r.text
        assert leaf["outcome"] == "ok" and leaf["signature"]["valid"] is True
        assert leaf["signature"]["format"] == "xmldsig"
        assert "Nguyễn Văn An" in leaf["signature"]["signer"]["subject"]
        assert signed.received("population", request_id)
        return
    faultcode, detail = _fault(r)
    assert r.status_code == 500 and faultcode == "Client.SignatureInvalid", (faultcode, detail)
    reason = "digest-mismatch" if case == "forged" else EXPECTED[case][1]  # the signed Body changed
    assert reason in detail and leaf["signature"]["reason"] == reason
    assert not signed.received("population", request_id), "a refused SOAP request reached the upstream"


# --- store and forward ---------------------------------------------------------------------------------

def _delivered(signed: Signed, accepted: httpx.Response) -> dict[str, Any]:
    deadline = time.monotonic() + 60
    while True:
        shown = httpx.get(f"{signed.stack.base}{accepted.headers['location']}",
                          headers={"Authorization": f"Bearer {signed.token(MOTCUA)}"}, timeout=10).json()
        if shown["state"] == "delivered" or time.monotonic() > deadline:
            assert shown["state"] == "delivered", shown
            return dict(shown)
        time.sleep(0.1)


def test_store_and_forward_intake(signed: Signed) -> None:
    """The portal's dossier push is async: forged, expired, revoked and untrusted pushes are refused
    at intake (never stored, so never delivered), a valid one is accepted, delivered to the portal,
    and its intake record keeps the verdict."""
    pki = signed.pki
    refused: list[str] = []
    for case, (status, reason) in EXPECTED.items():
        mahoso = code()
        body = dossier(mahoso)
        signature = sign_jws(pki, party_of(pki, case), body, detached=True)
        if case == "forged":
            body = body.replace(b"Nguy", b"Ngu")
        r = signed.post(PUSH, body, signature=signature)
        _refused(r, status, reason)
        exchange = r.headers["x-road-id"]
        assert signed.stored(exchange) == 0, f"the {case} push was stored for delivery"
        leaf = signed.leaf(exchange)
        assert leaf["outcome"] == "refused" and leaf["signature"]["reason"] == reason
        refused.append(mahoso)
    mahoso = code()
    body = dossier(mahoso)
    r = signed.post(PUSH, body, signature=sign_jws(pki, pki.signer, body, detached=True))
    assert r.status_code == 202, r.text
    assert signed.stored(r.headers["x-road-id"]) == 1
    shown = _delivered(signed, r)
    assert shown["response"]["body"]["error_code"] == "00"
    assert signed.received("dvcqg", mahoso), "the accepted dossier did not reach the portal"
    leaf = signed.leaf(r.headers["x-road-id"])
    verdict = leaf["signature"]
    assert verdict["valid"] is True and verdict["format"] == "jws"
    assert verdict["digest"]["sha256"] and "Nguyễn Văn An" in verdict["signer"]["subject"]
    for mahoso in refused:  # delivered after them all: none of the refused ones went anywhere
        assert not signed.received("dvcqg", mahoso), f"refused dossier {mahoso} reached the portal"


def test_a_dossier_signed_before_expiry_is_accepted(signed: Signed) -> None:
    """The signing time counts (claimed_time on by default): a push signed while the certificate
    was valid passes although it has expired since."""
    mahoso = code()
    body = dossier(mahoso)
    signature = sign_jws(signed.pki, signed.pki.expired, body, detached=True, at=NOW - 700 * DAY)
    r = signed.post(PUSH, body, signature=signature)
    assert r.status_code == 202, r.text
    assert signed.leaf(r.headers["x-road-id"])["signature"]["timeSource"] == "claimed"
    _delivered(signed, r)


def test_the_gateway_log_names_no_crash(signed: Signed) -> None:
    """Nothing above made the verifier crash (its catch-all logs 'signature verification crashed')."""
    log = Path(signed.stack.config_path.parent / "gateway.log").read_text(errors="replace")
    assert "signature verification crashed" not in log
