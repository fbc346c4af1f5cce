"""What an exchange is while it runs: the request as its entry point read it, the context the
pipeline's steps fill in (gateway/exchange.py runs them, gateway/steps.py defines them), and the
rendered answer.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, fields
from typing import TYPE_CHECKING, Any

from gateway.arrival import Arrival
from gateway.config import Service
from gateway.connector import Reply
from gateway.errors import GatewayError, ServerError
from gateway.policy import Decision

if TYPE_CHECKING:  # the signatures package loads its libraries only where signatures are checked
    from gateway.signatures.verdict import Verdict
    from gateway.spool import Spooled

__all__ = ["Addressed", "Answer", "Decode", "Decoded", "Exchange", "Intake", "OutOfOrder", "Render",
           "Rendered", "Result", "Step", "Stop", "Validator", "evolve", "stop"]


class OutOfOrder(ServerError):
    """A step ran before the step that learns what it needs: a wiring mistake, answered 500."""


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
    signature: str | None = None  # X-JWS-Signature: a detached JWS over the body
    traceparent: str | None = None  # W3C trace context: the caller's trace, read where tracing is on
    tracestate: str | None = None
    started: float = field(default_factory=time.perf_counter)
    spooled: Spooled | None = None  # a large body read to a file (gateway/spool.py); ``body`` is then b""

    @property
    def body_size(self) -> int:
        return len(self.body) if self.spooled is None else self.spooled.size

    def whole_body(self) -> bytes:
        """The body in memory: a spooled one read back from its file (for callers that bound it)."""
        return self.body if self.spooled is None else self.spooled.read_all()

    @classmethod
    def arrived(cls, arrival: Arrival, *, id: str, protocol: str, method: str, service_id: str,
                received_us: int, path: str = "", query: str = "", body: bytes = b"",
                operation: str | None = None, decode: Decode | None = None,
                spooled: Spooled | None = None) -> Exchange:
        """An exchange from what its entry point read: the headers (gateway/arrival.py, the same
        for every dialect) and what the dialect itself says (where, which operation, the body)."""
        return cls(id=id, protocol=protocol, received_us=received_us, method=method,
                   service_id=service_id, path=path, query=query, body=body,
                   content_type=arrival.content_type, authorization=arrival.authorization,
                   client_header=arrival.client_header, user_id=arrival.user_id, issue=arrival.issue,
                   represented_party=arrival.represented_party, operation=operation,
                   idempotency_key=arrival.idempotency_key, decode=decode,
                   signature=arrival.signature, traceparent=arrival.traceparent,
                   tracestate=arrival.tracestate, spooled=spooled)


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
    signature: Verdict | None = None  # the verdict on the request's signature, where one was asked for
    document: dict[str, Any] | None = None  # an edXML exchange: its document's id and digests

    @property
    def status(self) -> int:
        if self.error is not None:
            return self.error.status
        return self.reply.status if self.reply is not None else 500

    # What the steps learn is optional until the step that learns it has run; a later step asks
    # for it by these, which name the missing step instead of failing on None (or on an assert
    # that ``python -O`` removes).

    def caller(self) -> str:
        """The authenticated client (after ``authenticate``)."""
        if self.client is None:
            raise OutOfOrder("the client is not known before the authenticate step")
        return self.client

    def target(self) -> tuple[Service, str]:
        """The service and operation called (after ``resolve``)."""
        if self.service is None or self.operation is None:
            raise OutOfOrder("the service is not known before the resolve step")
        return self.service, self.operation


@dataclass(frozen=True, slots=True)
class Rendered:
    status: int
    headers: list[tuple[str, str]]
    body: bytes
    spooled: Spooled | None = None  # a large answer in a file (a fetched package), sent from there; body b""

    @property
    def size(self) -> int:
        return len(self.body) if self.spooled is None else self.spooled.size


def _evolver() -> Callable[..., Result]:
    """``dataclasses.replace`` for ``Result``, three times faster: each step of every exchange makes
    one (issue 17). ``replace`` checks every field's init flag and calls the frozen ``__init__``,
    which sets each field through ``object.__setattr__``; this function, written once for
    ``Result``'s fields, copies the slots it is not given. A misspelt field is a TypeError, as with
    ``replace``."""
    names = [f.name for f in fields(Result)]
    params = ", ".join(f"{name}=_KEEP" for name in names)
    lines = "".join(f"    _set(new, {name!r}, ctx.{name} if {name} is _KEEP else {name})\n" for name in names)
    source = f"def evolve(ctx, *, {params}):\n    new = _new(_Result)\n{lines}    return new\n"
    scope: dict[str, Any] = {"_KEEP": object(), "_new": object.__new__, "_set": object.__setattr__,
                             "_Result": Result}
    exec(source, scope)  # noqa: S102 -- the source is built above from the dataclass's own field names
    evolve: Callable[..., Result] = scope["evolve"]
    evolve.__doc__ = "A copy of ``ctx`` with the fields given changed (``dataclasses.replace``)."
    return evolve


evolve = _evolver()


Render = Callable[[Result], Rendered]
Answer = Callable[[Result], Result]  # an authenticated call -> its reply or error
Intake = Callable[[Result], Awaitable[Result]]  # stores an async request: the context with its 202
Validator = Callable[[Any], None]  # raises a GatewayError (InvalidBody, 422) for an invalid payload
Step = Callable[[Result], Awaitable[Result]]  # one step of the pipeline: the context, enriched


class Stop(Exception):
    """Ends the chain early, carrying the context as far as it got (its ``error`` set). A step may
    raise a plain ``GatewayError`` instead when it learnt nothing the record should keep."""

    def __init__(self, result: Result) -> None:
        self.result = result


def stop(ctx: Result, error: GatewayError) -> Stop:
    return Stop(evolve(ctx, error=error))
