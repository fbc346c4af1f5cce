"""Generic JSON pass-through: the client's request goes to ``service.upstream + path`` as it came.

The method, path, query, body and content type are the client's; of the headers only the X-Road
ones that name the exchange travel on (``X-Road-Id``, ``X-Road-Client``, ``X-Road-UserId``,
``X-Road-Issue``). The upstream's status comes back with its JSON (or ``{"text": ...}`` when a 2xx
answer is not JSON, likewise for a 4xx): a 4xx is the upstream's answer, passed through; a 5xx, or
a body that claims to be JSON and is not, is a failure (``UpstreamError``).

This module also holds the HTTP plumbing the other JSON connectors (``dvcqg``, ``onestop``) share:
``send`` puts one request on the wire within the service's deadline and turns transport failures
into the gateway's errors, which takes care: the aiohttp-backed transport reports a refused or a
dropped connection as ``httpx.ConnectTimeout``, so the failure is classified by the aiohttp (or OS)
exception underneath, not by the httpx class on top.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator, Mapping
from typing import Any

import aiohttp
import httpx
import orjson

from gateway.config import Service
from gateway.connector import Call, ConnectorContext, Reply
from gateway.errors import ServerError, UpstreamError, UpstreamTimeout, UpstreamUnavailable

__all__ = ["FORWARDED_HEADERS", "RestConnector", "create", "decode_json", "send", "transport_failure"]

FORWARDED_HEADERS = ("X-Road-Id", "X-Road-Client", "X-Road-UserId", "X-Road-Issue")
_FORWARDED = {name.lower(): name for name in FORWARDED_HEADERS}


def _chain(exc: BaseException) -> Iterator[BaseException]:
    seen: set[int] = set()
    link: BaseException | None = exc
    while link is not None and id(link) not in seen:
        seen.add(id(link))
        yield link
        link = link.__cause__ or link.__context__


def transport_failure(exc: Exception, target: str) -> ServerError:
    """The gateway error for a request that got no HTTP answer: timeout, or upstream unreachable."""
    links = list(_chain(exc))
    if any(isinstance(link, aiohttp.ClientError) for link in links):
        timed_out = any(isinstance(link, TimeoutError) for link in links)
    else:
        timed_out = isinstance(exc, httpx.TimeoutException | TimeoutError)
    if timed_out:
        return UpstreamTimeout(f"{target} did not answer in time", extra={"upstream": target})
    reason = str(links[-1]) or type(links[-1]).__name__
    return UpstreamUnavailable(f"{target} is unreachable: {reason}", extra={"upstream": target})


async def send(http: httpx.AsyncClient, method: str, url: str, *, deadline: float,
               content: bytes | None = None, headers: Mapping[str, str] | None = None) -> httpx.Response:
    """One request, answered in full within ``deadline`` seconds, or a gateway error."""
    try:
        async with asyncio.timeout(deadline):
            return await http.request(method, url, content=content or None, headers=headers,
                                      timeout=deadline)
    except (httpx.TransportError, TimeoutError) as exc:
        raise transport_failure(exc, url.split("?", 1)[0]) from exc
    except httpx.HTTPError as exc:
        raise UpstreamError(f"{url.split('?', 1)[0]}: {exc}") from exc


def _is_json_type(content_type: str) -> bool:
    media = content_type.split(";", 1)[0].strip().lower()
    return media == "application/json" or media.endswith("+json")


def decode_json(response: httpx.Response, target: str) -> Any:
    """The answer's JSON, or UpstreamError quoting the start of what came instead."""
    try:
        return orjson.loads(response.content)
    except orjson.JSONDecodeError as exc:
        raise UpstreamError(f"{target} answered {response.status_code} with a body that is not JSON",
                            extra={"status": response.status_code,
                                   "body": response.content[:200].decode("utf-8", "replace")}) from exc


class RestConnector:
    """Forwards the client's call to the upstream's URL and brings its answer back unchanged."""

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
        if call.body:
            headers["Content-Type"] = call.content_type
        return headers

    async def call(self, call: Call) -> Reply:
        url = self._base + call.path
        if call.query:
            url += "?" + call.query
        response = await send(self._http, call.method, url, deadline=self._timeout,
                              content=call.body, headers=self._headers(call))
        status = response.status_code
        target = self._base + call.path
        if status >= 500:
            raise UpstreamError(f"{target} failed with HTTP {status}",
                                extra={"status": status,
                                       "body": response.content[:200].decode("utf-8", "replace")})
        return Reply(payload=self._payload(response, target), status=status, wire_request=call.body,
                     wire_response=response.content)

    @staticmethod
    def _payload(response: httpx.Response, target: str) -> Any:
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
    return RestConnector(service, context.http)
