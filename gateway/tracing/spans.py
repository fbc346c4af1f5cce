"""The tracer behind ``gateway.tracing``'s hooks, over the OpenTelemetry SDK. Imported only when
tracing is on (``gateway.tracing.start``) or by tests."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from contextlib import AbstractContextManager
from typing import TypeVar
from urllib.parse import urlsplit

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.sdk.trace.sampling import ParentBased, TraceIdRatioBased
from opentelemetry.trace import Span, SpanKind, Status, StatusCode
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
from opentelemetry.util.types import AttributeValue

from gateway import __version__
from gateway.config import TracingSettings
from gateway.context import Exchange, Rendered, Result, Stop
from gateway.errors import GatewayError

__all__ = ["Tracer", "exporting"]

T = TypeVar("T")

_FACES = frozenset({"rest", "soap"})  # entry points a client calls: SERVER spans, its trace honoured
_PROPAGATOR = TraceContextTextMapPropagator()


class Tracer:
    """Makes the exchanges' spans with ``provider``'s tracer. Every attribute is set here, from the
    context's own fields: nothing from a body, a token, a path or a query."""

    def __init__(self, provider: TracerProvider) -> None:
        self.provider = provider
        self._tracer = provider.get_tracer("lienthong", __version__)

    def span(self, name: str, kind: SpanKind = SpanKind.INTERNAL,
             attributes: Mapping[str, AttributeValue] | None = None,
             parent: Context | None = None) -> AbstractContextManager[Span]:
        return self._tracer.start_as_current_span(name, context=parent, kind=kind, attributes=attributes,
                                                  record_exception=False,  # messages may quote bodies
                                                  set_status_on_exception=False)

    # -- the hooks ----------------------------------------------------------------------------------

    async def exchange(self, exchange: Exchange, work: Awaitable[T]) -> T:
        """``work`` (the whole pass: steps, render, audit) within the exchange's span."""
        face = exchange.protocol in _FACES
        parent = _parent(exchange) if face else None
        with self.span("exchange", SpanKind.SERVER if face else SpanKind.INTERNAL,
                       {"lienthong.protocol": exchange.protocol, "lienthong.exchange_id": exchange.id,
                        "http.request.method": exchange.method}, parent):
            return await work

    def finished(self, ctx: Result, rendered: Rendered, leaf: int | None) -> None:
        """What became of the exchange, on its span (the current one)."""
        span = trace.get_current_span()
        if not span.is_recording():
            return
        err = ctx.error
        attributes: dict[str, AttributeValue] = {
            "lienthong.outcome": err.outcome if err is not None else "ok",
            "http.response.status_code": rendered.status}
        # Registered ids only: a path naming no service, or a caller not authenticated, says nothing.
        for key, value in (("lienthong.service", ctx.service.id if ctx.service else None),
                           ("lienthong.operation", ctx.operation), ("lienthong.client", ctx.client),
                           ("lienthong.rule", ctx.rule), ("lienthong.error", err.code if err else None),
                           ("lienthong.audit.leaf", leaf)):
            if value is not None:
                attributes[key] = value
        span.set_attributes(attributes)
        if rendered.status >= 500:
            span.set_status(Status(StatusCode.ERROR, err.code if err is not None else None))

    def policy(self, decide: Callable[[Result], Result], ctx: Result) -> Result:
        """The authorise step within the ``policy`` span: the deciding rule, or the refusal."""
        if not _sampled():  # an exchange sampled out: no children either, they would be dropped
            return decide(ctx)
        with self.span("policy") as span:
            try:
                ctx = decide(ctx)
            except Stop as stopped:
                _refused(span, stopped.result.error, stopped.result.rule)
                raise
            except GatewayError as err:
                _refused(span, err, None)
                raise
            span.set_attributes({"lienthong.decision": "allowed", **_some(ctx.rule, "lienthong.rule")})
            return ctx

    async def connector(self, ctx: Result, sending: Awaitable[Result]) -> Result:
        """The connector's call (or the queue's intake) within the ``connector`` span, whose
        upstream requests carry its ``traceparent`` (``outbound``)."""
        if not _sampled():  # upstreams get the exchange's traceparent, flagged not sampled
            return await sending
        attributes: dict[str, AttributeValue] = {}
        if ctx.service is not None:
            attributes["lienthong.service"] = ctx.service.id
            if ctx.service.upstream:  # as configured: what a request adds to it may name a person
                attributes["url.full"] = _bare(ctx.service.upstream)
        with self.span("connector", SpanKind.CLIENT, attributes) as span:
            done = await sending
            if done.error is not None:
                span.set_attribute("lienthong.error", done.error.code)
                if done.error.status >= 500:
                    span.set_status(Status(StatusCode.ERROR, done.error.code))
            return done

    async def audit(self, appending: Awaitable[int]) -> int:
        """The audit append within the ``audit`` span: the leaf's index once it is durable."""
        if not _sampled():
            return await appending
        with self.span("audit") as span:
            try:
                leaf = await appending
            except GatewayError as err:
                span.set_status(Status(StatusCode.ERROR, err.code))
                raise
            span.set_attribute("lienthong.audit.leaf", leaf)
            return leaf

    def outbound(self, method: str, url: str, headers: Mapping[str, str] | None) -> Mapping[str, str]:
        """``headers`` with the current span's ``traceparent``; the request's method and server on
        that span (the connector's)."""
        carrier = dict(headers or {})
        _PROPAGATOR.inject(carrier)
        span = trace.get_current_span()
        if span.is_recording():
            parts = urlsplit(url)
            span.set_attributes({"http.request.method": method, "server.address": parts.hostname or "",
                                 "server.port": parts.port or (443 if parts.scheme == "https" else 80)})
        return carrier

    @staticmethod
    def answered(status: int) -> None:
        """The upstream's HTTP status, on the current span (the connector's)."""
        trace.get_current_span().set_attribute("http.response.status_code", status)

    def shutdown(self) -> None:
        """Export what is pending (at most 5 s), then stop the exporter."""
        self.provider.force_flush(5_000)
        self.provider.shutdown()


def exporting(settings: TracingSettings) -> Tracer:
    """A tracer whose spans a batch processor exports over OTLP/HTTP (protobuf)."""
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

    provider = TracerProvider(resource=Resource.create({"service.name": settings.service_name,
                                                        "service.version": __version__}),
                              sampler=ParentBased(TraceIdRatioBased(settings.sample_ratio)))
    exporter = OTLPSpanExporter(endpoint=settings.endpoint, headers=dict(settings.headers) or None)
    provider.add_span_processor(BatchSpanProcessor(exporter))
    return Tracer(provider)


def _sampled() -> bool:
    """Whether the current span (the exchange's) is recorded."""
    return trace.get_current_span().is_recording()


def _parent(exchange: Exchange) -> Context | None:
    """The caller's trace from its ``traceparent`` (and ``tracestate``); None when it sent none."""
    if exchange.traceparent is None:
        return None
    carrier = {"traceparent": exchange.traceparent}
    if exchange.tracestate is not None:
        carrier["tracestate"] = exchange.tracestate
    return _PROPAGATOR.extract(carrier)


def _refused(span: Span, err: GatewayError | None, rule: str | None) -> None:
    span.set_attributes({"lienthong.decision": "refused", **_some(rule, "lienthong.rule"),
                         **_some(err.code if err is not None else None, "lienthong.error")})


def _some(value: str | None, key: str) -> dict[str, AttributeValue]:
    return {} if value is None else {key: value}


def _bare(url: str) -> str:
    """``url`` without credentials, query or fragment."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    netloc = f"[{host}]" if ":" in host else host
    if parts.port is not None:
        netloc += f":{parts.port}"
    return f"{parts.scheme}://{netloc}{parts.path}"
