"""The console as an ASGI application, mounted by the gateway at ``/console``.

Layers, outermost first: ``ConsoleMiddleware`` (session cookie in and out, CSRF check of every
POST, security headers), then Starlette's router. Every page goes through ``Console.page``, which
signs the person in or sends them to the sign-in page, checks the role against
``permissions.PAGES``, runs the page's body in a worker thread (the gateway's event loop also
carries exchanges and must not wait on the console's database reads) and appends the action to the
audit log (protocol ``console``, client ``console``, the person as the acting official, the page as
the operation, what was asked as the purpose, a data subject's keyed hash among the subjects).

The pages themselves are plain functions in the ``page_*`` modules, one module per area, each with a
table of ``PageRoute`` (signed in) and ``OpenRoute`` (before signing in) that ``pages.routes``
mounts here.
"""

from __future__ import annotations

import csv
import io
import secrets
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from http.cookies import SimpleCookie
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, quote, urlencode

import orjson
import structlog
from jinja2 import Environment, FileSystemLoader, select_autoescape
from markupsafe import Markup
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response, StreamingResponse
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from gateway.audit import query
from gateway.audit.record import AuditRecord
from gateway.bounds import OutOfRange
from gateway.console import labels, logquery, overview
from gateway.console.i18n import LANGUAGES, choose, translator
from gateway.console.permissions import PAGES, allowed
from gateway.console.sessions import Session, SessionCodec
from gateway.console.sessionstore import SessionStore
from gateway.console.sources import ConsoleData
from gateway.console.users import User, UserStore
from gateway.errors import AuditUnavailable
from gateway.ids import new_id
from gateway.public import is_https
from gateway.state import console_session_key
from gateway.throttle import Throttle

if TYPE_CHECKING:  # the runtime builds everything the gateway runs; the console only reads it
    from gateway.audit.service import AuditService
    from gateway.config import Config, ConsoleSettings
    from gateway.runtime import Runtime

__all__ = ["COOKIE", "LANG_COOKIE", "Console", "ConsoleMiddleware", "Ctx", "Note", "OpenRoute", "PageRoute"]

log = structlog.get_logger("lienthong.console")

HERE = Path(__file__).resolve().parent
COOKIE = "lt_console"
LANG_COOKIE = "lt_lang"
MAX_FORM = 64 * 1024
CONSOLE_CLIENT = overview.CONSOLE_CLIENT
CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
       "object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'self'")


class Refused(Exception):
    """A request the console refuses before any page runs (CSRF, a body too large)."""

    def __init__(self, status: int, key: str) -> None:
        super().__init__(key)
        self.status = status
        self.key = key


@dataclass
class Note:
    """What a page tells the audit record about the action: the purpose line and data subjects."""

    purpose: str | None = None
    subjects: tuple[str, ...] = ()
    error: str | None = None


@dataclass
class Ctx:
    """One page request: the console it came to, the person, the session, the form (POST) and the
    audit note."""

    console: Console
    request: Request
    user: User
    session: Session
    form: dict[str, str] = field(default_factory=dict)
    note: Note = field(default_factory=Note)

    @property
    def query(self) -> dict[str, str]:
        return dict(self.request.query_params)

    @property
    def data(self) -> ConsoleData:
        return self.console.data

    @property
    def config(self) -> Config:
        return self.console.data.config

    @property
    def base(self) -> str:
        """The console's own path prefix (``/console``), for links and redirects."""
        return self.console.base(self.request)

    def render(self, template: str, status: int = 200, **values: Any) -> HTMLResponse:
        return self.console.render(self.request, template, status, user=self.user, **values)

    def error(self, status: int, key: str) -> HTMLResponse:
        return self.console.error_page(self.request, status, key, self.user)


def _cookies(scope: Scope) -> dict[str, str]:
    jar: SimpleCookie = SimpleCookie()
    for name, value in scope.get("headers", []):
        if name == b"cookie":
            try:
                jar.load(value.decode("latin-1"))
            except Exception:  # noqa: S112 - a malformed cookie header is ignored, not fatal
                continue
    return {k: m.value for k, m in jar.items()}


def _origin_ok(scope: Scope) -> bool:
    """A POST's Origin (or Referer) must be this very host: forms are only sent from the console."""
    headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
    host = headers.get("host", "")
    origin = headers.get("origin") or headers.get("referer")
    if not origin or origin == "null":
        return origin is None  # no header at all: older clients and tools; the token still decides
    rest = origin.split("://", 1)[-1]
    return bool(rest.split("/", 1)[0] == host)


class ConsoleMiddleware:
    """Sessions in, CSRF check, sessions out, security headers."""

    def __init__(self, app: ASGIApp, console: Console) -> None:
        self.app = app
        self.console = console

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        codec = self.console.codec
        cookies = _cookies(scope)
        original = cookies.get(COOKIE)
        session = codec.loads(original) or Session()
        scope["console.session"] = session
        scope["session"] = dict(session.oidc or {})  # authlib keeps its OpenID Connect state here
        scope["console.lang"] = choose(cookies.get(LANG_COOKIE))
        secure = self.console.secure(scope)

        async def send_with_cookie(message: Message) -> None:
            if message["type"] == "http.response.start":
                final: Session = scope["console.session"]
                oidc = scope.get("session") or None
                if oidc != final.oidc:
                    final = final.bind(oidc=oidc)
                value = codec.dumps(final)
                headers = list(message.get("headers", []))
                if value != original:
                    attrs = "; Secure" if secure else ""
                    headers.append((b"set-cookie", f"{COOKIE}={value}; Path=/console; HttpOnly; "
                                    f"SameSite=Lax{attrs}".encode()))
                headers += [(b"content-security-policy", CSP.encode()),
                            (b"x-content-type-options", b"nosniff"),
                            (b"x-frame-options", b"DENY"),
                            (b"referrer-policy", b"same-origin")]
                if not scope["path"].startswith(f"{scope.get('root_path', '')}/static/"):
                    headers.append((b"cache-control", b"no-store"))
                message["headers"] = headers
            await send(message)

        if scope["method"] == "POST":
            try:
                form = await self._read_form(scope, receive)
                if not _origin_ok(scope) or not secrets.compare_digest(form.get("csrf", ""), session.csrf):
                    raise Refused(403, "error.csrf")
            except Refused as refused:
                response = self.console.error_page(Request(scope), refused.status, refused.key)
                await response(scope, receive, send_with_cookie)
                return
            scope["console.form"] = form
        await self.app(scope, receive, send_with_cookie)

    @staticmethod
    async def _read_form(scope: Scope, receive: Receive) -> dict[str, str]:
        body = b""
        more = True
        while more:
            message = await receive()
            body += message.get("body", b"")
            more = message.get("more_body", False)
            if len(body) > MAX_FORM:
                raise Refused(413, "error.too_large")
        try:
            return dict(parse_qsl(body.decode("utf-8"), keep_blank_values=True, max_num_fields=100))
        except (UnicodeDecodeError, ValueError):
            raise Refused(400, "error.bad_form") from None


Page = Callable[[Ctx], Response]  # signed in; runs in a worker thread
OpenPage = Callable[["Console", Request], Awaitable[Response]]  # before signing in; on the event loop


@dataclass(frozen=True)
class PageRoute:
    """A page for the signed-in: where it answers, the permission it needs (``permissions.PAGES``)
    and the operation its audit record names (None: recorded only when refused or failed)."""

    path: str
    body: Page
    permission: str
    action: str | None
    methods: tuple[str, ...] = ("GET",)

    def route(self, console: Console) -> Route:
        endpoint = console.page(self.permission, self.action)(self.body)
        return Route(self.path, endpoint, methods=list(self.methods))


@dataclass(frozen=True)
class OpenRoute:
    """A page anyone may open (signing in, the language): no session needed, no audit record of its
    own (signing in writes its own)."""

    path: str
    body: OpenPage
    methods: tuple[str, ...] = ("GET",)

    def route(self, console: Console) -> Route:
        return Route(self.path, console.open(self.body), methods=list(self.methods))


class Console:
    def __init__(self, get_runtime: Callable[[], Runtime],
                 get_audit: Callable[[], AuditService | None] | None = None) -> None:
        self._get_runtime = get_runtime
        self._get_audit = get_audit or (lambda: None)
        self._data: ConsoleData | None = None
        self._codec: SessionCodec | None = None
        self.templates = Environment(loader=FileSystemLoader(HERE / "templates"),
                                     autoescape=select_autoescape(["html"]), trim_blocks=True,
                                     lstrip_blocks=True)
        from gateway.console import pages  # imported here: the page modules import this one

        self.templates.filters["us"] = labels.duration
        self.templates.filters["pct"] = labels.percent
        self.templates.filters["short"] = labels.short_service
        routes = [Mount("/static", app=StaticFiles(directory=HERE / "static"), name="static"),
                  *pages.routes(self)]
        from gateway.console import oidc

        routes += oidc.routes(self)
        self.router = Starlette(routes=routes)
        self.asgi = ConsoleMiddleware(self.router, self)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self.asgi(scope, receive, send)

    # -- what the pages share --------------------------------------------------------------------

    @property
    def runtime(self) -> Runtime:
        return self._get_runtime()

    @property
    def data(self) -> ConsoleData:
        if self._data is None or self._data.runtime is not self.runtime:
            self._data = ConsoleData(self.runtime, self._get_audit())
        return self._data

    @property
    def users(self) -> UserStore:
        return UserStore(self.runtime.engine)

    @property
    def sessions(self) -> SessionStore:
        return SessionStore(self.runtime.engine)

    @property
    def throttle(self) -> Throttle:
        """The gateway's one throttle of failed authentications, shared with the token endpoint."""
        return self.runtime.security.throttle

    @property
    def settings(self) -> ConsoleSettings:
        return self.runtime.config.console

    @property
    def codec(self) -> SessionCodec:
        if self._codec is None:
            config = self.runtime.config
            self._codec = SessionCodec(console_session_key(config))  # gateway/state.py
        return self._codec

    def secure(self, scope: Scope) -> bool:
        """Whether cookies get ``Secure``: ``console.secure_cookies`` when set, else whether the
        browser reached the gateway over TLS (directly or through a trusted proxy)."""
        forced = self.settings.secure_cookies
        return bool(forced) if forced is not None else is_https(scope, self.runtime.config)

    @staticmethod
    def base(request: Request) -> str:
        return str(request.scope.get("root_path", "")).rstrip("/")

    def current_user(self, session: Session) -> User | None:
        """The signed-in person, while the session is open (not signed out, not ended by a change of
        the account) and as the accounts table says now: an account disabled, or whose password or
        role changed since the session began, signs out."""
        if not session.signed_in or session.username is None or session.sid is None:
            return None
        if not self.sessions.is_open(session.sid, session.username):
            return None
        account = self.users.get(session.username)
        if account is not None:
            if not account.enabled or account.epoch != session.epoch:
                return None
            return account
        if session.source == "oidc" and session.role:
            return User(username=session.username, name=session.name or session.username,
                        role=session.role, enabled=True, epoch=0, has_password=False)
        return None

    async def sign_in(self, request: Request, user: User, source: str) -> None:
        """Open a session for the person: its row, then its cookie (a new CSRF token with it)."""
        expires = int(time.time() + self.settings.session_hours * 3600)
        sid = await run_in_threadpool(self.sessions.open, user.username, expires)
        request.scope["console.session"] = Session(
            username=user.username, name=user.name, role=user.role, epoch=user.epoch, source=source,
            expires=expires, sid=sid)

    def sign_out(self, request: Request) -> None:
        """End the session (blocking: called from a page's worker thread): its row goes, so every
        copy of its cookie is refused by every worker from now on."""
        session: Session = request.scope["console.session"]
        if session.sid is not None:
            self.sessions.close(session.sid)
        request.scope["console.session"] = Session()

    def render(self, request: Request, template: str, status: int = 200, **values: Any) -> HTMLResponse:
        session: Session = request.scope["console.session"]
        lang = request.scope.get("console.lang", "vi")
        user = values.pop("user", None)
        base = self.base(request)
        here = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        html = self.templates.get_template(template).render(
            _=translator(lang), lang=lang, languages=LANGUAGES, base=base, csrf=session.csrf, user=user,
            can=(lambda page: user is not None and allowed(user.role, page)), here=here,
            lang_url=lambda code: f"{base}/lang/{code}?{urlencode({'next': here})}", **values)
        return HTMLResponse(html, status_code=status)

    def error_page(self, request: Request, status: int, key: str, user: User | None = None) -> HTMLResponse:
        return self.render(request, "error.html", status=status, status_code=status, message_key=key,
                           user=user)

    async def audit(self, *, user: str | None, action: str, status: int, note: Note,
                    started: float) -> None:
        """One audit record for one console action; raises AuditUnavailable when it cannot be
        stored (the caller then fails the action's page)."""
        outcome = "ok" if status < 400 else "refused" if status < 500 else "failed"
        record = AuditRecord(
            exchange_id=new_id(), ts_us=time.time_ns() // 1000, protocol="console",
            outcome=outcome, status=status, client=CONSOLE_CLIENT, user_id=user, purpose=note.purpose,
            operation=action, error=note.error,
            total_us=int((time.perf_counter() - started) * 1_000_000), subjects=note.subjects)
        await self.runtime.audit.append(record)

    def page(self, permission: str, action: str | None) -> Callable[[Page], Callable[[Request],
                                                                                       Awaitable[Response]]]:
        """Wrap a page body: sign-in, role, a worker thread, the audit record."""
        assert permission in PAGES, permission

        def wrap(body: Page) -> Callable[[Request], Awaitable[Response]]:
            async def endpoint(request: Request) -> Response:
                started = time.perf_counter()
                session: Session = request.scope["console.session"]
                user = await run_in_threadpool(self.current_user, session)
                if user is None:
                    if session.signed_in:  # the account changed: this session is over
                        request.scope["console.session"] = Session()
                    if request.method == "GET":
                        target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
                        return RedirectResponse(f"{self.base(request)}/login?next={quote(target)}", 303)
                    return self.error_page(request, 401, "error.signin")
                ctx = Ctx(self, request, user, session, request.scope.get("console.form", {}))
                if not allowed(user.role, permission):
                    response: Response = self.error_page(request, 403, "error.forbidden", user)
                    ctx.note.purpose = f"refused: {permission} needs {', '.join(PAGES[permission])}"
                else:
                    try:
                        response = await run_in_threadpool(body, ctx)
                    except OutOfRange as exc:  # a number no table can hold: the caller's mistake
                        ctx.note.error = "Client.InvalidRequest"
                        response = self.error_page(request, 400, "error.bad_number", user)
                        log.info("console_page_refused", page=permission, error=str(exc))
                    except Exception as exc:
                        log.error("console_page_failed", page=permission,
                                  error=f"{type(exc).__name__}: {exc}")
                        ctx.note.error = type(exc).__name__
                        response = self.error_page(request, 500, "error.failed", user)
                if action is not None or response.status_code >= 400:
                    try:
                        await self.audit(user=user.username, action=action or permission,
                                         status=response.status_code, note=ctx.note, started=started)
                    except AuditUnavailable:
                        return self.error_page(request, 503, "error.audit", user)
                return response

            endpoint.__name__ = body.__name__
            return endpoint

        return wrap

    def open(self, body: OpenPage) -> Callable[[Request], Awaitable[Response]]:
        """An endpoint for a page anyone may open: the body gets this console and the request."""

        async def endpoint(request: Request) -> Response:
            return await body(self, request)

        endpoint.__name__ = body.__name__
        return endpoint


# -- helpers the pages use ----------------------------------------------------------------------------

def json_block(value: dict[str, Any]) -> Markup:
    """JSON for a ``<script type="application/json">`` block: nothing in it can close the tag."""
    text = orjson.dumps(value).decode()
    text = text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
    return Markup(text)  # noqa: S704 - escaped above for the script element's content


def csv_stream(entries: Iterator[query.Entry]) -> Iterator[str]:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerow(logquery.CSV_COLUMNS)
    for i, entry in enumerate(entries):
        writer.writerow(logquery.csv_record(entry))
        if i % 500 == 499:
            yield buffer.getvalue()
            buffer.seek(0)
            buffer.truncate()
    yield buffer.getvalue()


def jsonl_stream(entries: Iterator[query.Entry]) -> Iterator[bytes]:
    """One entry per line, as ``/audit/entries`` and ``/audit/export`` give them."""
    for entry in entries:
        yield orjson.dumps(entry.as_json()) + b"\n"


def streaming(body: Iterator[str] | Iterator[bytes], media_type: str, filename: str) -> StreamingResponse:
    return StreamingResponse(body, media_type=media_type,
                             headers={"content-disposition": f'attachment; filename="{filename}"'})

