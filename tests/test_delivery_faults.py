"""Fault tests through real processes: the gateway and the simulators on loopback, SQLite and PostgreSQL.

The portal simulator is told to be down, slow, to answer 5xx or an error code, or to drop the
connection; the gateway is killed with SIGKILL mid-delivery and started again; two gateway worker
processes compete for one queue. Each time every accepted dossier must reach the simulator, in
order, and be applied once: the simulator's record of what it holds (``/_sim/dossiers``) is the
judge, while its record of what arrived (``/_sim/received``) shows the repeats that at-least-once
delivery sends and the portal's idempotency absorbs.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
import sqlalchemy as sa
import yaml

from connectors.dvcqg import data
from gateway.delivery.tables import deliveries
from gateway.storage.db import create_engine
from tests.conftest import PG_URL, _fresh_pg_database, _wait, free_port, stop

MOTCUA = "VN/GOV/000.00.00.H60/MOTCUA"  # Tuyên Quang's one-stop system
NGHE_AN = "VN/GOV/000.00.00.H41/MOTCUA"
PORTAL_CLIENT = "VN/GOV/000.00.00.G22/DVCQG"
PUSH = "VN/GOV/000.00.00.G22/DVCQG/DongBoHoSoMC"
PROGRESS = "VN/GOV/000.00.00.G22/DVCQG/CapNhatTienDoHoSoMC"
DOWN = "VN/GOV/000.00.00.H60/MOTCUA/NhanHoSo"
DELIVERY = {"backoff_base": 0.1, "backoff_max": 1.0, "poll_interval": 0.1, "breaker_failures": 5,
            "breaker_cooldown": 0.5, "breaker_cooldown_max": 2.0, "max_attempts": 1000,
            "lease_margin": 1.0, "concurrency": 16}
PORTAL_TIMEOUT = 1.0

pytestmark = pytest.mark.slow


@dataclass
class Stack:
    workdir: Path
    config_path: Path
    database: str
    base: str
    portal: str
    onestop: str
    secrets: dict[str, str]
    sims: subprocess.Popen[bytes]
    gateway: subprocess.Popen[bytes]
    workers: int = 1
    _tokens: dict[str, str] | None = None

    def start_gateway(self) -> None:
        log = (self.workdir / "gateway.log").open("ab")
        self.gateway = subprocess.Popen([sys.executable, "-m", "gateway", "serve", "--config",
                                         str(self.config_path), "--workers", str(self.workers)],
                                        stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        _wait(f"{self.base}/readyz", [self.gateway], [self.workdir / "gateway.log"])

    def kill_gateway(self) -> None:
        """SIGKILL, the whole process group: nothing gets to finish or clean up."""
        os.killpg(self.gateway.pid, signal.SIGKILL)
        self.gateway.wait(timeout=10)

    def token(self, client: str = MOTCUA) -> str:
        self._tokens = self._tokens or {}
        if client not in self._tokens:
            r = httpx.post(f"{self.base}/oauth/token", data={"grant_type": "client_credentials"},
                           auth=(client, self.secrets[client]))
            r.raise_for_status()
            self._tokens[client] = r.json()["access_token"]
        return self._tokens[client]

    def push(self, service: str, body: Any, client: str = MOTCUA) -> str:
        """Push until the gateway accepts (a client of a store-and-forward service retries on 503
        and on a lost connection; the idempotency key makes the retry harmless)."""
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                r = httpx.post(f"{self.base}/r1/{service}", content=orjson.dumps(body), timeout=30,
                               headers={"Authorization": f"Bearer {self.token(client)}",
                                        "Content-Type": "application/json"})
            except httpx.TransportError:
                time.sleep(0.2)
                continue
            if r.status_code == 503:
                time.sleep(0.2)
                continue
            assert r.status_code == 202, r.text
            return str(r.json()["deliveryId"])
        log = (self.workdir / "gateway.log").read_text(errors="replace")[-3000:]
        raise AssertionError(f"the gateway never accepted; its log ends:\n{log}")

    def mode(self, sim: str, **switches: Any) -> None:
        httpx.post(f"{sim}/_sim/mode", json=switches).raise_for_status()

    def states(self, ids: list[str]) -> dict[str, str]:
        engine = create_engine(self.database)
        try:
            with engine.connect() as conn:
                return dict(conn.execute(sa.select(deliveries.c.id, deliveries.c.state)
                                         .where(deliveries.c.id.in_(ids))).all())
        finally:
            engine.dispose()

    def wait_delivered(self, ids: list[str], timeout: float = 180) -> None:
        deadline = time.monotonic() + timeout
        states: dict[str, str] = {}
        while time.monotonic() < deadline:
            states = self.states(ids)
            if len(states) == len(ids) and all(s == "delivered" for s in states.values()):
                return
            time.sleep(0.2)
        counts: dict[str, int] = {}
        for state in states.values():
            counts[state] = counts.get(state, 0) + 1
        raise AssertionError(f"not all delivered in {timeout} s: {counts}")

    def push_slowly(self, work: Plan, delay_ms: int, arrived: int) -> list[str]:
        """Push ``work`` to a portal answering in ``delay_ms``; once it has received ``arrived``
        requests (attempts in flight), the delivery ids."""
        self.mode(self.portal, delay_ms=delay_ms)
        ids = work.push_all(self)
        deadline = time.monotonic() + 20
        while httpx.get(f"{self.portal}/_sim/received").json()["total"] < arrived:
            assert time.monotonic() < deadline
            time.sleep(0.02)
        return ids

    def restart_and_check(self, work: Plan, ids: list[str]) -> None:
        """The portal fast again and the gateway started: every delivery done, the portal's record
        as planned."""
        self.mode(self.portal, delay_ms=0)
        self.start_gateway()
        self.wait_delivered(ids)
        work.check_portal(self)

    def held(self) -> dict[str, dict[str, Any]]:
        items = httpx.get(f"{self.portal}/_sim/dossiers").json()["items"]
        return {item["MaHoSo"]: item for item in items}

    def stop(self) -> None:
        stop([self.sims])
        if self.gateway.poll() is None:
            os.killpg(self.gateway.pid, signal.SIGTERM)
            try:
                self.gateway.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(self.gateway.pid, signal.SIGKILL)


def start(workdir: Path, database: str | None, workers: int = 1) -> Stack:
    from gateway.config import load_config
    from gateway.init import Ports, initialise

    ports = Ports(gateway=free_port(), population=free_port(), dvcqg=free_port(),
                  onestop=free_port(), rest=free_port())
    init = initialise(workdir, ports=ports, database=database, force=True)
    cfg = yaml.safe_load(init.config_path.read_text())
    cfg["delivery"] = DELIVERY
    cfg["token"]["lifetime"] = 3600  # the module's tests share tokens for longer than the default
    for service in cfg["services"]:
        if service.get("delivery") == "async":
            service["timeout"] = PORTAL_TIMEOUT
    cfg["clients"] = [{**c, "scopes": ["exchange", "operator", "stats"]} if c["id"] == MOTCUA else c
                      for c in cfg["clients"]]
    init.config_path.write_text(yaml.safe_dump(cfg, allow_unicode=True, sort_keys=False))
    sims = subprocess.Popen([sys.executable, "-m", "gateway", "simulators", "--config",
                             str(init.config_path)],
                            stdout=(workdir / "simulators.log").open("wb"), stderr=subprocess.STDOUT)
    portal, onestop = f"http://127.0.0.1:{ports.dvcqg}", f"http://127.0.0.1:{ports.onestop}"
    for url in (portal, onestop):
        _wait(f"{url}/_sim/received", [sims], [workdir / "simulators.log"])
    stack = Stack(workdir=workdir, config_path=init.config_path,
                  database=load_config(init.config_path).database_url,
                  base=f"http://127.0.0.1:{ports.gateway}", portal=portal, onestop=onestop,
                  secrets=init.secrets, sims=sims, gateway=sims, workers=workers)
    try:
        stack.start_gateway()
    except Exception:
        stop([sims])
        raise
    return stack


def _database(param: str) -> str | None:
    if param == "sqlite":
        return None
    if not PG_URL:
        pytest.skip("no PostgreSQL: set LIENTHONG_TEST_PG_URL or run 'make test', which starts one")
    return _fresh_pg_database()


@pytest.fixture(scope="module", params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def stack(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    running = start(tmp_path_factory.mktemp(f"faults-{request.param}"), _database(request.param))
    yield running
    running.stop()


# -- the dossiers and what the portal must end up holding -----------------------------------------

@dataclass
class Plan:
    """Dossiers and the progress steps each gets, pushed one dossier after another's answer."""

    dossiers: list[dict[str, Any]]
    steps: dict[str, list[dict[str, Any]]]

    def push_all(self, stack: Stack, service: str = PUSH, client: str = MOTCUA) -> list[str]:
        def one(record: dict[str, Any]) -> list[str]:
            ids = [stack.push(service, record, client)]
            ids += [stack.push(PROGRESS, step, client) for step in self.steps[record["MaHoSo"]]]
            return ids

        with ThreadPoolExecutor(8) as pool:
            return [i for ids in pool.map(one, self.dossiers) for i in ids]

    def check_portal(self, stack: Stack) -> int:
        """Every dossier held once, with exactly its steps in order; the repeats the portal absorbed."""
        held = stack.held()
        repeats = 0
        for record in self.dossiers:
            item = held[record["MaHoSo"]]
            steps = self.steps[record["MaHoSo"]]
            assert item["QuaTrinhXuLy"] == steps, record["MaHoSo"]
            status = steps[-1]["TrangThai"] if steps else record["TrangThaiHoSo"]
            assert item["HoSo"]["TrangThaiHoSo"] == status
            repeats += item["SoLanLap"]
        return repeats


def plan(seed: int, count: int) -> Plan:
    dossiers, steps = [], {}
    for i in range(count):
        record = data.dossier(seed, i, agency="000.00.23.H60")
        if i % 3 == 0:  # due an hour after reception: resolved late
            received = datetime.strptime(record["NgayTiepNhan"], "%Y%m%d%H%M%S")
            record["NgayHenTra"] = (received + timedelta(hours=1)).strftime("%Y%m%d%H%M%S")
        dossiers.append(record)
        chosen = [1, 3, 4] if i % 2 == 0 else [1]  # even ones resolved (9 then 10), odd ones processing
        steps[record["MaHoSo"]] = [data.progress(record, s) for s in chosen]
    return Plan(dossiers, steps)


# -- the tests ------------------------------------------------------------------------------------

def test_portal_outage_is_ridden_out(stack: Stack) -> None:
    """The portal drops every connection for a while: all is accepted, then delivered in order, once."""
    work = plan(101, 24)
    stack.mode(stack.portal, fail="drop")
    try:
        ids = work.push_all(stack)
        time.sleep(1.5)
        assert not any(code in stack.held() for code in (d["MaHoSo"] for d in work.dossiers))
        states = stack.states(ids)
        assert set(states.values()) == {"pending"} and len(states) == len(ids)
    finally:
        stack.mode(stack.portal, fail=None)
    stack.wait_delivered(ids)
    work.check_portal(stack)
    faults = [i for i in httpx.get(f"{stack.portal}/_sim/received").json()["items"] if i["kind"] == "fault"]
    assert faults, "the portal saw the attempts it dropped"
    assert len(faults) < 4 * len(ids), "the circuit breaker kept the backlog from hammering the portal"


def test_slow_answers_beyond_the_timeout_are_retried(stack: Stack) -> None:
    """Answers slower than the service's timeout count as failures; the repeats change nothing."""
    work = plan(102, 8)
    stack.mode(stack.portal, delay_ms=int(PORTAL_TIMEOUT * 1000) + 400)
    try:
        ids = work.push_all(stack)
        time.sleep(2.5)
    finally:
        stack.mode(stack.portal, delay_ms=0)
    stack.wait_delivered(ids)
    work.check_portal(stack)
    engine = create_engine(stack.database)
    with engine.connect() as conn:
        attempts = conn.execute(sa.select(sa.func.max(deliveries.c.attempts))
                                .where(deliveries.c.id.in_(ids))).scalar()
    engine.dispose()
    assert attempts is not None and attempts > 1


@pytest.mark.parametrize("fail", ["http500", "error_code", "garbage"])
def test_5xx_error_codes_and_garbage_are_retried(stack: Stack, fail: str) -> None:
    """HTTP 500, the portal's "99" and unreadable answers are retryable: everything arrives."""
    work = plan(110 + ["http500", "error_code", "garbage"].index(fail), 6)
    stack.mode(stack.portal, fail=fail, times=12)
    ids = work.push_all(stack)
    stack.wait_delivered(ids)
    work.check_portal(stack)


def test_downward_flow_survives_a_one_stop_outage(stack: Stack) -> None:
    """Dossiers filed on the portal reach the province's one-stop system after it comes back."""
    records = [data.dossier(120, i, agency="000.00.23.H60") for i in range(10)]
    stack.mode(stack.onestop, fail="http500")
    try:
        ids = [stack.push(DOWN, r, PORTAL_CLIENT) for r in records]
        time.sleep(1.0)
    finally:
        stack.mode(stack.onestop, fail=None)
    stack.wait_delivered(ids)
    held = {i["MaHoSo"]: i for i in httpx.get(f"{stack.onestop}/_sim/dossiers").json()["items"]}
    for record in records:
        assert held[record["MaHoSo"]]["TrichYeuHoSo"] == record["TrichYeuHoSo"]


def test_kpis_match_the_portal_simulators_record(stack: Stack) -> None:
    """GET /stats/dossiers equals the KPIs computed naively from the dossiers the portal holds."""
    work = plan(130, 30)
    stack.wait_delivered(work.push_all(stack, client=NGHE_AN))  # the only pusher for Nghệ An here
    held = stack.held()
    expected = naive_kpis([held[d["MaHoSo"]] for d in work.dossiers], agency="000.00.00.H41")
    r = httpx.get(f"{stack.base}/stats/dossiers", params={"agency": "000.00.00.H41", "period": "all"},
                  headers={"Authorization": f"Bearer {stack.token()}"})
    assert r.status_code == 200, r.text
    (got,) = r.json()["items"]
    for key in ("agency", "received", "receivedOnline", "resolved", "resolvedOnTime"):
        assert got[key] == expected[key], key
    assert expected["resolved"] == 15 and expected["resolvedOnTime"] == 10
    assert got["onTimeShare"] == round(10 / 15, 4)


def naive_kpis(items: list[dict[str, Any]], agency: str) -> dict[str, Any]:
    """The reference: straight from the portal's record, one dossier at a time."""
    out = {"agency": agency, "received": 0, "receivedOnline": 0, "resolved": 0, "resolvedOnTime": 0}
    for item in items:
        dossier, steps = item["HoSo"], item["QuaTrinhXuLy"]
        out["received"] += 1
        out["receivedOnline"] += dossier["HinhThuc"] == "1"
        done = [s for s in steps if s["TrangThai"] in ("9", "10")]
        if dossier["TrangThaiHoSo"] in ("9", "10") and done:
            out["resolved"] += 1
            out["resolvedOnTime"] += done[0]["ThoiDiemXuLy"] <= dossier["NgayHenTra"]
    return out


@pytest.mark.parametrize("database", ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def test_sigkill_mid_delivery_loses_nothing_and_applies_once(tmp_path: Path, database: str) -> None:
    """Killed with SIGKILL while deliveries are in flight and started again: every accepted dossier is
    delivered, in order, and applied once by the portal."""
    stack = start(tmp_path, _database(database))
    try:
        work = plan(140, 20)
        ids = stack.push_slowly(work, delay_ms=300, arrived=8)
        stack.kill_gateway()
        in_flight = [i for i, s in stack.states(ids).items() if s == "pending"]
        assert in_flight, "the kill came after everything was delivered"
        stack.restart_and_check(work, ids)
    finally:
        stack.stop()


@pytest.mark.parametrize("database", ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def test_sigterm_mid_delivery_records_the_attempts_in_flight_audited(tmp_path: Path, database: str) -> None:
    """Stopped with SIGTERM while deliveries are in flight: their attempts finish within the grace
    and are recorded delivered, audited. The audit log was closed before the workers stopped: each
    attempt in flight failed for want of it (Server.AuditFailed) and reached the portal again after
    the restart."""
    stack = start(tmp_path, _database(database))
    try:
        work = plan(141, 6)
        ids = stack.push_slowly(work, delay_ms=400, arrived=1)
        os.killpg(stack.gateway.pid, signal.SIGTERM)
        assert stack.gateway.wait(timeout=30) in (0, -signal.SIGTERM)  # uvicorn re-raises it, once stopped
        engine = create_engine(stack.database)
        try:
            with engine.connect() as conn:
                rows = conn.execute(sa.select(deliveries.c.state, deliveries.c.last_error)
                                    .where(deliveries.c.id.in_(ids))).all()
        finally:
            engine.dispose()
        assert not [error for _, error in rows if error and "AuditFailed" in error]
        states = [state for state, _ in rows]
        assert "delivered" in states and "pending" in states, states  # stopped mid-way
        stack.restart_and_check(work, ids)
    finally:
        stack.stop()


@pytest.mark.postgres
def test_two_worker_processes_share_one_queue_on_postgresql(tmp_path: Path) -> None:
    """Two gateway processes deliver from one PostgreSQL queue: both work, none sends out of order."""
    stack = start(tmp_path, _database("postgresql"), workers=2)
    try:
        work = plan(150, 40)
        stack.mode(stack.portal, delay_ms=20)
        ids = work.push_all(stack)
        stack.wait_delivered(ids)
        work.check_portal(stack)
        engine = create_engine(stack.database)
        with engine.connect() as conn:
            workers = {w for (w,) in conn.execute(sa.select(deliveries.c.worker)
                                                  .where(deliveries.c.id.in_(ids)).distinct())}
        engine.dispose()
        assert len(workers) == 2, workers
    finally:
        stack.stop()
