"""The generic REST connector against its echo/items simulator, served by uvicorn on loopback."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import httpx
import orjson
import pytest
import uvicorn

from connectors.rest import simulator
from connectors.rest.connector import RestConnector, create
from gateway.config import Service
from gateway.connector import Call, ConnectorContext
from gateway.errors import UpstreamError, UpstreamTimeout, UpstreamUnavailable
from gateway.resources import schemas_dir
from gateway.simulation import free_port
from gateway.upstream import create_client, transport_failure

SERVICE_ID = "VN/GOV/000.00.00.H22/MOTCUA/items"


@contextlib.asynccontextmanager
async def serving(app: Any) -> AsyncIterator[str]:
    config = uvicorn.Config(app, host="127.0.0.1", port=0, lifespan="off", log_level="critical",
                            access_log=False, timeout_graceful_shutdown=1)
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    while not server.started:
        if task.done():
            task.result()
        await asyncio.sleep(0.005)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await task


@pytest.fixture
async def upstream() -> AsyncIterator[str]:
    async with serving(simulator.create_app()) as url:
        yield url


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    client = create_client()
    yield client
    await client.aclose()


def connector_for(url: str, http: httpx.AsyncClient, timeout: float = 5.0) -> RestConnector:
    service = Service(id=SERVICE_ID, connector="rest", upstream=url, timeout=timeout)
    return create(service, ConnectorContext(http=http, schemas_dir=schemas_dir()))


def call(method: str, path: str, payload: Any = None, *, query: str = "",
         headers: dict[str, str] | None = None) -> Call:
    service = Service(id=SERVICE_ID, connector="rest", upstream="http://unused")
    body = orjson.dumps(payload) if payload is not None else b""
    return Call(exchange_id="ex-1", service=service, operation="items", method=method, path=path,
                query=query, payload=payload, body=body, headers=headers or {})


async def set_mode(http: httpx.AsyncClient, url: str, **mode: Any) -> None:
    answer = await http.post(f"{url}/_sim/mode", json=mode)
    assert answer.status_code == 200, answer.text


async def test_echo_receives_body_query_and_xroad_headers(upstream: str, http: httpx.AsyncClient) -> None:
    """The body, query and the four X-Road headers reach the upstream; other headers do not."""
    headers = {"x-road-id": "ex-1", "X-Road-Client": "VN/GOV/000.00.00.H22/MOTCUA",
               "X-Road-UserId": "can-bo-07", "X-Road-Issue": "G22.20-20260609-0000001",
               "Authorization": "Bearer secret", "X-Road-Represented-Party": "VN/GOV/000.00.00.H41"}
    reply = await connector_for(upstream, http).call(
        call("POST", "/echo", {"MaHoSo": "H22-1", "ChuHoSo": "Nguyễn Văn An"}, query="a=1&b=hai",
             headers=headers))
    assert reply.status == 200
    assert reply.payload["json"] == {"MaHoSo": "H22-1", "ChuHoSo": "Nguyễn Văn An"}
    assert reply.payload["query"] == "a=1&b=hai"
    assert reply.payload["contentType"] == "application/json"
    assert reply.payload["headers"] == {
        "x-road-id": "ex-1", "x-road-client": "VN/GOV/000.00.00.H22/MOTCUA",
        "x-road-userid": "can-bo-07", "x-road-issue": "G22.20-20260609-0000001"}


async def test_reply_carries_the_wire_bytes(upstream: str, http: httpx.AsyncClient) -> None:
    """The reply holds the exact bytes sent upstream and received back, for the audit hashes."""
    request = call("POST", "/echo", {"x": 1})
    reply = await connector_for(upstream, http).call(request)
    assert reply.wire_request == request.body
    assert orjson.loads(reply.wire_response) == reply.payload


async def test_upstream_404_is_passed_through(upstream: str, http: httpx.AsyncClient) -> None:
    """A 4xx is the upstream's answer: its status and JSON come back, not a gateway error."""
    reply = await connector_for(upstream, http).call(call("GET", "/items/999"))
    assert reply.status == 404
    assert reply.payload["error"] == "not_found"


async def test_items_are_stored_and_found(upstream: str, http: httpx.AsyncClient) -> None:
    """POST /items stores an item (201) that GET /items/{id} then returns."""
    connector = connector_for(upstream, http)
    created = await connector.call(call("POST", "/items", {"hoVaTen": "Trần Thị Lan"}))
    assert created.status == 201
    found = await connector.call(call("GET", f"/items/{created.payload['id']}"))
    assert found.payload == created.payload
    listed = await connector.call(call("GET", "/items"))
    assert listed.payload["total"] == 6


async def test_non_json_success_comes_back_as_text(upstream: str, http: httpx.AsyncClient) -> None:
    """A 2xx answer that is not JSON is wrapped as {"text": ...}."""
    reply = await connector_for(upstream, http).call(call("GET", "/text"))
    assert reply.payload == {"text": "Xin chào từ hệ thống giả lập"}


async def test_simulated_application_error_is_passed_through(upstream: str, http: httpx.AsyncClient) -> None:
    """The "error_code" switch makes the REST simulator answer 400, which the connector passes on."""
    await set_mode(http, upstream, fail="error_code")
    reply = await connector_for(upstream, http).call(call("POST", "/echo", {}))
    assert reply.status == 400
    assert reply.payload["error_code"] == "99"


@pytest.mark.parametrize("fail", ["http500", "garbage"])
async def test_bad_answers_are_upstream_errors(upstream: str, http: httpx.AsyncClient, fail: str) -> None:
    """HTTP 500 and a body that claims JSON but is not become UpstreamError (502)."""
    await set_mode(http, upstream, fail=fail)
    with pytest.raises(UpstreamError) as caught:
        await connector_for(upstream, http).call(call("POST", "/echo", {}))
    assert caught.value.status == 502


async def test_dropped_connection_is_unavailable(upstream: str, http: httpx.AsyncClient) -> None:
    """A connection closed without an answer becomes UpstreamUnavailable, not a timeout."""
    await set_mode(http, upstream, fail="drop")
    with pytest.raises(UpstreamUnavailable):
        await connector_for(upstream, http).call(call("POST", "/echo", {}))


async def test_upstream_down_is_unavailable(http: httpx.AsyncClient) -> None:
    """A refused connection becomes UpstreamUnavailable (503)."""
    with pytest.raises(UpstreamUnavailable) as caught:
        await connector_for(f"http://127.0.0.1:{free_port()}", http).call(call("GET", "/items"))
    assert caught.value.status == 503


async def test_slow_upstream_times_out(upstream: str, http: httpx.AsyncClient) -> None:
    """An answer later than service.timeout becomes UpstreamTimeout (504)."""
    await set_mode(http, upstream, delay_ms=1000)
    with pytest.raises(UpstreamTimeout) as caught:
        await connector_for(upstream, http, timeout=0.2).call(call("GET", "/items"))
    assert caught.value.status == 504


async def test_failure_for_a_number_of_requests(upstream: str, http: httpx.AsyncClient) -> None:
    """{"fail": ..., "times": 1} fails the next request only."""
    await set_mode(http, upstream, fail="http500", times=1)
    connector = connector_for(upstream, http)
    with pytest.raises(UpstreamError):
        await connector.call(call("GET", "/items"))
    assert (await connector.call(call("GET", "/items"))).status == 200


async def test_mode_refuses_unknown_failure(upstream: str, http: httpx.AsyncClient) -> None:
    """/_sim/mode answers 400 for a failure mode it does not know."""
    answer = await http.post(f"{upstream}/_sim/mode", json={"fail": "explode"})
    assert answer.status_code == 400


async def test_reset_clears_switches_and_records(upstream: str, http: httpx.AsyncClient) -> None:
    """/_sim/reset turns failures off and empties /_sim/received."""
    connector = connector_for(upstream, http)
    await connector.call(call("POST", "/echo", {"a": 1}))
    await set_mode(http, upstream, fail="http500")
    await http.post(f"{upstream}/_sim/reset")
    assert (await http.get(f"{upstream}/_sim/received")).json()["total"] == 0
    assert (await connector.call(call("POST", "/echo", {"a": 2}))).status == 200


def test_aiohttp_disconnect_under_connect_timeout_is_unavailable() -> None:
    """httpx-aiohttp labels a dropped connection ConnectTimeout; the cause decides: unavailable."""
    try:
        try:
            raise aiohttp.ServerDisconnectedError()
        except aiohttp.ClientError as exc:
            raise httpx.ConnectTimeout("Server disconnected") from exc
    except httpx.ConnectTimeout as exc:
        assert isinstance(transport_failure(exc, "http://x"), UpstreamUnavailable)


def test_aiohttp_socket_timeout_is_timeout() -> None:
    """A read timeout underneath the aiohttp transport is UpstreamTimeout."""
    try:
        try:
            raise aiohttp.SocketTimeoutError("Timeout on reading data from socket")
        except aiohttp.ClientError as exc:
            raise httpx.ReadTimeout("timeout") from exc
    except httpx.ReadTimeout as exc:
        assert isinstance(transport_failure(exc, "http://x"), UpstreamTimeout)


@pytest.mark.parametrize(("error", "expected"), [(httpx.ConnectError("refused"), UpstreamUnavailable),
                                                 (httpx.ReadTimeout("slow"), UpstreamTimeout),
                                                 (TimeoutError(), UpstreamTimeout)])
def test_plain_httpx_errors_are_classified_by_type(error: Exception, expected: type) -> None:
    """Without aiohttp underneath, the httpx exception class decides."""
    assert isinstance(transport_failure(error, "http://x"), expected)
