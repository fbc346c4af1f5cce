"""Helpers for tests that run the gateway in-process (unit level) with function-backed connectors."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import yaml

from gateway.config import Config, load_config
from gateway.connector import Call, Reply
from gateway.init import initialise


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


def rest_only_config(tmp_path: Path, **overrides: object) -> tuple[Config, dict[str, str]]:
    """The demo configuration cut down to its REST services (no simulator needed to start)."""
    init = initialise(tmp_path / "gw")
    data = yaml.safe_load(init.config_path.read_text())
    data["services"] = [s for s in data["services"] if s["connector"] == "rest"]
    data.update(overrides)
    init.config_path.write_text(yaml.safe_dump(data, allow_unicode=True))
    return load_config(init.config_path), init.secrets
