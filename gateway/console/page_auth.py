"""Signing in and out, and the language: the pages a person meets before (or instead of) the others.

Sign-in goes through the gateway's one throttle before the password is checked, and is audited
whatever its outcome. Every redirect that follows a ``next`` target stays inside the console
(``safe_next``), so a crafted link cannot send a person elsewhere once signed in.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from gateway.console.sessions import Session
from gateway.console.web import LANG_COOKIE, Ctx, Note, OpenRoute, PageRoute
from gateway.public import client_address
from gateway.throttle import Attempt, retry_after

if TYPE_CHECKING:
    from gateway.console.web import Console

__all__ = ["ROUTES", "safe_next"]


def safe_next(base: str, target: str | None) -> str:
    """Only a path inside the console; anything else (another host, ``//evil``, ``/\\evil``, a
    control character a browser would drop) goes to the overview."""
    if (target and target.startswith(f"{base}/") and not target.startswith("//")
            and not any(c == "\\" or c == "\x7f" or c < " " for c in target)):
        return target
    return f"{base}/overview"


async def login_form(console: Console, request: Request) -> Response:
    session: Session = request.scope["console.session"]
    if await run_in_threadpool(console.current_user, session) is not None:
        return RedirectResponse(safe_next(console.base(request), request.query_params.get("next")), 303)
    return console.render(request, "login.html", next=request.query_params.get("next", ""),
                          oidc=console.settings.oidc, error=None)


async def login(console: Console, request: Request) -> Response:
    started = time.perf_counter()
    form: dict[str, str] = request.scope.get("console.form", {})
    username = form.get("username", "").strip()[:64]
    attempt = Attempt("console", username.lower(), client_address(request.scope, console.runtime.config))
    note = Note(purpose="sign-in with a local account")
    verdict = await run_in_threadpool(console.throttle.admit, attempt)  # before the password check
    if not verdict.allowed:
        note.error = "Client.TooManyAttempts"
        await console.audit(user=username or None, action="signin", status=429, note=note, started=started)
        refused = console.render(request, "login.html", status=429, next=form.get("next", ""),
                                 oidc=console.settings.oidc, error="login.throttled")
        refused.headers["Retry-After"] = retry_after(verdict)
        return refused
    user = await run_in_threadpool(console.users.authenticate, username, form.get("password", ""))
    if user is None:  # the attempt stays counted, and the address counts it too
        await run_in_threadpool(console.throttle.failed, attempt)
        note.error = "Client.SignInRefused"
        await console.audit(user=username or None, action="signin", status=401, note=note, started=started)
        return console.render(request, "login.html", status=401, next=form.get("next", ""),
                              oidc=console.settings.oidc, error="login.failed")
    await run_in_threadpool(console.throttle.succeeded, attempt)
    await console.audit(user=user.username, action="signin", status=303, note=note, started=started)
    await console.sign_in(request, user, "local")
    return RedirectResponse(safe_next(console.base(request), form.get("next")), 303)


def logout(ctx: Ctx) -> Response:
    ctx.console.sign_out(ctx.request)
    return RedirectResponse(f"{ctx.base}/login", 303)


async def language(console: Console, request: Request) -> Response:
    code = request.path_params["code"]
    response = RedirectResponse(safe_next(console.base(request), request.query_params.get("next")), 303)
    if code in ("vi", "en"):
        response.set_cookie(LANG_COOKIE, code, max_age=365 * 86400, path="/console", samesite="lax",
                            httponly=True, secure=console.secure(request.scope))
    return response


async def home(console: Console, request: Request) -> Response:
    return RedirectResponse(f"{console.base(request)}/overview", 303)


ROUTES: tuple[OpenRoute | PageRoute, ...] = (
    OpenRoute("/", home),
    OpenRoute("/login", login_form),
    OpenRoute("/login", login, ("POST",)),
    PageRoute("/logout", logout, "account", "signout", ("POST",)),
    OpenRoute("/lang/{code}", language),
)
