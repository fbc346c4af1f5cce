"""The gateway's seal keys: files, generation, and their public JWKS.

A seal key is a private key (PEM, PKCS#8, mode 0600) with its certificate chain (PEM, leaf first).
By default they live in the keys folder's ``seal/`` as ``<kid>.key`` and ``<kid>.pem``; kids sort by
creation time, so the newest key that has its private half signs, and every certificate there is
published (the retired ones too, until their ``.pem`` is removed). The configuration may name one
key and certificate instead (a seal issued by a CA), and more certificates to publish (``previous``).
"""

from __future__ import annotations

import base64
import hashlib
import os
import secrets
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Literal

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes
from cryptography.x509.oid import NameOID

__all__ = ["ALGORITHMS", "Algorithm", "SealKey", "SealKeyError", "ensure_seal_key", "generate",
           "load_certificates", "load_folder", "load_pair", "new_kid", "public_jwk", "thumbprint",
           "write_pair"]

Algorithm = Literal["ES256", "RS256", "PS256"]
ALGORITHMS: tuple[Algorithm, ...] = ("ES256", "RS256", "PS256")
MIN_RSA_BITS = 2048
CERT_DAYS = 730  # a self-signed seal certificate; rotate well before it ends


class SealKeyError(ValueError):
    """A seal key or certificate that cannot be used, named with its file and the reason."""


@dataclass(frozen=True, slots=True)
class SealKey:
    """One seal key: its certificate chain (leaf first) and, for the signing key, the private key."""

    kid: str
    chain: tuple[x509.Certificate, ...]
    private: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey | None = None
    algorithm: Algorithm | None = None  # known for the signing key; for an EC key always ES256

    @property
    def certificate(self) -> x509.Certificate:
        return self.chain[0]


def new_kid() -> str:
    """``seal-YYYYMMDDTHHMMSS.micro-rand``: sorts by creation time, unique across nodes."""
    now = time.time()
    micro = int(now * 1_000_000) % 1_000_000
    return f"seal-{time.strftime('%Y%m%dT%H%M%S', time.gmtime(now))}.{micro:06d}-{secrets.token_hex(3)}"


def generate(algorithm: Algorithm, subject: str) -> tuple[ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey,
                                                         x509.Certificate]:
    """A new key and a self-signed certificate for it, for sealing (key usage: signatures only)."""
    key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey
    key = (ec.generate_private_key(ec.SECP256R1()) if algorithm == "ES256"
           else rsa.generate_private_key(public_exponent=65537, key_size=3072))
    name = x509.Name([x509.NameAttribute(NameOID.COUNTRY_NAME, "VN"),
                      x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Liên Thông gateway"),
                      x509.NameAttribute(NameOID.COMMON_NAME, subject)])
    now = datetime.now(UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - timedelta(minutes=5)).not_valid_after(now + timedelta(days=CERT_DAYS))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=True,
                                         key_encipherment=False, data_encipherment=False,
                                         key_agreement=False, key_cert_sign=False, crl_sign=False,
                                         encipher_only=False, decipher_only=False), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
            .sign(key, hashes.SHA256()))
    return key, cert


def write_pair(folder: Path, kid: str, key: PrivateKeyTypes, chain: list[x509.Certificate]) -> Path:
    """``<kid>.key`` (0600, written first) and ``<kid>.pem``; returns the key's path."""
    folder.mkdir(parents=True, exist_ok=True)
    key_path, cert_path = folder / f"{kid}.key", folder / f"{kid}.pem"
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption())
    fd = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(pem)
    # The certificate is written after the key: a folder never shows a signing pair half made.
    cert_path.write_bytes(b"".join(c.public_bytes(serialization.Encoding.PEM) for c in chain))
    return key_path


def load_certificates(path: Path) -> list[x509.Certificate]:
    """The certificates of a PEM file (leaf first), or a DER file's one."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise SealKeyError(f"{path}: cannot be read ({exc.strerror or exc})") from None
    try:
        chain = (x509.load_pem_x509_certificates(data) if b"-----BEGIN" in data
                 else [x509.load_der_x509_certificate(data)])
    except ValueError as exc:
        raise SealKeyError(f"{path}: not a certificate ({exc})") from None
    if not chain:
        raise SealKeyError(f"{path}: holds no certificate")
    return chain


def load_pair(key_path: Path, cert_path: Path, kid: str | None, algorithm: Algorithm, *,
              infer: bool = False) -> SealKey:
    """A signing key and its certificate chain; the key must be the certificate's, and fit
    ``algorithm`` (ES256: P-256; RS256, PS256: RSA of 2048 bits or more). With ``infer`` (the
    folder's keys, whose type a rotation may change) the key's type decides: ES256 for EC, the
    configured RSA algorithm (or RS256) for RSA."""
    chain = load_certificates(cert_path)
    try:
        private = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
    except OSError as exc:
        raise SealKeyError(f"{key_path}: cannot be read ({exc.strerror or exc})") from None
    except (ValueError, TypeError) as exc:  # TypeError: an encrypted key (no passphrase is kept)
        raise SealKeyError(f"{key_path}: not an unencrypted PEM private key ({exc})") from None
    if infer:
        rsa_algorithm: Algorithm = algorithm if algorithm != "ES256" else "RS256"
        algorithm = "ES256" if isinstance(private, ec.EllipticCurvePrivateKey) else rsa_algorithm
    if isinstance(private, ec.EllipticCurvePrivateKey):
        if algorithm != "ES256" or not isinstance(private.curve, ec.SECP256R1):
            raise SealKeyError(f"{key_path}: an EC key ({private.curve.name}) seals only as ES256 on "
                               f"P-256; seal.algorithm is {algorithm}")
    elif isinstance(private, rsa.RSAPrivateKey):
        if algorithm == "ES256":
            raise SealKeyError(f"{key_path}: an RSA key seals as RS256 or PS256, not ES256 "
                               "(set seal.algorithm)")
        if private.key_size < MIN_RSA_BITS:
            raise SealKeyError(f"{key_path}: an RSA key of {private.key_size} bits; a seal needs "
                               f"{MIN_RSA_BITS} or more")
    else:
        raise SealKeyError(f"{key_path}: a {type(private).__name__} cannot seal (ES256, RS256, PS256)")
    spki = (serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    if chain[0].public_key().public_bytes(*spki) != private.public_key().public_bytes(*spki):
        raise SealKeyError(f"{cert_path}: its first certificate is not {key_path}'s")
    return SealKey(kid or thumbprint(chain[0]), tuple(chain), private, algorithm)


def load_folder(folder: Path, algorithm: Algorithm) -> tuple[SealKey | None, list[SealKey]]:
    """The folder's signing key (the newest ``<kid>.key`` with its ``.pem``), and every key it
    publishes (each ``.pem``, oldest first, the signing one included)."""
    if not folder.is_dir():
        return None, []
    published: list[SealKey] = []
    signing: SealKey | None = None
    for cert_path in sorted(folder.glob("*.pem")):
        kid = cert_path.stem
        key_path = folder / f"{kid}.key"
        if key_path.exists():
            pair = load_pair(key_path, cert_path, kid, algorithm, infer=True)
            signing = pair
            published.append(pair)
        else:
            published.append(SealKey(kid, tuple(load_certificates(cert_path))))
    return signing, published


def thumbprint(cert: x509.Certificate) -> str:
    """The certificate's ``x5t#S256``: base64url SHA-256 of its DER."""
    return _b64url(hashlib.sha256(cert.public_bytes(serialization.Encoding.DER)).digest())


def public_jwk(key: SealKey) -> dict[str, Any]:
    """The key's public JWK with its certificate chain (``x5c``, ``x5t#S256``)."""
    public = key.certificate.public_key()
    jwk: dict[str, Any]
    if isinstance(public, ec.EllipticCurvePublicKey):
        numbers = public.public_numbers()
        size = (public.curve.key_size + 7) // 8
        curve = {"secp256r1": "P-256", "secp384r1": "P-384", "secp521r1": "P-521"}.get(public.curve.name)
        if curve is None:
            raise SealKeyError(f"seal certificate {key.kid}: curve {public.curve.name} has no JWK name")
        jwk = {"kty": "EC", "crv": curve, "x": _b64url(numbers.x.to_bytes(size, "big")),
               "y": _b64url(numbers.y.to_bytes(size, "big"))}
        alg: str | None = "ES256" if curve == "P-256" else None
    elif isinstance(public, rsa.RSAPublicKey):
        rsa_numbers = public.public_numbers()
        jwk = {"kty": "RSA", "n": _b64url(_int_bytes(rsa_numbers.n)), "e": _b64url(_int_bytes(rsa_numbers.e))}
        alg = key.algorithm  # a retired RSA key's algorithm is not known: the seal's header says it
    else:
        raise SealKeyError(f"seal certificate {key.kid}: a {type(public).__name__} key cannot seal")
    jwk.update({"kid": key.kid, "use": "sig"})
    if alg is not None:
        jwk["alg"] = alg
    jwk["x5c"] = [base64.b64encode(c.public_bytes(serialization.Encoding.DER)).decode("ascii")
                  for c in key.chain]
    jwk["x5t#S256"] = thumbprint(key.certificate)
    return jwk


def _int_bytes(value: int) -> bytes:
    return value.to_bytes((value.bit_length() + 7) // 8 or 1, "big")


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def ensure_seal_key(folder: Path, algorithm: Algorithm, subject: str) -> str | None:
    """A self-signed seal key in ``folder`` unless one is there (``lienthong init``); its kid."""
    if any(folder.glob("*.key")):
        return None
    kid = new_kid()
    private, cert = generate(algorithm, subject)
    write_pair(folder, kid, private, [cert])
    return kid
