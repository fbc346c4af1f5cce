"""Helpers for tests that run the gateway in-process (unit level) with function-backed connectors."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from fastapi.testclient import TestClient

from gateway.config import Config, load_config
from gateway.connector import Call, Reply
from gateway.init import initialise
from gateway.runtime import Runtime


@dataclass
class FunctionConnector:
    """A connector made of a plain function: the test double STYLE.md asks for, not a patch."""

    fn: Callable[[Call], Awaitable[Reply]]
    calls: int = 0

    async def call(self, call: Call) -> Reply:
        self.calls += 1
        return await self.fn(call)

    async def aclose(self) -> None:
        return None


# The portal services the bundled flows' notifications go to (docs/flows.md#notifications): kept
# in a cut-down catalog so that the flows still check.
FLOW_NOTIFIED = ("DongBoHoSoMC", "CapNhatTienDoHoSoMC")


def rest_and_flows(services: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The demo catalog's REST services, the joint procedures that call them and the portal
    services they notify: what starts without any simulator but the REST ones."""
    return [s for s in services if s.get("connector") == "rest" or s.get("flow")
            or (s.get("connector") == "dvcqg" and s["id"].rsplit("/", 1)[-1] in FLOW_NOTIFIED)]


def rest_only_config(tmp_path: Path, **overrides: object) -> tuple[Config, dict[str, str]]:
    """The demo configuration cut down to its REST services and the joint procedures that call
    them (no simulator needed to start)."""
    init = initialise(tmp_path / "gw")
    data = yaml.safe_load(init.config_path.read_text())
    data["services"] = rest_and_flows(data["services"])
    for member in data["members"]:
        member.pop("routing", None)  # its receiving services are gone
    data.update(overrides)
    init.config_path.write_text(yaml.safe_dump(data, allow_unicode=True))
    return load_config(init.config_path), init.secrets


class InProcess:
    """A gateway app under TestClient, the clients' secrets, and one token per client, kept."""

    def __init__(self, client: TestClient, secrets: dict[str, str]) -> None:
        self.client = client
        self.secrets = secrets
        self._tokens: dict[str, str] = {}

    @property
    def runtime(self) -> Runtime:
        return self.client.app.api.state.runtime  # type: ignore[attr-defined,no-any-return]

    def token(self, client: str) -> str:
        if client not in self._tokens:
            r = self.client.post("/oauth/token", data={"grant_type": "client_credentials"},
                                 auth=(client, self.secrets[client]))
            assert r.status_code == 200, r.text
            self._tokens[client] = r.json()["access_token"]
        return self._tokens[client]
