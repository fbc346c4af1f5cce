"""The HTTP client of the gateway's own tools (``lienthong demo``; the tests use it too).

A server closes a kept-alive connection when it has been idle for its keep-alive timeout. If the
client sends its next request at that moment, the request meets a closed socket and fails before
any answer (httpx says ``ReadError`` with no message). Nothing was processed, so sending it again on
a new connection is safe; the tools' calls are reads, mode switches or pushes that the gateway
deduplicates by content, so each is safe to repeat anyway. ``ToolTransport`` does that, a few
times, for transport failures only: a timeout or any answer, an error status included, is final.
"""

from __future__ import annotations

import asyncio

import httpx

__all__ = ["ToolTransport", "tool_client"]

_RESENT = (httpx.ReadError, httpx.WriteError, httpx.RemoteProtocolError, httpx.ConnectError)


class ToolTransport(httpx.AsyncBaseTransport):
    def __init__(self, attempts: int = 3, pause: float = 0.2, **kwargs: object) -> None:
        self._inner = httpx.AsyncHTTPTransport(**kwargs)  # type: ignore[arg-type]
        self._attempts = attempts
        self._pause = pause

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        for attempt in range(1, self._attempts + 1):
            try:
                return await self._inner.handle_async_request(request)
            except _RESENT:
                if attempt == self._attempts:
                    raise
                await asyncio.sleep(self._pause * attempt)
        raise AssertionError("unreachable")  # pragma: no cover

    async def aclose(self) -> None:
        await self._inner.aclose()


def tool_client(timeout: float = 30.0) -> httpx.AsyncClient:
    """A client that resends a request its connection failed before any answer, and keeps idle
    connections for 2 s only: well inside any server's keep-alive timeout (uvicorn's is 5 s)."""
    limits = httpx.Limits(keepalive_expiry=2.0)
    return httpx.AsyncClient(timeout=timeout, transport=ToolTransport(limits=limits))
