"""The gateway as one ASGI application.

``/r1/…`` goes straight to the REST entry point (the hot path), ``/soap…`` to the SOAP entry point,
``/listClients`` to X-Road's list of providers (gateway/listclients.py);
everything else (OAuth, health, OpenAPI docs) is a FastAPI app. The process's ``Runtime`` is built
at lifespan start-up.
"""

from __future__ import annotations

import gc
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import structlog
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from gateway import __version__, apidocs, openapi
from gateway.audit.routes import router as audit_router
from gateway.audit.service import AuditService
from gateway.config import Config
from gateway.delivery.routes import router as delivery_router
from gateway.documents.routes import router as documents_router
from gateway.errors import GatewayError, InvalidRequest, ServerError
from gateway.flows.routes import router as flows_router
from gateway.frontdoor import FrontDoor
from gateway.listclients import LIST_CLIENTS, ListClients
from gateway.logs import configure_logging, flush_logs, stack
from gateway.oauth.routes import router as oauth_router
from gateway.openapi import OAUTH_ERRORS, problems
from gateway.problems import PROBLEM_TYPE, problem
from gateway.resources import schemas_dir
from gateway.rest import PREFIX, Receive, RestEntry, Scope, Send
from gateway.runtime import Runtime
from gateway.seal.routes import router as seal_router
from gateway.soap.entry import SoapEntry, is_soap_path
from gateway.spool import Spool

log = structlog.get_logger("lienthong.app")

YOUNG_COLLECTION_AT = 50_000  # objects allocated net before the cyclic collector's young pass


def _problem_response(err: GatewayError, request: Request) -> Response:
    return JSONResponse(problem(err, instance=request.url.path), status_code=err.status,
                        media_type=PROBLEM_TYPE, headers=err.headers)


def build_api(config: Config, *, freeze_heap: bool = False, front_door: FrontDoor | None = None) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        runtime = Runtime.build(config, front_door=front_door)
        audit = AuditService.open(config, runtime.audit)
        runtime.start()
        audit.start()
        if freeze_heap:
            # What start-up built (compiled schemas, the catalog, policies, keys: ~190,000 objects)
            # lives as long as the process. Out of the collector's sight, a full collection no
            # longer walks it: that took ~100 ms, the event loop paused, every few seconds of load.
            gc.freeze()
            # A young collection after every 700 objects net (the default) walked the exchanges in
            # flight each time and found almost nothing to free: in a drain of 10,000 joint
            # procedures, 4.5 s of a worker's 45 s of CPU went to 6,800 collections, which freed 9
            # objects. At 50,000 the count seldom gets there while the load is steady (what an
            # exchange makes, its reference counts free). Garbage in cycles is still collected,
            # after 50,000 new objects rather than 700 (docs/architecture.md).
            gc.set_threshold(YOUNG_COLLECTION_AT, *gc.get_threshold()[1:])
        app.state.runtime = runtime
        app.state.audit = audit
        try:
            yield
        finally:
            await runtime.quiesce()  # the attempts and steps in flight finish, audited
            runtime.audit.close()  # store what is pending, so that the last checkpoint covers it
            audit.stop()
            await runtime.stop()
            # what the app logged, out before whatever its process writes next on the same output
            flush_logs()

    api = FastAPI(title="Liên Thông gateway", version=__version__, lifespan=lifespan,
                  docs_url=None, redoc_url=None, responses=problems(500),
                  description="Interoperability gateway: OAuth2-protected exchanges between "
                              "provincial one-stop systems, the national public-service portal and "
                              "national databases, each one written to a tamper-evident audit log. "
                              "Exchanges go to `/r1/{instance}/{class}/{member}/{subsystem}/{service}`"
                              " (see docs/exchange.md).")
    api.include_router(oauth_router, responses=OAUTH_ERRORS)
    api.include_router(audit_router, responses=problems(400, 401, 403, 404, 503))
    api.include_router(delivery_router, responses=problems(400, 401, 403, 404, 503))
    api.include_router(flows_router, responses=problems(400, 401, 403, 404, 503))
    api.include_router(documents_router, responses=problems(400, 401, 403, 503))
    api.include_router(seal_router)
    apidocs.install(api)  # /docs and /redoc with their assets served here, not from a CDN
    openapi.install(api)
    if config.console.enabled:  # the web console (docs/console.md), a mounted app of its own
        from gateway.console import build_console

        api.mount("/console", build_console(lambda: api.state.runtime,
                                                 lambda: getattr(api.state, "audit", None)))

    @api.get("/healthz", tags=["Operations"], summary="The process is alive")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @api.get("/readyz", tags=["Operations"], summary="The gateway can serve exchanges",
             responses={503: {"description": "The database is unreachable",
                              "content": {"application/json": {"schema": {"type": "object"}}}}})
    async def readyz(request: Request) -> Response:
        runtime: Runtime = request.app.state.runtime
        try:
            size = runtime.audit.size()
        except Exception:
            return JSONResponse({"status": "unavailable", "reason": "database unreachable"},
                                status_code=503)
        return JSONResponse({"status": "ready", "audit_size": size,
                             "services": len(runtime.connectors)})

    @api.exception_handler(GatewayError)
    async def _gateway_error(request: Request, exc: GatewayError) -> Response:
        return _problem_response(exc, request)

    @api.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> Response:
        return _problem_response(InvalidRequest("the request is not valid",
                                                extra={"errors": exc.errors()}), request)

    @api.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> Response:
        err = GatewayError(str(exc.detail))
        err.status, err.title = exc.status_code, str(exc.detail)
        err.code = "Client.NotFound" if exc.status_code == 404 else f"HTTP.{exc.status_code}"
        err.type_slug = "not-found" if exc.status_code == 404 else "http-error"
        return _problem_response(err, request)

    @api.exception_handler(Exception)
    async def _crash(request: Request, exc: Exception) -> Response:
        # The type and the request, never the message: it may quote what the caller sent.
        log.error("request_crashed", method=request.method, path=request.url.path,
                  error=type(exc).__name__, frames=stack(exc))
        return _problem_response(ServerError(
            f"the gateway failed unexpectedly ({type(exc).__name__}) while answering "
            f"{request.method} {request.url.path}; the error is logged"), request)

    return api


class GatewayApp:
    """Routes ``/r1/`` to the REST entry point, SOAP and ``listClients`` to theirs (counting the
    exchanges in flight at them: ``front_door``) and everything else to the FastAPI app."""

    def __init__(self, config: Config, *, freeze_heap: bool = False) -> None:
        self.front_door = FrontDoor()  # the exchanges in flight, which the flow engine gives way to
        self.api = build_api(config, freeze_heap=freeze_heap, front_door=self.front_door)
        # A document service's large packages are read to disk (gateway/spool.py); others in memory.
        spools = {s.id: Spool(config.limits.max_document_bytes, config.state_path("spool"))
                  for s in config.services if s.documents}
        self.rest = RestEntry(lambda: self.api.state.runtime.pipeline,
                              lambda: config.limits.max_body_bytes, spools.get if spools else None)
        self.soap = SoapEntry(config, lambda: self.api.state.runtime.pipeline,
                              lambda: config.limits.max_body_bytes,
                              config.path(config.schemas_dir) if config.schemas_dir else schemas_dir())
        self.list_clients = ListClients(lambda: self.api.state.runtime.pipeline)  # X-Road's listClients

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        entry = self._entry(scope["path"]) if scope["type"] == "http" else None
        if entry is None:
            await self.api(scope, receive, send)
            return
        self.front_door.in_flight += 1
        try:
            await entry(scope, receive, send)
        finally:
            self.front_door.in_flight -= 1

    def _entry(self, path: str) -> Any:
        """The exchange entry point ``path`` goes to; None for the FastAPI app's paths."""
        if path.startswith(PREFIX):
            return self.rest
        if is_soap_path(path):
            return self.soap
        if path == LIST_CLIENTS:
            return self.list_clients
        return None


def create_app(config: Config, *, freeze_heap: bool = False) -> Any:
    """The gateway; ``freeze_heap`` for a serving process (``lienthong serve``), which owns its heap:
    not for one that builds many apps (tests), whose frozen garbage would never be freed."""
    configure_logging()
    return GatewayApp(config, freeze_heap=freeze_heap)
