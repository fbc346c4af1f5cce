"""One audit record per exchange, and its leaf: the RFC 8785 canonical JSON that gets hashed.

The record names who (client, acting official, represented party), what (service, operation), why
(purpose), when, the outcome and status, the rule that decided, timings, the SHA-256 and size of the
bodies exchanged with the client and with the upstream, the data subjects as keyed hashes, and the
path and query the client added after the service (what it asked for, so that an auditor sees it),
and for a message addressed to an agency (a routed dossier, a former agency's service) the agency
addressed and the one that got it, its successor when it is former (gateway/agencies.py), and
where the service or rule asks for signed requests, the verdict on the request's signature
(gateway/signatures: signer, signing time, algorithm, digest of the signed content, reason).
Personal ids from bodies never appear in clear: ``subjects`` holds HMAC-SHA-256 values only; a URL
is recorded as sent, which is why clients put no personal id in one (docs/exchange.md).
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import orjson
import rfc8785

LEAF_VERSION = 1
_EPOCH = datetime(1970, 1, 1)  # naive on purpose: isoformat then has no offset, and "Z" follows
_SAFE_INT = (1 << 53) - 1  # RFC 8785 numbers are IEEE doubles: integers beyond this are refused
_MAX_URL_PART = 1024  # a path or query longer than this is kept cut (its digest is in the request's)
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
    path: str = ""  # the path the client added after the service's code, as forwarded
    query: str = ""  # the query string, as the client sent it
    agency: tuple[str, str] | None = None  # (addressed, actual) member ids of a message to an agency
    signature: dict[str, Any] | None = None  # the verdict on the request's signature (Verdict.as_record)
    document: dict[str, Any] | None = None  # an edXML exchange: the document's id, kind and digests

    def leaf(self) -> bytes:
        """The canonical JSON bytes of this record: what the log stores and hashes."""
        doc: dict[str, Any] = {
            "v": LEAF_VERSION,
            "id": self.exchange_id,
            "time": leaf_time(self.ts_us),
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
        # Only when there is one, so that the leaves of plain calls keep their bytes.
        if self.path:
            doc["path"] = self.path[:_MAX_URL_PART]
        if self.query:
            doc["query"] = self.query[:_MAX_URL_PART]
        if self.agency is not None:
            doc["agency"] = {"addressed": self.agency[0], "actual": self.agency[1]}
        if self.signature is not None:
            doc["signature"] = self.signature
        if self.document is not None:
            doc["document"] = self.document
        numbers = [self.status, self.total_us, self.upstream_us, self.request.size,
                   self.response.size]
        for digest in (self.upstream_request, self.upstream_response):
            if digest is not None:
                numbers.append(digest.size)
        return canonical_json(doc, numbers)


def leaf_time(ts_us: int) -> str:
    """How a leaf writes its time: RFC 3339 in UTC with microseconds, e.g. 2026-01-02T03:04:05.000006Z."""
    seconds, micros = divmod(ts_us, 1_000_000)
    prefix = _SECONDS.get(seconds)
    if prefix is None:
        if len(_SECONDS) > 4096:
            _SECONDS.clear()
        prefix = _SECONDS[seconds] = (_EPOCH + timedelta(seconds=seconds)).isoformat()
    return f"{prefix}.{micros:06d}Z"


_SECONDS: dict[int, str] = {}  # leaf_time's cache: many leaves share a second


def canonical_json(doc: dict[str, Any], numbers: Iterable[int | None]) -> bytes:
    """RFC 8785 canonical JSON of a leaf document whose integers are all among ``numbers``.

    For what a leaf holds (ASCII keys; strings, integers within ±2**53, booleans, null, lists and
    objects) orjson with sorted keys writes exactly the RFC 8785 bytes, thirty times faster than a
    general JCS encoder: the same minimal escapes, raw UTF-8, and key order by code point, which
    equals RFC 8785's UTF-16 order for ASCII keys. A document outside that goes to the general
    encoder (``rfc8785``), which refuses what JCS cannot represent. tests/test_audit_record.py
    cross-checks the two.
    """
    if all(n is None or -_SAFE_INT <= n <= _SAFE_INT for n in numbers):
        try:
            return orjson.dumps(doc, option=orjson.OPT_SORT_KEYS)
        except orjson.JSONEncodeError:
            pass  # a lone surrogate, say: let the general encoder name the problem
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
