"""HTTP face of the authorization server: token, introspection (RFC 7662) and revocation (RFC 7009)
endpoints, the JWKS and the server metadata (RFC 8414)."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qsl, unquote

import structlog
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from starlette.concurrency import run_in_threadpool

from gateway.logs import stack
from gateway.oauth.clients import PRIVATE_KEY_JWT, SECRET_BASIC
from gateway.oauth.jwks import ASSERTION_ALGORITHMS, TOKEN_ALGORITHMS
from gateway.oauth.server import TokenRequest, TokenResponse, endpoint_urls
from gateway.public import client_address
from gateway.ratelimit import Verdict
from gateway.throttle import Attempt, Throttle, admit_in_turn, retry_after

log = structlog.get_logger("lienthong.oauth")
router = APIRouter(tags=["OAuth 2.0"])

_FORM = "application/x-www-form-urlencoded"
_MAX_FORM = 64 * 1024
_NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}
_AUTH_HELP = ("Authenticate with HTTP Basic (`client_secret_basic`; the client id is the subsystem id, "
              "e.g. `VN/GOV/000.00.00.H22/MOTCUA`) or with a signed JWT (`private_key_jwt`: "
              "`client_assertion_type=urn:ietf:params:oauth:client-assertion-type:jwt-bearer` and "
              "`client_assertion`), never both.")


def _oauth_error(status: int, error: str, description: str) -> Response:
    return JSONResponse({"error": error, "error_description": description}, status_code=status,
                        headers=_NO_STORE)


async def _form(request: Request) -> dict[str, str] | Response:
    """The request's form parameters, or the RFC 6749 5.2 error for a malformed request."""
    media = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if media != _FORM:
        return _oauth_error(400, "invalid_request", f"the request body must be {_FORM}")
    body = await request.body()
    if len(body) > _MAX_FORM:
        return _oauth_error(400, "invalid_request", "the request is too large")
    try:
        pairs = parse_qsl(body.decode("utf-8"), keep_blank_values=True, strict_parsing=bool(body))
    except (UnicodeDecodeError, ValueError):
        return _oauth_error(400, "invalid_request", "the request body is not a valid form")
    form: dict[str, str] = {}
    for key, value in pairs:
        if key in form:  # RFC 6749 3.2: parameters must not be included more than once
            return _oauth_error(400, "invalid_request", f"parameter {key!r} is repeated")
        form[key] = value
    return form


async def _answer(request: Request, endpoint: str,
                  handle: Callable[[Any, TokenRequest], TokenResponse]) -> Response:
    form = await _form(request)
    if isinstance(form, Response):
        log.info(f"{endpoint}_refused", status=form.status_code, client=_client_of(request, {}))
        return form
    runtime = request.app.state.runtime
    # authlib insists on an https URI; TLS is terminated in front of the gateway in production.
    uri = "https://" + runtime.config.token.issuer.split("://", 1)[-1].rstrip("/") + request.url.path
    oauth_request = TokenRequest(request.method, uri, request.headers, form)
    address = client_address(request.scope, runtime.config)
    # The count is per client id *and* address: client ids are public and secrets 256 random bits,
    # so guessing is bounded by the address's own count, while an outsider who names a client from
    # elsewhere cannot slow that client's token requests down.
    client = _client_of(request, form)
    attempt = Attempt("oauth", f"{client} from {address}" if client else "", address)
    try:  # argon2 and the database block: keep them off the event loop
        verdict = await admit_in_turn(runtime.security.throttle, attempt)
        answer = verdict if not verdict.allowed else await run_in_threadpool(
            _checked, runtime.security.throttle, attempt,
            lambda: handle(runtime.token_server, oauth_request))
    except Exception as exc:  # a store (database, Redis) failed: not the client's fault
        log.error(f"{endpoint}_failed", error=type(exc).__name__, client=_client_of(request, form),
                  frames=stack(exc))
        return _oauth_error(503, "temporarily_unavailable", "the authorization server cannot answer "
                            "now; try again shortly")
    if isinstance(answer, Verdict):
        log.warning(f"{endpoint}_throttled", client=_client_of(request, form), address=attempt.address)
        refused = _oauth_error(429, "slow_down", "too many failed client authentications; try again "
                               "after the seconds Retry-After gives")
        refused.headers["Retry-After"] = retry_after(answer)
        return refused
    event = f"{endpoint}_ok" if answer.status == 200 else f"{endpoint}_refused"
    log.info(event, status=answer.status, client=_client_of(request, form))
    headers = dict(answer.headers) | _NO_STORE
    return Response(answer.body, status_code=answer.status, headers=headers,
                    media_type="application/json")


def _checked(throttle: Throttle, attempt: Attempt, answer: Callable[[], TokenResponse]) -> TokenResponse:
    """The answer to an admitted attempt, settled with the throttle: a wrong credential
    (``invalid_client``) stays counted; a success clears the client's count; a request refused
    before any credential was checked is not counted."""
    try:
        response = answer()
    except Exception:
        throttle.uncounted(attempt)
        raise
    if response.status == 200:
        throttle.succeeded(attempt)
    elif _error_of(response) == "invalid_client":
        throttle.failed(attempt)
    else:
        throttle.uncounted(attempt)
    return response


def _error_of(response: TokenResponse) -> str | None:
    try:
        error = json.loads(response.body).get("error")
    except (ValueError, AttributeError):
        return None
    return error if isinstance(error, str) else None


@router.post("/oauth/token", summary="Get an access token (client credentials)",
             description="RFC 6749 4.4 client credentials grant. " + _AUTH_HELP +
                         " Body: `grant_type=client_credentials` and optionally `scope`.")
async def token(request: Request) -> Response:
    return await _answer(request, "token", lambda server, req: server.issue(req))


@router.post("/oauth/introspect", summary="Introspect an access token (RFC 7662)",
             description="Body: `token`. " + _AUTH_HELP + " A client sees its own tokens; a client "
                         "with the `introspect` scope sees any; otherwise the answer is "
                         "`{\"active\": false}`.")
async def introspect(request: Request) -> Response:
    return await _answer(request, "introspect", lambda server, req: server.introspect(req))


@router.post("/oauth/revoke", summary="Revoke an access token (RFC 7009)",
             description="Body: `token`. " + _AUTH_HELP + " A client revokes its own tokens; every "
                         "gateway worker refuses a revoked token within `token.refresh` seconds.")
async def revoke(request: Request) -> Response:
    return await _answer(request, "revoke", lambda server, req: server.revoke(req))


def _client_of(request: Request, form: dict[str, str]) -> str | None:
    """The client a request claims to be, for logs (never a secret)."""
    auth = request.headers.get("authorization", "")
    if auth.lower().startswith("basic "):
        try:
            user = base64.b64decode(auth[6:].strip()).decode("utf-8").split(":", 1)[0]
        except (ValueError, UnicodeDecodeError):
            return None
        return unquote(user)[:255]
    assertion = form.get("client_assertion", "")
    if assertion.count(".") == 2:  # the claimed subject, unverified: for the log line only
        try:
            sub = json.loads(base64.urlsafe_b64decode(assertion.split(".")[1] + "==")).get("sub")
        except (ValueError, AttributeError):
            sub = None
        if isinstance(sub, str):
            return sub[:255]
    return form.get("client_id", "")[:255] or None


@router.get("/.well-known/jwks.json", summary="Public keys that sign access tokens")
async def jwks(request: Request) -> Response:
    keys = request.app.state.runtime.jwks
    return JSONResponse({"keys": keys}, headers={"Cache-Control": "public, max-age=60"})


@router.get("/.well-known/oauth-authorization-server", summary="Authorization server metadata (RFC 8414)")
async def metadata(request: Request) -> Response:
    runtime = request.app.state.runtime
    cfg = runtime.config
    issuer = cfg.token.issuer.rstrip("/")
    urls = endpoint_urls(cfg.token.issuer)
    clients = await run_in_threadpool(runtime.clients.all)
    methods = [SECRET_BASIC, PRIVATE_KEY_JWT]
    return JSONResponse({
        "issuer": cfg.token.issuer,
        "token_endpoint": urls["token"],
        "introspection_endpoint": urls["introspection"],
        "revocation_endpoint": urls["revocation"],
        "jwks_uri": f"{issuer}/.well-known/jwks.json",
        "grant_types_supported": ["client_credentials"],
        "response_types_supported": [],
        "token_endpoint_auth_methods_supported": methods,
        "token_endpoint_auth_signing_alg_values_supported": list(ASSERTION_ALGORITHMS),
        "introspection_endpoint_auth_methods_supported": methods,
        "introspection_endpoint_auth_signing_alg_values_supported": list(ASSERTION_ALGORITHMS),
        "revocation_endpoint_auth_methods_supported": methods,
        "revocation_endpoint_auth_signing_alg_values_supported": list(ASSERTION_ALGORITHMS),
        "access_token_signing_alg_values_supported": list(TOKEN_ALGORITHMS),
        "scopes_supported": sorted({s for c in clients for s in c.scopes}),
    })
