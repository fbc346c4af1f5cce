"""A test PKI made at test time with `cryptography`, and signing helpers in each format's own
library: shared by tests/test_signatures.py (the verification core) and
tests/test_signatures_intake.py (the pipeline step).

``make_pki`` makes a root, an intermediate that issues every signer and a CRL, signers with the
right usage, the wrong usage, an expired and a revoked one, a self-signed stranger, and a
time-stamping authority (pyHanko's in-process TSA makes RFC 3161 tokens).
"""

from __future__ import annotations

import asyncio
import base64
import json
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from io import BytesIO
from pathlib import Path
from typing import Any

from asn1crypto import keys as asn1_keys
from asn1crypto import x509 as asn1_x509
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import ExtendedKeyUsageOID
from joserfc import jws
from joserfc.jwk import ECKey, RSAKey
from joserfc.registry import HeaderParameter
from lxml import etree
from pyhanko.pdf_utils import generic
from pyhanko.pdf_utils.incremental_writer import IncrementalPdfFileWriter
from pyhanko.pdf_utils.writer import PdfFileWriter
from pyhanko.sign import fields, signers
from pyhanko.sign.signers.pdf_cms import PdfCMSSignedAttributes
from pyhanko.sign.timestamps.dummy_client import DummyTimeStamper
from pyhanko_certvalidator.registry import SimpleCertificateStore
from signxml import XMLSigner
from signxml.xades import XAdESSigner

from gateway import demo_pki
from gateway.demo_pki import Issued
from gateway.signatures import TrustStore

NOW = datetime.now(UTC).replace(microsecond=0)
DAY = timedelta(days=1)
CRL_URL = "http://crl.invalid/intermediate.crl"  # never fetched: .invalid does not resolve


@dataclass(frozen=True)
class Party(Issued):
    """A key and its certificate, in the forms each signing library takes."""

    @property
    def pem_key(self) -> bytes:
        return self.key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                      serialization.NoEncryption())

    @property
    def der(self) -> bytes:
        return self.cert.public_bytes(serialization.Encoding.DER)

    @property
    def asn1(self) -> asn1_x509.Certificate:
        return asn1_x509.Certificate.load(self.der)

    @property
    def asn1_key(self) -> asn1_keys.PrivateKeyInfo:
        return asn1_keys.PrivateKeyInfo.load(self.key.private_bytes(
            serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))


_usage = demo_pki.key_usage
SIGNING = demo_pki.SIGNING


def _issue(cn: str, issuer: Party | None, *, ca: bool = False, usage: x509.KeyUsage | None = None,
           start: datetime = NOW - 365 * DAY, end: datetime = NOW + 365 * DAY, rsa_key: bool = False,
           eku: list[x509.ObjectIdentifier] | None = None) -> Party:
    """gateway/demo_pki.py's issuer; an end entity issued by a CA names the CRL location."""
    made = demo_pki.issue(demo_pki.name(cn, "Liên Thông test PKI"), issuer, ca=ca, usage=usage, start=start,
                          end=end, rsa_key=rsa_key, eku=eku,
                          crl_url=CRL_URL if issuer is not None and not ca else None)
    return Party(made.key, made.cert)


@dataclass(frozen=True)
class Pki:
    root: Party
    intermediate: Party
    signer: Party  # RSA, digitalSignature + nonRepudiation, valid a year either side of now
    ec_signer: Party
    wrong_usage: Party  # keyEncipherment only
    expired: Party  # valid from three years ago to a year ago
    revoked: Party  # revoked 30 days ago
    stranger: Party  # self-signed, in no trust store
    tsa: Party
    trust: TrustStore
    strict: TrustStore  # claimed signing times not trusted

    def chain(self, party: Party) -> list[Party]:
        return [party, self.intermediate]


REVOKED_AT = NOW - 30 * DAY


def make_pki(folder: Path) -> Pki:
    """A whole test PKI, its trust store written under ``folder`` (anchors/, revocation/)."""
    root = _issue("Test Root CA", None, ca=True, usage=_usage(key_cert_sign=True, crl_sign=True),
                  start=NOW - 3650 * DAY, end=NOW + 3650 * DAY)
    intermediate = _issue("Test Signing CA", root, ca=True, usage=_usage(key_cert_sign=True, crl_sign=True),
                          start=NOW - 1800 * DAY, end=NOW + 1800 * DAY)
    revoked = _issue("Trần Thị Bị Thu Hồi", intermediate, usage=SIGNING)
    crl = demo_pki.revocation_list(intermediate, [(revoked.cert, REVOKED_AT)], start=NOW - timedelta(hours=1),
                                   end=NOW + 7 * DAY)
    (folder / "anchors").mkdir(parents=True)
    (folder / "anchors" / "root.pem").write_bytes(root.cert.public_bytes(serialization.Encoding.PEM))
    (folder / "revocation").mkdir()
    (folder / "revocation" / "intermediate.crl").write_bytes(crl.public_bytes(serialization.Encoding.DER))
    trust = TrustStore.load(folder / "anchors", revocation=folder / "revocation")
    return Pki(
        root=root, intermediate=intermediate,
        signer=_issue("Nguyễn Văn An", intermediate, usage=SIGNING, rsa_key=True),
        ec_signer=_issue("UBND tỉnh Tuyên Quang", intermediate, usage=SIGNING),
        wrong_usage=_issue("Sai Mục Đích", intermediate, usage=_usage(key_encipherment=True)),
        expired=_issue("Hết Hạn", intermediate, usage=SIGNING, start=NOW - 1095 * DAY, end=NOW - 365 * DAY),
        revoked=revoked,
        stranger=_issue("Self Signed Stranger", None, usage=SIGNING),
        tsa=_issue("Test TSA", intermediate, usage=_usage(digital_signature=True), rsa_key=True,
                   eku=[ExtendedKeyUsageOID.TIME_STAMPING]),  # pyHanko's test TSA signs with RSA only
        trust=trust, strict=replace(trust, claimed_time=False))


# --- signing helpers: each format's own library -----------------------------------------------

DOSSIER = ("<HoSo Id='hs1'><MaHoSo>H60.23-20261121-0000001</MaHoSo><ChuHoSo>Nguyễn Văn An</ChuHoSo>"
           "<TenTTHC>Đăng ký khai sinh</TenTTHC></HoSo>").encode()


def pems(pki: Pki, party: Party) -> list[str]:
    chain = [party] if party is pki.stranger else pki.chain(party)
    return [p.cert.public_bytes(serialization.Encoding.PEM).decode() for p in chain]


def _xml_algorithm(party: Party) -> str:
    return "rsa-sha256" if isinstance(party.key, rsa.RSAPrivateKey) else "ecdsa-sha256"


def sign_xml(pki: Pki, party: Party, body: bytes = DOSSIER) -> bytes:
    signer = XMLSigner(signature_algorithm=_xml_algorithm(party))
    signed = signer.sign(etree.fromstring(body), key=party.pem_key, cert=pems(pki, party))
    return etree.tostring(signed)


class _XAdESAt(XAdESSigner):
    """XAdES with a chosen SigningTime (signxml writes now)."""

    def __init__(self, at: datetime, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.at = at

    def add_signing_time(self, properties: Any, sig_root: Any, signing_settings: Any) -> None:
        super().add_signing_time(properties, sig_root, signing_settings)
        node = properties.find("{http://uri.etsi.org/01903/v1.3.2#}SigningTime")
        node.text = self.at.isoformat(timespec="seconds")


def sign_xades(pki: Pki, party: Party, at: datetime = NOW, body: bytes = DOSSIER) -> bytes:
    signer = _XAdESAt(at, signature_algorithm=_xml_algorithm(party))
    signed = signer.sign(etree.fromstring(body), key=party.pem_key, cert=pems(pki, party))
    return etree.tostring(signed)


def blank_pdf() -> bytes:
    writer = PdfFileWriter()
    writer.insert_page(generic.DictionaryObject({
        generic.NameObject("/Type"): generic.NameObject("/Page"),
        generic.NameObject("/MediaBox"): generic.ArrayObject(
            [generic.NumberObject(n) for n in (0, 0, 595, 842)]),
        generic.NameObject("/Resources"): generic.DictionaryObject()}))
    out = BytesIO()
    writer.write(out)
    return out.getvalue()


class _PdfSignerAt(signers.PdfSigner):
    """pyHanko's PDF signer with a chosen signing time (/M), as if it signed then."""

    at: datetime = NOW

    def init_signing_session(self, *args: Any, **kwargs: Any) -> Any:
        session = super().init_signing_session(*args, **kwargs)
        session.system_time = self.at
        return session


def _cms_signer(pki: Pki, party: Party) -> signers.SimpleSigner:
    chain = [] if party is pki.stranger else [pki.intermediate.asn1]
    return signers.SimpleSigner(signing_cert=party.asn1, signing_key=party.asn1_key,
                                cert_registry=SimpleCertificateStore.from_certs(chain))


def _tsa(pki: Pki, at: datetime) -> DummyTimeStamper:
    return DummyTimeStamper(tsa_cert=pki.tsa.asn1, tsa_key=pki.tsa.asn1_key,
                            certs_to_embed=SimpleCertificateStore.from_certs([pki.intermediate.asn1]),
                            fixed_dt=at)


def sign_pdf(pki: Pki, party: Party, *, at: datetime = NOW, pades: bool = True,
             stamped_at: datetime | None = None) -> bytes:
    meta = signers.PdfSignatureMetadata(
        field_name="ChuKy1", subfilter=fields.SigSeedSubFilter.PADES if pades else None)
    pdf_signer = _PdfSignerAt(meta, signer=_cms_signer(pki, party),
                              timestamper=None if stamped_at is None else _tsa(pki, stamped_at))
    pdf_signer.at = at
    out = pdf_signer.sign_pdf(IncrementalPdfFileWriter(BytesIO(blank_pdf())))
    return bytes(out.getvalue())


def sign_cms(pki: Pki, party: Party, data: bytes, *, at: datetime = NOW, detached: bool = True) -> bytes:
    signature = asyncio.run(_cms_signer(pki, party).async_sign_general_data(
        data, "sha256", detached=detached, signed_attr_settings=PdfCMSSignedAttributes(signing_time=at)))
    return bytes(signature.dump())


class _BigHeaders(jws.JWSRegistry):
    max_header_length = 16_384  # x5c with two certificates


_JWS_REGISTRY = _BigHeaders(header_registry={"sigT": HeaderParameter("JAdES signing time", "str")},
                            algorithms=["RS256", "ES256"])

BODY = json.dumps({"MaHoSo": "H60.23-20261121-0000001", "ChuHoSo": "Nguyễn Văn An", "TrangThaiHoSo": "2"},
                  ensure_ascii=False).encode()


def sign_jws(pki: Pki, party: Party, body: bytes = BODY, *, detached: bool = False, b64: bool = True,
             at: datetime | None = None, x5c: bool = True) -> bytes:
    rsa_key = isinstance(party.key, rsa.RSAPrivateKey)
    key = RSAKey.import_key(party.pem_key) if rsa_key else ECKey.import_key(party.pem_key)
    header: dict[str, Any] = {"alg": "RS256" if rsa_key else "ES256"}
    if x5c:
        chain = [party] if party is pki.stranger else pki.chain(party)
        header["x5c"] = [base64.b64encode(p.der).decode() for p in chain]
    if not b64:
        header |= {"b64": False, "crit": ["b64"]}
    if at is not None:
        header["sigT"] = at.isoformat().replace("+00:00", "Z")
    token = jws.serialize_compact(header, body, key, registry=_JWS_REGISTRY).encode()
    if detached and b64:
        head, _, signature = token.split(b".")
        token = head + b".." + signature
    return token
