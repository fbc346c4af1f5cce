"""The national public-service portal (Cổng Dịch vụ công quốc gia, DVCQG) as provincial systems call it.

Every request is a JSON POST to ``{upstream}{options.path}`` (default ``/api``) of
``{"session", "madonvi", "service", ...}``; success is ``error_code == "00"``. The session comes
from POST ``{upstream}{options.login_path}`` (default ``/login``) with ``{"username", "password"}``
from the service's options, and is kept and shared by all calls of the connector; when the portal
answers "session expired" the connector logs in again, once, and repeats the request.

Service options (``Options``): ``username``, ``password`` (required), ``madonvi`` (the agency code,
unless every client sends its own), ``path``, ``login_path``, ``dstcode`` (sent as the ``dstcode``
header, as the portal's gateway expects of some callers).

What the client sends and what the portal gets is ``messages.portal_body``: a dossier (or progress
record, or a list, or the portal's envelope) is wrapped as ``"data": [...]``, ISO dates become
``yyyyMMddHHmmss`` in Asia/Ho_Chi_Minh. The reply is the portal's JSON answer as it came.

Portal error codes (``codes.py``; the guides fix only "00", the rest are this project's choice)::

    00  success                                     -> Reply 200 with the portal's answer
    01  malformed request (no madonvi, not JSON)     -> UpstreamError (502)
    02  invalid data (a field breaks the rules)      -> UpstreamError
    03  unknown service                              -> UpstreamError
    04  dossier not found (progress, update)         -> UpstreamError
    05  dossier code already taken (new dossier)     -> UpstreamError
    10  session missing, unknown or expired          -> log in again once and retry; twice: UpstreamError
    11  login refused (wrong user name or password)  -> UpstreamError
    99  the portal's own failure                     -> UpstreamError

Every ``UpstreamError`` from an answer carries ``extra = {"error_code", "message", "operation"}``,
and is ``retryable`` for "10", "11" and "99" only (``codes.RETRYABLE``): the others are permanent.
An HTTP status other than 200 is retryable when it is 5xx, 408 or 429; an answer that is not the
portal's JSON (a proxy's error page, say) is retryable.
Transport failures are those of ``connectors.rest.connector.send``: refused or dropped connection
``UpstreamUnavailable``; no answer within ``service.timeout`` (for the whole call, logins and the
retry included) ``UpstreamTimeout``; an HTTP status other than 200, or a body that is not a JSON
object with an ``error_code``, ``UpstreamError``. ``TraCuuHoSo`` for an unknown dossier is not an
error: the portal answers "00" with an empty ``result``, as the real one does.
"""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import orjson
from pydantic import BaseModel, ConfigDict, Field

from connectors.dvcqg import codes
from connectors.dvcqg.messages import portal_body
from connectors.dvcqg.session import PortalSession
from gateway.config import Service
from gateway.connector import Call, ConnectorContext, Reply
from gateway.errors import UpstreamError, UpstreamTimeout
from gateway.plugins import read_options
from gateway.upstream import UpstreamAnswer, decode_json, send

__all__ = ["Options", "PortalConnector", "create"]


class Options(BaseModel):
    """The ``dvcqg`` connector's service options. Numbers are taken as text (``password: 123456``)."""

    model_config = ConfigDict(extra="forbid", frozen=True, coerce_numbers_to_str=True)

    username: str = Field(min_length=1, description="the gateway's account at the portal (login)")
    password: str = Field(min_length=1, repr=False, description="that account's password")
    madonvi: str | None = Field(None, description="the agency code sent as madonvi when the client "
                                "sends none; without it every client must send its own")
    path: str = Field("/api", description="the portal's API, after the upstream URL")
    login_path: str = Field("/login", description="the portal's login, after the upstream URL")
    dstcode: str | None = Field(None, description="sent as the dstcode header, as the portal's "
                                "gateway expects of some callers")


class PortalConnector:
    def __init__(self, service: Service, http: httpx.AsyncClient) -> None:
        options = read_options(Options, service)  # ValueError naming what is missing or wrong
        base = service.upstream.rstrip("/")
        self._service = service
        self._http = http
        self._timeout = service.timeout
        self._api = base + options.path
        self._login_url = base + options.login_path
        self._madonvi = options.madonvi
        self._credentials = orjson.dumps({"username": options.username, "password": options.password})
        self._headers = {"Content-Type": "application/json", "Accept": "application/json"}
        if options.dstcode:
            self._headers["dstcode"] = options.dstcode
        self.session = PortalSession(self._login)

    async def call(self, call: Call) -> Reply:
        operation = call.operation or self._service.operation_name
        body = portal_body(operation, call.payload, madonvi=self._madonvi, path=call.path,
                           query=call.query)
        try:
            async with asyncio.timeout(self._timeout):
                wire, raw, answer = await self._exchange(body)
        except TimeoutError as exc:
            raise UpstreamTimeout(f"the portal did not answer {operation} in time",
                                  extra={"upstream": self._api, "operation": operation}) from exc
        code = codes.normalise(answer.get("error_code"))
        if code != codes.OK:
            message = answer.get("message") or codes.MESSAGES.get(code or "", "")
            raise UpstreamError(f"the portal refused {operation}: [{code}] {message}",
                                extra={"error_code": code, "message": message, "operation": operation},
                                retryable=code in codes.RETRYABLE)
        return Reply(payload=answer, wire_request=wire, wire_response=raw)

    async def _exchange(self, body: dict[str, Any]) -> tuple[bytes, bytes, dict[str, Any]]:
        """Log in if needed, send, and on "session expired" log in again and send once more."""
        session = await self.session.current()
        wire, raw, answer = await self._post(session, body)
        if codes.normalise(answer.get("error_code")) == codes.SESSION_EXPIRED:
            session = await self.session.renew(session)
            wire, raw, answer = await self._post(session, body)
        return wire, raw, answer

    async def _post(self, session: str, body: dict[str, Any]) -> tuple[bytes, bytes, dict[str, Any]]:
        wire = orjson.dumps({"session": session, **body})
        response = await send(self._http, "POST", self._api, deadline=self._timeout, content=wire,
                              headers=self._headers)
        return wire, response.content, self._answer(response, self._api)

    async def _login(self) -> str:
        response = await send(self._http, "POST", self._login_url, deadline=self._timeout,
                              content=self._credentials, headers=self._headers)
        answer = self._answer(response, self._login_url)
        code = codes.normalise(answer.get("error_code"))
        session = answer.get("session")
        if code != codes.OK or not isinstance(session, str) or not session:
            message = answer.get("message") or codes.MESSAGES.get(code or "", "no session in the answer")
            raise UpstreamError(f"the portal refused the gateway's login: [{code}] {message}",
                                extra={"error_code": code, "message": message, "operation": "login"},
                                retryable=code in codes.RETRYABLE or code == codes.OK)
        return session

    @staticmethod
    def _answer(response: UpstreamAnswer, target: str) -> dict[str, Any]:
        if response.status_code != 200:
            status = response.status_code
            raise UpstreamError(f"{target} answered HTTP {status}",
                                extra={"status": status,
                                       "body": response.content[:200].decode("utf-8", "replace")},
                                retryable=status >= 500 or status in (408, 429))
        answer = decode_json(response, target)
        if not isinstance(answer, dict) or "error_code" not in answer:
            raise UpstreamError(f"{target} answered JSON without an error_code",
                                extra={"body": response.content[:200].decode("utf-8", "replace")})
        return answer

    async def aclose(self) -> None:
        self.session.forget()


def create(service: Service, context: ConnectorContext) -> PortalConnector:
    return PortalConnector(service, context.http)
