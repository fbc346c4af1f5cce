"""Shared fixtures: databases (SQLite always, PostgreSQL when the test command provides one),
free ports, and a whole gateway with its simulators running as real processes on loopback."""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
import yaml
from hypothesis import settings

from gateway.simulation import free_port

# No per-example deadline: a shared, busy machine makes any timing bound fail now and then, and the
# tests bound work, not speed.
settings.register_profile("lienthong", deadline=None)
settings.load_profile("lienthong")

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = ROOT.parent / "shared" / "fixtures"
PG_URL = os.environ.get("LIENTHONG_TEST_PG_URL", "")


def fixtures_dir(name: str) -> Path:
    """A folder of third-party inputs, or skip naming where they should be."""
    path = FIXTURES / name
    if not path.is_dir():
        pytest.skip(f"third-party fixtures not found: {path} (../shared/fixtures/ beside the project)")
    return path


def _fresh_pg_database() -> str:
    """A new, empty database on the test PostgreSQL server; its URL."""
    name = f"lt_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(PG_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    admin.dispose()
    return PG_URL.rsplit("/", 1)[0] + "/" + name


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A migrated, empty database: SQLite in a temporary folder, and PostgreSQL when available."""
    from gateway.storage.db import upgrade

    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'lienthong.db'}"
    else:
        if not PG_URL:
            pytest.skip("no PostgreSQL: set LIENTHONG_TEST_PG_URL or run 'make test', which starts one")
        url = _fresh_pg_database()
    upgrade(url)
    return url


@dataclass
class Stack:
    """A gateway and its simulators, running as processes, and what a client needs to use them."""

    base: str
    config_path: Path
    database: str
    secrets: dict[str, str]
    sims: dict[str, str]

    def token(self, client: str, scope: str | None = None) -> str:
        data = {"grant_type": "client_credentials"}
        if scope:
            data["scope"] = scope
        r = httpx.post(f"{self.base}/oauth/token", data=data, auth=(client, self.secrets[client]))
        r.raise_for_status()
        return str(r.json()["access_token"])


def _wait(url: str, procs: list[subprocess.Popen[bytes]], logs: list[Path]) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        for proc in procs:
            if proc.poll() is not None:
                text = "\n".join(p.read_text(errors="replace")[-3000:] for p in logs)
                raise RuntimeError(f"a process exited early ({proc.returncode}):\n{text}")
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"{url} not ready")


def start_stack(workdir: Path, database: str | None = None, workers: int = 1,
                overrides: dict[str, object] | None = None,
                edit: Callable[[dict[str, Any]], None] | None = None,
                ) -> tuple[Stack, list[subprocess.Popen[bytes]]]:
    """Start the demo catalog's simulators and gateway; ``overrides`` replace top-level settings of
    the written configuration (e.g. ``{"redis": url}``), and ``edit`` changes it in place."""
    from gateway.init import Ports, initialise

    ports = Ports(gateway=free_port(), population=free_port(), dvcqg=free_port(),
                  onestop=free_port(), rest=free_port())
    init = initialise(workdir, ports=ports, database=database, force=True)
    cfg = yaml.safe_load(init.config_path.read_text())
    if overrides or edit:
        cfg.update(overrides or {})
        if edit is not None:
            edit(cfg)
        init.config_path.write_text(yaml.safe_dump(cfg, allow_unicode=True, sort_keys=False))
    logs = [workdir / "simulators.log", workdir / "gateway.log"]
    cmd = [sys.executable, "-m", "gateway"]
    sims = subprocess.Popen([*cmd, "simulators", "--config", str(init.config_path)],
                            stdout=logs[0].open("wb"), stderr=subprocess.STDOUT)
    gw = subprocess.Popen([*cmd, "serve", "--config", str(init.config_path), "--workers", str(workers)],
                          stdout=logs[1].open("wb"), stderr=subprocess.STDOUT)
    procs = [sims, gw]
    sim_urls = {name: f"http://127.0.0.1:{s['port']}" for name, s in cfg["simulators"].items()}
    try:
        for url in sim_urls.values():
            _wait(f"{url}/_sim/received", procs, logs)
        base = f"http://127.0.0.1:{ports.gateway}"
        _wait(f"{base}/readyz", procs, logs)
    except Exception:
        stop(procs)
        raise
    from gateway.config import load_config

    stack = Stack(base=base, config_path=init.config_path,
                  database=load_config(init.config_path).database_url, secrets=init.secrets,
                  sims=sim_urls)
    return stack, procs


def stop(procs: list[subprocess.Popen[bytes]]) -> None:
    for proc in procs:
        if proc.poll() is None:
            proc.terminate()
    for proc in procs:
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()


@pytest.fixture(scope="session", params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def stack(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """The demo catalog served by real processes: gateway + simulators, on SQLite and PostgreSQL."""
    database = None
    if request.param == "postgresql":
        if not PG_URL:
            pytest.skip("no PostgreSQL: set LIENTHONG_TEST_PG_URL or run 'make test', which starts one")
        database = _fresh_pg_database()
    workdir = tmp_path_factory.mktemp(f"stack-{request.param}")
    running, procs = start_stack(workdir, database)
    yield running
    stop(procs)


def random_id() -> str:
    return secrets.token_hex(8)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Browser tests run last: Playwright's sync API keeps an event loop running in the main thread
    until the session ends, and the asyncio tests cannot run beside it."""
    items.sort(key=lambda item: item.nodeid.startswith("tests/browser/"))
