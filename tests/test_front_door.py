"""The front door's count (gateway/frontdoor.py): the exchanges a process is answering for callers
outside it, which the flow engine gives way to. Counted around the exchange entry points (REST, SOAP,
``listClients``) while each runs, whatever way it ends; the FastAPI app's pages are not counted."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from gateway.app import GatewayApp, create_app
from gateway.config import load_config
from gateway.init import initialise
from gateway.storage.db import upgrade
from tests.helpers import rest_only_config


@pytest.fixture
def app(tmp_path: Path) -> GatewayApp:
    made = create_app(rest_only_config(tmp_path)[0])
    assert isinstance(made, GatewayApp)
    return made


def _entries(app: GatewayApp, seen: dict[str, int]) -> None:
    """Each entry point replaced by one that notes the count while it runs."""
    def entry(name: str) -> Any:
        async def run(scope: Any, receive: Any, send: Any) -> None:
            seen[name] = app.front_door.in_flight
            if scope.get("path", "").endswith("/boom"):
                raise RuntimeError("the entry failed")
        return run

    app.rest, app.soap, app.list_clients, app.api = (
        entry("rest"), entry("soap"), entry("list_clients"), entry("api"))


@pytest.mark.parametrize(("path", "name", "counted"), [
    ("/r1/VN/GOV/000.00.00.G22/LIENTHONG/KhaiSinh3Trong1", "rest", 1),
    ("/soap", "soap", 1),
    ("/listClients", "list_clients", 1),
    ("/console/flows", "api", 0),
    ("/audit/entries", "api", 0),
    ("/oauth/token", "api", 0),
])
async def test_exchanges_are_counted_while_they_run(app: GatewayApp, path: str, name: str,
                                                    counted: int) -> None:
    seen: dict[str, int] = {}
    _entries(app, seen)
    await app({"type": "http", "path": path}, None, None)
    assert seen == {name: counted}
    assert app.front_door.in_flight == 0 and not app.front_door.busy()


async def test_an_exchange_that_fails_leaves_the_door(app: GatewayApp) -> None:
    seen: dict[str, int] = {}
    _entries(app, seen)
    with pytest.raises(RuntimeError):
        await app({"type": "http", "path": "/r1/VN/GOV/x/boom"}, None, None)
    assert seen == {"rest": 1} and app.front_door.in_flight == 0


async def test_a_lifespan_message_goes_to_the_api_uncounted(app: GatewayApp) -> None:
    seen: dict[str, int] = {}
    _entries(app, seen)
    await app({"type": "lifespan"}, None, None)
    assert seen == {"api": 0}


def test_the_running_flow_engine_reads_the_apps_count(tmp_path: Path) -> None:
    """Wired through the lifespan: the demo catalog's gateway (flows shipped), its engine running,
    reads the application's count; a real exchange through the REST entry leaves it as it found it."""
    config = load_config(initialise(tmp_path / "gw").config_path)
    upgrade(config.database_url)
    made = create_app(config)
    assert isinstance(made, GatewayApp)
    with TestClient(made, base_url="http://127.0.0.1") as client:
        flows = made.api.state.runtime.flows
        assert flows is not None and not flows._busy()
        made.front_door.in_flight += 1
        assert flows._busy()
        made.front_door.in_flight -= 1
        answer = client.post("/r1/VN/GOV/000.00.00.G22/LIENTHONG/KhaiSinh3Trong1", content=b"{}")
        assert answer.status_code == 401  # no token: refused at the door, and counted out again
        assert made.front_door.in_flight == 0 and not flows._busy()
