"""The demo CA `lienthong init` writes (gateway/demo_pki.py): its files are a trust store the gateway
loads, its signers' chains validate, the revoked signer is refused as revoked, and a detached JWS
made the way the demo makes it verifies."""

from __future__ import annotations

import stat
from pathlib import Path

import orjson
import pytest
import yaml
from cryptography import x509

from gateway import demo_pki
from gateway.config import load_config
from gateway.demo_signed import sign_detached
from gateway.init import Ports, initialise
from gateway.signatures import TrustStore, verify
from gateway.signed import load_trust

BODY = orjson.dumps({"MaHoSo": "H60.23-20261204-0000021", "ChuHoSo": "Nguyễn Văn An", "TrangThaiHoSo": "2"})


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("demo-pki") / "pki"
    demo_pki.create(path)
    return path


@pytest.fixture(scope="module")
def trust(folder: Path) -> TrustStore:
    return TrustStore.load(folder / "anchors", revocation=folder / "revocation",
                           intermediates=folder / "intermediates")


@pytest.mark.parametrize("label", ["citizen", "officer"])
def test_a_signers_chain_validates(folder: Path, trust: TrustStore, label: str) -> None:
    signer = demo_pki.load_signer(folder, label)
    verdict = verify(BODY, "application/json", trust=trust, detached=sign_detached(BODY, signer).encode())
    assert verdict.valid, verdict
    assert verdict.subject == signer.subject and verdict.format == "jws" and verdict.algorithm == "ES256"
    assert verdict.issuer == signer.chain[1].subject.rfc4514_string()


def test_the_revoked_signer_is_refused_as_revoked(folder: Path, trust: TrustStore) -> None:
    token = sign_detached(BODY, demo_pki.load_signer(folder, "revoked")).encode()
    verdict = verify(BODY, "application/json", trust=trust, detached=token)
    assert (verdict.valid, verdict.reason) == (False, "revoked")


def test_a_body_changed_after_signing_does_not_verify(folder: Path, trust: TrustStore) -> None:
    token = sign_detached(BODY, demo_pki.load_signer(folder, "officer")).encode()
    verdict = verify(BODY.replace(b'"2"', b'"9"'), "application/json", trust=trust, detached=token)
    assert (verdict.valid, verdict.reason) == (False, "bad-signature")


def test_without_the_crl_a_signer_is_not_trusted(folder: Path) -> None:
    """The signers name a CRL location: the default hard-fail mode needs the CRL on file."""
    bare = TrustStore.load(folder / "anchors", intermediates=folder / "intermediates")
    token = sign_detached(BODY, demo_pki.load_signer(folder, "citizen")).encode()
    assert verify(BODY, "application/json", trust=bare, detached=token).reason == "untrusted"


def test_keys_and_algorithms(folder: Path) -> None:
    ca = [x509.load_pem_x509_certificate((folder / sub / name).read_bytes())
          for sub, name in (("anchors", "demo-root-ca.pem"), ("intermediates", "demo-signing-ca.pem"))]
    for label in demo_pki.SIGNERS:
        signer = demo_pki.load_signer(folder, label)
        assert signer.key.curve.name == "secp256r1"
        usage = signer.chain[0].extensions.get_extension_for_class(x509.KeyUsage).value
        assert usage.digital_signature and usage.content_commitment and not usage.key_cert_sign
        assert stat.S_IMODE((folder / "signers" / f"{label}.key").stat().st_mode) == 0o600
    for cert in [*ca, demo_pki.load_signer(folder, "citizen").chain[0]]:
        assert cert.signature_hash_algorithm is not None and cert.signature_hash_algorithm.name == "sha256"
    assert ca[0].extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    assert not list((folder / "anchors").glob("*.key")) and not list(folder.rglob("*ca*.key"))


def test_init_writes_the_demo_ca_as_the_trust_store(tmp_path: Path) -> None:
    init = initialise(tmp_path / "gw", ports=Ports(gateway=18080, population=18101, dvcqg=18102,
                                                    onestop=18103, rest=18104))
    raw = yaml.safe_load(init.config_path.read_text())
    assert raw["signatures"] == demo_pki.trust_settings()
    config = load_config(init.config_path)
    trust = load_trust(config)
    assert len(trust.anchors) == 1 and len(trust.intermediates) == 1 and len(trust.crls) == 1
    signer = demo_pki.load_signer(tmp_path / "gw" / demo_pki.FOLDER, "officer")
    token = sign_detached(BODY, signer).encode()
    assert verify(BODY, "application/json", trust=trust, detached=token).valid
    asking = [s.id for s in config.services if s.signatures == "required"]
    assert asking == ["VN/GOV/000.00.00.G22/DVCQG/DongBoHoSoMCKySo"]
