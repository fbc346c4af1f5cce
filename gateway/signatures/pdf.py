"""PAdES and CMS signatures inside PDF documents, and CMS signatures (.p7s, .p7m) over bytes (pyHanko).

pyHanko checks the signature, what it covers (the byte ranges, and any incremental update after it
against its default difference policy), the RFC 3161 signature timestamp when there is one, and the
certificate path with a validation context from ``trust.py`` at the signing time. The key usage is
checked here, after the path (``trust.usage_problem``), so that a certificate the CA did not issue for
signing is ``wrong-usage`` and not merely ``untrusted``.

Every signature of a PDF is verified, in signing order; the verdict is the first that fails, else
the last (the one covering the most). A PDF signature whose SubFilter is ``ETSI.CAdES.detached`` is
``pades``; the older ``adbe.pkcs7.detached`` is ``cms``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime
from io import BytesIO
from typing import Any

from asn1crypto import cms, core, pem
from cryptography.hazmat.primitives import hashes
from pyhanko.pdf_utils.misc import PdfError
from pyhanko.pdf_utils.reader import PdfFileReader
from pyhanko.sign.validation import EmbeddedPdfSignature, async_validate_pdf_signature
from pyhanko.sign.validation.errors import SignatureValidationError
from pyhanko.sign.validation.generic_cms import (
    async_validate_cms_signature,
    async_validate_detached_cms,
    collect_timing_info,
)
from pyhanko.sign.validation.settings import KeyUsageConstraints
from pyhanko.sign.validation.status import SignatureStatus
from pyhanko_certvalidator.util import get_pyca_cryptography_hash

from gateway.signatures.trust import SigningTime, TrustStore, identity, problem_from_ades, usage_problem
from gateway.signatures.verdict import Format, Reason, Verdict

__all__ = ["verify_cms", "verify_pdf"]

# Key usage is checked by trust.usage_problem after the path, for its own reason code.
_ANY_USAGE = KeyUsageConstraints(key_usage=set())


async def verify_pdf(body: bytes, trust: TrustStore) -> Verdict:
    """The verdict on the signatures embedded in a PDF document."""
    try:
        signatures = PdfFileReader(BytesIO(body), strict=False).embedded_regular_signatures
    except (PdfError, ValueError, KeyError, TypeError) as exc:
        return Verdict("pades", False, "unsupported", f"the PDF document could not be read: {exc}")
    if not signatures:
        return Verdict("pades", False, "no-signature", "the PDF document has no signature")
    verdict: Verdict | None = None
    for signature in signatures:
        verdict = await _one_pdf(signature, body, trust)
        if not verdict.valid:
            break
    assert verdict is not None
    return verdict


async def _one_pdf(signature: EmbeddedPdfSignature, body: bytes, trust: TrustStore) -> Verdict:
    subfilter = str(signature.sig_object.get("/SubFilter", ""))
    fmt: Format = "pades" if subfilter == "/ETSI.CAdES.detached" else "cms"
    try:
        at = await _signing_time(signature.signer_info, signature.compute_digest, trust,
                                 fallback=signature.self_reported_timestamp)
        status = await async_validate_pdf_signature(
            signature, signer_validation_context=trust.context(at.moment),
            ts_validation_context=trust.context(), key_usage_settings=_ANY_USAGE)
    except (SignatureValidationError, PdfError, ValueError, KeyError) as exc:
        return Verdict(fmt, False, "unsupported", f"the PDF signature could not be verified: {exc}")
    verdict = _verdict(fmt, status, at, _byte_range_digest(signature, body))
    if verdict.valid and not status.bottom_line:
        return _failed(verdict, "bad-signature", "the document was changed after signing beyond what the "
                       f"signature allows ({status.modification_level})")
    return verdict


async def verify_cms(signature: bytes, content: bytes | None, trust: TrustStore) -> Verdict:
    """A CMS SignedData (DER or PEM): detached over ``content``, or with the content inside."""
    try:
        der = pem.unarmor(signature)[2] if pem.detect(signature) else signature
        info = cms.ContentInfo.load(der)
        if info["content_type"].native != "signed_data":
            return Verdict("cms", False, "no-signature", "the CMS object is not SignedData")
        signed_data = info["content"]
        signer_info = signed_data["signer_infos"][0]
        inner = signed_data["encap_content_info"]["content"]
        if content is None and inner is core.VOID:
            return Verdict("cms", False, "bad-signature", "a detached CMS signature came without its content")
        signed = content if content is not None else bytes(inner)  # as pyHanko reads it
        at = await _signing_time(signer_info, lambda algorithm: _hash(algorithm, signed), trust)
        context = trust.context(at.moment)
        if content is not None:
            status: SignatureStatus = await async_validate_detached_cms(
                content, signed_data, signer_validation_context=context,
                ts_validation_context=trust.context(), key_usage_settings=_ANY_USAGE)
        else:
            status = await async_validate_cms_signature(signed_data, validation_context=context,
                                                        key_usage_settings=_ANY_USAGE)
    except (SignatureValidationError, ValueError, KeyError, TypeError, IndexError) as exc:
        return Verdict("cms", False, "unsupported", f"the CMS signature could not be read: {exc}")
    return _verdict("cms", status, at, hashlib.sha256(signed).hexdigest())


async def _signing_time(signer_info: cms.SignerInfo, digest: Callable[[str], bytes], trust: TrustStore,
                        fallback: datetime | None = None) -> SigningTime:
    """The time to judge at: the signature timestamp's if it verifies, else the signed claim."""
    timing: dict[str, Any] = await collect_timing_info(signer_info, trust.context(), raw_digest=digest)
    stamp = timing.get("timestamp_validity")
    stamped = stamp.timestamp if stamp is not None and _sound(stamp) else None
    return trust.signing_time(claimed=timing.get("signer_reported_dt") or fallback, stamped=stamped)


def _verdict(fmt: Format, status: SignatureStatus, at: SigningTime, digest: str) -> Verdict:
    cert = status.signing_cert
    evidence: dict[str, Any] = {
        **identity(cert), "signing_time": at.moment or datetime.now(UTC), "time_source": at.source,
        "algorithm": f"{status.pkcs7_signature_mechanism}/{status.md_algorithm}", "digest": digest}
    if not status.intact:
        return Verdict(fmt, False, "digest-mismatch", "the signed content was changed", **evidence)
    if not status.valid:
        return Verdict(fmt, False, "bad-signature", "the signature does not verify", **evidence)
    if not status.trusted:
        problem = problem_from_ades(status.trust_problem_indic, cert, evidence["signing_time"])
        return Verdict(fmt, False, problem.reason, problem.message, **evidence)
    unusable = usage_problem(cert)
    if unusable is not None:
        return Verdict(fmt, False, unusable.reason, unusable.message, **evidence)
    stamp = getattr(status, "timestamp_validity", None)
    if stamp is not None and not _sound(stamp):
        return Verdict(fmt, False, "untrusted", "the signature's timestamp does not verify to a trusted "
                       "time-stamping authority", **evidence)
    return Verdict(fmt, True, "ok", "the signature is valid", **evidence)


def _sound(stamp: Any) -> bool:
    """A timestamp token that verifies and chains to a trusted time-stamping authority."""
    return stamp is not None and bool(stamp.intact and stamp.valid and stamp.trusted)


def _failed(verdict: Verdict, reason: Reason, message: str) -> Verdict:
    return replace(verdict, valid=False, reason=reason, message=message)


def _byte_range_digest(signature: EmbeddedPdfSignature, body: bytes) -> str:
    """SHA-256 of exactly the bytes the signature covers (its /ByteRange)."""
    start1, length1, start2, length2 = (int(n) for n in signature.byte_range)
    return hashlib.sha256(body[start1:start1 + length1] + body[start2:start2 + length2]).hexdigest()


def _hash(algorithm: str, data: bytes) -> bytes:
    digest = hashes.Hash(get_pyca_cryptography_hash(algorithm))
    digest.update(data)
    return digest.finalize()

