"""The exchange pipeline's standard steps: plain functions, each over the narrow ports it needs.

A step takes the context (gateway/context.py) and returns it enriched; a refusal raises ``Stop``
with the context as far as it got, or a plain ``GatewayError``. The pipeline (gateway/exchange.py)
binds them to the gateway's ports and runs them in order::

    authenticate -> resolve -> authorise -> admit -> parse -> verify_signature -> validate
        -> send (connector or intake)

Each function names only what it reads (a token check, the catalog, the policy, the limiter…), so
a test calls it with small stand-ins, and builds a pipeline from its own functions just as easily.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import replace
from typing import TYPE_CHECKING, Any, Literal, Protocol

import orjson
import structlog

from gateway.agencies import Agencies, Ended, member_of, today
from gateway.bounds import SIGNED_MOST
from gateway.config import Service
from gateway.connector import Call, Connector, Reply
from gateway.context import Addressed, Decoded, Intake, Result, Stop, Validator, evolve, stop
from gateway.errors import (
    Forbidden,
    GatewayError,
    InvalidBody,
    RateLimited,
    ServerError,
    SignatureInvalid,
    UnknownMember,
    UnknownService,
    UpstreamError,
    UpstreamTimeout,
)
from gateway.identifiers import IdentifierError, normalise_client
from gateway.logs import stack
from gateway.oauth.verifier import TokenInfo
from gateway.paths import check_prefix
from gateway.policy import Decision, Request, minimise, subject_ids
from gateway.policy.rules import Rule
from gateway.ratelimit import Quota, Rate, Verdict

if TYPE_CHECKING:  # loaded (with its libraries) only where signatures are checked: gateway/signed.py
    from gateway.signatures.verdict import Verdict as SignatureVerdict

__all__ = ["Catalog", "Counters", "Decider", "Hasher", "SignatureCheck", "TokenCheck", "admit",
           "authenticate", "authorise", "invoke", "named_subjects", "parse", "resolve", "send",
           "signatures_asked", "validate", "verify_signature"]

log = structlog.get_logger("lienthong.exchange")

JSON_TYPES = ("application/json", "application/problem+json")


# -- the ports -------------------------------------------------------------------------------------

class TokenCheck(Protocol):
    """The one token check (gateway/spine.py ``authenticated``), bound to its verifier."""

    def __call__(self, authorization: str | None, /) -> TokenInfo: ...


class Catalog(Protocol):
    """What the steps read from the catalog (``Config`` is one)."""

    @property
    def agencies(self) -> Agencies: ...

    def service(self, service_id: str) -> Service | None: ...

    def declares(self, client_id: str) -> bool: ...


class Decider(Protocol):
    """The policy as the steps consult it (``Policy`` is one)."""

    def decide(self, req: Request) -> Decision: ...

    def rule(self, name: str) -> Rule | None: ...


class Counters(Protocol):
    """Rate and quota counters as ``admit`` consults them (a ``Limiter`` is one)."""

    async def admit(self, key: str, rate: Rate | None, quota: Quota | None) -> Verdict: ...


Hasher = Callable[[str], str]  # a personal id -> its keyed hash (gateway/audit/record.py)

# (body, content type, detached signature or None) -> the verdict, against the configured trust
# store (gateway/signed.py builds it on gateway.signatures.averify)
SignatureCheck = Callable[[bytes, str, bytes | None], Awaitable["SignatureVerdict"]]


# -- the steps -------------------------------------------------------------------------------------

def authenticate(ctx: Result, tokens: TokenCheck, catalog: Catalog) -> Result:
    ex = ctx.exchange
    token = tokens(ex.authorization)
    ctx = evolve(ctx, client=token.client_id, scopes=token.scopes)
    if ex.client_header is not None:
        try:
            claimed = normalise_client(ex.client_header)
        except IdentifierError as err:
            raise stop(ctx, Forbidden(f"X-Road-Client is not a member or subsystem id: {err}")) from None
        if claimed != token.client_id:
            raise stop(ctx, _not_the_token_client(catalog, claimed, token.client_id))
    return ctx


def _not_the_token_client(catalog: Catalog, claimed: str, holder: str) -> GatewayError:
    """A token acts only as the client it was issued to, member and subsystem alike: as in
    X-Road, where an information system is authenticated per client, a member and each of its
    subsystems are different clients. A claimed client nobody declared is X-Road's unknown
    member; a declared one is a 403 whose challenge says the token does not reach that far."""
    if not catalog.declares(claimed):
        return UnknownMember(f"client {claimed} is not registered here")
    return Forbidden(f"X-Road-Client {claimed} is not the client the token was issued to ({holder})",
                     challenge="the token was issued to another client than the one X-Road-Client "
                               "names")


def resolve(ctx: Result, catalog: Catalog) -> Result:
    ex = ctx.exchange
    service = catalog.service(ex.service_id)
    if catalog.agencies.changes:
        service, ctx = _successor_service(ctx, catalog, service)
    if service is None:
        raise stop(ctx, UnknownService(f"no service {ex.service_id} is registered here"))
    try:
        check_prefix(ex.path, service.extra_path, service.id)
    except GatewayError as err:
        raise stop(evolve(ctx, service=service), err) from None
    return evolve(ctx, service=service, operation=ex.operation or service.operation_name)


def _successor_service(ctx: Result, catalog: Catalog,
                       service: Service | None) -> tuple[Service | None, Result]:
    """A service of a former agency, called after its last day (listed still or not): the
    successor's service of the same subsystem and code takes the call, and the record keeps
    both agencies; when the successor has none, the call is refused naming the successor."""
    service_id = ctx.exchange.service_id
    try:
        addressed = member_of(service_id)
    except IdentifierError:
        return service, ctx
    agencies, day = catalog.agencies, today()
    if not agencies.ended(addressed, day):
        return service, ctx
    try:
        actual = agencies.current(addressed, day)
    except Ended as err:
        raise stop(ctx, UnknownService(f"no service {service_id}: {err}")) from None
    successor_id = actual + service_id[len(addressed):]
    successor = catalog.service(successor_id)
    if successor is None:
        raise stop(ctx, UnknownService(
            f"no service {service_id}: {agencies.refusal(addressed, day)}, which has no "
            f"service {successor_id}"))
    return successor, evolve(ctx, agency=Addressed(addressed, actual))


def authorise(ctx: Result, policy: Decider, catalog: Catalog) -> Result:
    ex = ctx.exchange
    service, operation = ctx.target()
    request = Request(client=ctx.caller(), service=service.id, operation=operation,
                      scopes=ctx.scopes, user_id=ex.user_id, issue=ex.issue)
    try:
        decision = policy.decide(request)
    except Forbidden as err:
        carried = _carried(ctx, request, policy, catalog)
        if carried is None:
            raise Stop(evolve(ctx, error=err, rule=err.rule)) from None
        decision = carried
    paths = tuple(dict.fromkeys([*service.subjects, *decision.rule.subjects]))
    return evolve(ctx, rule=decision.rule_name, subject_paths=paths, decision=decision)


def _carried(ctx: Result, request: Request, policy: Decider, catalog: Catalog) -> Decision | None:
    """For a call that went to a former agency's successor: the decision the former agency's
    rules give, where the operator let them carry over (``carry_policies``); else None."""
    if ctx.agency is None or ctx.exchange.service_id == request.service:
        return None
    former = catalog.agencies.member(ctx.agency.addressed)
    if former is None or not former.carry_policies:
        return None
    try:
        return policy.decide(replace(request, service=ctx.exchange.service_id))
    except Forbidden:
        return None


async def admit(ctx: Result, limiter: Counters) -> Result:
    """The deciding rule's rate limit and quota, per client and service; a refusal names the
    rule. Shared counters that cannot be reached refuse (their error), never let through."""
    decision = ctx.decision
    if decision is None or not decision.limited:
        return ctx
    client, (service, _) = ctx.caller(), ctx.target()
    verdict = await limiter.admit(decision.limit_key(client, service.id), decision.rate, decision.quota)
    if verdict.allowed:
        return ctx
    what = "rate limit" if verdict.exceeded == "rate" else "quota"
    raise RateLimited(f"rule {decision.rule_name!r}: the {what} of client {client} for {service.id} "
                      "is spent; retry later", retry_after=verdict.retry_after, rule=decision.rule_name)


def parse(ctx: Result, subjects: Hasher) -> Result:
    """The body as the service reads it: the entry point's ``decode`` (SOAP), or JSON; and the
    keyed hashes of the data subjects it names where the deciding rule says they sit."""
    ex = ctx.exchange
    payload: Any = None
    decoded: Decoded | None = None
    media = ex.content_type.split(";", 1)[0].strip().lower()
    if ex.decode is not None:
        decoded = ex.decode(*ctx.target())
        payload = decoded.payload
    elif ex.body and (media in JSON_TYPES or media.endswith("+json")):
        try:
            payload = orjson.loads(ex.body)
        except orjson.JSONDecodeError as exc:
            raise InvalidBody(f"the body is not valid JSON: {exc}") from None
    named: tuple[str, ...] = ()
    if ctx.subject_paths and payload is not None:
        named = tuple(subjects(s) for s in subject_ids(payload, list(ctx.subject_paths)))
    return evolve(ctx, payload=payload, decoded=decoded, subjects=named)


def signatures_asked(ctx: Result) -> Literal["required", "optional"] | None:
    """What the deciding rule says of the request's signature, else what its service says."""
    service, _ = ctx.target()
    rule = ctx.decision.rule if ctx.decision is not None else None
    if rule is not None and rule.signatures is not None:
        return rule.signatures
    return service.signatures


async def verify_signature(ctx: Result, check: SignatureCheck | None) -> Result:
    """The request's signature, where the service or the deciding rule asks for one: the body's
    own (XML enveloped, PDF, CMS) or a detached JWS in ``X-JWS-Signature``. The verdict goes into
    the context (and so the audit record); ``required`` refuses any but a valid one."""
    asked = signatures_asked(ctx)
    if asked is None or _unsigned_document_call(ctx):
        return ctx
    if check is None:  # a reloaded rule asks, but start-up loaded no trust store: fail closed
        raise stop(ctx, ServerError(f"{ctx.exchange.service_id} asks for signed requests and this "
                                    "gateway loaded no trust store at start; restart it"))
    ex = ctx.exchange
    detached = ex.signature.strip().encode("latin-1") if ex.signature else None
    spooled = ex.spooled  # a large body on disk (gateway/spool.py): read back within the verifiers' bound
    if spooled is not None and spooled.size > SIGNED_MOST:
        from gateway.signatures.verdict import Verdict as Verdict_

        verdict = Verdict_(None, False, "unsupported", f"the body ({spooled.size} bytes) is larger than "
                           f"the {SIGNED_MOST} bytes within which signatures are verified")
    else:
        body = ex.body if spooled is None else await asyncio.to_thread(ex.whole_body)
        verdict = await check(body, ex.content_type, detached)
    ctx = evolve(ctx, signature=verdict)
    if verdict.valid or asked == "optional":
        return ctx
    raise stop(ctx, SignatureInvalid(f"the request's signature is not accepted ({verdict.reason}): "
                                     f"{verdict.message}", reason=verdict.reason))


def _unsigned_document_call(ctx: Result) -> bool:
    """A document service's pull calls (pending, fetch, confirm: docs/documents.md) carry no
    document; only what is sent to it (``POST`` at the service itself: a package or a status
    message, signed in its edXML header) has a signature to verify."""
    service, _ = ctx.target()
    sent = ctx.exchange.method == "POST" and not ctx.exchange.path.strip("/")
    return bool(service.documents) and not sent


def validate(ctx: Result, validators: Mapping[str, Validator]) -> Result:
    """The service's JSON Schema, when it has one: 422 listing every error's path (400 for a joint
    dossier: a flow's filing lacking a part is a bad request, as docs/flows.md says)."""
    service, _ = ctx.target()
    check = validators.get(service.id)
    if check is not None:
        try:
            check(ctx.payload)
        except InvalidBody as exc:
            if service.flow is not None:
                exc.status = 400
            raise
    return ctx


async def send(ctx: Result, connectors: Mapping[str, Connector], intake: Intake | None,
               flows: Intake | None = None, documents: Intake | None = None) -> Result:
    """A joint dossier files its flow (gateway/flows); an async service's request is stored for
    the delivery workers; both are answered 202. A document service's request is the edXML
    exchange's (gateway/documents). Any other goes to the connector now. Errors from here on are
    the outcome, not a refusal."""
    service, _ = ctx.target()
    if service.documents:
        store, missing = documents, "runs no document exchange"
    elif service.flow is not None:
        store, missing = flows, "runs no joint procedures"
    elif service.delivery == "async":
        store, missing = intake, "runs no delivery queue"
    else:
        return await invoke(ctx, connectors)
    if store is None:
        return evolve(ctx, error=ServerError(f"{service.id} is answered later and this gateway "
                                              f"{missing}"))
    try:
        return await store(ctx)
    except GatewayError as err:
        return evolve(ctx, error=err)


async def invoke(ctx: Result, connectors: Mapping[str, Connector]) -> Result:
    """The service's connector, bounded in time; the reply minimised to what the deciding rule
    lets leave."""
    ex = ctx.exchange
    service, operation = ctx.target()
    connector = connectors[service.id]
    body, content_type = ((ctx.decoded.body, ctx.decoded.content_type) if ctx.decoded is not None
                          else (ex.body, ex.content_type))
    spooled = ex.spooled if ctx.decoded is None else None
    if spooled is not None and not getattr(connector, "streams", False):
        body, spooled = await asyncio.to_thread(ex.whole_body), None  # a connector that takes bytes
    call = Call(exchange_id=ex.id, service=service, operation=operation, method=ex.method,
                path=ex.path, query=ex.query, payload=ctx.payload, body=body,
                content_type=content_type, headers=xroad_headers(ctx), spooled=spooled)
    fields = ctx.decision.fields if ctx.decision is not None else None
    started = time.perf_counter()
    try:
        # The connector keeps its own timeout; this guard only bounds a connector that hangs
        # (a scope, not wait_for: no extra task per exchange).
        async with asyncio.timeout(service.timeout + 5):
            reply = await connector.call(call)
    except GatewayError as err:
        if fields is not None and ctx.decision is not None:
            err = _withheld(err, service.id, ctx.decision.rule_name)
        return evolve(ctx, error=err, upstream_us=_us_since(started))
    except TimeoutError:
        return evolve(ctx, error=UpstreamTimeout(f"{service.id} did not answer in time"),
                       upstream_us=_us_since(started))
    except Exception as exc:
        # A bug in a connector: where it happened goes to the operator's log (not the message,
        # which may quote the body), the caller gets a 500 that names nothing.
        log.error("connector_crashed", exchange_id=ex.id, service=service.id,
                  error=type(exc).__name__, frames=stack(exc))
        return evolve(ctx, error=ServerError("the connector failed unexpectedly"),
                       upstream_us=_us_since(started))
    if fields is not None:
        try:
            reply = _minimised(reply, fields)
        except UpstreamError as err:
            return evolve(ctx, error=err, upstream_us=_us_since(started))
    return evolve(ctx, reply=reply, upstream_us=_us_since(started))


def named_subjects(ctx: Result, catalog: Catalog, subjects: Hasher) -> tuple[str, ...]:
    """The data subjects a refused (or failed) request names, by its service's subject paths:
    a refused look-up is what a citizen most wants to see in their report. Read from the body
    here when the steps stopped before parsing it; a body that cannot be read names no one."""
    ex = ctx.exchange
    service = ctx.service or catalog.service(ex.service_id)
    if service is None:
        return ()
    paths = list(dict.fromkeys([*service.subjects, *ctx.subject_paths]))
    if not paths:
        return ()
    payload = ctx.payload
    if payload is None and ex.body:
        try:
            payload = parse(evolve(ctx, service=service, subject_paths=(),
                                    operation=ctx.operation or ex.operation or service.operation_name),
                            subjects).payload
        except (Stop, GatewayError):
            return ()
    if payload is None:
        return ()
    return tuple(subjects(s) for s in subject_ids(payload, paths))


def xroad_headers(ctx: Result) -> dict[str, str]:
    """The X-Road headers an upstream is sent: the exchange's id, the client and what the caller
    said about the official, the purpose and the represented party."""
    ex = ctx.exchange
    headers = {"X-Road-Id": ex.id, "X-Road-Client": ctx.client or ""}
    if ex.user_id:
        headers["X-Road-UserId"] = ex.user_id
    if ex.issue:
        headers["X-Road-Issue"] = ex.issue
    if ex.represented_party:
        headers["X-Road-Represented-Party"] = ex.represented_party
    return headers


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
