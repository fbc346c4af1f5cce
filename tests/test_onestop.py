"""The one-stop connector against its simulator: receiving dossiers routed down, and lookups."""

from __future__ import annotations

import asyncio
import contextlib
import re
import socket
from collections.abc import AsyncIterator
from typing import Any

import httpx
import orjson
import pytest
import uvicorn

from connectors.dvcqg import data
from connectors.onestop import simulator
from connectors.onestop.connector import OneStopConnector, create
from gateway.config import Service
from gateway.connector import Call, ConnectorContext
from gateway.errors import InvalidBody, UnknownService, UpstreamError, UpstreamTimeout, UpstreamUnavailable
from gateway.resources import schemas_dir
from gateway.upstream import create_client

SERVICE_ID = "VN/GOV/000.00.00.H60/MOTCUA/NhanHoSo"
RECEIPT = re.compile(r"^H60\.23-\d{6}-\d{4}$")


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
async def onestop() -> AsyncIterator[str]:
    async with serving(simulator.create_app()) as url:
        yield url


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    client = create_client()
    yield client
    await client.aclose()


def connector_for(url: str, http: httpx.AsyncClient, timeout: float = 5.0) -> OneStopConnector:
    service = Service(id=SERVICE_ID, connector="onestop", upstream=url, timeout=timeout)
    return create(service, ConnectorContext(http=http, schemas_dir=schemas_dir()))


def call(operation: str, payload: Any = None, *, path: str = "", query: str = "") -> Call:
    service = Service(id=SERVICE_ID, connector="onestop", upstream="http://unused")
    return Call(exchange_id="ex-1", service=service, operation=operation, payload=payload, path=path,
                query=query)


async def set_mode(http: httpx.AsyncClient, url: str, **mode: Any) -> None:
    answer = await http.post(f"{url}/_sim/mode", json=mode)
    assert answer.status_code == 200, answer.text


async def test_received_dossier_gets_a_receipt_and_is_found(onestop: str, http: httpx.AsyncClient) -> None:
    """NhanHoSo answers a receipt number; TraCuuHoSo then returns the dossier with it."""
    connector = connector_for(onestop, http)
    dossier = data.dossier(9, 0, agency="000.00.00.G22")
    reply = await connector.call(call("NhanHoSo", dossier))
    assert reply.payload["error_code"] == "00"
    assert reply.payload["MaHoSo"] == dossier["MaHoSo"]
    assert RECEIPT.match(reply.payload["SoBienNhan"])
    assert orjson.loads(reply.wire_request) == dossier
    found = await connector.call(call("TraCuuHoSo", {"MaHoSo": dossier["MaHoSo"]}))
    assert found.status == 200
    assert found.payload["data"]["SoBienNhan"] == reply.payload["SoBienNhan"]
    assert found.payload["data"]["ChuHoSo"] == dossier["ChuHoSo"]


async def test_repeated_dossier_keeps_its_receipt(onestop: str, http: httpx.AsyncClient) -> None:
    """The same dossier delivered twice gets the same receipt and no second record."""
    connector = connector_for(onestop, http)
    dossier = data.dossier(9, 1)
    first = await connector.call(call("NhanHoSo", dossier))
    again = await connector.call(call("NhanHoSo", {**dossier, "GhiChu": "gửi lại"}))
    assert again.payload["SoBienNhan"] == first.payload["SoBienNhan"]
    held = (await http.get(f"{onestop}/_sim/dossiers")).json()
    assert held["total"] == 4  # three seeded and this one
    assert [d["GhiChu"] for d in held["items"] if d["MaHoSo"] == dossier["MaHoSo"]] == ["gửi lại"]


async def test_receipts_are_numbered_in_order(onestop: str, http: httpx.AsyncClient) -> None:
    """Each new dossier gets the next running number."""
    connector = connector_for(onestop, http)
    numbers = [int((await connector.call(call("NhanHoSo", data.dossier(9, i)))).payload["SoBienNhan"][-4:])
               for i in (2, 3)]
    assert numbers[1] == numbers[0] + 1


async def test_seeded_dossier_is_found_by_path(onestop: str, http: httpx.AsyncClient) -> None:
    """The simulator starts with three dossiers; the code may come in the path."""
    code = data.dossier(2026, 0, agency=simulator.AGENCY)["MaHoSo"]
    reply = await connector_for(onestop, http).call(call("TraCuuHoSo", path=f"/{code}"))
    assert reply.payload["data"]["MaHoSo"] == code


async def test_lookup_by_query(onestop: str, http: httpx.AsyncClient) -> None:
    """The code may also come as ?MaHoSo=."""
    code = data.dossier(2026, 1, agency=simulator.AGENCY)["MaHoSo"]
    reply = await connector_for(onestop, http).call(call("TraCuuHoSo", query=f"MaHoSo={code}"))
    assert reply.payload["data"]["MaHoSo"] == code


async def test_unknown_dossier_is_a_404_reply(onestop: str, http: httpx.AsyncClient) -> None:
    """A lookup of an unknown dossier comes back as the one-stop system's 404, not a gateway error."""
    reply = await connector_for(onestop, http).call(call("TraCuuHoSo", {"MaHoSo": "H60-khong-co"}))
    assert reply.status == 404
    assert reply.payload["error_code"] == "04"


async def test_dossier_without_code_is_invalid(onestop: str, http: httpx.AsyncClient) -> None:
    """NhanHoSo without MaHoSo is InvalidBody 422 at $.MaHoSo, and nothing is sent."""
    with pytest.raises(InvalidBody) as caught:
        await connector_for(onestop, http).call(call("NhanHoSo", {"ChuHoSo": "Võ Thị Hoa"}))
    assert caught.value.status == 422
    assert caught.value.extra["errors"][0]["path"] == "$.MaHoSo"
    assert (await http.get(f"{onestop}/_sim/received")).json()["total"] == 0


async def test_lookup_without_code_is_invalid(onestop: str, http: httpx.AsyncClient) -> None:
    """TraCuuHoSo with no code anywhere is InvalidBody 422."""
    with pytest.raises(InvalidBody):
        await connector_for(onestop, http).call(call("TraCuuHoSo", {}))


async def test_unknown_operation_is_refused(onestop: str, http: httpx.AsyncClient) -> None:
    """An operation the one-stop system does not offer is UnknownService."""
    with pytest.raises(UnknownService):
        await connector_for(onestop, http).call(call("XoaHoSo", {}))


async def test_application_error_is_upstream_error(onestop: str, http: httpx.AsyncClient) -> None:
    """An answer with error_code other than 00 is UpstreamError carrying it."""
    await set_mode(http, onestop, fail="error_code")
    with pytest.raises(UpstreamError) as caught:
        await connector_for(onestop, http).call(call("NhanHoSo", data.dossier(9, 4)))
    assert caught.value.extra["error_code"] == "99"
    assert "bảo trì" in caught.value.extra["message"]


@pytest.mark.parametrize("fail", ["http500", "garbage"])
async def test_bad_answers_are_upstream_errors(onestop: str, http: httpx.AsyncClient, fail: str) -> None:
    """HTTP 500 and a body that is not JSON become UpstreamError."""
    await set_mode(http, onestop, fail=fail)
    with pytest.raises(UpstreamError):
        await connector_for(onestop, http).call(call("NhanHoSo", data.dossier(9, 5)))


async def test_dropped_connection_is_unavailable(onestop: str, http: httpx.AsyncClient) -> None:
    """A connection closed without an answer becomes UpstreamUnavailable."""
    await set_mode(http, onestop, fail="drop")
    with pytest.raises(UpstreamUnavailable):
        await connector_for(onestop, http).call(call("NhanHoSo", data.dossier(9, 6)))


async def test_onestop_down_is_unavailable(http: httpx.AsyncClient) -> None:
    """A refused connection becomes UpstreamUnavailable."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with pytest.raises(UpstreamUnavailable):
        await connector_for(f"http://127.0.0.1:{port}", http).call(call("NhanHoSo", data.dossier(9, 7)))


async def test_slow_onestop_times_out(onestop: str, http: httpx.AsyncClient) -> None:
    """An answer later than service.timeout becomes UpstreamTimeout."""
    await set_mode(http, onestop, delay_ms=1000)
    with pytest.raises(UpstreamTimeout):
        await connector_for(onestop, http, timeout=0.2).call(call("TraCuuHoSo", {"MaHoSo": "x"}))


async def test_reset_returns_to_the_seeded_dossiers(onestop: str, http: httpx.AsyncClient) -> None:
    """/_sim/reset forgets received dossiers and keeps the three seeded ones."""
    await connector_for(onestop, http).call(call("NhanHoSo", data.dossier(9, 8)))
    await http.post(f"{onestop}/_sim/reset")
    assert (await http.get(f"{onestop}/_sim/dossiers")).json()["total"] == 3
