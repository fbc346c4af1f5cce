"""The pooled HTTP client every connector shares.

httpx's API over an aiohttp transport: measured here, httpx's own pool topped out near 640
requests/s behind a 2-worker proxy while aiohttp's reached about 6,400 (docs/benchmarks.md).
"""

from __future__ import annotations

import aiohttp
import httpx
from httpx_aiohttp import AiohttpTransport


def create_client(*, transport: str = "aiohttp", max_connections: int = 256,
                  timeout: float = 30.0) -> httpx.AsyncClient:
    if transport == "httpx":
        limits = httpx.Limits(max_connections=max_connections, max_keepalive_connections=max_connections)
        return httpx.AsyncClient(limits=limits, timeout=timeout, follow_redirects=False)

    def session() -> aiohttp.ClientSession:
        connector = aiohttp.TCPConnector(limit=max_connections, limit_per_host=max_connections,
                                         keepalive_timeout=30, enable_cleanup_closed=True)
        return aiohttp.ClientSession(connector=connector, auto_decompress=False,
                                     timeout=aiohttp.ClientTimeout(total=None))

    return httpx.AsyncClient(transport=AiohttpTransport(client=session), timeout=timeout,
                             follow_redirects=False)
