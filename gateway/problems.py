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
    for key, value in err.extra.items():
        if value is None:
            continue
        if key in doc:  # RFC 9457's members describe the gateway's answer: an upstream's own
            key = f"upstream{key[0].upper()}{key[1:]}"  # status (say) is kept beside them
        doc[key] = value
    return doc


def problem_bytes(err: GatewayError, **kwargs: Any) -> bytes:
    return orjson.dumps(problem(err, **kwargs))
