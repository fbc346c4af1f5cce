"""One exchange, one pass through one pipeline.

Every entry point (REST now; SOAP and async delivery later) builds an ``Exchange`` from what arrived
and hands it to ``Pipeline.run`` with a ``render`` function that turns the outcome into bytes in the
entry point's own dialect. The pipeline applies its steps in order to one immutable context::

    authenticate -> resolve service -> authorise (policy) -> admit (rate limit, quota) -> parse body
        -> connector -> minimise the reply (policy) -> render -> audit

A step that refuses raises a ``GatewayError``; the chain stops, the refusal is rendered and, like
every other outcome, audited. The response leaves the gateway only after its audit leaf is durable.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

import orjson
import structlog

from gateway.agencies import Ended, member_of, today
from gateway.audit.bodies import Bodies
from gateway.audit.log import AuditLog
from gateway.audit.record import AuditRecord, BodyDigest, SubjectHasher
from gateway.config import Config, Service
from gateway.connector import Call, Connector, Reply
from gateway.errors import (
    AuditUnavailable,
    Forbidden,
    GatewayError,
    InvalidBody,
    RateLimited,
    ServerError,
    UnknownMember,
    UnknownService,
    UpstreamError,
    UpstreamTimeout,
)
from gateway.identifiers import IdentifierError, normalise_client
from gateway.oauth.verifier import TokenVerifier
from gateway.paths import check_prefix
from gateway.policy import Decision, Kept, Policy, Request, compile_fields, minimise, subject_ids
from gateway.ratelimit import Limiter, LocalLimiter
from gateway.spine import authenticated

log = structlog.get_logger("lienthong.exchange")

JSON_TYPES = ("application/json", "application/problem+json")


@dataclass(frozen=True, slots=True)
class Exchange:
    """What arrived, as the entry point read it."""

    id: str
    protocol: str
    received_us: int
    method: str
    service_id: str
    path: str = ""
    query: str = ""
    body: bytes = b""
    content_type: str = ""
    authorization: str | None = None
    client_header: str | None = None  # X-Road-Client: must equal the token's client
    user_id: str | None = None  # X-Road-UserId: the acting official
    issue: str | None = None  # X-Road-Issue: the purpose (a dossier code, a legal basis)
    represented_party: str | None = None
    operation: str | None = None  # when the protocol names it (SOAP); else the service's own
    idempotency_key: str | None = None  # Idempotency-Key: a repeated async push finds the first
    decode: Decode | None = None  # the entry point's reading of a body that is not JSON (SOAP)
    started: float = field(default_factory=time.perf_counter)


@dataclass(frozen=True, slots=True)
class Decoded:
    """What an entry point's ``decode`` makes of the body: the JSON-shaped payload (for policy
    subjects, validation and JSON connectors), and the body and type the connector is handed."""

    payload: Any
    body: bytes
    content_type: str


# (service, operation) -> Decoded, or a GatewayError; runs as the parse step, after authorisation
Decode = Callable[[Service, str], Decoded]


@dataclass(frozen=True, slots=True)
class Addressed:
    """The agency a message was addressed to (a dossier code's, a called service's member) and the
    one that got it: the same, or its successor once it is former (gateway/agencies.py)."""

    addressed: str
    actual: str


@dataclass(frozen=True, slots=True)
class Result:
    """What became of an exchange: a reply or an error, and what the steps learnt on the way."""

    exchange: Exchange
    request_sha256: str
    client: str | None = None
    scopes: frozenset[str] = frozenset()
    service: Service | None = None
    operation: str | None = None
    rule: str | None = None
    subject_paths: tuple[str, ...] = ()  # where the deciding rule says data subjects' ids sit
    decision: Decision | None = None  # the allowing rule: limits and the reply fields that may leave
    payload: Any = None
    decoded: Decoded | None = None  # set when the entry point decoded the body itself
    subjects: tuple[str, ...] = ()
    reply: Reply | None = None
    error: GatewayError | None = None
    upstream_us: int | None = None
    agency: Addressed | None = None  # a message addressed to an agency: where it went

    @property
    def status(self) -> int:
        if self.error is not None:
            return self.error.status
        return self.reply.status if self.reply is not None else 500


@dataclass(frozen=True, slots=True)
class Rendered:
    status: int
    headers: list[tuple[str, str]]
    body: bytes


Render = Callable[[Result], Rendered]
Answer = Callable[[Result], Result]  # an authenticated call -> its reply or error
Intake = Callable[[Result], Awaitable[Result]]  # stores an async request: the context with its 202
Validator = Callable[[Any], None]  # raises a GatewayError (InvalidBody, 422) for an invalid payload


class _Stop(Exception):
    """Ends the chain early, carrying the context as far as it got."""

    def __init__(self, result: Result) -> None:
        self.result = result


class Pipeline:
    def __init__(self, *, config: Config, verifier: TokenVerifier, policy: Policy,
                 connectors: Mapping[str, Connector], audit: AuditLog, subjects: SubjectHasher,
                 limiter: Limiter | None = None, intake: Intake | None = None,
                 validators: Mapping[str, Validator] | None = None) -> None:
        self.config = config
        self.verifier = verifier
        self.policy = policy
        self.limiter: Limiter = limiter if limiter is not None else LocalLimiter()
        self.connectors = connectors
        self.audit = audit
        self.subjects = subjects
        self.intake = intake  # stores an async service's request and answers 202 (gateway/delivery)
        self.validators = validators or {}  # JSON Schema checks by service id
        self.agencies = config.agencies  # validity periods and successors (gateway/agencies.py)
        # A step returns the new context, or an awaitable of it (a step that does I/O).
        self._steps: tuple[Callable[[Result], Any], ...] = (
            self.authenticate, self.resolve, self.authorise, self.admit, self.parse, self.validate)

    async def run(self, exchange: Exchange, render: Render) -> Rendered:
        ctx = Result(exchange=exchange, request_sha256=hashlib.sha256(exchange.body).hexdigest())
        try:
            for step in self._steps:
                out = step(ctx)
                ctx = out if isinstance(out, Result) else await out
            ctx = await self.call(ctx)
        except _Stop as stop:
            ctx = stop.result
        return await self._finish(ctx, render)

    async def refuse(self, exchange: Exchange, error: GatewayError, render: Render) -> Rendered:
        """An exchange the entry point refused before the steps (a bad path, a body too large):
        rendered and audited like any other."""
        ctx = Result(exchange=exchange, request_sha256=hashlib.sha256(exchange.body).hexdigest(),
                     error=error)
        return await self._finish(ctx, render)

    async def answer(self, exchange: Exchange, answer: Answer, render: Render) -> Rendered:
        """A call the gateway answers itself (X-Road's metadata services, gateway/metadata.py):
        authenticated, rendered and audited like any exchange; ``answer`` takes the place of the
        service, policy and connector steps and sets the reply or the error."""
        ctx = Result(exchange=exchange, request_sha256=hashlib.sha256(exchange.body).hexdigest())
        try:
            ctx = answer(self.authenticate(ctx))
        except _Stop as stop:
            ctx = stop.result
        return await self._finish(ctx, render)

    async def deliver(self, ctx: Result, render: Render,
                      kept: Kept | None = None) -> tuple[Result, Rendered]:
        """A stored async exchange, handed over by a delivery worker: authenticated, authorised,
        parsed and validated when it was accepted, so only the connector step runs now; rendered
        and audited (protocol "delivery") like every exchange. The decision it was accepted under
        decides which fields of the answer are kept: ``kept`` as stored with it, or for a delivery
        stored before decisions were kept (None), the rule's fields now."""
        rule = next((r for r in self.policy.rules if r.name == ctx.rule), None)
        if rule is None:
            # A policy reload renamed or removed the rule: the operator withdrew what allowed the
            # message, so it is not sent (fail closed, never unminimised) and dies as forbidden.
            return await self._complete(replace(ctx, error=Forbidden(
                f"rule {ctx.rule!r}, which allowed this request when it was accepted, is no longer "
                "in the policies; the request is not sent", rule=ctx.rule)), render)
        decision = Decision.of(rule)
        if kept is not None:
            fields = None if kept.fields is None else compile_fields(list(kept.fields))
            decision = replace(decision, fields=fields)
        ctx = replace(ctx, decision=decision)
        ctx = await self.invoke(ctx)
        return await self._complete(ctx, render)

    async def _finish(self, ctx: Result, render: Render) -> Rendered:
        return (await self._complete(ctx, render))[1]

    async def _complete(self, ctx: Result, render: Render) -> tuple[Result, Rendered]:
        if ctx.error is not None and not ctx.subjects:
            ctx = replace(ctx, subjects=self._named_subjects(ctx))
        try:
            rendered = render(ctx)
        except GatewayError as err:  # the reply cannot be said in the entry point's dialect
            ctx = replace(ctx, error=err)
            rendered = render(ctx)
        try:
            await self.audit.append(self.record(ctx, rendered), bodies=self.kept_bodies(ctx, rendered))
        except AuditUnavailable as exc:
            ctx = replace(ctx, error=exc, reply=None)
            rendered = render(ctx)
        self._log(ctx, rendered)
        return ctx, rendered

    # -- the steps ---------------------------------------------------------------------------------

    def _fail(self, ctx: Result, error: GatewayError) -> _Stop:
        return _Stop(replace(ctx, error=error))

    def authenticate(self, ctx: Result) -> Result:
        ex = ctx.exchange
        try:
            token = authenticated(self.verifier, self.config, ex.authorization)
        except GatewayError as err:
            raise self._fail(ctx, err) from None
        ctx = replace(ctx, client=token.client_id, scopes=token.scopes)
        if ex.client_header is not None:
            try:
                claimed = normalise_client(ex.client_header)
            except IdentifierError as err:
                raise self._fail(ctx, Forbidden(f"X-Road-Client is not a member or subsystem id: {err}")) \
                    from None
            if claimed != token.client_id:
                raise self._fail(ctx, self._not_the_token_client(claimed, token.client_id))
        return ctx

    def _not_the_token_client(self, claimed: str, holder: str) -> GatewayError:
        """A token acts only as the client it was issued to, member and subsystem alike: as in
        X-Road, where an information system is authenticated per client, a member and each of its
        subsystems are different clients. A claimed client nobody declared is X-Road's unknown
        member; a declared one is a 403 whose challenge says the token does not reach that far."""
        if not self.config.declares(claimed):
            return UnknownMember(f"client {claimed} is not registered here")
        return Forbidden(f"X-Road-Client {claimed} is not the client the token was issued to ({holder})",
                         challenge="the token was issued to another client than the one X-Road-Client "
                                   "names")

    def resolve(self, ctx: Result) -> Result:
        ex = ctx.exchange
        service = self.config.service(ex.service_id)
        if self.agencies.changes:
            service, ctx = self._successor_service(ctx, ex.service_id, service)
        if service is None:
            raise self._fail(ctx, UnknownService(f"no service {ex.service_id} is registered here"))
        try:
            check_prefix(ex.path, service.extra_path, service.id)
        except GatewayError as err:
            raise self._fail(replace(ctx, service=service), err) from None
        return replace(ctx, service=service, operation=ex.operation or service.operation_name)

    def _successor_service(self, ctx: Result, service_id: str,
                           service: Service | None) -> tuple[Service | None, Result]:
        """A service of a former agency, called after its last day (listed still or not): the
        successor's service of the same subsystem and code takes the call, and the record keeps
        both agencies; when the successor has none, the call is refused naming the successor."""
        try:
            addressed = member_of(service_id)
        except IdentifierError:
            return service, ctx
        day = today()
        if not self.agencies.ended(addressed, day):
            return service, ctx
        try:
            actual = self.agencies.current(addressed, day)
        except Ended as err:
            raise self._fail(ctx, UnknownService(f"no service {service_id}: {err}")) from None
        successor_id = actual + service_id[len(addressed):]
        successor = self.config.service(successor_id)
        if successor is None:
            raise self._fail(ctx, UnknownService(
                f"no service {service_id}: {self.agencies.refusal(addressed, day)}, which has no "
                f"service {successor_id}"))
        return successor, replace(ctx, agency=Addressed(addressed, actual))

    def authorise(self, ctx: Result) -> Result:
        ex = ctx.exchange
        assert ctx.client is not None and ctx.service is not None and ctx.operation is not None
        request = Request(client=ctx.client, service=ctx.service.id, operation=ctx.operation,
                          scopes=ctx.scopes, user_id=ex.user_id, issue=ex.issue)
        try:
            decision = self.policy.decide(request)
        except Forbidden as err:
            carried = self._carried(ctx, request)
            if carried is None:
                raise _Stop(replace(ctx, error=err, rule=err.rule)) from None
            decision = carried
        paths = tuple(dict.fromkeys([*ctx.service.subjects, *decision.rule.subjects]))
        return replace(ctx, rule=decision.rule_name, subject_paths=paths, decision=decision)

    def _carried(self, ctx: Result, request: Request) -> Decision | None:
        """For a call that went to a former agency's successor: the decision the former agency's
        rules give, where the operator let them carry over (``carry_policies``); else None."""
        if ctx.agency is None or ctx.exchange.service_id == request.service:
            return None
        former = self.agencies.member(ctx.agency.addressed)
        if former is None or not former.carry_policies:
            return None
        try:
            return self.policy.decide(replace(request, service=ctx.exchange.service_id))
        except Forbidden:
            return None

    async def admit(self, ctx: Result) -> Result:
        """The deciding rule's rate limit and quota, per client and service; a refusal names the
        rule."""
        decision = ctx.decision
        if decision is None or not decision.limited:
            return ctx
        assert ctx.client is not None and ctx.service is not None
        try:
            verdict = await self.limiter.admit(decision.limit_key(ctx.client, ctx.service.id),
                                               decision.rate, decision.quota)
        except GatewayError as err:  # the shared counters cannot be reached: refuse, never let through
            raise self._fail(ctx, err) from None
        if verdict.allowed:
            return ctx
        what = "rate limit" if verdict.exceeded == "rate" else "quota"
        raise self._fail(ctx, RateLimited(
            f"rule {decision.rule_name!r}: the {what} of client {ctx.client} for {ctx.service.id} is "
            "spent; retry later", retry_after=verdict.retry_after, rule=decision.rule_name))

    def parse(self, ctx: Result) -> Result:
        ex = ctx.exchange
        payload: Any = None
        decoded: Decoded | None = None
        media = ex.content_type.split(";", 1)[0].strip().lower()
        if ex.decode is not None:
            assert ctx.service is not None and ctx.operation is not None
            try:
                decoded = ex.decode(ctx.service, ctx.operation)
            except GatewayError as err:
                raise self._fail(ctx, err) from None
            payload = decoded.payload
        elif ex.body and (media in JSON_TYPES or media.endswith("+json")):
            try:
                payload = orjson.loads(ex.body)
            except orjson.JSONDecodeError as exc:
                raise self._fail(ctx, InvalidBody(f"the body is not valid JSON: {exc}")) from None
        subjects: tuple[str, ...] = ()
        if ctx.subject_paths and payload is not None:
            subjects = tuple(self.subjects(s) for s in subject_ids(payload, list(ctx.subject_paths)))
        return replace(ctx, payload=payload, decoded=decoded, subjects=subjects)

    def _named_subjects(self, ctx: Result) -> tuple[str, ...]:
        """The data subjects a refused (or failed) request names, by its service's subject paths:
        a refused look-up is what a citizen most wants to see in their report. Read from the body
        here when the steps stopped before parsing it; a body that cannot be read names no one."""
        ex = ctx.exchange
        service = ctx.service or self.config.service(ex.service_id)
        if service is None:
            return ()
        paths = list(dict.fromkeys([*service.subjects, *ctx.subject_paths]))
        if not paths:
            return ()
        payload = ctx.payload
        if payload is None and ex.body:
            try:
                payload = self.parse(replace(ctx, service=service, subject_paths=(),
                                             operation=ctx.operation or ex.operation
                                             or service.operation_name)).payload
            except _Stop:
                return ()
        if payload is None:
            return ()
        return tuple(self.subjects(s) for s in subject_ids(payload, paths))

    def validate(self, ctx: Result) -> Result:
        """The service's JSON Schema, when it has one: 422 listing every error's path."""
        assert ctx.service is not None
        check = self.validators.get(ctx.service.id)
        if check is not None:
            try:
                check(ctx.payload)
            except GatewayError as err:
                raise self._fail(ctx, err) from None
        return ctx

    async def call(self, ctx: Result) -> Result:
        """An async service's request is stored for the delivery workers and answered 202; any
        other goes to the connector now."""
        assert ctx.service is not None
        if ctx.service.delivery != "async":
            return await self.invoke(ctx)
        if self.intake is None:
            return replace(ctx, error=ServerError(f"{ctx.service.id} is delivered asynchronously and "
                                                  "this gateway runs no delivery queue"))
        try:
            return await self.intake(ctx)
        except GatewayError as err:
            return replace(ctx, error=err)

    async def invoke(self, ctx: Result) -> Result:
        ex, service = ctx.exchange, ctx.service
        assert service is not None and ctx.operation is not None
        connector = self.connectors[service.id]
        body, content_type = ((ctx.decoded.body, ctx.decoded.content_type) if ctx.decoded is not None
                              else (ex.body, ex.content_type))
        call = Call(exchange_id=ex.id, service=service, operation=ctx.operation, method=ex.method,
                    path=ex.path, query=ex.query, payload=ctx.payload, body=body,
                    content_type=content_type, headers=self._xroad_headers(ctx))
        started = time.perf_counter()
        try:
            # The connector keeps its own timeout; this guard only bounds a connector that hangs
            # (a scope, not wait_for: no extra task per exchange).
            async with asyncio.timeout(service.timeout + 5):
                reply = await connector.call(call)
        except GatewayError as err:
            if ctx.decision is not None and ctx.decision.fields is not None:
                err = _withheld(err, service.id, ctx.decision.rule_name)
            return replace(ctx, error=err, upstream_us=_us_since(started))
        except TimeoutError:
            return replace(ctx, error=UpstreamTimeout(f"{service.id} did not answer in time"),
                           upstream_us=_us_since(started))
        except Exception as exc:
            log.error("connector_crashed", exchange_id=ex.id, service=service.id,
                      error=type(exc).__name__)
            return replace(ctx, error=ServerError("the connector failed unexpectedly"),
                           upstream_us=_us_since(started))
        if ctx.decision is not None and ctx.decision.fields is not None:
            try:
                reply = _minimised(reply, ctx.decision.fields)
            except UpstreamError as err:
                return replace(ctx, error=err, upstream_us=_us_since(started))
        return replace(ctx, reply=reply, upstream_us=_us_since(started))

    # -- audit and log ----------------------------------------------------------------------------

    @staticmethod
    def _xroad_headers(ctx: Result) -> dict[str, str]:
        ex = ctx.exchange
        headers = {"X-Road-Id": ex.id, "X-Road-Client": ctx.client or ""}
        if ex.user_id:
            headers["X-Road-UserId"] = ex.user_id
        if ex.issue:
            headers["X-Road-Issue"] = ex.issue
        if ex.represented_party:
            headers["X-Road-Represented-Party"] = ex.represented_party
        return headers

    def record(self, ctx: Result, rendered: Rendered) -> AuditRecord:
        ex, err, reply = ctx.exchange, ctx.error, ctx.reply
        outcome = err.outcome if err is not None else "ok"
        client = ctx.client
        if client is None and ex.client_header:
            client = ex.client_header[:255]  # what an unauthenticated caller claimed to be
        return AuditRecord(
            exchange_id=ex.id, ts_us=ex.received_us, protocol=ex.protocol, outcome=outcome,
            status=rendered.status, client=client, user_id=ex.user_id,
            represented_party=ex.represented_party, purpose=ex.issue,
            service=ctx.service.id if ctx.service else ex.service_id[:255],
            operation=ctx.operation, rule=ctx.rule, error=err.code if err is not None else None,
            total_us=_us_since(ex.started), upstream_us=ctx.upstream_us,
            request=BodyDigest(ctx.request_sha256, len(ex.body)),
            response=BodyDigest.of(rendered.body),
            upstream_request=BodyDigest.of(reply.wire_request) if reply else None,
            upstream_response=BodyDigest.of(reply.wire_response) if reply else None,
            subjects=ctx.subjects, path=ex.path, query=ex.query,
            agency=(ctx.agency.addressed, ctx.agency.actual) if ctx.agency is not None else None,
        )

    def kept_bodies(self, ctx: Result, rendered: Rendered) -> Bodies | None:
        """The bodies to keep, encrypted, beside the leaf: only where the deciding rule says so."""
        rule = ctx.decision.rule if ctx.decision is not None else \
            next((r for r in self.policy.rules if r.name == ctx.rule), None) if ctx.rule else None
        if rule is None or not rule.keep_bodies:
            return None
        reply = ctx.reply
        return Bodies(request=ctx.exchange.body, response=rendered.body,
                      upstream_request=reply.wire_request if reply else None,
                      upstream_response=reply.wire_response if reply else None,
                      retention_days=rule.retention_days)

    @staticmethod
    def _log(ctx: Result, rendered: Rendered) -> None:
        err = ctx.error
        log.info("exchange", exchange_id=ctx.exchange.id, protocol=ctx.exchange.protocol,
                 client=ctx.client, service=ctx.service.id if ctx.service else None,
                 operation=ctx.operation, status=rendered.status,
                 outcome=err.outcome if err else "ok", error=err.code if err else None,
                 rule=ctx.rule, ms=round((time.perf_counter() - ctx.exchange.started) * 1000, 2))


def _minimised(reply: Reply, fields: Any) -> Reply:
    """The reply with only the fields the policy lets leave: the one place where this happens, on
    the JSON-shaped payload before any entry point renders it (REST and SOAP alike)."""
    payload = reply.payload
    if isinstance(payload, bytes | bytearray):
        try:
            payload = orjson.loads(payload)
        except orjson.JSONDecodeError:
            raise UpstreamError("the upstream's reply is not JSON-shaped, so it cannot be reduced to "
                                "the fields the policy lets leave; it is withheld") from None
    return replace(reply, payload=minimise(payload, fields))


def _withheld(err: GatewayError, service: str, rule: str) -> GatewayError:
    """An upstream's error under a rule that minimises replies: what the upstream said (a body,
    a fault string or detail, which may name a citizen) is withheld like any field the rule does
    not let leave; its HTTP status and fault code, which name no one, stay."""
    if not isinstance(err, UpstreamError):
        return err  # the gateway's own words (timeouts, unreachable): nothing of the upstream's
    kept: dict[str, Any] = {k: err.extra[k] for k in ("status", "faultcode") if k in err.extra}
    return UpstreamError(f"{service} answered with an error; what it said is withheld, as rule "
                         f"{rule!r} lets only its reply's allowed fields leave",
                         extra={**kept, "withheld": True}, retryable=err.retryable)


def _us_since(started: float) -> int:
    return int((time.perf_counter() - started) * 1_000_000)
