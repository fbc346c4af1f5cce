"""Serving the upstream simulators that a configuration names."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping

from gateway import plugins
from gateway.config import Simulator
from gateway.simulation import serve


def run_simulators(chosen: Mapping[str, Simulator], seed: int = 2026) -> None:
    apps = [(name, plugins.load(plugins.SIMULATORS, name)(seed=seed), sim.host, sim.port)
            for name, sim in chosen.items()]
    try:
        import uvloop

        uvloop.run(serve(apps))
    except KeyboardInterrupt:
        pass
    except ImportError:  # pragma: no cover - uvloop is a dependency through uvicorn[standard]
        asyncio.run(serve(apps))
