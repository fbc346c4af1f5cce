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
the licensed CAs issue has one), and an RSA key of at least 2048 bits (``unsupported`` below; the
CAs' own keys are held to the same by certvalidator's algorithm policy, as SHA-1 and MD5 are).

**Caching.** ``check`` keeps its answers in a bounded LRU (``cache_size`` entries, per store) keyed
by the signer's and the offered certificates' SHA-256, the stapled revocation data's SHA-256, and
the hour of the signing time. An answer is reused only for a moment between the same two "events"
around the moment it was computed for: every ``notBefore``/``notAfter`` of the certificates
involved (the chain offered, the anchors, the intermediates), every ``thisUpdate``/``nextUpdate``
and revocation date of the CRLs and OCSP responses on file or stapled (less certvalidator's
one-second tolerance either side). Between two such events the path, validity and revocation
answers cannot change: the store is immutable, and nothing is fetched. So a repeated signer costs a
hash and a dictionary look-up, a revocation still refuses from its date on, and a new CRL (a new
``TrustStore``, at restart) starts from an empty cache. The anchor ``pinned`` makes of a signer is
kept too (``cache_size`` of them, by the certificate's DER): it depends on nothing else.
"""

from __future__ import annotations

import bisect
import hashlib
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from pathlib import Path
from typing import Literal, TypeVar

from asn1crypto import crl, ocsp, pem, x509
from cryptography import x509 as crypto_x509
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.serialization import Encoding
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
from pyhanko_certvalidator.registry import SimpleTrustManager

from gateway.signatures.verdict import Reason, TimeSource

__all__ = ["MAX_CERTIFICATES", "MIN_RSA_BITS", "SIGNER_USAGE", "CacheInfo", "PathCache", "Problem",
           "RevocationMode", "SigningTime", "TrustStore", "TrustStoreError", "identity", "key_problem",
           "load_certificate", "problem_from_ades", "too_many_certificates", "usage_problem"]

RevocationMode = Literal["soft-fail", "hard-fail", "require"]
_CERT_SUFFIXES = {".pem", ".crt", ".cer", ".der"}
# At least one of them (pyHanko's "match any"); the extension itself is required.
_Parsed = TypeVar("_Parsed", x509.Certificate, crl.CertificateList, ocsp.OCSPResponse)
SIGNER_USAGE = KeyUsageConstraints(key_usage={"digital_signature", "non_repudiation"},
                                   match_all_key_usages=False)
MIN_RSA_BITS = 2048
# Certificates a signature may carry (X509Data, x5c, the CMS set): real chains hold 2 to 4; more is
# a path-building bomb, refused before any parsing of them.
MAX_CERTIFICATES = 10
# certvalidator's default time tolerance: a moment this close to an event may be judged either way.
_TOLERANCE = timedelta(seconds=1)
_HOUR = 3600
_MAX_KEPT_DER = 16_384  # certificates larger than this are not kept by the identity cache


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
class CacheInfo:
    """How the path cache of a store has done: hits, misses, entries held and the bound."""

    hits: int
    misses: int
    size: int
    maxsize: int


@dataclass(frozen=True, slots=True)
class _Answer:
    problem: Problem | None
    start: datetime  # the answer holds for moments in [start, end)
    end: datetime


_Key = tuple[bytes, tuple[bytes, ...], tuple[bytes, ...], int]


class PathCache:
    """A bounded LRU of ``TrustStore.check`` answers, each with the span of moments it holds for."""

    def __init__(self, maxsize: int) -> None:
        self.maxsize = maxsize
        self._entries: OrderedDict[_Key, _Answer] = OrderedDict()
        self._lock = threading.Lock()  # verify() may run in worker threads (asyncio.to_thread)
        self.hits = 0
        self.misses = 0

    def get(self, key: _Key, moment: datetime) -> _Answer | None:
        with self._lock:
            answer = self._entries.get(key)
            if answer is None or not answer.start <= moment < answer.end:
                self.misses += 1
                return None
            self._entries.move_to_end(key)
            self.hits += 1
            return answer

    def put(self, key: _Key, answer: _Answer) -> None:
        if self.maxsize <= 0:
            return
        with self._lock:
            self._entries[key] = answer
            self._entries.move_to_end(key)
            while len(self._entries) > self.maxsize:
                self._entries.popitem(last=False)

    def info(self) -> CacheInfo:
        with self._lock:
            return CacheInfo(self.hits, self.misses, len(self._entries), self.maxsize)


@dataclass(frozen=True, slots=True)
class TrustStore:
    anchors: tuple[x509.Certificate, ...]
    intermediates: tuple[x509.Certificate, ...] = ()
    crls: tuple[crl.CertificateList, ...] = ()
    ocsps: tuple[ocsp.OCSPResponse, ...] = ()
    revocation_mode: RevocationMode = "hard-fail"
    claimed_time: bool = True
    cache_size: int = 4096  # path-validation answers kept (0: none)
    _weak_hashes: frozenset[str] = field(default=frozenset({"md2", "md5", "sha1"}), repr=False)
    # Not init fields: dataclasses.replace() makes a store with its own, empty cache.
    _cache: PathCache = field(init=False, repr=False, compare=False)
    # Trust managers whose only anchor is one signer's certificate, by its DER (``cache_size`` of
    # them): registering an anchor parses its names and keys, a quarter of a millisecond a signer. A
    # manager is only read once built, so contexts in several threads may share it.
    _pinned: Callable[[bytes], SimpleTrustManager] = field(init=False, repr=False, compare=False)
    _events: tuple[datetime, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_cache", PathCache(self.cache_size))
        object.__setattr__(self, "_pinned", lru_cache(maxsize=self.cache_size)(_pinned_manager))
        object.__setattr__(self, "_events", tuple(sorted(
            {*_cert_events([*self.anchors, *self.intermediates]), *_revinfo_events(self.crls, self.ocsps)})))

    @classmethod
    def load(cls, anchors: Path, *, revocation: Path | None = None, intermediates: Path | None = None,
             revocation_mode: RevocationMode = "hard-fail", claimed_time: bool = True,
             cache_size: int = 4096) -> TrustStore:
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
                   ocsps=tuple(ocsps), revocation_mode=revocation_mode, claimed_time=claimed_time,
                   cache_size=cache_size)

    def context(self, moment: datetime | None = None, *, crls: Iterable[crl.CertificateList] = (),
                ocsps: Iterable[ocsp.OCSPResponse] = ()) -> ValidationContext:
        """A fresh validation context at ``moment`` (now when None), with stapled revocation data added."""
        return ValidationContext(
            trust_roots=list(self.anchors), other_certs=list(self.intermediates), moment=moment,
            allow_fetching=False, crls=[*self.crls, *crls], ocsps=[*self.ocsps, *ocsps],
            revocation_mode=self.revocation_mode, retroactive_revinfo=True,
            weak_hash_algos=set(self._weak_hashes))

    def pinned(self, signer: x509.Certificate, moment: datetime | None) -> ValidationContext:
        """A context whose only anchor is ``signer``, for checking a signature's cryptography once
        ``check`` has judged that signer: pyHanko then builds no path. Nothing is fetched, the same
        algorithm policy holds. The anchor is kept per certificate (``cache_size`` of them)."""
        return ValidationContext(trust_manager=self._pinned(signer.dump()), moment=moment,
                                 allow_fetching=False, revocation_mode="soft-fail",
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
        """Path, validity at ``at``, revocation, key usage and key size of a signer; None when all
        hold. Answers are cached (see the module's text)."""
        stapled_crls, stapled_ocsps = list(crls), list(ocsps)
        moment = at.moment or datetime.now(UTC)
        key: _Key = (_sha256(signer), tuple(_sha256(cert) for cert in others),
                     tuple(_sha256(item) for item in [*stapled_crls, *stapled_ocsps]),
                     int(moment.timestamp()) // _HOUR)
        cached = self._cache.get(key, moment)
        if cached is not None:
            return cached.problem
        problem = await self._check(signer, others, at.moment, stapled_crls, stapled_ocsps)
        start, end = self._span(moment, [signer, *others], stapled_crls, stapled_ocsps)
        if start <= moment < end:
            self._cache.put(key, _Answer(problem, start, end))
        return problem

    def cache_info(self) -> CacheInfo:
        """Hits, misses and size of the path cache."""
        return self._cache.info()

    async def _check(self, signer: x509.Certificate, others: Sequence[x509.Certificate],
                     moment: datetime | None, crls: list[crl.CertificateList],
                     ocsps: list[ocsp.OCSPResponse]) -> Problem | None:
        context = self.context(moment, crls=crls, ocsps=ocsps)
        validator = CertificateValidator(signer, list(others), validation_context=context)
        try:
            await validator.async_validate_path()
        except ValidationError as exc:
            return _problem(exc)
        except PathBuildingError as exc:
            return Problem("untrusted", f"no path to a trusted CA: {exc}")
        return usage_problem(signer) or key_problem(signer)

    def _span(self, moment: datetime, certs: Sequence[x509.Certificate], crls: list[crl.CertificateList],
              ocsps: list[ocsp.OCSPResponse]) -> tuple[datetime, datetime]:
        """The moments around ``moment`` for which the answer cannot differ: between the nearest
        validity, update or revocation times either side, less the tolerance."""
        before, after = datetime.min.replace(tzinfo=UTC), datetime.max.replace(tzinfo=UTC)
        # The store's events are sorted once (a large CRL lists many dates); the signature's few here.
        for events in (self._events, sorted({*_cert_events(certs), *_revinfo_events(crls, ocsps)})):
            at = bisect.bisect_right(events, moment)
            if at > 0:
                before = max(before, events[at - 1])
            if at < len(events):
                after = min(after, events[at])
        start = before + _TOLERANCE if before.year > 1 else before
        end = after - _TOLERANCE if after.year < 9999 else after
        return start, end


def usage_problem(signer: x509.Certificate) -> Problem | None:
    """``wrong-usage`` unless the certificate may sign (digitalSignature or nonRepudiation)."""
    try:
        SIGNER_USAGE.validate(signer)
    except ValidationError as exc:
        return Problem("wrong-usage", f"the signer's certificate is not for signing: {exc}")
    return None


def too_many_certificates(count: int) -> str | None:
    """Why a signature carrying ``count`` certificates is refused, or None."""
    if count > MAX_CERTIFICATES:
        return f"the signature carries {count} certificates; at most {MAX_CERTIFICATES} are accepted"
    return None


def key_problem(signer: x509.Certificate) -> Problem | None:
    """``unsupported`` for an RSA key under ``MIN_RSA_BITS`` bits: forgeable, whoever certified it."""
    public = crypto_x509.load_der_x509_certificate(signer.dump()).public_key()
    if isinstance(public, rsa.RSAPublicKey) and public.key_size < MIN_RSA_BITS:
        return Problem("unsupported", f"the signer's RSA key has {public.key_size} bits; at least "
                       f"{MIN_RSA_BITS} are required")
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


def _pinned_manager(der: bytes) -> SimpleTrustManager:
    return SimpleTrustManager.build(trust_roots=[x509.Certificate.load(der)])


def _sha256(item: x509.Certificate | crl.CertificateList | ocsp.OCSPResponse) -> bytes:
    return hashlib.sha256(item.dump()).digest()


def _cert_events(certs: Iterable[x509.Certificate]) -> list[datetime]:
    return [moment for cert in certs for moment in (cert.not_valid_before, cert.not_valid_after)]


def _revinfo_events(crls: Iterable[crl.CertificateList],
                    ocsps: Iterable[ocsp.OCSPResponse]) -> list[datetime]:
    """Every time at which what the revocation data say about some moment changes."""
    found: list[datetime] = []
    for item in crls:
        tbs = item["tbs_cert_list"]
        found += [tbs["this_update"].native, tbs["next_update"].native]
        found += [entry["revocation_date"].native for entry in tbs["revoked_certificates"]]
    for response in ocsps:
        basic = response.basic_ocsp_response
        if basic is None:
            continue
        data = basic["tbs_response_data"]
        found.append(data["produced_at"].native)
        for single in data["responses"]:
            found += [single["this_update"].native, single["next_update"].native]
            status = single["cert_status"]
            if status.name == "revoked":
                found.append(status.chosen["revocation_time"].native)
    return [moment for moment in found if isinstance(moment, datetime)]


def identity(cert: x509.Certificate | crypto_x509.Certificate) -> dict[str, str]:
    """Subject and issuer as RFC 4514 strings, serial in hexadecimal: the verdict's signer fields."""
    der = cert.public_bytes(Encoding.DER) if isinstance(cert, crypto_x509.Certificate) else cert.dump()
    subject, serial, issuer = _names(der) if len(der) > _MAX_KEPT_DER else _kept_names(der)
    return {"subject": subject, "serial": serial, "issuer": issuer}


def _names(der: bytes) -> tuple[str, str, str]:
    parsed = crypto_x509.load_der_x509_certificate(der)
    return parsed.subject.rfc4514_string(), format(parsed.serial_number, "x"), parsed.issuer.rfc4514_string()


# The same signers come back all day: their names are formatted once (an outsized one every time).
_kept_names = lru_cache(maxsize=1024)(_names)


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
