"""The shared upstream client against a real server on loopback."""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp import web

from gateway.seal import HEADER, load_sealer, outbound
from gateway.spool import spool_pieces
from gateway.upstream import create_client, send
from tests.test_seal import joserfc_verify, rest_only_config


@contextlib.asynccontextmanager
async def served(app: web.Application) -> AsyncIterator[int]:
    """``app`` on a loopback port, its number, for the block."""
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        yield runner.addresses[0][1]
    finally:
        await runner.cleanup()


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
        async with served(app) as port:
            http = create_client(transport=transport)
            try:
                for _ in range(2):
                    answer = await send(http, "GET", f"http://127.0.0.1:{port}/", deadline=5)
                    assert answer.status_code == 200
                    assert "caller-a-secret" in answer.headers.get("set-cookie", "")
            finally:
                await http.aclose()

    asyncio.run(scenario())
    assert seen == [None, None]


@pytest.mark.parametrize("transport", ["aiohttp", "httpx"])
def test_a_spooled_body_is_sent_from_its_file_with_its_length_and_seal(transport: str,
                                                                      tmp_path: Path) -> None:
    """A large document pushed from its file (gateway/spool.py): the server gets every byte, with
    ``Content-Length`` (not chunked), and inside ``outbound`` the seal a receiver checks over them."""
    body = os.urandom(3_000_000)
    spooled = spool_pieces([body], tmp_path / "spool")
    got: list[tuple[str | None, str | None, bytes, str | None]] = []

    async def handler(request: web.Request) -> web.Response:
        got.append((request.headers.get("Content-Length"), request.headers.get("Transfer-Encoding"),
                    await request.read(), request.headers.get(HEADER)))
        return web.json_response({"ok": True})

    config, _ = rest_only_config(tmp_path)
    sealer = load_sealer(config)
    assert sealer is not None

    async def scenario() -> None:
        app = web.Application(client_max_size=10 * 1_048_576)
        app.router.add_post("/", handler)
        async with served(app) as port:
            http = create_client(transport=transport)
            try:
                with outbound(sealer):
                    answer = await send(http, "POST", f"http://127.0.0.1:{port}/", deadline=10,
                                        content=spooled, headers={"Content-Type": "application/xml"})
                assert answer.status_code == 200
            finally:
                await http.aclose()

    try:
        asyncio.run(scenario())
    finally:
        spooled.close()
    ((length, chunked, received, seal),) = got
    assert (length, chunked) == (str(len(body)), None) and received == body
    assert seal is not None
    joserfc_verify(seal, body, sealer.jwks)
