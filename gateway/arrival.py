"""What every entry point reads the same way, whatever its dialect: the HTTP headers an exchange
carries (the token, the content type, X-Road's client, id, official, purpose and represented
party, the idempotency key, a detached signature, the W3C trace context) and the exchange id they propose.

REST (gateway/rest.py) and SOAP (gateway/soap/entry.py) read them here, so a header is named,
decoded and bounded in one place; SOAP then lets its envelope's X-Road header override them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from gateway.ids import new_id

__all__ = ["MAX_ID", "Arrival", "exchange_id"]

MAX_ID = 128  # X-Road ids are UUIDs; a longer or unprintable one proposed by a caller is replaced

_NAMES = {b"authorization": "authorization", b"content-type": "content_type",
          b"x-road-client": "client_header", b"x-road-id": "xroad_id", b"x-road-userid": "user_id",
          b"x-road-issue": "issue", b"x-road-represented-party": "represented_party",
          b"idempotency-key": "idempotency_key", b"x-jws-signature": "signature",
          b"traceparent": "traceparent", b"tracestate": "tracestate"}


@dataclass(frozen=True, slots=True)
class Arrival:
    authorization: str | None = None
    content_type: str = ""
    client_header: str | None = None  # X-Road-Client: must equal the token's client
    xroad_id: str | None = None  # X-Road-Id: the caller's id for the exchange, kept when sound
    user_id: str | None = None  # X-Road-UserId: the acting official
    issue: str | None = None  # X-Road-Issue: the purpose
    represented_party: str | None = None
    idempotency_key: str | None = None
    signature: str | None = None  # X-JWS-Signature: a detached JWS over the body (docs/signatures.md)
    traceparent: str | None = None  # W3C trace context: the caller's trace (gateway/tracing)
    tracestate: str | None = None

    @classmethod
    def read(cls, scope: Any) -> Arrival:
        """The headers of an ASGI request (latin-1, as HTTP sends them; the last one wins)."""
        found: dict[str, str] = {}
        for name, value in scope["headers"]:
            field = _NAMES.get(name)
            if field is not None:
                found[field] = value.decode("latin-1")
        return cls(**found)


def exchange_id(*proposed: str | None) -> str:
    """The first sound id a caller proposed (printable, at most ``MAX_ID`` characters), else a new
    one: the id is echoed in answers and logs, so it must not carry control characters."""
    for candidate in proposed:
        if candidate and len(candidate) <= MAX_ID and candidate.isprintable():
            return candidate
    return new_id()
