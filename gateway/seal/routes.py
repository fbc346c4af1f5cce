"""``GET /.well-known/seal-jwks.json``: the public keys of the gateway seal, for whoever receives
what the gateway seals (docs/signatures.md#gateway-seal)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response

from gateway.errors import ClientError
from gateway.openapi import problems

__all__ = ["JWKS_PATH", "router"]

JWKS_PATH = "/.well-known/seal-jwks.json"
router = APIRouter(tags=["Gateway seal"])

_JWKS_SCHEMA: dict[str, Any] = {
    "type": "object", "required": ["keys"],
    "properties": {"keys": {"type": "array", "items": {
        "type": "object", "required": ["kty", "kid", "use", "x5c"],
        "properties": {"kty": {"type": "string", "enum": ["EC", "RSA"]}, "kid": {"type": "string"},
                       "use": {"type": "string", "enum": ["sig"]},
                       "alg": {"type": "string", "enum": ["ES256", "RS256", "PS256"]},
                       "crv": {"type": "string"}, "x": {"type": "string"}, "y": {"type": "string"},
                       "n": {"type": "string"}, "e": {"type": "string"},
                       "x5c": {"type": "array", "items": {"type": "string"},
                               "description": "the certificate chain, leaf first (base64 DER)"},
                       "x5t#S256": {"type": "string"}}}}}}


class SealNotConfigured(ClientError):
    status = 404
    title = "Not found"
    code = "Client.NotFound"
    type_slug = "not-found"


@router.get(JWKS_PATH, summary="Public keys of the gateway seal (JWKS)",
            description="The key that seals the gateway's answers and forwarded requests "
                        "(the X-Gateway-Seal header: a detached JWS, RFC 7797 b64=false, over the "
                        "body's exact bytes) and the retired keys whose seals still verify; each "
                        "with its certificate chain (x5c). Public, no token.",
            responses={200: {"description": "The JWKS",
                             "content": {"application/json": {"schema": _JWKS_SCHEMA}}},
                       **problems(404)})
async def seal_jwks(request: Request) -> Response:
    sealer = request.app.state.runtime.seal
    if sealer is None:
        raise SealNotConfigured("this gateway does not seal (seal.enabled is false)")
    return JSONResponse(sealer.jwks, headers={"Cache-Control": "public, max-age=300"})
