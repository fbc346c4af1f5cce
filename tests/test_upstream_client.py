"""The shared upstream client against a real server on loopback."""

from __future__ import annotations

import asyncio

import pytest
from aiohttp import web

from gateway.upstream import create_client, send


@pytest.mark.parametrize("transport", ["aiohttp", "httpx"])
def test_an_upstream_cookie_never_rides_on_the_next_exchange(transport: str) -> None:
    """One client carries every caller's exchanges: a Set-Cookie in one answer must not be sent
    with the next request (another caller's, perhaps)."""
    seen: list[str | None] = []

    async def handler(request: web.Request) -> web.Response:
        seen.append(request.headers.get("Cookie"))
        response = web.json_response({"ok": True})
        response.set_cookie("session", "caller-a-secret")
        return response

    async def scenario() -> None:
        app = web.Application()
        app.router.add_get("/", handler)
        runner = web.AppRunner(app)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = runner.addresses[0][1]
        http = create_client(transport=transport)
        try:
            for _ in range(2):
                answer = await send(http, "GET", f"http://127.0.0.1:{port}/", deadline=5)
                assert answer.status_code == 200
                assert "caller-a-secret" in answer.headers.get("set-cookie", "")
        finally:
            await http.aclose()
            await runner.cleanup()

    asyncio.run(scenario())
    assert seen == [None, None]
