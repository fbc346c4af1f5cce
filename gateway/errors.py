"""The gateway's error hierarchy.

Every failure an exchange can meet is one of these, so that each entry point can answer it in its
own dialect (problem+json for REST, a SOAP Fault for SOAP) without knowing where it came from::

    GatewayError                      status, title, X-Road style fault code
    ├── ClientError                   4xx: the caller can fix it
    │   ├── InvalidRequest            400 Client.InvalidRequest
    │   │   └── InvalidBody           400/422 Client.InvalidBody (bad JSON, schema errors)
    │   ├── Unauthenticated           401 + WWW-Authenticate (RFC 6750)
    │   ├── Forbidden                 403 Client.AccessDenied (the token is not the named client's)
    │   │   ├── AccessDenied          403 Server.ServerProxy.AccessDenied (a policy refused the call)
    │   │   └── UnknownMember         403 Server.ClientProxy.UnknownMember (an undeclared client)
    │   ├── SignatureInvalid          400/403 Client.SignatureInvalid (a required signature not accepted)
    │   ├── UnknownService            404 Client.UnknownService
    │   ├── MethodNotAllowed          405
    │   ├── PayloadTooLarge           413
    │   ├── UnsupportedMediaType      415
    │   └── RateLimited               429 + Retry-After
    └── ServerError                   5xx: the gateway or the upstream failed
        ├── UpstreamError             502 Server.ServiceFailed (bad answer, upstream error code)
        │   └── UpstreamFault         502 with the upstream SOAP fault's code/string/detail
        ├── UpstreamUnavailable       503 Server.ServiceUnavailable (connection refused, reset)
        ├── UpstreamTimeout           504 Server.ServiceTimeout
        └── AuditUnavailable          503 Server.AuditFailed (an exchange is never answered unaudited)

Connectors translate foreign exceptions (httpx, zeep, lxml) into the most specific class here,
chained with ``from exc``.

``retryable`` says whether the same request may succeed later (the delivery queue retries those and
dead-letters the others): by default a server-side failure is, a client error is not, and a
connector that knows better (the portal's "invalid data" comes back as an ``UpstreamError``) says
so with ``retryable=False``.
"""

from __future__ import annotations

from typing import Any


def describe(exc: BaseException) -> str:
    """An exception as a person reads it, never empty: its type, its message (or that it had none)
    and, for a failed HTTP call, the method and URL it was making."""
    text = " ".join(str(exc).split()) or "no message"
    what = f"{type(exc).__name__}: {text}"
    try:
        request = getattr(exc, "request", None)  # httpx's RequestError; raises when it has none
    except RuntimeError:
        request = None
    method, url = getattr(request, "method", None), getattr(request, "url", None)
    return f"{what} ({method} {url})" if method and url else what


class GatewayError(Exception):
    status: int = 500
    title: str = "Internal error"
    code: str = "Server.InternalError"
    type_slug: str = "internal-error"
    retryable: bool = False

    def __init__(self, detail: str, *, extra: dict[str, Any] | None = None,
                 headers: dict[str, str] | None = None, retryable: bool | None = None) -> None:
        super().__init__(detail)
        self.detail = detail
        self.extra: dict[str, Any] = extra or {}
        self.headers: dict[str, str] = headers or {}
        if retryable is not None:
            self.retryable = retryable

    @property
    def outcome(self) -> str:
        """How the audit log names this failure: refused (caller's fault) or failed."""
        return "refused" if self.status < 500 else "failed"


class ClientError(GatewayError):
    status = 400
    title = "Bad request"
    code = "Client.BadRequest"
    type_slug = "bad-request"


class InvalidRequest(ClientError):
    code = "Client.InvalidRequest"
    type_slug = "invalid-request"


class InvalidBody(InvalidRequest):
    title = "Invalid body"
    code = "Client.InvalidBody"
    type_slug = "invalid-body"

    def __init__(self, detail: str, *, errors: list[dict[str, Any]] | None = None,
                 status: int = 400) -> None:
        super().__init__(detail, extra={"errors": errors} if errors else None)
        self.status = status


class Unauthenticated(ClientError):
    status = 401
    title = "Unauthorized"
    code = "Client.Unauthorized"
    type_slug = "unauthorized"

    def __init__(self, detail: str, *, error: str | None = "invalid_token",
                 realm: str = "lienthong") -> None:
        # RFC 6750 section 3: no error attribute when the request simply lacked credentials.
        challenge = f'Bearer realm="{realm}"'
        if error:
            safe = detail.replace('"', "'")
            challenge += f', error="{error}", error_description="{safe}"'
        super().__init__(detail, headers={"WWW-Authenticate": challenge})
        self.error = error


class Forbidden(ClientError):
    status = 403
    title = "Forbidden"
    code = "Client.AccessDenied"
    type_slug = "forbidden"

    def __init__(self, detail: str, *, rule: str | None = None, scope: str | None = None,
                 challenge: str | None = None) -> None:
        # RFC 6750 section 3.1: a valid token that does not reach this far is insufficient_scope
        # (403), naming the scope that would, or saying why (``challenge``: no quotes, no user input).
        headers = {}
        if scope or challenge:
            value = 'Bearer realm="lienthong", error="insufficient_scope"'
            if scope:
                value += f', scope="{scope}"'
            if challenge:
                value += f', error_description="{challenge}"'
            headers["WWW-Authenticate"] = value
        super().__init__(detail, extra={"rule": rule} if rule else None, headers=headers)
        self.rule = rule


class AccessDenied(Forbidden):
    """No policy rule gives the client this call (or the deciding rule wants a scope, an official or
    a purpose the call lacks): X-Road's missing access right, which its provider side refuses as
    ``Server.ServerProxy.AccessDenied``; the gateway plays that side too."""

    code = "Server.ServerProxy.AccessDenied"


class UnknownMember(Forbidden):
    """``X-Road-Client`` (or the SOAP header's ``client``) names a member or subsystem the catalog
    does not declare. The code is X-Road's (its client proxy refuses an unregistered client so)."""

    title = "Unknown member"
    code = "Server.ClientProxy.UnknownMember"
    type_slug = "unknown-member"


class SignatureInvalid(ClientError):
    """A service or rule requires a signed request and its signature is not accepted; ``reason``
    is the verdict's (gateway/signatures/verdict.py). 400 when the message is not properly signed
    (none, broken, changed, a shape not verified), 403 when it is, by a signer not accepted
    (untrusted, revoked, expired or not yet valid at the signing time, not a signing key)."""

    title = "Signature not accepted"
    code = "Client.SignatureInvalid"
    type_slug = "signature-invalid"

    SIGNER_REASONS = frozenset({"untrusted", "revoked", "expired", "not-yet-valid", "wrong-usage"})

    def __init__(self, detail: str, *, reason: str) -> None:
        super().__init__(detail, extra={"reason": reason})
        self.reason = reason
        self.status = 403 if reason in self.SIGNER_REASONS else 400


class UnknownService(ClientError):
    status = 404
    title = "Unknown service"
    code = "Client.UnknownService"
    type_slug = "unknown-service"


class MethodNotAllowed(ClientError):
    status = 405
    title = "Method not allowed"
    code = "Client.MethodNotAllowed"
    type_slug = "method-not-allowed"


class PayloadTooLarge(ClientError):
    status = 413
    title = "Payload too large"
    code = "Client.PayloadTooLarge"
    type_slug = "payload-too-large"


class UnsupportedMediaType(ClientError):
    status = 415
    title = "Unsupported media type"
    code = "Client.UnsupportedMediaType"
    type_slug = "unsupported-media-type"


class RateLimited(ClientError):
    status = 429
    title = "Too many requests"
    code = "Client.RateLimited"
    type_slug = "rate-limited"
    retryable = True

    def __init__(self, detail: str, *, retry_after: float, rule: str | None = None) -> None:
        super().__init__(detail, extra={"rule": rule} if rule else None,
                         headers={"Retry-After": str(max(1, int(retry_after + 0.999)))})
        self.rule = rule


class ServerError(GatewayError):
    retryable = True


class UpstreamError(ServerError):
    status = 502
    title = "Upstream failed"
    code = "Server.ServiceFailed"
    type_slug = "upstream-failed"


class UpstreamFault(UpstreamError):
    title = "Upstream SOAP fault"
    type_slug = "upstream-fault"

    def __init__(self, detail: str, *, faultcode: str, faultstring: str,
                 faultdetail: Any = None) -> None:
        super().__init__(detail, extra={"faultcode": faultcode, "faultstring": faultstring,
                                        "faultdetail": faultdetail})


class UpstreamUnavailable(ServerError):
    status = 503
    title = "Upstream unavailable"
    code = "Server.ServiceUnavailable"
    type_slug = "upstream-unavailable"


class UpstreamTimeout(ServerError):
    status = 504
    title = "Upstream timeout"
    code = "Server.ServiceTimeout"
    type_slug = "upstream-timeout"


class AuditUnavailable(ServerError):
    status = 503
    title = "Audit log unavailable"
    code = "Server.AuditFailed"
    type_slug = "audit-unavailable"
