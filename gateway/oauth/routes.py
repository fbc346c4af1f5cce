"""HTTP face of the authorization server: token endpoint, JWKS and server metadata (RFC 8414)."""

from __future__ import annotations

import base64
from urllib.parse import parse_qsl, unquote

import structlog
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response

from gateway.oauth.server import TokenRequest

log = structlog.get_logger("lienthong.oauth")
router = APIRouter(tags=["OAuth 2.0"])

_FORM = "application/x-www-form-urlencoded"
_MAX_FORM = 64 * 1024


def _oauth_error(status: int, error: str, description: str) -> Response:
    return JSONResponse({"error": error, "error_description": description}, status_code=status,
                        headers={"Cache-Control": "no-store", "Pragma": "no-cache"})


@router.post("/oauth/token", summary="Get an access token (client credentials)",
             description="RFC 6749 4.4 client credentials grant. Authenticate with HTTP Basic "
                         "(`client_secret_basic`): the client id is the subsystem id, e.g. "
                         "`VN/GOV/000.00.00.H22/MOTCUA`. Body: `grant_type=client_credentials` "
                         "and optionally `scope`.")
async def token(request: Request) -> Response:
    runtime = request.app.state.runtime
    media = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if media != _FORM:
        return _oauth_error(400, "invalid_request", f"the token request must be {_FORM}")
    body = await request.body()
    if len(body) > _MAX_FORM:
        return _oauth_error(400, "invalid_request", "the token request is too large")
    try:
        pairs = parse_qsl(body.decode("utf-8"), keep_blank_values=True, strict_parsing=bool(body))
    except (UnicodeDecodeError, ValueError):
        return _oauth_error(400, "invalid_request", "the token request body is not a valid form")
    form: dict[str, str] = {}
    for key, value in pairs:
        if key in form:
            return _oauth_error(400, "invalid_request", f"parameter {key!r} is repeated")
        form[key] = value
    issuer = runtime.config.token.issuer
    # authlib insists on an https URI; TLS is terminated in front of the gateway in production.
    uri = "https://" + issuer.split("://", 1)[-1].rstrip("/") + "/oauth/token"
    answer = runtime.token_server.issue(TokenRequest(request.method, uri, request.headers, form))
    if answer.status == 200:
        log.info("token_issued", client=_client_of(request))
    else:
        log.info("token_refused", status=answer.status, client=_client_of(request))
    return Response(answer.body, status_code=answer.status, headers=dict(answer.headers),
                    media_type="application/json")


def _client_of(request: Request) -> str | None:
    """The client id of a Basic Authorization header, for logs (never the secret)."""
    auth = request.headers.get("authorization", "")
    if not auth.lower().startswith("basic "):
        return None
    try:
        user = base64.b64decode(auth[6:].strip()).decode("utf-8").split(":", 1)[0]
    except (ValueError, UnicodeDecodeError):
        return None
    return unquote(user)[:255]


@router.get("/.well-known/jwks.json", summary="Public keys that sign access tokens")
async def jwks(request: Request) -> Response:
    keys = request.app.state.runtime.jwks
    return JSONResponse({"keys": keys}, headers={"Cache-Control": "public, max-age=300"})


@router.get("/.well-known/oauth-authorization-server", summary="Authorization server metadata")
async def metadata(request: Request) -> Response:
    cfg = request.app.state.runtime.config
    issuer = cfg.token.issuer.rstrip("/")
    return JSONResponse({
        "issuer": cfg.token.issuer,
        "token_endpoint": f"{issuer}/oauth/token",
        "jwks_uri": f"{issuer}/.well-known/jwks.json",
        "grant_types_supported": ["client_credentials"],
        "token_endpoint_auth_methods_supported": ["client_secret_basic"],
        "scopes_supported": sorted({s for c in cfg.clients for s in c.scopes}),
        "response_types_supported": [],
    })
