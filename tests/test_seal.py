"""The gateway seal (issue 14, item 4): the gateway signs the answers it gives and the requests it
forwards, and publishes its keys at /.well-known/seal-jwks.json.

Receivers' checks use joserfc and signxml directly, never gateway/seal, except where the test is
about ``lienthong seal verify`` itself. The end-to-end part runs the demo configuration that
``lienthong init`` writes (sealing on) as real processes on loopback: a dossier pushed to the
portal's async service is delivered to the portal simulator, which records the seal it got.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from click.testing import CliRunner
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from fastapi.testclient import TestClient
from joserfc import jws
from joserfc.errors import BadSignatureError
from joserfc.jwk import KeySet
from signxml.exceptions import InvalidDigest, InvalidSignature
from signxml.verifier import XMLVerifier

from gateway.app import create_app
from gateway.cli import main
from gateway.config import Config, load_config
from gateway.connector import Call, Reply
from gateway.init import initialise
from gateway.runtime import Runtime, StartupError
from gateway.seal import HEADER, load_sealer, outbound, outbound_headers
from gateway.seal.keys import SealKeyError, generate, load_pair, write_pair
from gateway.spool import spool_pieces
from gateway.storage.db import upgrade
from tests.conftest import Stack, start_stack, stop
from tests.helpers import FunctionConnector, InProcess

MOTCUA = "VN/GOV/000.00.00.H60/MOTCUA"
PUSH = "VN/GOV/000.00.00.G22/DVCQG/DongBoHoSoMC"
ECHO = "VN/GOV/000.00.00.H41/DANHMUC/echo"
VERIFY = "VN/GOV/000.00.00.G01/CSDLDC/XacThucThongTinCongDan"
ITEMS = "VN/GOV/000.00.00.H41/DANHMUC/items"
JWKS = "/.well-known/seal-jwks.json"


def dossier(code: str) -> dict[str, object]:
    return {"MaHoSo": code, "MaTTHC": "1.001193.000.00.00.H60", "TenTTHC": "Đăng ký khai sinh",
            "MaLinhVuc": "G22.HT", "TenLinhVuc": "Hộ tịch", "SoBienNhan": "000001/BN",
            "ChuHoSo": "Nguyễn Văn An", "LoaiDoiTuong": "1", "MaDoiTuong": "001060301193",
            "Email": "an.nguyen@example.vn", "SoDienThoai": "0912345678",
            "TrichYeuHoSo": "Đăng ký khai sinh", "NgayTiepNhan": "20261121090000",
            "NgayHenTra": "20261126170000", "TrangThaiHoSo": "2", "HinhThuc": "1",
            "DonViXuLy": "UBND tỉnh Tuyên Quang", "TaiLieuNop": [], "DanhSachLePhi": [],
            "DanhSachHoSoBoSung": [], "DanhSachGiayToKetQua": []}


def rest_only_config(tmp_path: Path, **overrides: object) -> tuple[Config, dict[str, str]]:
    """The demo configuration (sealing on, as `lienthong init` writes it) cut down to its REST
    services, without joint procedures: nothing to start but the gateway."""
    init = initialise(tmp_path / "gw")
    data = yaml.safe_load(init.config_path.read_text())
    data["services"] = [s for s in data["services"] if s.get("connector") == "rest"]
    for member in data["members"]:
        member.pop("routing", None)  # its receiving services are gone
    (tmp_path / "gw" / "no-flows").mkdir()
    data.update({"flows_dir": "no-flows", **overrides})
    init.config_path.write_text(yaml.safe_dump(data, allow_unicode=True))
    config = load_config(init.config_path)
    upgrade(config.database_url)
    return config, init.secrets


def joserfc_verify(seal: str, body: bytes, jwks: dict[str, Any]) -> dict[str, Any]:
    """A receiver's check with joserfc alone: the detached, unencoded JWS over the exact bytes (of
    any size: joserfc's registry takes 128,000 bytes unless told more)."""
    registry = jws.JWSRegistry(algorithms=["ES256", "RS256", "PS256"])
    registry.max_payload_length = max(registry.max_payload_length, len(body))
    obj = jws.deserialize_compact(seal, KeySet.import_key_set(jwks), payload=body,  # type: ignore[arg-type]
                                  registry=registry)
    return dict(obj.headers())


def saved_response(r: httpx.Response) -> bytes:
    """The answer as ``curl -i`` saves it: status line, headers, blank line, the body's bytes."""
    head = [f"HTTP/1.1 {r.status_code} {r.reason_phrase}"] + [f"{k}: {v}" for k, v in r.headers.items()]
    return ("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + r.content


# --- through real processes: the demo configuration, sealing on ----------------------------------

@pytest.fixture(scope="module")
def sealed_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    running, procs = start_stack(tmp_path_factory.mktemp("seal") / "gw")
    yield running
    stop(procs)


def test_the_demo_configuration_seals_and_publishes_its_keys(sealed_stack: Stack) -> None:
    """`lienthong init` turns sealing on; the JWKS is public, in the OpenAPI, with the chain."""
    r = httpx.get(f"{sealed_stack.base}{JWKS}")
    assert r.status_code == 200 and "max-age" in r.headers["cache-control"]
    (key,) = r.json()["keys"]
    assert key["kty"] == "EC" and key["crv"] == "P-256" and key["alg"] == "ES256" and key["use"] == "sig"
    assert "d" not in key
    cert = x509.load_der_x509_certificate(base64.b64decode(key["x5c"][0]))
    assert isinstance(cert.public_key(), ec.EllipticCurvePublicKey)
    assert cert.subject == cert.issuer  # self-signed for the demo
    spec = httpx.get(f"{sealed_stack.base}/openapi.json").json()
    assert JWKS in spec["paths"] and "Gateway seal" in spec["paths"][JWKS]["get"]["tags"]


def test_a_delivered_dossier_reaches_the_portal_sealed(sealed_stack: Stack) -> None:
    """The delivery worker's request to the portal simulator carries X-Gateway-Seal, and joserfc
    verifies it over the exact bytes the portal got, against the published JWKS; the 202 answer
    to the one-stop system is sealed too."""
    token = sealed_stack.token(MOTCUA)
    code = "H60.23-20261204-0090401"
    body = json.dumps(dossier(code), ensure_ascii=False).encode()
    r = httpx.post(f"{sealed_stack.base}/r1/{PUSH}", content=body, timeout=30,
                   headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"})
    assert r.status_code == 202, r.text
    jwks = httpx.get(f"{sealed_stack.base}{JWKS}").json()
    header = joserfc_verify(r.headers[HEADER], r.content, jwks)
    assert header["b64"] is False and header["crit"] == ["b64"] and header["kid"] == jwks["keys"][0]["kid"]
    deadline = time.monotonic() + 30
    arrived: list[dict[str, Any]] = []
    while not arrived and time.monotonic() < deadline:
        items = httpx.get(f"{sealed_stack.sims['dvcqg']}/_sim/received").json()["items"]
        arrived = [i for i in items if i["kind"] == "DongBoHoSoMC" and code in (i["body"] or "")]
        time.sleep(0.05)
    assert arrived, "the dossier was not delivered"
    got = arrived[0]
    wire = got["body"].encode("utf-8")  # the simulator keeps what it received, as UTF-8 text
    assert got["seal"], got
    assert joserfc_verify(got["seal"], wire, jwks)["alg"] == "ES256"
    with pytest.raises(BadSignatureError):
        joserfc_verify(got["seal"], wire.replace(code.encode(), b"H60.23-20261204-0090402"), jwks)


def test_answers_are_sealed_and_a_tampered_one_fails_seal_verify(sealed_stack: Stack,
                                                                 tmp_path: Path) -> None:
    """A synchronous answer (and a refusal) carries a seal that joserfc verifies; `lienthong seal
    verify` says valid for the saved response (JWKS by URL) and invalid once its body changed."""
    token = sealed_stack.token(MOTCUA)
    r = httpx.post(f"{sealed_stack.base}/r1/{ECHO}", content=b'{"MaHoSo": "H60-1"}', timeout=30,
                   headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"})
    assert r.status_code == 200, r.text
    refused = httpx.post(f"{sealed_stack.base}/r1/{ECHO}", content=b"{}", timeout=30)
    assert refused.status_code == 401
    fault = httpx.post(f"{sealed_stack.base}/soap/{VERIFY}", content=b"<not-an-envelope/>", timeout=30,
                       headers={"Content-Type": "text/xml; charset=utf-8"})
    assert b"Fault" in fault.content  # the SOAP face: a Fault, sealed in the header like any answer
    jwks = httpx.get(f"{sealed_stack.base}{JWKS}").json()
    for answer in (r, refused, fault):
        joserfc_verify(answer.headers[HEADER], answer.content, jwks)

    saved = tmp_path / "answer.http"
    saved.write_bytes(saved_response(r))
    runner = CliRunner()
    ok = runner.invoke(main, ["seal", "verify", str(saved), "--jwks", f"{sealed_stack.base}{JWKS}"])
    assert ok.exit_code == 0, ok.output
    assert ok.output.startswith("valid:") and jwks["keys"][0]["kid"] in ok.output

    tampered = tmp_path / "tampered.http"
    tampered.write_bytes(saved_response(r).replace(b"H60-1", b"H60-2"))
    bad = runner.invoke(main, ["seal", "verify", str(tampered), "--jwks", f"{sealed_stack.base}{JWKS}"])
    assert bad.exit_code == 1, bad.output
    assert bad.output.startswith("invalid (bad-seal):")

    body = tmp_path / "body.json"
    body.write_bytes(r.content)
    jwks_file = tmp_path / "jwks.json"
    jwks_file.write_text(json.dumps(jwks))
    by_value = runner.invoke(main, ["seal", "verify", str(body), "--seal", r.headers[HEADER],
                                    "--jwks", str(jwks_file), "--json"])
    assert by_value.exit_code == 0, by_value.output
    assert json.loads(by_value.output)["reason"] == "ok"
    body.write_bytes(r.content + b" ")
    changed = runner.invoke(main, ["seal", "verify", str(body), "--seal", r.headers[HEADER],
                                   "--jwks", str(jwks_file)])
    assert changed.exit_code == 1 and "bad-seal" in changed.output


# --- in process: rotation, XML, configuration ---------------------------------------------------

class Gateway(InProcess):
    def __init__(self, client: TestClient, secrets: dict[str, str]) -> None:
        super().__init__(client, secrets)
        self.upstream = FunctionConnector(_xml_answer)
        self.runtime.connectors[ITEMS] = self.upstream

    def get(self, service: str) -> httpx.Response:
        r: httpx.Response = self.client.get(f"/r1/{service}/hoso/1",
                                            headers={"Authorization": f"Bearer {self.token(MOTCUA)}"})
        return r


XML_ANSWER = ('<?xml version="1.0" encoding="UTF-8"?>\n<HoSo xmlns="urn:lienthong:test">'
              '<MaHoSo>H60.23-20261204-0000001</MaHoSo><ChuHoSo>Nguyễn Văn An</ChuHoSo></HoSo>').encode()


async def _xml_answer(call: Call) -> Reply:
    return Reply(XML_ANSWER, content_type="application/xml; charset=utf-8", wire_response=XML_ANSWER)


def _gateway(tmp_path: Path, **seal: object) -> Iterator[Gateway]:
    config, secrets = rest_only_config(tmp_path, seal={"enabled": True, **seal})
    with TestClient(create_app(config), base_url="http://127.0.0.1") as client:
        yield Gateway(client, secrets)


@pytest.fixture
def xml_gateway(tmp_path: Path) -> Iterator[Gateway]:
    yield from _gateway(tmp_path, xml="enveloped")


def test_an_xml_answer_carries_an_enveloped_signature_signxml_verifies(xml_gateway: Gateway,
                                                                       tmp_path: Path) -> None:
    """seal.xml: enveloped: the XML answer is signed inside (no header), signxml verifies it with
    the JWKS's certificate, the record digests the signed bytes, and a change is found."""
    r = xml_gateway.get(ITEMS)
    assert r.status_code == 200, r.text
    assert HEADER.lower() not in r.headers
    jwks = xml_gateway.client.get(JWKS).json()
    pem = x509.load_der_x509_certificate(base64.b64decode(jwks["keys"][0]["x5c"][0])) \
        .public_bytes(serialization.Encoding.PEM).decode()
    result = XMLVerifier().verify(r.content, x509_cert=pem)
    assert not isinstance(result, list)  # one reference
    assert result.signed_xml is not None and result.signed_xml.findtext("{urn:lienthong:test}ChuHoSo") \
        == "Nguyễn Văn An"
    (stored,) = xml_gateway.runtime.audit.by_exchange(r.headers["x-road-id"])
    assert json.loads(stored.leaf)["response"]["sha256"] == hashlib.sha256(r.content).hexdigest()
    tampered = r.content.replace("Nguyễn Văn An".encode(), "Nguyễn Văn Ba".encode())
    with pytest.raises((InvalidDigest, InvalidSignature)):
        XMLVerifier().verify(tampered, x509_cert=pem)
    cert = tmp_path / "seal.pem"
    cert.write_text(pem)
    runner = CliRunner()
    for data, code in ((r.content, 0), (tampered, 1)):
        doc = tmp_path / "answer.xml"
        doc.write_bytes(data)
        out = runner.invoke(main, ["seal", "verify", str(doc), "--certificate", str(cert)])
        assert out.exit_code == code, out.output
    # JSON answers of the same gateway keep the header seal.
    echo = xml_gateway.client.post(f"/r1/{ECHO}", content=b"{}", headers={
        "Authorization": f"Bearer {xml_gateway.token(MOTCUA)}", "Content-Type": "application/json"})
    joserfc_verify(echo.headers[HEADER], echo.content, jwks)


def test_rotation_keeps_earlier_seals_verifiable(tmp_path: Path) -> None:
    """`lienthong seal rotate` adds a key that seals from the next start; the old key stays in
    the JWKS, so a seal made before verifies with joserfc and with `lienthong seal verify`."""
    config, _ = rest_only_config(tmp_path)
    config_path = config.base_dir / "config.yaml"
    before = load_sealer(config)
    assert before is not None
    body = b'{"MaHoSo": "H60.23-20261204-0000009"}'
    old_seal = before.seal(body)
    runner = CliRunner()
    out = runner.invoke(main, ["seal", "rotate", "--config", str(config_path)])
    assert out.exit_code == 0, out.output
    after = load_sealer(load_config(config_path))
    assert after is not None and after.key.kid != before.key.kid
    assert [k["kid"] for k in after.jwks["keys"]] == [before.key.kid, after.key.kid]
    assert joserfc_verify(old_seal, body, after.jwks)["kid"] == before.key.kid
    assert joserfc_verify(after.seal(body), body, after.jwks)["kid"] == after.key.kid
    listed = runner.invoke(main, ["seal", "list", "--config", str(config_path)])
    assert listed.exit_code == 0 and f"{after.key.kid}  ES256  seals" in listed.output
    assert f"{before.key.kid}  ES256  published" in listed.output
    (tmp_path / "body").write_bytes(body)
    old = runner.invoke(main, ["seal", "verify", str(tmp_path / "body"), "--seal", old_seal,
                               "--config", str(config_path)])
    assert old.exit_code == 0, old.output
    # A receiver holding only the old JWKS cannot check new seals: it says so, by kid.
    (tmp_path / "old.json").write_text(json.dumps(before.jwks))
    unknown = runner.invoke(main, ["seal", "verify", str(tmp_path / "body"), "--seal", after.seal(body),
                                   "--jwks", str(tmp_path / "old.json")])
    assert unknown.exit_code == 1 and "unknown-key" in unknown.output
    # The running gateway publishes both after its restart.
    with TestClient(create_app(load_config(config_path)), base_url="http://127.0.0.1") as client:
        published = client.get(JWKS).json()
        assert [k["kid"] for k in published["keys"]] == [before.key.kid, after.key.kid]
        echo = client.get(f"/r1/{ECHO}")  # unauthenticated: refused, and sealed by the new key
        assert joserfc_verify(echo.headers[HEADER], echo.content, published)["kid"] == after.key.kid


def test_a_ca_issued_rsa_seal_from_the_configuration(tmp_path: Path) -> None:
    """seal.key / seal.certificate (an RSA key, PS256), the retired folder key under previous."""
    config, _ = rest_only_config(tmp_path)
    folder = config.path(config.keys_dir) / "seal"
    (old_pem,) = folder.glob("*.pem")
    private, cert = generate("PS256", "Cổng liên thông tỉnh Tuyên Quang")
    write_pair(tmp_path / "ca-issued", "issued", private, [cert])
    data = yaml.safe_load((config.base_dir / "config.yaml").read_text())
    data["seal"] = {"enabled": True, "key": str(tmp_path / "ca-issued" / "issued.key"),
                    "certificate": str(tmp_path / "ca-issued" / "issued.pem"), "kid": "tq-2026",
                    "algorithm": "PS256", "previous": [{"certificate": str(old_pem), "kid": old_pem.stem}]}
    (config.base_dir / "config.yaml").write_text(yaml.safe_dump(data, allow_unicode=True))
    sealer = load_sealer(load_config(config.base_dir / "config.yaml"))
    assert sealer is not None
    assert sorted(k["kid"] for k in sealer.jwks["keys"]) == sorted([old_pem.stem, "tq-2026"])
    body = "{\"ChuHoSo\": \"Nguyễn Văn An\"}".encode()
    assert joserfc_verify(sealer.seal(body), body, sealer.jwks)["alg"] == "PS256"
    refused = CliRunner().invoke(main, ["seal", "rotate", "--config", str(config.base_dir / "config.yaml")])
    assert refused.exit_code == 1 and "seal.key" in refused.output


def test_keys_that_cannot_seal_stop_the_gateway(tmp_path: Path) -> None:
    """A short RSA key, a key that is not the certificate's, a type the algorithm does not take,
    or no key at all: refused at start, naming the file."""
    small = rsa.generate_private_key(public_exponent=65537, key_size=1024)  # noqa: S505 - refused
    _, cert = generate("RS256", "x")
    write_pair(tmp_path / "k", "small", small, [cert])
    with pytest.raises(SealKeyError, match="1024 bits"):
        load_pair(tmp_path / "k" / "small.key", tmp_path / "k" / "small.pem", None, "RS256")
    other, _ = generate("ES256", "y")
    _, ec_cert = generate("ES256", "z")
    write_pair(tmp_path / "k", "mismatch", other, [ec_cert])
    with pytest.raises(SealKeyError, match=r"not .*mismatch\.key's"):
        load_pair(tmp_path / "k" / "mismatch.key", tmp_path / "k" / "mismatch.pem", None, "ES256")
    with pytest.raises(SealKeyError, match="ES256 on P-256"):
        load_pair(tmp_path / "k" / "mismatch.key", tmp_path / "k" / "mismatch.pem", None, "RS256")
    config, _ = rest_only_config(tmp_path)
    for path in (config.path(config.keys_dir) / "seal").iterdir():
        path.unlink()
    with pytest.raises(StartupError, match="holds no seal key"):
        Runtime.build(config)
    checked = CliRunner().invoke(main, ["check", "--config", str(config.base_dir / "config.yaml")])
    assert checked.exit_code == 1 and "invalid seal key" in checked.output and "seal rotate" in checked.output


def test_upstream_requests_are_sealed_only_inside_outbound(tmp_path: Path) -> None:
    """gateway.upstream.send seals what it sends only where the pipeline asked (deliveries by
    default; every call with seal.upstream: all)."""
    config, _ = rest_only_config(tmp_path)
    sealer = load_sealer(config)
    assert sealer is not None
    assert outbound_headers(b"{}", {"A": "1"}) == {"A": "1"}
    with outbound(sealer):
        sealed = outbound_headers(b"{}", {"A": "1"})
    assert sealed is not None and sealed["A"] == "1"
    joserfc_verify(sealed[HEADER], b"{}", sealer.jwks)
    assert outbound_headers(b"{}", None) is None


def test_a_spooled_body_is_sealed_as_its_bytes(tmp_path: Path) -> None:
    """A large document pushed from its file (gateway/spool.py) carries the seal a receiver checks
    over the bytes it gets, hashed piece by piece (more than one piece here)."""
    config, _ = rest_only_config(tmp_path)
    sealer = load_sealer(config)
    assert sealer is not None
    body = os.urandom(2_500_000)
    spooled = spool_pieces([body[:1_000_000], body[1_000_000:]], tmp_path / "spool")
    try:
        with outbound(sealer):
            sealed = outbound_headers(spooled, None)
        assert sealed is not None
        joserfc_verify(sealed[HEADER], body, sealer.jwks)
        with pytest.raises(BadSignatureError):
            joserfc_verify(sealed[HEADER], body[:-1] + bytes([body[-1] ^ 1]), sealer.jwks)
    finally:
        spooled.close()


def test_a_gateway_that_does_not_seal_answers_404_for_the_jwks(tmp_path: Path) -> None:
    config, _ = rest_only_config(tmp_path, seal={"enabled": False})
    with TestClient(create_app(config), base_url="http://127.0.0.1") as client:
        r = client.get(JWKS)
        assert r.status_code == 404 and r.headers["content-type"].startswith("application/problem+json")
        assert HEADER.lower() not in client.get(f"/r1/{ECHO}").headers


def test_seal_verify_refuses_what_is_not_a_seal(tmp_path: Path) -> None:
    """Malformed seals, algorithms a seal never uses, a message without a seal: invalid with the
    reason (exit 1); no keys given: a usage error (exit 2)."""
    config, _ = rest_only_config(tmp_path)
    config_path = config.base_dir / "config.yaml"
    body = tmp_path / "body.json"
    body.write_bytes(b"{}")
    runner = CliRunner()
    cases = {"not-a-jws": "malformed", "eyJhbGciOiJIUzI1NiJ9..c2ln": "unsupported"}
    for value, reason in cases.items():
        out = runner.invoke(main, ["seal", "verify", str(body), "--seal", value,
                                   "--config", str(config_path)])
        assert out.exit_code == 1 and f"invalid ({reason})" in out.output, out.output
    plain = runner.invoke(main, ["seal", "verify", str(body), "--config", str(config_path)])
    assert plain.exit_code == 1 and "invalid (no-seal)" in plain.output
    usage = runner.invoke(main, ["seal", "verify", str(body)])
    assert usage.exit_code == 2
