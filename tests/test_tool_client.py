"""The tools' HTTP client survives a server closing a kept-alive connection under it (issue: the
demo failed now and then with an empty message), and no error a person sees is empty."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import httpx
import pytest

from gateway.client import tool_client
from gateway.errors import describe

ANSWER = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 2\r\n\r\nok"


async def _serve_one_then_drop(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Answers a connection's first request and keeps it open; its second request finds the
    connection closed, as when a server's keep-alive timeout ends at that moment."""
    try:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(ANSWER)
        await writer.drain()
        await reader.readuntil(b"\r\n\r\n")
        writer.transport.abort()  # a reset: the request sits unread
    except (asyncio.IncompleteReadError, ConnectionError):
        writer.close()


@pytest.fixture
async def dropping_server() -> AsyncIterator[str]:
    server = await asyncio.start_server(_serve_one_then_drop, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.close()
        await server.wait_closed()


async def test_a_plain_client_fails_where_the_server_drops_a_kept_alive_connection(
        dropping_server: str) -> None:
    async with httpx.AsyncClient(timeout=5) as plain:
        assert (await plain.get(f"{dropping_server}/a")).status_code == 200
        with pytest.raises(httpx.TransportError) as caught:
            await plain.post(f"{dropping_server}/b", json={"mode": "drop"})
    assert describe(caught.value).startswith(type(caught.value).__name__)


async def test_the_tool_client_sends_again_on_a_new_connection(dropping_server: str) -> None:
    async with tool_client(timeout=5) as http:
        assert (await http.get(f"{dropping_server}/a")).status_code == 200
        assert (await http.post(f"{dropping_server}/b", json={"mode": "drop"})).status_code == 200
        assert (await http.get(f"{dropping_server}/c")).text == "ok"


async def test_the_tool_client_gives_up_and_says_where() -> None:
    async def refuse_all(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.transport.abort()

    server = await asyncio.start_server(refuse_all, "127.0.0.1", 0)
    url = f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}/_sim/mode"
    try:
        async with tool_client(timeout=5) as http:
            with pytest.raises(httpx.TransportError) as caught:
                await http.post(url, json={})
    finally:
        server.close()
        await server.wait_closed()
    text = describe(caught.value)
    assert type(caught.value).__name__ in text and f"POST {url}" in text


@pytest.mark.parametrize("exc", [httpx.ReadError(""), TimeoutError(), ValueError("  "), KeyError("")])
def test_no_description_is_empty(exc: BaseException) -> None:
    text = describe(exc)
    assert text.startswith(type(exc).__name__ + ": ") and text.split(": ", 1)[1].strip()
