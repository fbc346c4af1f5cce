"""Checking a gateway seal as its receiver does (``lienthong seal verify``).

Independent of how the gateway seals: the detached JWS is checked by joserfc, the enveloped XML
signature by signxml, against keys the receiver got apart from the message (the JWKS the gateway
publishes, or the seal certificate). Nothing in the message chooses a key it brings itself: its
``kid`` only picks one of the keys given, and a certificate an XML signature carries must be one of
them.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from dataclasses import dataclass
from typing import Any, Literal

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from joserfc import jws
from joserfc.errors import JoseError
from joserfc.jwk import ECKey, Key, KeySet, RSAKey

from gateway.seal import HEADER
from gateway.seal.keys import ALGORITHMS

__all__ = ["Outcome", "TrustedKey", "keys_from_certificates", "keys_from_jwks", "split_response",
           "verify_detached", "verify_enveloped", "verify_message"]

Reason = Literal["ok", "no-seal", "bad-seal", "unknown-key", "malformed", "unsupported"]
DS = "http://www.w3.org/2000/09/xmldsig#"


@dataclass(frozen=True, slots=True)
class TrustedKey:
    """A key the receiver trusts: its kid (None for a bare certificate), the JWK, its certificate."""

    kid: str | None
    key: Key
    certificate: x509.Certificate | None


@dataclass(frozen=True, slots=True)
class Outcome:
    valid: bool
    reason: Reason
    message: str
    kid: str | None = None
    algorithm: str | None = None
    signer: str | None = None  # the certificate's subject, when known
    digest: str | None = None  # SHA-256 (hex) of the sealed body

    def describe(self) -> str:
        head = "valid" if self.valid else f"invalid ({self.reason})"
        facts = [f"kid {self.kid}" if self.kid else "", self.algorithm or "",
                 f"signer {self.signer}" if self.signer else "",
                 f"body sha256 {self.digest}" if self.digest else ""]
        more = ", ".join(f for f in facts if f)
        return f"{head}: {self.message}" + (f" [{more}]" if more else "")


def keys_from_jwks(data: Any) -> list[TrustedKey]:
    """The keys of a JWKS (public parts only; a key without ``kid`` cannot be picked and is refused)."""
    if not isinstance(data, dict) or not isinstance(data.get("keys"), list):
        raise ValueError("not a JWKS: a JSON object with a 'keys' list is expected")
    found = []
    for i, entry in enumerate(data["keys"]):
        if not isinstance(entry, dict) or not isinstance(entry.get("kid"), str):
            raise ValueError(f"key {i} of the JWKS has no kid")
        public = {k: v for k, v in entry.items() if k not in ("d", "p", "q", "dp", "dq", "qi")}
        try:
            key = KeySet.import_key_set({"keys": [public]}).keys[0]
        except (JoseError, ValueError, TypeError) as exc:
            raise ValueError(f"key {entry['kid']} of the JWKS cannot be read: {exc}") from None
        cert = None
        x5c = entry.get("x5c")
        if isinstance(x5c, list) and x5c:
            try:
                cert = x509.load_der_x509_certificate(base64.b64decode(x5c[0], validate=True))
            except (ValueError, binascii.Error) as exc:
                raise ValueError(f"key {entry['kid']}: its x5c certificate is unreadable: {exc}") from None
        found.append(TrustedKey(entry["kid"], key, cert))
    return found


def keys_from_certificates(certificates: list[x509.Certificate]) -> list[TrustedKey]:
    """Trusted keys from seal certificates (each trusted by itself, whatever kid a seal names)."""
    return [TrustedKey(None, _jwk_of(cert), cert) for cert in certificates]


def _jwk_of(cert: x509.Certificate) -> Key:
    pem = cert.public_key().public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo)
    try:
        return ECKey.import_key(pem)
    except (JoseError, ValueError, TypeError):
        return RSAKey.import_key(pem)


def verify_detached(body: bytes, seal: str, keys: list[TrustedKey]) -> Outcome:
    """A detached compact JWS (``header..signature``) over ``body``'s exact bytes."""
    digest = hashlib.sha256(body).hexdigest()
    token = seal.strip().encode("ascii", "replace")
    parts = token.split(b".")
    if len(parts) != 3 or parts[1]:
        return Outcome(False, "malformed", "the seal is not a detached compact JWS (header..signature)",
                       digest=digest)
    try:
        obj = jws.extract_compact(token, body)
        header = obj.headers()
    except (JoseError, ValueError, TypeError, binascii.Error) as exc:
        return Outcome(False, "malformed", f"the seal cannot be read: {exc}", digest=digest)
    alg, kid = header.get("alg"), header.get("kid")
    kid = kid if isinstance(kid, str) else None
    if alg not in ALGORITHMS:
        return Outcome(False, "unsupported", f"algorithm {alg!r} is not a seal's (ES256, RS256, PS256)",
                       kid=kid, digest=digest)
    candidates = [k for k in keys if k.kid is None or k.kid == kid]
    if not candidates:
        known = ", ".join(str(k.kid) for k in keys) or "none"
        return Outcome(False, "unknown-key", f"the seal names kid {kid!r}, which the keys given do not "
                       f"hold (they hold: {known}); a newer JWKS may have it", kid=kid, algorithm=alg,
                       digest=digest)
    for candidate in candidates:
        try:
            ok = jws.validate_compact(obj, candidate.key, algorithms=[str(alg)])
        except (JoseError, ValueError, TypeError):
            ok = False
        if ok:
            return Outcome(True, "ok", "the seal holds over this body", kid=kid, algorithm=alg,
                           signer=_subject(candidate.certificate), digest=digest)
    return Outcome(False, "bad-seal", "the seal does not verify over this body: the body was changed, "
                   "or another key sealed it", kid=kid, algorithm=alg, digest=digest)


def verify_enveloped(body: bytes, keys: list[TrustedKey]) -> Outcome:
    """An enveloped XML-DSig signature over the whole document, by one of ``keys``' certificates."""
    from signxml.exceptions import InvalidCertificate, InvalidDigest, InvalidInput, InvalidSignature
    from signxml.verifier import SignatureConfiguration, XMLVerifier

    from gateway.seal.xml import LIMITS
    from gateway.xml import safe

    digest = hashlib.sha256(body).hexdigest()
    try:
        root = safe.parse(body, LIMITS)
    except safe.XmlRefused as exc:
        return Outcome(False, "malformed", f"the XML cannot be read: {exc}", digest=digest)
    signatures = root.findall(f"{{{DS}}}Signature")
    if not signatures:
        return Outcome(False, "no-seal", "the XML has no enveloped ds:Signature (a child of its root)",
                       digest=digest)
    if len(signatures) > 1:
        return Outcome(False, "unsupported", "the XML has several signatures at its root", digest=digest)
    references = signatures[0].findall(f"{{{DS}}}SignedInfo/{{{DS}}}Reference")
    if len(references) != 1 or references[0].get("URI") != "":
        return Outcome(False, "unsupported", "the signature does not cover the whole document "
                       "(one reference, URI=\"\")", digest=digest)
    carried = [node.text or "" for node in signatures[0].iter(f"{{{DS}}}X509Certificate")]
    trusted = [k for k in keys if k.certificate is not None]
    if carried:
        try:
            leaf = x509.load_der_x509_certificate(base64.b64decode("".join(carried[0].split())))
        except (ValueError, binascii.Error) as exc:
            return Outcome(False, "malformed", f"the signature's certificate is unreadable: {exc}",
                           digest=digest)
        trusted = [k for k in trusted if k.certificate is not None
                   and _spki(k.certificate) == _spki(leaf)]
        if not trusted:
            return Outcome(False, "unknown-key", f"the signature's certificate ({_subject(leaf)}) is none "
                           "of the keys given", signer=_subject(leaf), digest=digest)
    config = SignatureConfiguration(expect_references=1)
    last: Exception | None = None
    for candidate in trusted:
        assert candidate.certificate is not None
        pem = candidate.certificate.public_bytes(Encoding.PEM).decode("ascii")
        try:
            XMLVerifier().verify(body, x509_cert=pem, expect_config=config)
        except (InvalidSignature, InvalidDigest, InvalidCertificate) as exc:
            last = exc
            continue
        except InvalidInput as exc:
            return Outcome(False, "malformed", f"the signature cannot be read: {exc}", digest=digest)
        return Outcome(True, "ok", "the enveloped signature holds over this document", kid=candidate.kid,
                       algorithm=_method(signatures[0]), signer=_subject(candidate.certificate),
                       digest=digest)
    what = "the document was changed" if isinstance(last, InvalidDigest) else \
        "the document was changed, or another key signed it"
    return Outcome(False, "bad-seal", f"the enveloped signature does not verify: {what}", digest=digest)


def verify_message(data: bytes, keys: list[TrustedKey], *, seal: str | None = None) -> Outcome:
    """What ``lienthong seal verify`` checks: with ``seal``, ``data`` is the body; a saved HTTP
    message (``curl -i``, starting ``HTTP/``) is split, its ``X-Gateway-Seal`` used; else (or when
    the message has no such header) an XML body is checked for its enveloped signature."""
    body = data
    if seal is None and data.startswith(b"HTTP/"):
        try:
            headers, body = split_response(data)
        except ValueError as exc:
            return Outcome(False, "malformed", str(exc))
        seal = headers.get(HEADER.lower())
    if seal is not None:
        return verify_detached(body, seal, keys)
    if body.lstrip()[:1] == b"<":
        return verify_enveloped(body, keys)
    return Outcome(False, "no-seal", f"no {HEADER} given or found, and the body is not XML",
                   digest=hashlib.sha256(body).hexdigest())


def split_response(data: bytes) -> tuple[dict[str, str], bytes]:
    """A saved HTTP/1.x message's last header block (``curl -i`` shows a 100 Continue first) and
    its body, byte for byte."""
    rest = data
    while True:
        ends = [(i, sep) for sep in (b"\r\n\r\n", b"\n\n") if (i := rest.find(sep)) >= 0]
        if not ends:
            raise ValueError("the saved response has no blank line after its headers")
        at, separator = min(ends)
        head, body = rest[:at], rest[at + len(separator):]
        lines = head.replace(b"\r\n", b"\n").split(b"\n")
        status = lines[0].split()
        if len(status) >= 2 and status[1].startswith(b"1") and body.startswith(b"HTTP/"):
            rest = body  # an interim answer: the final one follows
            continue
        headers: dict[str, str] = {}
        for line in lines[1:]:
            name, colon, value = line.partition(b":")
            if colon:
                headers[name.strip().decode("latin-1").lower()] = value.strip().decode("latin-1")
        if "transfer-encoding" in headers:
            raise ValueError("the saved response is chunked; save the body as it was received "
                             "(curl -i does) or give it with --seal")
        return headers, body


def _spki(cert: x509.Certificate) -> bytes:
    return cert.public_key().public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)


def _subject(cert: x509.Certificate | None) -> str | None:
    return None if cert is None else cert.subject.rfc4514_string()


def _method(signature: Any) -> str | None:
    node = signature.find(f"{{{DS}}}SignedInfo/{{{DS}}}SignatureMethod")
    return None if node is None else str(node.get("Algorithm", "")).rpartition("#")[2] or None


def read_jwks(text: str) -> list[TrustedKey]:
    """A JWKS given as JSON text."""
    try:
        return keys_from_jwks(json.loads(text))
    except json.JSONDecodeError as exc:
        raise ValueError(f"not JSON: {exc}") from None
