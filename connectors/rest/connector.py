"""Generic JSON pass-through: the client's request goes to ``service.upstream + path`` as it came.

The method, path, query, body and content type are the client's; of the headers only the X-Road
ones that name the exchange travel on (``X-Road-Id``, ``X-Road-Client``, ``X-Road-UserId``,
``X-Road-Issue``). The upstream's status comes back with its JSON (or ``{"text": ...}`` when a 2xx
answer is not JSON, likewise for a 4xx): a 4xx is the upstream's answer, passed through; a 5xx, or
a body that claims to be JSON and is not, is a failure (``UpstreamError``). It takes no options
(``Options`` is empty: any key is refused).
"""

from __future__ import annotations

from typing import Any

import httpx
import orjson
from pydantic import BaseModel, ConfigDict

from gateway.config import Service
from gateway.connector import Call, ConnectorContext, Reply
from gateway.errors import UpstreamError
from gateway.paths import encode, segments
from gateway.plugins import read_options
from gateway.upstream import UpstreamAnswer, decode_json, send

__all__ = ["FORWARDED_HEADERS", "Options", "RestConnector", "create"]

FORWARDED_HEADERS = ("X-Road-Id", "X-Road-Client", "X-Road-UserId", "X-Road-Issue")
_FORWARDED = {name.lower(): name for name in FORWARDED_HEADERS}


class Options(BaseModel):
    """The ``rest`` connector takes no options: any key is refused."""

    model_config = ConfigDict(extra="forbid", frozen=True)


def _is_json_type(content_type: str) -> bool:
    media = content_type.split(";", 1)[0].strip().lower()
    return media == "application/json" or media.endswith("+json")


class RestConnector:
    """Forwards the client's call to the upstream's URL and brings its answer back unchanged. A
    large body in a file (``Call.spooled``, a pushed edXML package) is sent from there."""

    streams = True

    def __init__(self, service: Service, http: httpx.AsyncClient) -> None:
        self._base = service.upstream.rstrip("/")
        self._timeout = service.timeout
        self._http = http

    def _headers(self, call: Call) -> dict[str, str]:
        headers = {}
        for name, value in call.headers.items():
            canonical = _FORWARDED.get(name.lower())
            if canonical is not None:
                headers[canonical] = value
        if call.body or call.spooled is not None:
            headers["Content-Type"] = call.content_type
        return headers

    async def call(self, call: Call) -> Reply:
        # The entry points hand over checked paths; checked again here for paths stored before
        # (the delivery queue) and for any other caller: a dot segment never reaches httpx, which
        # would resolve it.
        path = encode(segments(call.path)) if call.path else ""
        url = self._base + path
        if call.query:
            url += "?" + call.query
        response = await send(self._http, call.method, url, deadline=self._timeout,
                              content=call.spooled if call.spooled is not None else call.body,
                              headers=self._headers(call))
        status = response.status_code
        target = self._base + path
        if status >= 500:
            raise UpstreamError(f"{target} failed with HTTP {status}",
                                extra={"status": status,
                                       "body": response.content[:200].decode("utf-8", "replace")})
        return Reply(payload=self._payload(response, target), status=status, wire_request=call.body,
                     wire_response=response.content)

    @staticmethod
    def _payload(response: UpstreamAnswer, target: str) -> Any:
        if not response.content:
            return None
        content_type = response.headers.get("content-type", "")
        if _is_json_type(content_type):
            return decode_json(response, target)
        if not content_type:
            try:
                return orjson.loads(response.content)
            except orjson.JSONDecodeError:
                pass
        return {"text": response.text}

    async def aclose(self) -> None:
        """Nothing to release: the HTTP client is the gateway's, shared by every connector."""


def create(service: Service, context: ConnectorContext) -> RestConnector:
    read_options(Options, service)  # none: a key there is a mistake
    return RestConnector(service, context.http)
