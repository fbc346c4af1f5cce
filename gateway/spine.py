"""One spine for every authenticated action: authenticate -> authorise -> act -> audit.

Exchanges run it as the pipeline (gateway/exchange.py); the operator's and the auditor's API calls
(``/deliveries``, ``/stats``, ``/metrics``, ``/audit``) run it here, the console's pages in
gateway/console/web.py, and the commands that change state in gateway/cli_spine.py (no token
there: the operating-system account). Whatever the door, a token is checked by ``authenticated``
alone, and every call, refused ones included, leaves one audit record before its answer leaves the
gateway.

An API action's record has protocol ``api``, the token's client, the action's name as operation
(``deliveries.retry``), its status and error code, what it was about as purpose (a delivery id, a
query) and, for a subject report, the person's keyed hash as subject: a citizen's access report
shows that an auditor asked about them. The request body's digest is left out: the subject
report's body holds a personal id, and a bare SHA-256 of a 12-digit number is easily reversed.
The answer carries the record's id as ``X-Road-Id``.

API endpoints are plain (sync) functions that FastAPI runs in a worker thread; the audit writer
lives on the event loop, so the record is handed to it from the thread (``anyio.from_thread``).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

import anyio.from_thread
import structlog
from starlette.requests import Request
from starlette.responses import Response

from gateway.agencies import member_of, today
from gateway.audit.record import AuditRecord
from gateway.errors import AuditUnavailable, Forbidden, GatewayError, UnknownMember
from gateway.ids import new_id
from gateway.oauth.verifier import TokenInfo, TokenVerifier, bearer_token

if TYPE_CHECKING:
    from gateway.config import Config

__all__ = ["Act", "act", "action_record", "authenticated", "require"]

log = structlog.get_logger("lienthong.spine")
R = TypeVar("R", bound=Response)
MAX_PURPOSE = 255


def authenticated(verifier: TokenVerifier, config: Config, authorization: str | None) -> TokenInfo:
    """The one token check: a bearer token the gateway (or a trusted issuer) signed, unexpired and
    unrevoked, held by a client whose agency is current today (a former agency's clients are
    refused after its last day, naming the successor: gateway/agencies.py)."""
    token = verifier.verify(bearer_token(authorization))
    agencies = config.agencies
    if agencies.changes:
        refusal = agencies.refusal(member_of(token.client_id), today())
        if refusal is not None:
            raise UnknownMember(f"client {token.client_id} is not registered here now: {refusal}; "
                                "use a client of the agency current today")
    return token


def require(token: TokenInfo, *scopes: str) -> None:
    """Authorisation of an API action: the token carries one of ``scopes`` (deny by default)."""
    if scopes and not token.scopes.intersection(scopes):
        raise Forbidden(f"this needs a token with the scope {' or '.join(scopes)}", scope=scopes[0])


@dataclass
class Act:
    """An API action under way: its token, and what its audit record will say about it."""

    name: str
    token: TokenInfo
    id: str
    purpose: str | None = None
    subjects: tuple[str, ...] = ()
    response: Response | None = field(default=None, repr=False)

    def done(self, response: R) -> R:
        """The action's answer: recorded with its status, and carrying the record's id."""
        response.headers["X-Road-Id"] = self.id
        self.response = response
        return response


@contextmanager
def act(request: Request, name: str, *scopes: str, purpose: str | None = None) -> Iterator[Act]:
    """Run an API action on the spine, in a worker thread::

        with act(request, "deliveries.retry", OPERATOR, purpose=delivery_id) as a:
            ...
            return a.done(JSONResponse(...))

    Authentication and the scope check happen on entry; a refusal there, or any GatewayError the
    body raises, is audited and re-raised (the app renders it as problem+json); the answer is
    audited on exit. When the record cannot be stored, the answer is a 503, never unaudited."""
    runtime = request.app.state.runtime
    started = time.perf_counter()
    exchange_id = new_id()
    received_us = time.time_ns() // 1000
    client: str | None = None
    current: Act | None = None
    try:
        token = authenticated(runtime.verifier, runtime.config, request.headers.get("authorization"))
        client = token.client_id
        require(token, *scopes)
        current = Act(name=name, token=token, id=exchange_id, purpose=purpose)
        yield current
    except GatewayError as err:
        err.headers.setdefault("X-Road-Id", exchange_id)
        _record(runtime, exchange_id, received_us, started, name, client, current, purpose,
                err.status, err)
        raise
    except Exception as exc:
        _record(runtime, exchange_id, received_us, started, name, client, current, purpose, 500,
                _Crashed(type(exc).__name__))
        raise
    else:
        status = current.response.status_code if current.response is not None else 200
        _record(runtime, exchange_id, received_us, started, name, client, current, purpose, status,
                None)


class _Crashed(GatewayError):
    status = 500
    code = "Server.InternalError"


def action_record(*, protocol: str, exchange_id: str, received_us: int, started: float, name: str,
                  client: str | None, purpose: str | None, status: int, error: str | None,
                  user_id: str | None = None, subjects: tuple[str, ...] = ()) -> AuditRecord:
    """The audit record of one action on the spine, whatever its door (``api``, ``cli``): the
    outcome follows the status (4xx refused, 5xx failed), the purpose is cut to its column."""
    outcome = "ok" if status < 400 else "refused" if status < 500 else "failed"
    return AuditRecord(
        exchange_id=exchange_id, ts_us=received_us, protocol=protocol, outcome=outcome, status=status,
        client=client, user_id=user_id, purpose=purpose[:MAX_PURPOSE] if purpose else None,
        operation=name, error=error, total_us=int((time.perf_counter() - started) * 1_000_000),
        subjects=subjects)


def _record(runtime: Any, exchange_id: str, received_us: int, started: float, name: str,
            client: str | None, current: Act | None, purpose: str | None, status: int,
            err: GatewayError | None) -> None:
    record = action_record(
        protocol="api", exchange_id=exchange_id, received_us=received_us, started=started, name=name,
        client=client, purpose=current.purpose if current is not None else purpose, status=status,
        error=err.code if err is not None else None,
        subjects=current.subjects if current is not None else ())
    try:
        anyio.from_thread.run(runtime.audit.append, record)
    except AuditUnavailable:
        log.error("api_action_unaudited", action=name, client=client, status=status)
        raise AuditUnavailable(f"the audit log cannot record {name} now; nothing was answered") \
            from None
