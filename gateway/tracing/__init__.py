"""Traces of the exchanges (OpenTelemetry), off by default (docs/operations.md#traces).

The pipeline calls its hooks at its edges: a span per exchange (``exchange``: SERVER for the REST
and SOAP faces, a caller's W3C ``traceparent`` as its parent; INTERNAL for deliveries and flow
steps) with child spans ``policy`` (authorise), ``connector`` (send or invoke, whose upstream
requests carry ``traceparent``) and ``audit`` (the durable append). Each hook reads ``ACTIVE`` once:
with tracing off it is None, the hook goes on untraced, and nothing of OpenTelemetry is imported
(the SDK lives in ``gateway.tracing.spans``, loaded by ``start`` only).

Spans carry what the exchange was (protocol, service, operation, client, rule, outcome, status,
exchange id, audit leaf), never a body, a token, a personal id, the acting official or the paths
and queries a request added (they may carry personal ids).
"""

from __future__ import annotations

import asyncio
import importlib.util
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from gateway.config import TracingSettings
    from gateway.tracing.spans import Tracer

__all__ = ["ACTIVE", "TracingUnavailable", "install", "require", "start", "stop"]

ACTIVE: Tracer | None = None  # the process's tracer while tracing runs; None when off

_PACKAGES = ("opentelemetry.sdk", "opentelemetry.exporter.otlp.proto.http")


class TracingUnavailable(RuntimeError):
    """Tracing is enabled and the OpenTelemetry packages are not installed."""


def require(settings: TracingSettings) -> None:
    """Nothing when tracing is off or can run; ``TracingUnavailable`` saying what to install."""
    if not settings.enabled:
        return
    missing = [name for name in _PACKAGES if not _installed(name)]
    if missing:
        raise TracingUnavailable(f"tracing.enabled is true but {', '.join(missing)} is not installed: "
                                 "pip install 'lienthong[tracing]' (or set tracing.enabled: false)")


def _installed(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except ModuleNotFoundError:  # the parent package is missing
        return False


def start(settings: TracingSettings) -> Tracer | None:
    """The tracer exporting to the configured collector, made ``ACTIVE``; None when tracing is off."""
    if not settings.enabled:
        return None
    require(settings)
    from gateway.tracing.spans import exporting

    return install(exporting(settings))


def install(tracer: Tracer | None) -> Tracer | None:
    """``tracer`` becomes the process's (None: tracing off); tests install one over an in-memory exporter."""
    global ACTIVE
    ACTIVE = tracer
    return tracer


async def stop(tracer: Tracer | None) -> None:
    """Export what is pending and shut ``tracer`` down (off the event loop: it may wait on the
    collector); tracing is off afterwards."""
    if tracer is None:
        return
    if ACTIVE is tracer:
        install(None)
    await asyncio.to_thread(tracer.shutdown)
