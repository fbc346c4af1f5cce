"""One exchange, one pass through one pipeline.

Every entry point (REST, SOAP, the delivery workers, X-Road's metadata services) builds an
``Exchange`` from what arrived and hands it to ``Pipeline.run`` with a ``render`` function that
turns the outcome into bytes in the entry point's own dialect. The pipeline runs its steps
(gateway/steps.py) in order over one immutable context (gateway/context.py)::

    authenticate -> resolve service -> authorise (policy) -> admit (rate limit, quota) -> parse body
        -> verify signature (where asked) -> validate -> send (connector, reply minimised; or the
        delivery queue) -> render -> audit

A step that refuses raises; the chain stops, the refusal is rendered and, like every other
outcome, audited. The response leaves the gateway only after its audit leaf is durable.

The pipeline's own dependencies are its ``Ports``; the steps are plain functions bound to them
here, and a pipeline can be built from any other functions of the same shape (tests do).

Traces (gateway/tracing, off by default) hook in at the edges: around the whole pass, the
authorise step, the connector call and the audit append; each hook is one ``is None`` when off.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Protocol, TypeVar

import structlog

from gateway import steps, tracing
from gateway.audit.bodies import Bodies
from gateway.audit.record import AuditRecord, BodyDigest
from gateway.config import Config
from gateway.connector import Connector
from gateway.context import (
    Addressed,
    Answer,
    Decode,
    Decoded,
    Exchange,
    Intake,
    Render,
    Rendered,
    Result,
    Step,
    Stop,
    Validator,
    evolve,
)
from gateway.errors import AuditUnavailable, Forbidden, GatewayError
from gateway.metrics import observe_exchange
from gateway.policy import Decision, Kept, Policy, compile_fields
from gateway.ratelimit import Limiter, LocalLimiter
from gateway.seal import outbound

if TYPE_CHECKING:
    from gateway.seal import Sealer

__all__ = ["Addressed", "Answer", "AuditSink", "Decode", "Decoded", "Exchange", "Intake", "Pipeline",
           "Ports", "Render", "Rendered", "Result", "Step", "Validator", "standard_checks"]

log = structlog.get_logger("lienthong.exchange")
T = TypeVar("T")


class AuditSink(Protocol):
    """Where every outcome's record goes before its answer leaves (``AuditLog`` is one)."""

    async def append(self, record: AuditRecord, *, bodies: Bodies | None = None) -> int: ...


@dataclass(slots=True)
class Ports:
    """What the pipeline and its standard steps consult. ``policy`` is swapped on a reload; the
    steps read it at each exchange, so the next exchange is decided by the new rules."""

    config: Config
    tokens: steps.TokenCheck
    policy: Policy
    connectors: Mapping[str, Connector]
    audit: AuditSink
    subjects: steps.Hasher
    limiter: Limiter = field(default_factory=LocalLimiter)
    intake: Intake | None = None  # stores an async service's request and answers 202 (gateway/delivery)
    validators: Mapping[str, Validator] = field(default_factory=dict)  # JSON Schema checks by service
    flows: Intake | None = None  # files a joint dossier's flow and answers 202 (gateway/flows)
    signatures: steps.SignatureCheck | None = None  # the trust store's check, when anything asks (signed.py)
    documents: Intake | None = None  # a document service's edXML exchange (gateway/documents)
    seal: Sealer | None = None  # the gateway seal on answers and upstream requests (gateway/seal)


class Pipeline:
    """Runs steps over an exchange's context, then renders, audits and logs the outcome.

    ``checks`` are the steps before the call (by default authenticate … validate), ``send`` the
    call itself (the connector, or the delivery queue's intake) and ``invoke`` what a delivery
    worker sends through later (the connector alone). ``audited`` says which outcomes are
    exchanges of their own, each a leaf and a log line: every one, unless the pipeline's caller is
    the gateway itself (the flow engine, whose accepted requests are exchanged, audited and
    logged by the delivery queue's attempts)."""

    def __init__(self, ports: Ports, *, checks: Sequence[Step] | None = None,
                 send: Step | None = None, invoke: Step | None = None,
                 audited: Callable[[Result], bool] | None = None) -> None:
        self.ports = ports
        self.checks: tuple[Step, ...] = tuple(checks) if checks is not None else standard_checks(ports)
        self._audited = audited

        seal = ports.seal
        # Which upstream requests carry the seal: gateway.upstream.send adds it within outbound().
        seal_calls = seal if seal is not None and seal.settings.upstream == "all" else None
        seal_deliveries = seal if seal is not None and seal.settings.upstream != "none" else None

        async def send_now(ctx: Result) -> Result:
            with outbound(seal_calls):
                return await _in_connector_span(
                    ctx, steps.send(ctx, ports.connectors, ports.intake, ports.flows, ports.documents))

        async def invoke_now(ctx: Result) -> Result:
            with outbound(seal_deliveries):
                return await _in_connector_span(ctx, steps.invoke(ctx, ports.connectors))

        self.send: Step = send or send_now
        self.invoke: Step = invoke or invoke_now

    # The catalog, the policy in force and the connectors, as entry points and pages read them.

    @property
    def config(self) -> Config:
        return self.ports.config

    @property
    def policy(self) -> Policy:
        return self.ports.policy

    @policy.setter
    def policy(self, policy: Policy) -> None:
        self.ports.policy = policy

    @property
    def connectors(self) -> Mapping[str, Connector]:
        return self.ports.connectors

    # -- the ways in --------------------------------------------------------------------------------

    async def run(self, exchange: Exchange, render: Render) -> Rendered:
        passing = self._pass(_start(exchange), self.checks, self.send, render)
        return (await _traced(exchange, passing))[1]

    async def refuse(self, exchange: Exchange, error: GatewayError, render: Render) -> Rendered:
        """An exchange the entry point refused before the steps (a bad path, a body too large):
        rendered and audited like any other."""
        passing = self._complete(evolve(_start(exchange), error=error), render)
        return (await _traced(exchange, passing))[1]

    async def answer(self, exchange: Exchange, answer: Answer, render: Render) -> Rendered:
        """A call the gateway answers itself (X-Road's metadata services, gateway/metadata.py):
        authenticated, rendered and audited like any exchange; ``answer`` takes the place of the
        service, policy and connector steps and sets the reply or the error."""
        async def answered(ctx: Result) -> Result:
            return answer(ctx)

        passing = self._pass(_start(exchange), self.checks[:1], answered, render)
        return (await _traced(exchange, passing))[1]

    async def deliver(self, ctx: Result, render: Render,
                      kept: Kept | None = None) -> tuple[Result, Rendered]:
        """A stored async exchange, handed over by a delivery worker: authenticated, authorised,
        parsed and validated when it was accepted, so only the connector runs now; rendered
        and audited (protocol "delivery") like every exchange. The decision it was accepted under
        decides which fields of the answer are kept: ``kept`` as stored with it, or for a delivery
        stored before decisions were kept (None), the rule's fields now."""
        async def decided(ctx: Result) -> Result:
            return _accepted_under(ctx, self.ports.policy, kept)

        passing = self._pass(ctx, (decided,), self.invoke, render)
        return await _traced(ctx.exchange, passing)

    # -- running and finishing ----------------------------------------------------------------------

    async def _pass(self, ctx: Result, checks: Sequence[Step], send: Step,
                    render: Render) -> tuple[Result, Rendered]:
        return await self._complete(await self._through(ctx, checks, send), render)

    @staticmethod
    async def _through(ctx: Result, checks: Sequence[Step], send: Step) -> Result:
        try:
            for step in checks:
                ctx = await step(ctx)
            return await send(ctx)
        except Stop as stopped:
            return stopped.result
        except GatewayError as err:  # a step's refusal that taught the context nothing more
            return evolve(ctx, error=err)

    async def _complete(self, ctx: Result, render: Render) -> tuple[Result, Rendered]:
        ports = self.ports
        if ctx.error is not None and not ctx.subjects:
            ctx = evolve(ctx, subjects=steps.named_subjects(ctx, ports.config, ports.subjects))
        seal = ports.seal
        if seal is not None and seal.settings.answers and ctx.exchange.protocol in _FACES:
            render = _sealed(render, seal)
        try:
            rendered = render(ctx)
        except GatewayError as err:  # the reply cannot be said in the entry point's dialect
            ctx = evolve(ctx, error=err)
            rendered = render(ctx)
        tracer = tracing.ACTIVE
        leaf: int | None = None
        own = self._audited is None or self._audited(ctx)
        try:
            if own:
                appending = ports.audit.append(record(ctx, rendered),
                                               bodies=kept_bodies(ctx, rendered, ports.policy))
                leaf = await (appending if tracer is None else tracer.audit(appending))
        except AuditUnavailable as exc:
            ctx = evolve(ctx, error=exc, reply=None)
            rendered = render(ctx)
        if tracer is not None:
            tracer.finished(ctx, rendered, leaf)
        if own:
            _log(ctx, rendered)
        observe_exchange(ctx.exchange.protocol, ctx.service.id if ctx.service else None, ctx.client,
                         ctx.error.outcome if ctx.error is not None else "ok",
                         _us_since(ctx.exchange.started) / 1e6, ctx.upstream_us)
        return ctx, rendered


def _traced(exchange: Exchange, passing: Awaitable[T]) -> Awaitable[T]:
    """The exchange's whole pass, within its span where tracing is on."""
    tracer = tracing.ACTIVE
    return passing if tracer is None else tracer.exchange(exchange, passing)


def _in_connector_span(ctx: Result, sending: Awaitable[Result]) -> Awaitable[Result]:
    """The connector's call (or the queue's intake), within its span where tracing is on."""
    tracer = tracing.ACTIVE
    return sending if tracer is None else tracer.connector(ctx, sending)


# The answers that leave for a client; a delivery's or a flow step's is kept, not sent to anyone.
_FACES = frozenset({"rest", "soap"})


def _sealed(render: Render, seal: Sealer) -> Render:
    """``render`` whose answers carry the gateway seal, made once over the final bytes."""
    def sealed(ctx: Result) -> Rendered:
        return seal.answer(render(ctx), ctx.exchange.protocol)

    return sealed


def standard_checks(ports: Ports, *, authenticated: bool = True) -> tuple[Step, ...]:
    """The standard steps, bound to ``ports`` (read at each call: a reload swaps the policy);
    without ``authenticate`` for a caller that says who acts itself (the flow engine), and then
    without ``verify_signature`` too: a flow's steps send what the gateway built from a joint
    dossier whose signature was checked when it was filed."""
    async def authenticate(ctx: Result) -> Result:
        return steps.authenticate(ctx, ports.tokens, ports.config)

    async def resolve(ctx: Result) -> Result:
        return steps.resolve(ctx, ports.config)

    def decide(ctx: Result) -> Result:
        return steps.authorise(ctx, ports.policy, ports.config)

    async def authorise(ctx: Result) -> Result:
        tracer = tracing.ACTIVE
        return decide(ctx) if tracer is None else tracer.policy(decide, ctx)

    async def admit(ctx: Result) -> Result:
        return await steps.admit(ctx, ports.limiter)

    async def parse(ctx: Result) -> Result:
        return steps.parse(ctx, ports.subjects)

    async def verify_signature(ctx: Result) -> Result:
        return await steps.verify_signature(ctx, ports.signatures)

    async def validate(ctx: Result) -> Result:
        return steps.validate(ctx, ports.validators)

    if not authenticated:
        return (resolve, authorise, admit, parse, validate)
    # Always in the chain: it returns at once for a service nobody asks signatures of, and fails
    # closed for a rule a policy reload added when no trust store was loaded at start.
    return (authenticate, resolve, authorise, admit, parse, verify_signature, validate)


def _start(exchange: Exchange) -> Result:
    spooled = exchange.spooled  # a large body's digest was computed as it was read (gateway/spool.py)
    return Result(exchange=exchange, request_sha256=hashlib.sha256(exchange.body).hexdigest()
                  if spooled is None else spooled.sha256)


def _accepted_under(ctx: Result, policy: Policy, kept: Kept | None) -> Result:
    """A delivery's decision: its rule as the policy has it now, with the answer's fields as kept
    when it was accepted. A reload that renamed or removed the rule withdrew what allowed the
    message: it is not sent (fail closed, never unminimised) and dies as forbidden."""
    rule = policy.rule(ctx.rule) if ctx.rule is not None else None
    if rule is None:
        raise Forbidden(f"rule {ctx.rule!r}, which allowed this request when it was accepted, is no "
                        "longer in the policies; the request is not sent", rule=ctx.rule)
    decision = Decision.of(rule)
    if kept is not None:
        fields = None if kept.fields is None else compile_fields(list(kept.fields))
        decision = replace(decision, fields=fields)
    return evolve(ctx, decision=decision)


# -- audit and log ---------------------------------------------------------------------------------

def record(ctx: Result, rendered: Rendered) -> AuditRecord:
    """The exchange's audit record: who, what, why, the outcome, and digests of every body."""
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
        request=(request := BodyDigest(ctx.request_sha256, ex.body_size)),
        # a spooled answer's digest was computed as it was spooled (gateway/spool.py)
        response=BodyDigest.of(rendered.body) if rendered.spooled is None else
        BodyDigest(rendered.spooled.sha256, rendered.spooled.size),
        # A REST call forwards the client's body as it came: hashed once (a 1 MiB dossier: 1.5 ms).
        upstream_request=(request if reply.wire_request is ex.body else BodyDigest.of(reply.wire_request))
        if reply else None,
        upstream_response=BodyDigest.of(reply.wire_response) if reply else None,
        subjects=ctx.subjects, path=ex.path, query=ex.query,
        agency=(ctx.agency.addressed, ctx.agency.actual) if ctx.agency is not None else None,
        signature=ctx.signature.as_record() if ctx.signature is not None else None,
        document=ctx.document,
    )


def kept_bodies(ctx: Result, rendered: Rendered, policy: Policy) -> Bodies | None:
    """The bodies to keep, encrypted, beside the leaf: only where the deciding rule says so."""
    rule = ctx.decision.rule if ctx.decision is not None else \
        policy.rule(ctx.rule) if ctx.rule else None
    if rule is None or not rule.keep_bodies:
        return None
    reply, ex = ctx.reply, ctx.exchange
    # a spooled body (gateway/spool.py) is read back whole: only where a rule keeps bodies
    request = ex.whole_body()
    return Bodies(request=request,
                  response=rendered.body if rendered.spooled is None else rendered.spooled.read_all(),
                  # the request as it came, as ``record`` digests it (a spooled one's wire bytes are b"")
                  upstream_request=(request if reply.wire_request is ex.body else reply.wire_request)
                  if reply else None,
                  upstream_response=reply.wire_response if reply else None,
                  retention_days=rule.retention_days)


def _log(ctx: Result, rendered: Rendered) -> None:
    err = ctx.error
    log.info("exchange", exchange_id=ctx.exchange.id, protocol=ctx.exchange.protocol,
             client=ctx.client, service=ctx.service.id if ctx.service else None,
             operation=ctx.operation, status=rendered.status,
             outcome=err.outcome if err else "ok", error=err.code if err else None,
             rule=ctx.rule, ms=round((time.perf_counter() - ctx.exchange.started) * 1000, 2))


def _us_since(started: float) -> int:
    return int((time.perf_counter() - started) * 1_000_000)
