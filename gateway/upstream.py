"""The pooled HTTP client every connector shares, and putting one request on the wire with it.

One aiohttp session carries every upstream request. ``send``, the exchanges' hot path, puts a
request on it directly: httpx's request and response models on top cost about a quarter of an
exchange (issue 17, docs/benchmarks.md). The same session is lent, behind httpx's API, to what
prefers that API (JWKS and policy fetches, tests): httpx's own pool topped out near 640 requests/s
behind a 2-worker proxy where aiohttp's reached about 6,400. ``upstream.transport: httpx`` keeps
httpx's own pool for comparison; ``send`` then goes through httpx.

``send`` answers within the service's deadline and turns transport failures into the gateway's
errors, which takes care: the aiohttp-backed httpx transport reports a refused or a dropped
connection as ``httpx.ConnectTimeout``, so the failure is classified by the aiohttp (or OS)
exception underneath, not by the httpx class on top.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import aiohttp
import httpx
import orjson
from httpx_aiohttp import AiohttpTransport

from gateway import tracing
from gateway.errors import ServerError, UpstreamError, UpstreamTimeout, UpstreamUnavailable
from gateway.seal import outbound_headers
from gateway.spool import Spooled, streamed


class _NoCookies(httpx.Cookies):
    """A jar that stays empty."""

    def extract_cookies(self, response: httpx.Response) -> None:
        return None


class _StatelessClient(httpx.AsyncClient):
    """A client that keeps no cookies: it carries every client's exchanges, so a cookie one
    upstream answer set must not ride along on the next exchange, another client's perhaps.
    (Connectors that need a session, like the portal's, hold it themselves.) Skipping the jar
    also saves httpx's cookie parsing on every answer."""

    @property
    def cookies(self) -> httpx.Cookies:
        return _NoCookies()

    @cookies.setter
    def cookies(self, cookies: Any) -> None:
        return None


class _AiohttpClient(_StatelessClient):
    """httpx's API over the aiohttp session, which ``send`` also uses directly."""

    def __init__(self, transport: AiohttpTransport, timeout: float) -> None:
        super().__init__(transport=transport, timeout=timeout, follow_redirects=False)
        self._aiohttp = transport

    def session(self) -> aiohttp.ClientSession:
        """The one session, made on first use: within the event loop that will run it."""
        transport = self._aiohttp
        if not isinstance(transport.client, aiohttp.ClientSession):
            transport.client = transport.get_client()
        assert isinstance(transport.client, aiohttp.ClientSession)
        return transport.client


def create_client(*, transport: str = "aiohttp", max_connections: int = 256,
                  timeout: float = 30.0) -> httpx.AsyncClient:
    if transport == "httpx":
        limits = httpx.Limits(max_connections=max_connections, max_keepalive_connections=max_connections)
        return _StatelessClient(limits=limits, timeout=timeout, follow_redirects=False)

    def session() -> aiohttp.ClientSession:
        connector = aiohttp.TCPConnector(limit=max_connections, limit_per_host=max_connections,
                                         keepalive_timeout=30, enable_cleanup_closed=True)
        # Answers are decompressed by httpx on its path and by aiohttp, per request, on send's.
        return aiohttp.ClientSession(connector=connector, auto_decompress=False,
                                     cookie_jar=aiohttp.DummyCookieJar(),
                                     timeout=aiohttp.ClientTimeout(total=None))

    return _AiohttpClient(AiohttpTransport(client=session), timeout)


class UpstreamAnswer(Protocol):
    """What ``send`` returns, whichever path carried it: an ``Answer``, or httpx's ``Response``."""

    @property
    def status_code(self) -> int: ...
    @property
    def content(self) -> bytes: ...
    @property
    def headers(self) -> Any: ...  # case-insensitive ``get``: aiohttp's CIMultiDictProxy or httpx's Headers
    @property
    def text(self) -> str: ...


@dataclass(frozen=True, slots=True)
class Answer:
    """An upstream's answer read in full from the aiohttp session."""

    status_code: int
    content: bytes
    headers: Any  # aiohttp's CIMultiDictProxy: case-insensitive, first value on ``get``
    charset: str | None = None

    @property
    def text(self) -> str:
        return self.content.decode(self.charset or "utf-8", "replace")


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
               content: bytes | Spooled | None = None,
               headers: Mapping[str, str] | None = None) -> UpstreamAnswer:
    """One request, answered in full within ``deadline`` seconds, or a gateway error. Inside
    ``gateway.seal.outbound`` the request carries the gateway seal over ``content``; where tracing
    is on, the W3C ``traceparent`` of the connector's span (gateway/tracing). A spooled ``content``
    (gateway/spool.py) is sealed in a thread and sent from its file piece by piece, with its length."""
    body: bytes | AsyncIterator[bytes] | None
    if isinstance(content, Spooled):
        headers = await asyncio.to_thread(outbound_headers, content, headers)
        headers = {**(headers or {}), "Content-Length": str(content.size)}
        body = streamed(content)
    else:
        headers = outbound_headers(content, headers)
        body = content
    tracer = tracing.ACTIVE
    if tracer is not None:
        headers = tracer.outbound(method, url, headers)
    answer: UpstreamAnswer
    if isinstance(http, _AiohttpClient):
        answer = await _send_direct(http.session(), method, url, deadline, body, headers)
    else:
        try:
            async with asyncio.timeout(deadline):
                answer = await http.request(method, url, content=body or None, headers=headers,
                                            timeout=deadline)
        except (httpx.TransportError, TimeoutError) as exc:
            raise transport_failure(exc, url.split("?", 1)[0]) from exc
        except httpx.HTTPError as exc:
            raise UpstreamError(f"{url.split('?', 1)[0]}: {exc}") from exc
    if tracer is not None:
        tracer.answered(answer.status_code)
    return answer


async def _send_direct(session: aiohttp.ClientSession, method: str, url: str, deadline: float,
                       content: bytes | AsyncIterator[bytes] | None,
                       headers: Mapping[str, str] | None) -> Answer:
    try:
        async with asyncio.timeout(deadline):
            async with session.request(method, url, data=content or None, headers=headers,
                                       allow_redirects=False, auto_decompress=True) as response:
                body = await response.read()
                return Answer(response.status, body, response.headers, response.charset)
    except (aiohttp.ClientError, OSError, TimeoutError) as exc:
        raise transport_failure(exc, url.split("?", 1)[0]) from exc
    except ValueError as exc:  # a URL aiohttp cannot use
        raise UpstreamError(f"{url.split('?', 1)[0]}: {exc}") from exc


def decode_json(response: UpstreamAnswer, target: str) -> Any:
    """The answer's JSON, or UpstreamError quoting the start of what came instead."""
    try:
        return orjson.loads(response.content)
    except orjson.JSONDecodeError as exc:
        raise UpstreamError(f"{target} answered {response.status_code} with a body that is not JSON",
                            extra={"status": response.status_code,
                                   "body": response.content[:200].decode("utf-8", "replace")}) from exc
