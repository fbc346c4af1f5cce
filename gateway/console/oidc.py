"""Signing in through an outside OpenID Connect provider, with authlib's Starlette client.

The flow is the authorization code flow with PKCE: ``/oidc/start`` sends the browser to the
provider, ``/oidc/callback`` takes the code back, exchanges it for tokens, and authlib checks the ID
token (signature against the provider's JWKS, issuer, audience, expiry, nonce). authlib keeps its
state in ``scope["session"]``, which the console's session cookie carries.

Who the person is: the ``username_claim`` (``preferred_username`` by default). Their role: the local
account of that name when there is one (a disabled account refuses), else the first of their
``role_claim`` values that ``roles`` maps to a console role; nobody else gets in.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import structlog
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from gateway.console.users import User, UserError, check_username
from gateway.public import public_base

if TYPE_CHECKING:
    from gateway.console.web import Console

__all__ = ["role_from_claims", "routes"]

log = structlog.get_logger("lienthong.console")


def role_from_claims(claims: dict[str, Any], role_claim: str | None,
                     roles: Mapping[str, str]) -> str | None:
    """The console role the provider's claims grant, most powerful first; None for none."""
    if not role_claim:
        return None
    value = claims.get(role_claim)
    values = [value] if isinstance(value, str) else list(value or []) if isinstance(value, list) else []
    granted = {roles[v] for v in values if isinstance(v, str) and v in roles}
    for role in ("admin", "operator", "auditor"):
        if role in granted:
            return role
    return None


def routes(console: Console) -> list[Route]:
    registry: dict[str, Any] = {}

    def client() -> Any:
        settings = console.settings.oidc
        if settings is None:  # the routes below answer 404 before asking for a client
            raise RuntimeError("OpenID Connect is not configured")
        if "client" not in registry or registry.get("settings") is not settings:
            with warnings.catch_warnings():  # authlib's notice about its httpx module, at import
                warnings.simplefilter("ignore")
                from authlib.integrations.starlette_client import OAuth

            oauth = OAuth()
            kwargs: dict[str, Any] = {"scope": settings.scope, "code_challenge_method": "S256"}
            oauth.register("provider", client_id=settings.client_id, client_secret=settings.client_secret,
                           server_metadata_url=settings.metadata_url, client_kwargs=kwargs)
            registry.update(client=oauth.create_client("provider"), settings=settings)
        return registry["client"]

    def refuse(request: Request, key: str, status: int = 401) -> Response:
        return console.render(request, "login.html", status=status, next="", oidc=console.settings.oidc,
                              error=key)

    async def start(request: Request) -> Response:
        if console.settings.oidc is None:
            return console.error_page(request, 404, "error.not_found")
        # from public.url, never the request's Host: a forged Host must not redirect the code elsewhere
        redirect_uri = f"{public_base(console.runtime.config)}{console.base(request)}/oidc/callback"
        try:
            return await client().authorize_redirect(request, redirect_uri)  # type: ignore[no-any-return]
        except Exception as exc:
            log.error("console_oidc_unavailable", error=f"{type(exc).__name__}: {exc}")
            return refuse(request, "login.oidc_unavailable")

    async def callback(request: Request) -> Response:
        from gateway.console.web import Note

        settings = console.settings.oidc
        if settings is None:
            return console.error_page(request, 404, "error.not_found")
        started = time.perf_counter()
        note = Note(purpose=f"sign-in through OpenID Connect ({settings.metadata_url[:200]})")
        try:
            token = await client().authorize_access_token(request)
            claims = dict(token.get("userinfo") or await client().userinfo(token=token))
        except Exception as exc:
            log.warning("console_oidc_refused", error=f"{type(exc).__name__}: {exc}")
            note.error = "Client.SignInRefused"
            await console.audit(user=None, action="signin", status=401, note=note, started=started)
            return refuse(request, "login.oidc_failed")
        try:
            username = check_username(str(claims.get(settings.username_claim) or claims.get("sub") or ""))
        except UserError:
            username = ""
        account = console.users.get(username) if username else None
        role = account.role if account is not None else role_from_claims(claims, settings.role_claim,
                                                                         settings.roles)
        if not username or role is None or (account is not None and not account.enabled):
            note.error = "Client.SignInRefused"
            await console.audit(user=username or None, action="signin", status=403, note=note,
                                started=started)
            return refuse(request, "login.oidc_no_role", 403)
        user = account or User(username=username, name=str(claims.get("name") or username), role=role,
                               enabled=True, epoch=0, has_password=False)
        await console.audit(user=username, action="signin", status=303, note=note, started=started)
        request.scope["session"] = {}
        await console.sign_in(request, user, "oidc")
        return RedirectResponse(f"{console.base(request)}/overview", 303)

    return [Route("/oidc/start", start), Route("/oidc/callback", callback, name="oidc_callback")]
