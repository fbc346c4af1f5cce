"""RFC 9457 problem details: how a ``GatewayError`` looks to a JSON client."""

from __future__ import annotations

from typing import Any

import orjson

from gateway.errors import GatewayError

PROBLEM_TYPE = "application/problem+json"


def problem(err: GatewayError, *, instance: str | None = None,
            exchange_id: str | None = None) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "type": f"urn:lienthong:problem:{err.type_slug}",
        "title": err.title,
        "status": err.status,
        "detail": err.detail,
        "code": err.code,
    }
    if instance:
        doc["instance"] = instance
    if exchange_id:
        doc["exchangeId"] = exchange_id
    doc.update({k: v for k, v in err.extra.items() if v is not None})
    return doc


def problem_bytes(err: GatewayError, **kwargs: Any) -> bytes:
    return orjson.dumps(problem(err, **kwargs))
