"""A throwaway CA for the demo and the tests, made by ``lienthong init`` with ``cryptography``.

``create(folder)`` makes a root, an intermediate (the signing CA) and three signers issued by it, a
citizen, a one-stop officer and an officer whose certificate is revoked, and the intermediate's CRL
listing that one, and writes them as the trust store the configuration's ``signatures`` section
names (``trust_settings``):

- ``anchors/demo-root-ca.pem``: the root, the only trust anchor;
- ``intermediates/demo-signing-ca.pem``: the signing CA, offered to path building;
- ``revocation/demo-signing-ca.crl``: its CRL (DER), revoking the revoked signer;
- ``signers/<name>.pem`` (the signer's certificate, then the signing CA's) and ``signers/<name>.key``
  (PKCS#8, mode 0600) for ``citizen``, ``officer`` and ``revoked``.

Keys are EC P-256 and everything is signed with SHA-256. The CAs' private keys are not written:
nothing more can be issued under this CA, ``lienthong init --force`` makes a new one. Signers name
a CRL location (``.invalid``, never resolved, never fetched) so that the default ``hard-fail``
revocation mode needs the CRL on file, as it would for a licensed CA. The CRL is current for a
year: after that every signer is refused as ``untrusted`` (revocation status unknown).

Nothing here is trusted outside the configuration ``lienthong init`` writes: the names say "demo".
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

__all__ = ["CRL_URL", "FOLDER", "SIGNERS", "SIGNING", "DemoCa", "Issued", "Signer", "build", "create",
           "issue", "key_usage", "load_signer", "name", "revocation_list", "trust_settings"]

FOLDER = "pki"  # under the configuration's folder
SIGNERS = ("citizen", "officer", "revoked")
ORGANISATION = "Liên Thông demo PKI (không dùng thật)"
CRL_URL = "http://crl.lienthong-demo.invalid/demo-signing-ca.crl"  # .invalid never resolves
DAY = timedelta(days=1)


@dataclass(frozen=True)
class Issued:
    """A key and the certificate issued for it."""

    key: Any  # an EC or RSA private key (cryptography's)
    cert: x509.Certificate


@dataclass(frozen=True)
class DemoCa:
    root: Issued
    intermediate: Issued
    citizen: Issued  # digitalSignature + nonRepudiation
    officer: Issued  # the same usage, an officer of Tuyên Quang's one-stop desk
    revoked: Issued  # the same usage, listed in ``crl``
    crl: x509.CertificateRevocationList


@dataclass(frozen=True)
class Signer:
    """A signer read back from the folder: its key and its chain, leaf first."""

    key: Any
    chain: tuple[x509.Certificate, ...]

    @property
    def subject(self) -> str:
        return self.chain[0].subject.rfc4514_string()


def name(cn: str, organisation: str = ORGANISATION, *, title: str | None = None) -> x509.Name:
    attributes = [x509.NameAttribute(NameOID.COUNTRY_NAME, "VN"),
                  x509.NameAttribute(NameOID.ORGANIZATION_NAME, organisation)]
    if title is not None:
        attributes.append(x509.NameAttribute(NameOID.TITLE, title))
    return x509.Name([*attributes, x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def key_usage(**flags: bool) -> x509.KeyUsage:
    """A KeyUsage with the named flags set (cryptography wants all nine)."""
    names = ("digital_signature", "content_commitment", "key_encipherment", "data_encipherment",
             "key_agreement", "key_cert_sign", "crl_sign", "encipher_only", "decipher_only")
    return x509.KeyUsage(**{flag: flags.get(flag, False) for flag in names})


SIGNING = key_usage(digital_signature=True, content_commitment=True)  # content_commitment: nonRepudiation
CA_USAGE = key_usage(key_cert_sign=True, crl_sign=True)


def issue(subject: x509.Name, issuer: Issued | None, *, start: datetime, end: datetime, ca: bool = False,
          usage: x509.KeyUsage | None = None, rsa_key: bool = False,
          eku: list[x509.ObjectIdentifier] | None = None, crl_url: str | None = None) -> Issued:
    """A new key and its certificate, signed by ``issuer`` (self-signed when None) with SHA-256."""
    key: Any = rsa.generate_private_key(65537, 2048) if rsa_key else ec.generate_private_key(ec.SECP256R1())
    builder = (x509.CertificateBuilder().subject_name(subject)
               .issuer_name(issuer.cert.subject if issuer else subject).public_key(key.public_key())
               .serial_number(x509.random_serial_number()).not_valid_before(start).not_valid_after(end)
               .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
               .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False))
    if usage is not None:
        builder = builder.add_extension(usage, critical=True)
    if eku is not None:
        builder = builder.add_extension(x509.ExtendedKeyUsage(eku), critical=True)
    if issuer is not None:
        builder = builder.add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer.key.public_key()), critical=False)
    if crl_url is not None:
        builder = builder.add_extension(x509.CRLDistributionPoints([x509.DistributionPoint(
            [x509.UniformResourceIdentifier(crl_url)], None, None, None)]), critical=False)
    return Issued(key, builder.sign(issuer.key if issuer else key, hashes.SHA256()))


def revocation_list(issuer: Issued, revoked: Iterable[tuple[x509.Certificate, datetime]], *,
                    start: datetime, end: datetime, number: int = 1) -> x509.CertificateRevocationList:
    """``issuer``'s CRL, current from ``start`` to ``end`` (nextUpdate), revoking each certificate
    at its date."""
    builder = (x509.CertificateRevocationListBuilder().issuer_name(issuer.cert.subject)
               .last_update(start).next_update(end)
               .add_extension(x509.CRLNumber(number), critical=False)
               .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer.key.public_key()),
                              critical=False))
    for cert, at in revoked:
        builder = builder.add_revoked_certificate(
            x509.RevokedCertificateBuilder().serial_number(cert.serial_number).revocation_date(at).build())
    return builder.sign(issuer.key, hashes.SHA256())


def build(now: datetime | None = None) -> DemoCa:
    """The demo CA in memory. Validity starts a day back, so that a clock a little behind still
    accepts it; the revoked signer was revoked a day before ``now``."""
    now = (now or datetime.now(UTC)).replace(microsecond=0)
    root = issue(name("Liên Thông Demo Root CA"), None, ca=True, usage=CA_USAGE,
                 start=now - DAY, end=now + 3650 * DAY)
    intermediate = issue(name("Liên Thông Demo Signing CA"), root, ca=True, usage=CA_USAGE,
                         start=now - DAY, end=now + 1825 * DAY)

    def signer(cn: str, organisation: str, title: str | None = None) -> Issued:
        return issue(name(cn, organisation, title=title), intermediate, usage=SIGNING, crl_url=CRL_URL,
                     start=now - DAY, end=now + 730 * DAY)

    citizen = signer("Nguyễn Văn An", "Công dân")
    officer = signer("Trần Thị Bình", "UBND tỉnh Tuyên Quang", "Chuyên viên Bộ phận một cửa")
    revoked = signer("Lê Văn Cường", "UBND tỉnh Tuyên Quang", "Chuyên viên Bộ phận một cửa")
    crl = revocation_list(intermediate, [(revoked.cert, now - DAY)], start=now - timedelta(minutes=5),
                          end=now + 365 * DAY)
    return DemoCa(root, intermediate, citizen, officer, revoked, crl)


def create(folder: Path, now: datetime | None = None) -> DemoCa:
    """Build the demo CA and write it under ``folder`` (made if missing; its files replaced)."""
    ca = build(now)
    pem = serialization.Encoding.PEM
    for sub in ("anchors", "intermediates", "revocation", "signers"):
        (folder / sub).mkdir(parents=True, exist_ok=True)
    (folder / "anchors" / "demo-root-ca.pem").write_bytes(ca.root.cert.public_bytes(pem))
    (folder / "intermediates" / "demo-signing-ca.pem").write_bytes(ca.intermediate.cert.public_bytes(pem))
    der = serialization.Encoding.DER
    (folder / "revocation" / "demo-signing-ca.crl").write_bytes(ca.crl.public_bytes(der))
    for label in SIGNERS:
        party: Issued = getattr(ca, label)
        (folder / "signers" / f"{label}.pem").write_bytes(
            party.cert.public_bytes(pem) + ca.intermediate.cert.public_bytes(pem))
        _write_private(folder / "signers" / f"{label}.key", party.key.private_bytes(
            pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    return ca


def _write_private(path: Path, data: bytes) -> None:
    path.unlink(missing_ok=True)  # a new key, never written through an old file's wider mode
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)


def load_signer(folder: Path, label: str) -> Signer:
    """``citizen``, ``officer`` or ``revoked`` as ``create`` wrote it under ``folder``."""
    key = serialization.load_pem_private_key((folder / "signers" / f"{label}.key").read_bytes(), None)
    chain = x509.load_pem_x509_certificates((folder / "signers" / f"{label}.pem").read_bytes())
    return Signer(key, tuple(chain))


def trust_settings(folder: str = FOLDER) -> dict[str, str]:
    """The configuration's ``signatures`` section for a demo CA written at ``folder`` (relative to
    the configuration's folder)."""
    return {"anchors": f"{folder}/anchors", "revocation": f"{folder}/revocation",
            "intermediates": f"{folder}/intermediates"}
