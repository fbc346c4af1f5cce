"""JWS over JSON bodies (joserfc): compact (RFC 7515), detached and unencoded (RFC 7797, ``b64: false``).

A signed JSON body arrives either as a compact JWS whose payload is the JSON, or as the JSON itself
with a detached compact JWS beside it (``header..signature``), over the body's exact bytes. The
signer's certificate chain is the ``x5c`` header (leaf first, standard base64 DER), validated by
``trust.py``; the key that checks the signature is the leaf's public key, of the type the
certificate says, so an HMAC algorithm can never be fed a public key as its secret. ``x5u`` and
``jku`` (URLs) are never fetched, and a JWS with neither ``x5c`` is ``unsupported``. The signing
time is JAdES ``sigT`` (ETSI TS 119 182-1) from the protected header when present, else now.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from asn1crypto import x509 as asn1_x509
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, rsa
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from joserfc import jws
from joserfc.errors import JoseError
from joserfc.jwk import ECKey, Key, OKPKey, RSAKey
from joserfc.registry import HeaderParameter

from gateway.bounds import SIGNED_MOST
from gateway.signatures.trust import TrustStore, identity, key_problem, too_many_certificates
from gateway.signatures.verdict import Verdict

__all__ = ["ALGORITHMS", "REGISTRY", "looks_like_compact", "verify_jws"]

# Asymmetric only: a signature must name a certificate holder.
ALGORITHMS = ("RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA",
              "Ed25519")


class _Registry(jws.JWSRegistry):
    max_header_length = 32_768  # x5c: a chain of certificates, each well over a kilobyte in base64
    max_payload_length = SIGNED_MOST  # a dossier, not a token
    max_signature_length = 2_048  # RSA 4096 and above


# sigT is JAdES's signed signing time; other unknown headers are refused, as joserfc does.
REGISTRY = _Registry(header_registry={"sigT": HeaderParameter("JAdES claimed signing time", "str")},
                     algorithms=ALGORITHMS)
_B64URL = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")


def looks_like_compact(data: bytes) -> bool:
    """Three dot-separated parts, header and signature base64url (the payload may be anything)."""
    parts = data.strip().split(b".")
    return (len(parts) == 3 and parts[0].startswith(b"eyJ") and bool(parts[2])
            and set(parts[0]) <= _B64URL and set(parts[2]) <= _B64URL)


async def verify_jws(token: bytes, trust: TrustStore, *, payload: bytes | None = None) -> Verdict:
    """The verdict on a compact JWS; ``payload`` is the body a detached JWS signs."""
    try:
        obj = jws.extract_compact(token.strip(), payload, REGISTRY)
        header = obj.headers()
    except (JoseError, ValueError, TypeError, binascii.Error) as exc:
        return Verdict("jws", False, "unsupported", f"the JWS could not be read: {exc}")
    if payload is None and not obj.segments.get("payload"):
        return Verdict("jws", False, "bad-signature", "a detached JWS came without the body it signs")
    if payload is not None and token.strip().split(b".")[1]:
        # Else the JWS would vouch for its own payload, not for the body beside it.
        return Verdict("jws", False, "bad-signature", "the JWS beside the body is not detached")
    algorithm = str(header.get("alg"))
    if algorithm not in ALGORITHMS:
        return Verdict("jws", False, "unsupported", f"the JWS algorithm {algorithm!r} is not accepted")
    try:
        chain = _chain(header)
    except ValueError as exc:
        return Verdict("jws", False, "unsupported", str(exc))
    at = trust.signing_time(claimed=_claimed_time(header))
    evidence: dict[str, Any] = {**identity(chain[0]), "signing_time": at.moment or datetime.now(UTC),
                                "time_source": at.source, "algorithm": algorithm,
                                "digest": hashlib.sha256(obj.payload).hexdigest()}
    weak = key_problem(chain[0])  # before the key is even imported
    if weak is not None:
        return Verdict("jws", False, weak.reason, weak.message, **evidence)
    try:
        key = _key(chain[0])
        verified = jws.validate_compact(obj, key, registry=REGISTRY)
    except (JoseError, ValueError) as exc:
        return Verdict("jws", False, "bad-signature", f"the JWS does not verify: {exc}", **evidence)
    if not verified:
        return Verdict("jws", False, "bad-signature", "the JWS signature does not verify over this body",
                       **evidence)
    problem = await trust.check(chain[0], chain[1:], at)
    if problem is not None:
        return Verdict("jws", False, problem.reason, problem.message, **evidence)
    return Verdict("jws", True, "ok", "the signature is valid", **evidence)


def _chain(header: Mapping[str, Any]) -> list[asn1_x509.Certificate]:
    entries = header.get("x5c")
    if not isinstance(entries, list) or not entries:
        raise ValueError("the JWS has no x5c header: the signer's certificate must come with it "
                         "(x5u and jku URLs are never fetched)")
    oversized = too_many_certificates(len(entries))
    if oversized is not None:
        raise ValueError(oversized)
    try:
        ders = [base64.b64decode(entry, validate=True) for entry in entries]
        for der in ders:  # a broken certificate is refused here; cryptography's parser is the fast one
            x509.load_der_x509_certificate(der)
        chain = [asn1_x509.Certificate.load(der) for der in ders]
    except (binascii.Error, ValueError, TypeError) as exc:
        raise ValueError(f"a certificate in x5c is unreadable: {exc}") from exc
    return chain


def _key(cert: asn1_x509.Certificate) -> Key:
    """The leaf's public key as a JWK of the type the certificate holds."""
    public = x509.load_der_x509_certificate(cert.dump()).public_key()
    pem_key = public.public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo)
    if isinstance(public, rsa.RSAPublicKey):
        return RSAKey.import_key(pem_key)
    if isinstance(public, ec.EllipticCurvePublicKey):
        return ECKey.import_key(pem_key)
    if isinstance(public, ed25519.Ed25519PublicKey | ed448.Ed448PublicKey):
        return OKPKey.import_key(pem_key)
    raise ValueError(f"the certificate's key ({type(public).__name__}) cannot sign a JWS")


def _claimed_time(header: Mapping[str, Any]) -> datetime | None:
    value = header.get("sigT")
    if not isinstance(value, str):
        return None
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment if moment.tzinfo is not None else None
