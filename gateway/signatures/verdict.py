"""The outcome of verifying one signature: what was signed, by whom, when, and whether it holds.

A ``Verdict`` is evidence for the audit record (``as_record``) and, with ``valid`` false, the
reason a dossier is refused. ``reason`` comes from a closed set so that refusals and reports can
name it; ``message`` is for people and never parsed.

Personal data: ``subject`` is the signer certificate's subject. For an officer's or an agency's
certificate that is an organisation and a role; for a citizen's it names the citizen (their full
name, often an id number in ``serialNumber`` or ``UID``). It is kept because it is the evidence of
who signed, and it is the only personal data a verdict carries: no document content, no payload
fields, only the SHA-256 of what was signed.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

__all__ = ["FORMATS", "REASONS", "Format", "Reason", "TimeSource", "Verdict"]

Format = Literal["xmldsig", "xades", "pades", "cms", "jws"]
Reason = Literal["ok", "no-signature", "bad-signature", "digest-mismatch", "untrusted", "expired",
                 "not-yet-valid", "revoked", "wrong-usage", "unsupported"]
# Where signing_time came from: a verified RFC 3161 timestamp, the signer's own signed claim
# (XAdES SigningTime, CMS signingTime, PDF /M, JAdES sigT), or the moment of verification.
TimeSource = Literal["timestamp", "claimed", "verification"]

FORMATS: tuple[Format, ...] = ("xmldsig", "xades", "pades", "cms", "jws")
REASONS: tuple[Reason, ...] = ("ok", "no-signature", "bad-signature", "digest-mismatch", "untrusted",
                               "expired", "not-yet-valid", "revoked", "wrong-usage", "unsupported")


@dataclass(frozen=True, slots=True)
class Verdict:
    format: Format | None  # None only when the content type names no signature format at all
    valid: bool
    reason: Reason
    message: str
    subject: str | None = None  # RFC 4514, as in the certificate (personal data for a citizen)
    serial: str | None = None  # hexadecimal: serials exceed what JSON numbers hold exactly
    issuer: str | None = None
    signing_time: datetime | None = None
    time_source: TimeSource | None = None
    algorithm: str | None = None
    digest: str | None = None  # SHA-256 (hex) of the signed content, whatever the signature's own hash

    def __post_init__(self) -> None:
        if self.reason not in REASONS:
            raise ValueError(f"unknown reason {self.reason!r}")
        if self.valid != (self.reason == "ok"):
            raise ValueError(f"a verdict with reason {self.reason!r} cannot have valid={self.valid}")

    def as_record(self) -> dict[str, Any]:
        """The verdict as a small JSON object for the audit record (camelCase, times in UTC with Z)."""
        return {
            "format": self.format,
            "valid": self.valid,
            "reason": self.reason,
            "signer": None if self.subject is None else {
                "subject": self.subject, "serial": self.serial, "issuer": self.issuer},
            "signingTime": _utc(self.signing_time),
            "timeSource": self.time_source,
            "algorithm": self.algorithm,
            "digest": None if self.digest is None else {"sha256": self.digest},
        }


def _utc(moment: datetime | None) -> str | None:
    if moment is None:
        return None
    return moment.astimezone(UTC).replace(tzinfo=None).isoformat(timespec="seconds") + "Z"
