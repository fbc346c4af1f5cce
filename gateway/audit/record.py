"""One audit record per exchange, and its leaf: the RFC 8785 canonical JSON that gets hashed.

The record names who (client, acting official, represented party), what (service, operation), why
(purpose), when, the outcome and status, the rule that decided, timings, the SHA-256 and size of the
bodies exchanged with the client and with the upstream, and the data subjects as keyed hashes.
Personal ids never appear in clear: ``subjects`` holds HMAC-SHA-256 values only.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import rfc8785

LEAF_VERSION = 1
EMPTY_SHA256 = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"


@dataclass(frozen=True, slots=True)
class BodyDigest:
    sha256: str
    size: int

    @classmethod
    def of(cls, body: bytes) -> BodyDigest:
        return cls(hashlib.sha256(body).hexdigest(), len(body))

    def as_json(self) -> dict[str, Any]:
        return {"sha256": self.sha256, "size": self.size}


@dataclass(frozen=True, slots=True)
class AuditRecord:
    exchange_id: str
    ts_us: int  # when the exchange was received, microseconds since the epoch (UTC)
    protocol: str
    outcome: str  # "ok", "refused" (the caller's fault, 4xx) or "failed" (5xx)
    status: int
    client: str | None = None
    user_id: str | None = None
    represented_party: str | None = None
    purpose: str | None = None
    service: str | None = None
    operation: str | None = None
    rule: str | None = None
    error: str | None = None  # the X-Road style code of a refusal or failure
    total_us: int = 0
    upstream_us: int | None = None
    request: BodyDigest = BodyDigest(EMPTY_SHA256, 0)
    response: BodyDigest = BodyDigest(EMPTY_SHA256, 0)
    upstream_request: BodyDigest | None = None
    upstream_response: BodyDigest | None = None
    subjects: tuple[str, ...] = field(default=())  # HMAC hex digests

    def leaf(self) -> bytes:
        """The canonical JSON bytes of this record: what the log stores and hashes."""
        doc: dict[str, Any] = {
            "v": LEAF_VERSION,
            "id": self.exchange_id,
            "time": datetime.fromtimestamp(self.ts_us / 1e6, UTC).isoformat(timespec="microseconds")
            .replace("+00:00", "Z"),
            "protocol": self.protocol,
            "client": self.client,
            "userId": self.user_id,
            "representedParty": self.represented_party,
            "purpose": self.purpose,
            "service": self.service,
            "operation": self.operation,
            "outcome": self.outcome,
            "status": self.status,
            "rule": self.rule,
            "error": self.error,
            "timings": {"totalUs": self.total_us, "upstreamUs": self.upstream_us},
            "request": self.request.as_json(),
            "response": self.response.as_json(),
            "upstream": None if self.upstream_request is None else {
                "request": self.upstream_request.as_json(),
                "response": self.upstream_response.as_json() if self.upstream_response else None,
            },
            "subjects": sorted(self.subjects),
        }
        return rfc8785.dumps(doc)


class SubjectHasher:
    """Keyed hashes of personal ids: the same id always gives the same value, which cannot be
    turned back into the id without the gateway's key."""

    def __init__(self, key: bytes) -> None:
        if len(key) < 32:
            raise ValueError("the subject key must be at least 32 bytes")
        self._key = key

    def __call__(self, personal_id: str) -> str:
        return hmac.new(self._key, personal_id.strip().encode(), hashlib.sha256).hexdigest()
