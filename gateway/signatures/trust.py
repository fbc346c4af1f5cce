"""The trust store: which CAs the gateway trusts, what it knows of revocation, and the checks on a signer.

Everything is read from files at start; nothing is ever fetched (``allow_fetching=False``), so a CRL
distribution point, an OCSP responder or a CA-issuers URL inside a certificate is never contacted.

- **Anchors**: every certificate in the anchors folder (PEM, several per file allowed, or DER) is a
  trust anchor, self-signed or not: trusting one sub-CA (the government CA's signing CA, say)
  without trusting all of its siblings under the national root is then a matter of which files
  are there.
- **Intermediates** (optional folder): certificates offered to path building but not trusted;
  most signatures carry their own chain anyway.
- **Revocation** (optional folder): ``*.crl`` (PEM or DER) and ``*.ocsp`` (DER OCSP responses the
  operator cached). Responses stapled to a signature are added per verification. With the default
  ``hard-fail`` mode a certificate that names a CRL or OCSP location for which no usable (signed,
  current) information is on file is refused as ``untrusted``; ``require`` wants information for
  every certificate of the path; ``soft-fail`` checks what is there and passes the rest.

The path (RFC 5280) is validated by pyhanko-certvalidator at the **signing time**: a trusted RFC
3161 timestamp's time when there is one, else the signer's own signed claim (when ``claimed_time``
is on, the default), else now. A claimed time is only what the signer says: a holder of a key whose
certificate has expired or been revoked can claim an earlier time. ``claimed_time=False`` closes
that by validating at the timestamp's time or now. Revocation information issued after the signing
time is used (``retroactive_revinfo``): a revocation dated before the signing time refuses, one dated
after does not.

The signer's certificate must carry the key usage extension with ``digitalSignature`` or
``nonRepudiation`` (a certificate without the extension is refused too: every signing certificate
the licensed CAs issue has one).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Literal, TypeVar

from asn1crypto import crl, ocsp, pem, x509
from cryptography import x509 as crypto_x509
from pyhanko.sign.ades.report import AdESFailure, AdESIndeterminate, AdESSubIndic
from pyhanko.sign.validation.settings import KeyUsageConstraints
from pyhanko_certvalidator import CertificateValidator, ValidationContext
from pyhanko_certvalidator.errors import (
    DisallowedAlgorithmError,
    ExpiredError,
    InsufficientRevinfoError,
    NotYetValidError,
    PathBuildingError,
    RevokedError,
    ValidationError,
)

from gateway.signatures.verdict import Reason, TimeSource

__all__ = ["SIGNER_USAGE", "Problem", "RevocationMode", "SigningTime", "TrustStore", "TrustStoreError",
           "identity", "load_certificate", "problem_from_ades", "usage_problem"]

RevocationMode = Literal["soft-fail", "hard-fail", "require"]
_CERT_SUFFIXES = {".pem", ".crt", ".cer", ".der"}
# At least one of them (pyHanko's "match any"); the extension itself is required.
_Parsed = TypeVar("_Parsed", x509.Certificate, crl.CertificateList, ocsp.OCSPResponse)
SIGNER_USAGE = KeyUsageConstraints(key_usage={"digital_signature", "non_repudiation"},
                                   match_all_key_usages=False)


class TrustStoreError(ValueError):
    """A file of the trust store could not be read; the message names it."""


@dataclass(frozen=True, slots=True)
class Problem:
    """Why a signer is not accepted: a verdict's reason and its message."""

    reason: Reason
    message: str


@dataclass(frozen=True, slots=True)
class SigningTime:
    """The time a signature is judged at; ``moment`` None means now."""

    moment: datetime | None
    source: TimeSource


@dataclass(frozen=True, slots=True)
class TrustStore:
    anchors: tuple[x509.Certificate, ...]
    intermediates: tuple[x509.Certificate, ...] = ()
    crls: tuple[crl.CertificateList, ...] = ()
    ocsps: tuple[ocsp.OCSPResponse, ...] = ()
    revocation_mode: RevocationMode = "hard-fail"
    claimed_time: bool = True
    _weak_hashes: frozenset[str] = field(default=frozenset({"md2", "md5", "sha1"}), repr=False)

    @classmethod
    def load(cls, anchors: Path, *, revocation: Path | None = None, intermediates: Path | None = None,
             revocation_mode: RevocationMode = "hard-fail", claimed_time: bool = True) -> TrustStore:
        """Read the folders; an unreadable file is a ``TrustStoreError``, an empty anchors folder too."""
        roots = tuple(_certificates(anchors))
        if not roots:
            raise TrustStoreError(f"{anchors}: no CA certificate found (.pem, .crt, .cer, .der)")
        crls: list[crl.CertificateList] = []
        ocsps: list[ocsp.OCSPResponse] = []
        for path in _files(revocation, {".crl", ".ocsp"}):
            if path.suffix.lower() == ".crl":
                crls.extend(_parse(path, crl.CertificateList))
            else:
                ocsps.extend(_parse(path, ocsp.OCSPResponse))
        return cls(anchors=roots, intermediates=tuple(_certificates(intermediates)), crls=tuple(crls),
                   ocsps=tuple(ocsps), revocation_mode=revocation_mode, claimed_time=claimed_time)

    def context(self, moment: datetime | None = None, *, crls: Iterable[crl.CertificateList] = (),
                ocsps: Iterable[ocsp.OCSPResponse] = ()) -> ValidationContext:
        """A fresh validation context at ``moment`` (now when None), with stapled revocation data added."""
        return ValidationContext(
            trust_roots=list(self.anchors), other_certs=list(self.intermediates), moment=moment,
            allow_fetching=False, crls=[*self.crls, *crls], ocsps=[*self.ocsps, *ocsps],
            revocation_mode=self.revocation_mode, retroactive_revinfo=True,
            weak_hash_algos=set(self._weak_hashes))

    def signing_time(self, *, claimed: datetime | None = None,
                     stamped: datetime | None = None) -> SigningTime:
        """The time to judge at: a verified timestamp's, else the signer's claim (if trusted), else now."""
        if stamped is not None:
            return SigningTime(stamped, "timestamp")
        if claimed is not None and self.claimed_time:
            return SigningTime(claimed, "claimed")
        return SigningTime(None, "verification")

    async def check(self, signer: x509.Certificate, others: Sequence[x509.Certificate], at: SigningTime,
                    *, crls: Iterable[crl.CertificateList] = (),
                    ocsps: Iterable[ocsp.OCSPResponse] = ()) -> Problem | None:
        """Path, validity at ``at``, revocation and key usage of a signer; None when all hold."""
        context = self.context(at.moment, crls=crls, ocsps=ocsps)
        validator = CertificateValidator(signer, list(others), validation_context=context)
        try:
            await validator.async_validate_path()
        except ValidationError as exc:
            return _problem(exc)
        except PathBuildingError as exc:
            return Problem("untrusted", f"no path to a trusted CA: {exc}")
        return usage_problem(signer)


def usage_problem(signer: x509.Certificate) -> Problem | None:
    """``wrong-usage`` unless the certificate may sign (digitalSignature or nonRepudiation)."""
    try:
        SIGNER_USAGE.validate(signer)
    except ValidationError as exc:
        return Problem("wrong-usage", f"the signer's certificate is not for signing: {exc}")
    return None


def problem_from_ades(indication: AdESSubIndic | None, signer: x509.Certificate,
                      at: datetime) -> Problem:
    """pyHanko reports trust failures as ETSI EN 319 102-1 sub-indications: name them as reasons."""
    label = getattr(indication, "name", "unknown")
    if indication in (AdESIndeterminate.REVOKED_NO_POE, AdESIndeterminate.REVOKED_CA_NO_POE,
                      AdESFailure.REVOKED):
        return Problem("revoked", f"a certificate of the path is revoked ({label})")
    if indication in (AdESIndeterminate.CRYPTO_CONSTRAINTS_FAILURE,
                      AdESIndeterminate.CRYPTO_CONSTRAINTS_FAILURE_NO_POE):
        return Problem("unsupported", f"an algorithm of the certificate path is not accepted ({label})")
    # certvalidator's not-yet-valid and an expired CA arrive as general failures: the dates tell.
    if indication is AdESFailure.NOT_YET_VALID or at < signer.not_valid_before:
        return Problem("not-yet-valid", f"the signer's certificate was not yet valid at {at.isoformat()}")
    if at > signer.not_valid_after or indication in (
            AdESIndeterminate.OUT_OF_BOUNDS_NO_POE, AdESIndeterminate.OUT_OF_BOUNDS_NOT_REVOKED,
            AdESIndeterminate.EXPIRED):
        return Problem("expired", f"a certificate of the path had expired at {at.isoformat()} ({label})")
    return Problem("untrusted", f"the signer's certificate does not lead to a trusted CA ({label})")


def _problem(exc: ValidationError) -> Problem:
    # Most specific first: all of these are path validation errors.
    if isinstance(exc, RevokedError):
        return Problem("revoked", exc.failure_msg)
    if isinstance(exc, ExpiredError):
        return Problem("expired", exc.failure_msg)
    if isinstance(exc, NotYetValidError):
        return Problem("not-yet-valid", exc.failure_msg)
    if isinstance(exc, InsufficientRevinfoError):
        return Problem("untrusted", f"revocation status unknown: {exc.failure_msg}")
    if isinstance(exc, DisallowedAlgorithmError):
        return Problem("unsupported", exc.failure_msg)
    return Problem("untrusted", exc.failure_msg)


def identity(cert: x509.Certificate) -> dict[str, str]:
    """Subject and issuer as RFC 4514 strings, serial in hexadecimal: the verdict's signer fields."""
    parsed = crypto_x509.load_der_x509_certificate(cert.dump())
    return {"subject": parsed.subject.rfc4514_string(), "serial": format(parsed.serial_number, "x"),
            "issuer": parsed.issuer.rfc4514_string()}


def load_certificate(data: bytes) -> x509.Certificate:
    """One certificate, DER or PEM."""
    if pem.detect(data):
        _, _, data = pem.unarmor(data)
    return x509.Certificate.load(data)


def _files(folder: Path | None, suffixes: set[str]) -> list[Path]:
    if folder is None:
        return []
    if not folder.is_dir():
        raise TrustStoreError(f"{folder}: not a folder")
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in suffixes)


def _certificates(folder: Path | None) -> list[x509.Certificate]:
    return [cert for path in _files(folder, _CERT_SUFFIXES) for cert in _parse(path, x509.Certificate)]


def _parse(path: Path, kind: type[_Parsed]) -> list[_Parsed]:
    data = path.read_bytes()
    try:
        blobs = [der for _, _, der in pem.unarmor(data, multiple=True)] if pem.detect(data) else [data]
        parsed = [kind.load(blob) for blob in blobs]
        for item in parsed:
            item.native  # noqa: B018 - asn1crypto parses lazily: force it here, not mid-verification
    except (ValueError, TypeError) as exc:
        raise TrustStoreError(f"{path}: not a readable {kind.__name__}: {exc}") from exc
    return parsed
