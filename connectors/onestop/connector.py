"""A provincial one-stop system (Hệ thống một cửa điện tử): receives dossiers filed nationally.

JSON over HTTP; the operation (``service.operation_name``, or the call's operation) picks::

    NhanHoSo    POST {upstream}{path}           the dossier object -> {"error_code": "00", "MaHoSo",
                                                "SoBienNhan", ...}; a repeated dossier keeps its receipt
    TraCuuHoSo  GET  {upstream}{path}/{MaHoSo}  {"MaHoSo"}, a path /{MaHoSo} or ?MaHoSo= ->
                                                {"error_code": "00", "data": {...}}
    CapNhatTienDoHoSo  POST {upstream}{progress_path}  a progress record (CapNhatTienDoHoSoMC's
                                                fields), a list or {"data": [...]} of one dossier ->
                                                {"error_code": "00", "MaHoSo", "TrangThaiHoSo"}

``path`` and ``progress_path`` are the service's options (``Options``: default ``/hoso`` and
``/tiendo``). An answer whose ``error_code`` is not
"00" is an ``UpstreamError`` carrying ``error_code`` and ``message``, except a lookup's 404, which is
the one-stop system saying "no such dossier" and comes back to the client as a 404 reply. Transport
failures are mapped as in ``connectors.rest.connector.send``. Refusals are ``retryable`` for "99" (the
system's own failure) and a 5xx, 408 or 429 status; any other refusal is permanent.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qs

import httpx
import orjson
from pydantic import BaseModel, ConfigDict, Field

from connectors.dvcqg import codes
from gateway.config import Service
from gateway.connector import Call, ConnectorContext, Reply
from gateway.errors import InvalidBody, UnknownService, UpstreamError
from gateway.paths import path_value, segment
from gateway.plugins import read_options
from gateway.upstream import UpstreamAnswer, decode_json, send

__all__ = ["OPERATIONS", "OneStopConnector", "Options", "create"]

RECEIVE = "NhanHoSo"
LOOKUP = "TraCuuHoSo"
PROGRESS = "CapNhatTienDoHoSo"
OPERATIONS = (RECEIVE, LOOKUP, PROGRESS)
_HEADERS = {"Content-Type": "application/json", "Accept": "application/json"}


class Options(BaseModel):
    """The ``onestop`` connector's service options."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    path: str = Field("/hoso", description="where dossiers go (NhanHoSo: POST) and are looked up "
                      "(TraCuuHoSo: GET path/{MaHoSo}), after the upstream URL")
    progress_path: str = Field("/tiendo", description="where progress updates go "
                               "(CapNhatTienDoHoSo: POST), after the upstream URL")


class OneStopConnector:
    def __init__(self, service: Service, http: httpx.AsyncClient) -> None:
        self._service = service
        self._http = http
        self._timeout = service.timeout
        options = read_options(Options, service)
        self._base = service.upstream.rstrip("/") + options.path
        self._progress = service.upstream.rstrip("/") + options.progress_path

    async def call(self, call: Call) -> Reply:
        operation = call.operation or self._service.operation_name
        if operation == RECEIVE:
            wire = orjson.dumps(_dossier(call.payload))
            response = await send(self._http, "POST", self._base, deadline=self._timeout, content=wire,
                                  headers=_HEADERS)
        elif operation == LOOKUP:
            wire = b""
            url = f"{self._base}/{segment(_code(call), 'the dossier code')}"
            response = await send(self._http, "GET", url, deadline=self._timeout, headers=_HEADERS)
        elif operation == PROGRESS:
            wire = orjson.dumps(_progress(call.payload))
            response = await send(self._http, "POST", self._progress, deadline=self._timeout,
                                  content=wire, headers=_HEADERS)
        else:
            raise UnknownService(f"the one-stop system offers {', '.join(OPERATIONS)}, not {operation!r}")
        return self._reply(operation, wire, response)

    def _reply(self, operation: str, wire: bytes, response: UpstreamAnswer) -> Reply:
        status = response.status_code
        if status >= 500:
            raise UpstreamError(f"the one-stop system failed {operation} with HTTP {status}",
                                extra={"status": status, "operation": operation})
        answer = decode_json(response, self._base)
        if not isinstance(answer, dict):
            raise UpstreamError(f"the one-stop system answered {operation} with JSON that is not an object",
                                extra={"status": status, "operation": operation})
        if operation == LOOKUP and status == 404:
            return Reply(payload=answer, status=404, wire_request=wire, wire_response=response.content)
        code = codes.normalise(answer.get("error_code"))
        if code != codes.OK or not 200 <= status < 300:
            message = answer.get("message", "")
            raise UpstreamError(f"the one-stop system refused {operation}: [{code}] {message}",
                                extra={"error_code": code, "message": message, "status": status,
                                       "operation": operation},
                                retryable=code == codes.SYSTEM_ERROR or status in (408, 429))
        return Reply(payload=answer, wire_request=wire, wire_response=response.content)

    async def aclose(self) -> None:
        """Nothing to release: the HTTP client is the gateway's."""


def _dossier(payload: Any) -> dict[str, Any]:
    if not isinstance(payload, dict):
        raise InvalidBody("NhanHoSo takes one dossier object", status=422,
                          errors=[{"path": "$", "message": "expected a dossier object"}])
    code = payload.get("MaHoSo")
    if not isinstance(code, str) or not code.strip():
        raise InvalidBody("NhanHoSo: $.MaHoSo: required", status=422, errors=[
            {"path": "$.MaHoSo", "message": "required: the dossier code, a non-empty string"}])
    return payload


def _progress(payload: Any) -> Any:
    """One progress record, a list of them or the portal's ``{"data": [...]}``, each naming its
    dossier."""
    if isinstance(payload, list):
        items = [(f"$[{i}]", item) for i, item in enumerate(payload)]
    elif isinstance(payload, dict) and "MaHoSo" not in payload and isinstance(payload.get("data"), list):
        items = [(f"$.data[{i}]", item) for i, item in enumerate(payload["data"])]
    else:
        items = [("$", payload)]
    for where, item in items or [("$", None)]:
        code = item.get("MaHoSo") if isinstance(item, dict) else None
        if not isinstance(code, str) or not code.strip():
            raise InvalidBody(f"CapNhatTienDoHoSo: {where}.MaHoSo: required", status=422, errors=[
                {"path": f"{where}.MaHoSo", "message": "required: the code of the dossier this step "
                 "belongs to"}])
    return payload


def _code(call: Call) -> str:
    payload = call.payload if isinstance(call.payload, dict) else {}
    asked = parse_qs(call.query)
    code = (payload.get("MaHoSo") or path_value(call.path)
            or next(iter(asked.get("MaHoSo", [])), None))
    if not isinstance(code, str) or not code.strip():
        raise InvalidBody("TraCuuHoSo: $.MaHoSo: required", status=422, errors=[
            {"path": "$.MaHoSo", "message": "required: the code of the dossier to look up"}])
    return code.strip()


def create(service: Service, context: ConnectorContext) -> OneStopConnector:
    return OneStopConnector(service, context.http)
