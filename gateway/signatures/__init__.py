"""Verifying the signatures on dossiers and documents, offline, against a configured trust store.

``verify(body, content_type, trust=..., detached=...)`` picks the format and returns a ``Verdict``
(``verdict.py``): valid or not, the reason from a closed set, and the evidence for the audit record.
It never raises on what a client sent: a document that cannot be read is a verdict too.

- XML (``application/xml``, ``text/xml``, ``*+xml``): XML-DSig enveloped or XAdES-BES (``xml.py``);
- PDF (``application/pdf``): PAdES and CMS signatures inside (``pdf.py``);
- CMS (``application/pkcs7-mime``, ``application/pkcs7-signature``): SignedData with its content;
- JWS (``application/jose``): a compact JWS whose payload is the body (``jws.py``);
- with ``detached``: the signature travelled apart from ``body`` (a header, a ``.p7s`` file): a
  compact JWS with an empty payload over the JSON body, or a CMS ``.p7s`` over any bytes;
- JSON without ``detached``: ``no-signature``.

Importing the package makes two of its libraries faster without changing what they answer:
pyHanko's PDF hex strings are decoded in C (``pdf_hex.py``), and asn1crypto remembers the string
preparation of name values (``name_prep.py``).

``verify`` runs its own event loop; inside one (the gateway's), ``await averify(...)`` instead, or
``asyncio.to_thread(verify, ...)`` to keep the hashing and RSA off the loop.
"""

from __future__ import annotations

import asyncio
import warnings

import structlog
from cryptography.utils import CryptographyDeprecationWarning

# pyHanko's signing module imports cryptography's DSA key type, and cryptography warns on that
# import that DSA is deprecated: a library's line on stderr before `lienthong check`, `serve` and
# the demo, about nothing a user of this gateway can change. Only that warning, only here.
with warnings.catch_warnings():
    warnings.filterwarnings("ignore", message="DSA is deprecated", category=CryptographyDeprecationWarning)
    from gateway.signatures import name_prep, pdf_hex
    from gateway.signatures.jws import looks_like_compact, verify_jws
    from gateway.signatures.pdf import verify_cms, verify_pdf
    from gateway.signatures.trust import TrustStore, TrustStoreError
    from gateway.signatures.verdict import FORMATS, REASONS, Format, Reason, Verdict
    from gateway.signatures.xml import verify_xml

__all__ = ["FORMATS", "REASONS", "Format", "Reason", "TrustStore", "TrustStoreError", "Verdict", "averify",
           "verify"]

log = structlog.get_logger("lienthong.signatures")
pdf_hex.install()  # a signature's /Contents: milliseconds one character at a time
name_prep.install()  # the same CA and signer names, prepared for comparison dozens of times

_CMS_TYPES = {"application/pkcs7-mime", "application/pkcs7-signature", "application/x-pkcs7-mime",
              "application/x-pkcs7-signature", "application/cms"}
_XML_TYPES = {"application/xml", "text/xml"}
_JWS_TYPES = {"application/jose", "application/jws"}


def verify(body: bytes, content_type: str, *, trust: TrustStore, detached: bytes | None = None) -> Verdict:
    """The verdict on the signature of ``body`` (or on ``detached`` over it); see the module's text."""
    return asyncio.run(averify(body, content_type, trust=trust, detached=detached))


async def averify(body: bytes, content_type: str, *, trust: TrustStore,
                  detached: bytes | None = None) -> Verdict:
    """``verify`` for callers already inside an event loop."""
    media = content_type.partition(";")[0].strip().lower()
    try:
        return await _dispatch(body, media, trust, detached)
    except Exception as exc:
        # A library failing on a hostile document must refuse it, not answer 500; the stack is
        # logged (frames only: the message may quote the document) so that the failure is fixed.
        log.error("signature verification crashed", media=media, error=type(exc).__name__,
                  exc_info=(type(exc), exc, exc.__traceback__))
        return Verdict(_format_of(body, media, detached), False, "unsupported",
                       f"the signature could not be verified ({type(exc).__name__})")


async def _dispatch(body: bytes, media: str, trust: TrustStore, detached: bytes | None) -> Verdict:
    if detached is not None:
        if looks_like_compact(detached):
            return await verify_jws(detached, trust, payload=body)
        return await verify_cms(detached, body, trust)
    kind = _format_of(body, media, None)
    if kind == "pades":
        return await verify_pdf(body, trust)
    if kind == "xmldsig":
        return await verify_xml(body, trust)
    if kind == "cms":
        return await verify_cms(body, None, trust)
    if kind == "jws":
        if looks_like_compact(body):
            return await verify_jws(body, trust)
        return Verdict("jws", False, "no-signature", "a JSON body is signed with a JWS, compact or detached; "
                                                      "none came with this one")
    return Verdict(None, False, "unsupported", f"no signature format is known for {media or 'this body'}")


def _format_of(body: bytes, media: str, detached: bytes | None) -> Format | None:
    """The format the content type names, or, for a generic type, the one the bytes begin like."""
    if detached is not None:
        return "jws" if looks_like_compact(detached) else "cms"
    if media == "application/pdf":
        return "pades"
    if media in _XML_TYPES or media.endswith("+xml"):
        return "xmldsig"
    if media in _CMS_TYPES:
        return "cms"
    if media in _JWS_TYPES or media == "application/json" or media.endswith("+json"):
        return "jws"
    if media in ("", "application/octet-stream"):
        head = body.lstrip()[:8]
        if head.startswith(b"%PDF-"):
            return "pades"
        if head.startswith(b"<"):
            return "xmldsig"
        if looks_like_compact(body):
            return "jws"
        if head.startswith(b"0") or head.startswith(b"-----BEGIN"):
            return "cms"
    return None
