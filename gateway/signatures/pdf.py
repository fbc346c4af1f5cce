"""PAdES and CMS signatures inside PDF documents, and CMS signatures (.p7s, .p7m) over bytes (pyHanko).

pyHanko checks the signature, what it covers (the byte ranges, and any incremental update after it
against its default difference policy), the RFC 3161 signature timestamp when there is one, and the
certificate path at the signing time. The path, the key usage and the key size of the signer are
``TrustStore.check``'s (cached, like XML's and JWS's: a repeated signer costs no path validation);
pyHanko then checks the signature itself against a validation context in which the signer's
certificate, just judged, is pinned as the only anchor (``TrustStore.pinned``). A timestamp's
authority is validated against the whole trust store.

Every signature of a PDF is verified, in signing order; the verdict is the first that fails, else
the last (the one covering the most). A PDF signature whose SubFilter is ``ETSI.CAdES.detached`` is
``pades``; the older ``adbe.pkcs7.detached`` is ``cms``.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Iterable
from dataclasses import replace
from datetime import UTC, datetime
from io import BytesIO
from typing import Any

from asn1crypto import cms, core, pem, x509
from cryptography.hazmat.primitives import hashes
from pyhanko.pdf_utils.misc import PdfError
from pyhanko.pdf_utils.reader import PdfFileReader
from pyhanko.sign.validation import EmbeddedPdfSignature, async_validate_pdf_signature
from pyhanko.sign.validation.errors import SignatureValidationError
from pyhanko.sign.validation.generic_cms import (
    async_validate_cms_signature,
    async_validate_detached_cms,
    collect_timing_info,
    extract_certs_for_validation,
    extract_tst_data_iter,
)
from pyhanko.sign.validation.settings import KeyUsageConstraints
from pyhanko.sign.validation.status import SignatureStatus
from pyhanko_certvalidator import ValidationContext
from pyhanko_certvalidator.util import get_pyca_cryptography_hash

from gateway.signatures.trust import (
    Problem,
    SigningTime,
    TrustStore,
    identity,
    problem_from_ades,
    too_many_certificates,
)
from gateway.signatures.verdict import Format, Reason, Verdict

__all__ = ["MAX_SIGNATURE_BYTES", "verify_cms", "verify_pdf"]

# Key usage is checked by trust.usage_problem after the path, for its own reason code.
_ANY_USAGE = KeyUsageConstraints(key_usage=set())
# pyHanko reads a PDF hex string one character at a time (about 1 µs each, 2 ms a KiB of signature):
# a signature's /Contents is measured before it is read. A CMS signature with its chain and a
# timestamp is a few KiB; with CRLs embedded (revocationInfoArchival), tens to a few hundred.
MAX_SIGNATURE_BYTES = 256 * 1024
_CONTENTS = re.compile(rb"/Contents\s*<(?!<)")


async def verify_pdf(body: bytes, trust: TrustStore) -> Verdict:
    """The verdict on the signatures embedded in a PDF document."""
    oversized = _oversized_contents(body)
    if oversized is not None:
        return Verdict("pades", False, "unsupported", oversized)
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
        oversized = _oversized(signature.signed_data)
        if oversized is not None:
            return Verdict(fmt, False, "unsupported", oversized)
        at = await _signing_time(signature.signer_info, signature.compute_digest, trust,
                                 fallback=signature.self_reported_timestamp)
        # pyHanko keeps what it extracts from the embedded signature: read the certificates once.
        problem, pinned = await _judge_signer(signature.signer_cert, signature.other_embedded_certs, at,
                                              trust)
        status = await async_validate_pdf_signature(
            signature, signer_validation_context=pinned,
            ts_validation_context=_ts_context(signature.signer_info, trust, pinned),
            key_usage_settings=_ANY_USAGE)
    except (SignatureValidationError, PdfError, ValueError, KeyError) as exc:
        return Verdict(fmt, False, "unsupported", f"the PDF signature could not be verified: {exc}")
    verdict = _verdict(fmt, status, at, _byte_range_digest(signature, body), problem)
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
        oversized = _oversized(signed_data)
        if oversized is not None:
            return Verdict("cms", False, "unsupported", oversized)
        signed = content if content is not None else bytes(inner)  # as pyHanko reads it
        at = await _signing_time(signer_info, lambda algorithm: _hash(algorithm, signed), trust)
        certs = extract_certs_for_validation(signed_data)
        problem, pinned = await _judge_signer(certs.signer_cert, certs.other_certs, at, trust)
        if content is not None:
            status: SignatureStatus = await async_validate_detached_cms(
                content, signed_data, signer_validation_context=pinned,
                ts_validation_context=_ts_context(signer_info, trust, pinned), key_usage_settings=_ANY_USAGE)
        else:
            status = await async_validate_cms_signature(signed_data, validation_context=pinned,
                                                        key_usage_settings=_ANY_USAGE)
    except (SignatureValidationError, ValueError, KeyError, TypeError, IndexError) as exc:
        return Verdict("cms", False, "unsupported", f"the CMS signature could not be read: {exc}")
    return _verdict("cms", status, at, hashlib.sha256(signed).hexdigest(), problem)


def _oversized_contents(body: bytes) -> str | None:
    """Why a hex string after a /Contents key is too long to be read, or None."""
    for found in _CONTENTS.finditer(body):
        end = body.find(b">", found.end())
        length = (len(body) if end < 0 else end) - found.end()
        if length > 2 * MAX_SIGNATURE_BYTES:
            return (f"a signature's /Contents holds {length} hexadecimal characters; at most "
                    f"{2 * MAX_SIGNATURE_BYTES} ({MAX_SIGNATURE_BYTES // 1024} KiB) are read")
    return None


def _oversized(signed_data: cms.SignedData) -> str | None:
    certificates = signed_data["certificates"]
    return too_many_certificates(0 if certificates is core.VOID else len(certificates))


async def _judge_signer(signer: x509.Certificate, others: Iterable[x509.Certificate], at: SigningTime,
                        trust: TrustStore) -> tuple[Problem | None, ValidationContext]:
    """The trust store's answer on the signer (path, validity, revocation, usage, key size; cached),
    and the context pyHanko checks the signature with: the signer pinned as its only anchor."""
    problem = await trust.check(signer, list(others), at)
    return problem, trust.pinned(signer, at.moment)


def _ts_context(signer_info: cms.SignerInfo, trust: TrustStore,
                pinned: ValidationContext) -> ValidationContext:
    """The whole trust store for a signature timestamp's authority; without one, nothing to build."""
    unsigned = signer_info["unsigned_attrs"]
    stamped = unsigned is not core.VOID and any(
        attr["type"].native == "signature_time_stamp_token" for attr in unsigned)
    return trust.context() if stamped else pinned


async def _signing_time(signer_info: cms.SignerInfo, digest: Callable[[str], bytes], trust: TrustStore,
                        fallback: datetime | None = None) -> SigningTime:
    """The time to judge at: the signature timestamp's if it verifies, else the signed claim."""
    # The store's context is only for a timestamp's authority: not built for a signature without one.
    context = trust.context() if _has_timestamp(signer_info) else None
    timing: dict[str, Any] = await collect_timing_info(signer_info, context, raw_digest=digest)
    stamp = timing.get("timestamp_validity")
    stamped = stamp.timestamp if stamp is not None and _sound(stamp) else None
    return trust.signing_time(claimed=timing.get("signer_reported_dt") or fallback, stamped=stamped)


def _has_timestamp(signer_info: cms.SignerInfo) -> bool:
    """Whether the signature carries an RFC 3161 token: a signature timestamp or a content one."""
    return any(next(extract_tst_data_iter(signer_info, signed=signed), None) is not None
               for signed in (False, True))


def _verdict(fmt: Format, status: SignatureStatus, at: SigningTime, digest: str,
             problem: Problem | None) -> Verdict:
    cert = status.signing_cert
    evidence: dict[str, Any] = {
        **identity(cert), "signing_time": at.moment or datetime.now(UTC), "time_source": at.source,
        "algorithm": f"{status.pkcs7_signature_mechanism}/{status.md_algorithm}", "digest": digest}
    if not status.intact:
        return Verdict(fmt, False, "digest-mismatch", "the signed content was changed", **evidence)
    if not status.valid:
        return Verdict(fmt, False, "bad-signature", "the signature does not verify", **evidence)
    if problem is None and not status.trusted:  # the signer pinned: an algorithm pyHanko refuses
        problem = problem_from_ades(status.trust_problem_indic, cert, evidence["signing_time"])
    if problem is not None:
        return Verdict(fmt, False, problem.reason, problem.message, **evidence)
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
    """SHA-256 of exactly the bytes the signature covers (its /ByteRange): pyHanko's own, which it
    keeps, when the signature is made with SHA-256 (a megabyte is not hashed twice)."""
    known = signature.external_digests.get("sha256")
    if known is not None:
        return bytes(known).hex()
    start1, length1, start2, length2 = (int(n) for n in signature.byte_range)
    digest = hashlib.sha256()
    view = memoryview(body)
    digest.update(view[start1:start1 + length1])
    digest.update(view[start2:start2 + length2])
    return digest.hexdigest()


def _hash(algorithm: str, data: bytes) -> bytes:
    digest = hashes.Hash(get_pyca_cryptography_hash(algorithm))
    digest.update(data)
    return digest.finalize()

