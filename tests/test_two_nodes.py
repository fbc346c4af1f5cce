"""Two gateway nodes on one machine: separate ``lienthong serve --workers 2`` processes on two ports,
one PostgreSQL database and one Redis between them (docs/operations.md#several-nodes).

Under load on both (sync REST exchanges, async dossier pushes, a rate-limited client) one node's
whole process group is killed with SIGKILL while the other carries on. Then: the audit log is one
sequence that verifies and holds every answered exchange; every accepted dossier reached the portal
simulator and was applied once, and only those the dead node had in flight were sent again (after
their leases lapsed, by the survivor); a rule's bucket admitted what one bucket allows, not one per
node; the killed node, started again, appends to the same tree.

The nodes' configurations differ in the listen port and the node's name (``node: a`` and ``b``): a
delivery's ``worker`` column (node:pid) tells which node's process holds or sent it.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
import sqlalchemy as sa
import yaml

from connectors.dvcqg import data
from gateway.audit.log import AuditLog
from gateway.delivery.tables import deliveries
from gateway.simulation import free_port
from gateway.storage.db import create_engine
from tests.conftest import PG_URL, _fresh_pg_database, _wait, stop

REDIS_URL = os.environ.get("LIENTHONG_TEST_REDIS_URL", "")
ECHO_CLIENT = "VN/GOV/000.00.00.H41/MOTCUA"
PUSH_CLIENT = "VN/GOV/000.00.00.H60/MOTCUA"
LIMITED_CLIENT = "VN/GOV/000.00.00.G22/DVCQG"
ECHO = "VN/GOV/000.00.00.H41/DANHMUC/echo"
PUSH = "VN/GOV/000.00.00.G22/DVCQG/DongBoHoSoMC"
DOSSIER_SERVICE = "DongBoHoSoMC"
BURST, LIMITED_CALLS = 10, 40
DOSSIERS = 80
# A lease is the service's timeout + lease_margin: 4 s, so the survivor takes the dead node's claims
# over soon, and a 500 ms answer is never taken for a timeout (which would send it again, rightly,
# and blur what the kill caused). Slow answers and 2 deliveries at a time per process (8 in all)
# keep the backlog draining for seconds, so the dead node dies holding claims.
DELIVERY = {"backoff_base": 0.1, "backoff_max": 1.0, "poll_interval": 0.1, "max_attempts": 1000,
            "lease_margin": 1.0, "concurrency": 2}
PORTAL_TIMEOUT, PORTAL_DELAY_MS = 3.0, 500

pytestmark = [pytest.mark.slow, pytest.mark.postgres]


@dataclass
class Node:
    """One gateway node: a supervisor and its two workers in a process group of their own."""

    name: str
    config: Path
    base: str
    log: Path
    proc: subprocess.Popen[bytes] | None = None
    pids: set[int] = field(default_factory=set)

    def start(self) -> None:
        self.proc = subprocess.Popen([sys.executable, "-m", "gateway", "serve", "--config",
                                      str(self.config), "--workers", "2"],
                                     stdout=self.log.open("ab"), stderr=subprocess.STDOUT,
                                     start_new_session=True)

    def ready(self) -> None:
        assert self.proc is not None
        _wait(f"{self.base}/readyz", [self.proc], [self.log])

    def processes(self) -> set[int]:
        """The supervisor and its children (the workers), read from /proc."""
        assert self.proc is not None
        path = Path(f"/proc/{self.proc.pid}/task/{self.proc.pid}/children")
        children = {int(p) for p in path.read_text().split()} if path.exists() else set()
        return {self.proc.pid, *children}

    def kill(self) -> None:
        """SIGKILL the whole process group: nothing gets to finish or clean up."""
        assert self.proc is not None
        self.pids = self.processes()
        os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=10)

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)


@dataclass
class Site:
    """Two nodes of one configuration, the simulators, and what a client needs."""

    workdir: Path
    database: str
    secrets: dict[str, str]
    portal: str
    nodes: tuple[Node, Node]
    sims: subprocess.Popen[bytes]

    def token(self, client: str) -> str:
        r = httpx.post(f"{self.nodes[0].base}/oauth/token", data={"grant_type": "client_credentials"},
                       auth=(client, self.secrets[client]), timeout=30)
        r.raise_for_status()
        return str(r.json()["access_token"])

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()
        stop([self.sims])


def _configure(cfg: dict[str, Any], policies: Path) -> None:
    cfg["delivery"] = DELIVERY
    cfg["redis"] = REDIS_URL
    cfg["policies_dir"] = str(policies)
    cfg["token"]["lifetime"] = 3600
    for service in cfg["services"]:
        if service.get("delivery") == "async":
            service["timeout"] = PORTAL_TIMEOUT


def _limited_rule(demo: Path, policies: Path) -> str:
    """A copy of the demo policies with a rule, first, that gives one client a small bucket."""
    shutil.copytree(demo, policies)
    rule = f"two-nodes-{uuid.uuid4().hex[:8]}"
    (policies / "00-two-nodes.yaml").write_text(
        f"rules:\n  - name: {rule}\n    services: [{ECHO}]\n    clients: ['{LIMITED_CLIENT}']\n"
        f"    scopes: [exchange]\n    rate_limit: {{rate: 1, per: hour, burst: {BURST}}}\n")
    return rule


def start_site(workdir: Path) -> Site:
    """The demo catalog's simulators, and two nodes whose configurations differ in the port and the
    node's name."""
    from gateway.init import Ports, initialise

    ports = Ports(gateway=free_port(), population=free_port(), dvcqg=free_port(),
                  onestop=free_port(), rest=free_port())
    init = initialise(workdir, ports=ports, database=_fresh_pg_database(), force=True)
    cfg = yaml.safe_load(init.config_path.read_text())
    _limited_rule(init.config_path.parent / cfg["policies_dir"], workdir / "policies-two-nodes")
    _configure(cfg, workdir / "policies-two-nodes")
    configs = (init.config_path, init.config_path.with_name("config-b.yaml"))
    bases = []
    for path, port, name in zip(configs, (ports.gateway, free_port()), ("a", "b"), strict=True):
        cfg["listen"] = {**cfg["listen"], "port": port}
        cfg["node"] = name
        path.write_text(yaml.safe_dump(cfg, allow_unicode=True, sort_keys=False))
        bases.append(f"http://127.0.0.1:{port}")
    sims = subprocess.Popen([sys.executable, "-m", "gateway", "simulators", "--config", str(configs[0])],
                            stdout=(workdir / "simulators.log").open("wb"), stderr=subprocess.STDOUT)
    portal = f"http://127.0.0.1:{ports.dvcqg}"
    nodes = (Node("a", configs[0], bases[0], workdir / "node-a.log"),
             Node("b", configs[1], bases[1], workdir / "node-b.log"))
    from gateway.config import load_config

    site = Site(workdir, load_config(configs[0]).database_url, init.secrets, portal, nodes, sims)
    try:
        _wait(f"{portal}/_sim/received", [sims], [workdir / "simulators.log"])
        for node in nodes:  # together: one migrates under the lock, the other waits for it
            node.start()
        for node in nodes:
            node.ready()
    except Exception:
        site.stop()
        raise
    return site


# -- the load -------------------------------------------------------------------------------------

@dataclass
class Load:
    """What the clients saw: answered exchange ids, accepted dossiers, the limited client's statuses."""

    answered: set[str] = field(default_factory=set)
    by_node: Counter[str] = field(default_factory=Counter)
    accepted: dict[str, str] = field(default_factory=dict)  # dossier code -> delivery id
    limited: Counter[int] = field(default_factory=Counter)
    limited_by_node: Counter[str] = field(default_factory=Counter)
    in_flight: set[str] = field(default_factory=set)  # deliveries the dead node held at its death


async def _echo(http: httpx.AsyncClient, node: Node, token: str, load: Load, stopping: asyncio.Event,
                n: int) -> None:
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    i = 0
    while not stopping.is_set() and node.proc is not None and node.proc.poll() is None:
        i += 1
        try:
            r = await http.post(f"{node.base}/r1/{ECHO}", content=b'{"n": %d, "i": %d}' % (n, i),
                                headers=headers)
        except httpx.HTTPError:
            await asyncio.sleep(0.01)
            continue
        if r.status_code == 200:
            load.answered.add(r.headers["x-road-id"])
            load.by_node[node.name] += 1


async def _push(http: httpx.AsyncClient, site: Site, first: Node, token: str, load: Load,
                work: asyncio.Queue[dict[str, Any]]) -> None:
    """Push dossiers until none are left; a push the node did not answer goes to the other live node
    (the idempotency key, the dossier itself, makes the repeat harmless)."""
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    while not work.empty():
        record = work.get_nowait()
        node, deadline = first, time.monotonic() + 60
        while True:
            assert time.monotonic() < deadline, f"{record['MaHoSo']} never accepted"
            if node.proc is None or node.proc.poll() is not None:
                node = next(n for n in site.nodes if n.proc is not None and n.proc.poll() is None)
            try:
                r = await http.post(f"{node.base}/r1/{PUSH}", content=orjson.dumps(record), headers=headers)
            except httpx.HTTPError:
                await asyncio.sleep(0.05)
                continue
            if r.status_code == 503:
                await asyncio.sleep(0.05)
                continue
            assert r.status_code == 202, r.text
            load.accepted[record["MaHoSo"]] = str(r.json()["deliveryId"])
            load.answered.add(r.headers["x-road-id"])
            break


async def _limited(http: httpx.AsyncClient, site: Site, token: str, load: Load) -> None:
    """LIMITED_CALLS calls from the rate-limited client, half to each node, all at once."""
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}

    async def one(node: Node, i: int) -> None:
        r = await http.post(f"{node.base}/r1/{ECHO}", content=b'{"limited": %d}' % i, headers=headers)
        load.limited[r.status_code] += 1
        load.limited_by_node[node.name] += 1
        if r.status_code == 200:
            load.answered.add(r.headers["x-road-id"])

    await asyncio.gather(*(one(site.nodes[i % 2], i) for i in range(LIMITED_CALLS)))


async def _received(http: httpx.AsyncClient, portal: str) -> int:
    items = (await http.get(f"{portal}/_sim/received")).json()["items"]
    return sum(1 for item in items if item["kind"] == DOSSIER_SERVICE)


async def run_load(site: Site, tokens: dict[str, str], dossiers: list[dict[str, Any]]) -> Load:
    """Load both nodes; once both answered and the portal is receiving, kill node a, let node b
    carry on a few seconds, then stop the callers."""
    load, stopping = Load(), asyncio.Event()
    victim = site.nodes[0]
    work: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    for record in dossiers:
        work.put_nowait(record)
    async with httpx.AsyncClient(timeout=30, limits=httpx.Limits(max_connections=64)) as http:
        echoes = [asyncio.create_task(_echo(http, node, tokens[ECHO_CLIENT], load, stopping, n))
                  for n, node in enumerate(site.nodes * 6)]
        pushers = [asyncio.create_task(_push(http, site, node, tokens[PUSH_CLIENT], load, work))
                   for node in site.nodes * 3]
        await _limited(http, site, tokens[LIMITED_CLIENT], load)
        deadline = time.monotonic() + 30
        while (min(load.by_node["a"], load.by_node["b"]) < 50 or await _received(http, site.portal) < 8
               or not await asyncio.to_thread(_claimed_by, site.database, victim.name, victim.processes())):
            assert time.monotonic() < deadline, f"no load to kill under: {load.by_node}"
            await asyncio.sleep(0.05)
        victim.kill()
        load.in_flight = await asyncio.to_thread(_claimed_by, site.database, victim.name, victim.pids)
        after = load.by_node["b"]
        await asyncio.gather(*pushers)
        deadline = time.monotonic() + 30
        while load.by_node["b"] < after + 100:  # the survivor carries on
            assert time.monotonic() < deadline, "node b stopped answering after node a died"
            await asyncio.sleep(0.05)
        stopping.set()
        await asyncio.gather(*echoes)
    return load


# -- what the database and the portal hold --------------------------------------------------------

def _rows(database: str) -> dict[str, tuple[str, str | None, str | None, int]]:
    """delivery id -> (state, lease, worker, attempts)."""
    engine = create_engine(database)
    try:
        with engine.connect() as conn:
            query = sa.select(deliveries.c.id, deliveries.c.state, deliveries.c.lease,
                              deliveries.c.worker, deliveries.c.attempts)
            return {r.id: (r.state, r.lease, r.worker, r.attempts) for r in conn.execute(query)}
    finally:
        engine.dispose()


def _claimed_by(database: str, node: str, pids: set[int]) -> set[str]:
    """The deliveries whose lease one of these processes of ``node`` holds (workers are node:pid)."""
    names = {f"{node}:{pid}" for pid in pids}
    return {i for i, (state, lease, worker, _) in _rows(database).items()
            if state == "pending" and lease is not None and worker in names}


def _wait_delivered(database: str, ids: set[str], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        rows = _rows(database)
        if all(rows.get(i, ("",))[0] == "delivered" for i in ids):
            return
        time.sleep(0.2)
    states = Counter(_rows(database).get(i, ("missing",))[0] for i in ids)
    raise AssertionError(f"not all delivered in {timeout} s: {dict(states)}")


def _codes(value: Any) -> list[str]:
    """Every MaHoSo in a received request body, wherever the message puts the records."""
    if isinstance(value, dict):
        own = [value["MaHoSo"]] if isinstance(value.get("MaHoSo"), str) else []
        return own + [c for v in value.values() if isinstance(v, dict | list) for c in _codes(v)]
    if isinstance(value, list):
        return [c for v in value for c in _codes(v)]
    return []


def _portal(portal: str) -> tuple[Counter[str], dict[str, dict[str, Any]]]:
    """How many times each dossier code arrived, and what the portal holds."""
    items = httpx.get(f"{portal}/_sim/received").json()["items"]
    sent = Counter(c for i in items if i["kind"] == DOSSIER_SERVICE for c in _codes(orjson.loads(i["body"])))
    held = {i["MaHoSo"]: i for i in httpx.get(f"{portal}/_sim/dossiers").json()["items"]}
    return sent, held


def _verify(config: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "gateway", "audit", "verify", "--config", str(config)],
                          capture_output=True, text=True, timeout=120)


# -- the test -------------------------------------------------------------------------------------

@pytest.fixture
def site(tmp_path: Path) -> Iterator[Site]:
    missing = [name for name, url in (("PostgreSQL (LIENTHONG_TEST_PG_URL)", PG_URL),
                                      ("Redis (LIENTHONG_TEST_REDIS_URL)", REDIS_URL)) if not url]
    if missing:
        pytest.skip(f"two nodes need {' and '.join(missing)}: run 'make test', or scripts/postgres.sh "
                    "start and scripts/redis.sh start and export the URLs they print")
    running = start_site(tmp_path)
    yield running
    running.stop()


def test_two_nodes_one_killed_under_load(site: Site) -> None:
    """Two nodes share PostgreSQL and Redis; one is SIGKILLed under load: one audit sequence that
    verifies and holds every answer, every accepted dossier applied once (repeats only of what the
    dead node had in flight), one rate-limit bucket across both, and the dead node rejoins."""
    tokens = {c: site.token(c) for c in (ECHO_CLIENT, PUSH_CLIENT, LIMITED_CLIENT)}
    dossiers = [data.dossier(190, i, agency="000.00.23.H60") for i in range(DOSSIERS)]
    httpx.post(f"{site.portal}/_sim/mode", json={"delay_ms": PORTAL_DELAY_MS}).raise_for_status()
    with ThreadPoolExecutor(1) as thread:  # its own event loop, whatever runs in this thread
        load = thread.submit(asyncio.run, run_load(site, tokens, dossiers)).result()
    victim, survivor = site.nodes
    in_flight = load.in_flight
    httpx.post(f"{site.portal}/_sim/mode", json={"delay_ms": 0}).raise_for_status()

    # One bucket across the nodes: exactly the burst admitted, half the calls went to each node.
    assert load.limited == {200: BURST, 429: LIMITED_CALLS - BURST}, load.limited
    assert load.limited_by_node == {"a": LIMITED_CALLS // 2, "b": LIMITED_CALLS // 2}

    # Every dossier was accepted (by one node or the other) and is delivered; the survivor's workers
    # took over what the dead node had claimed once its leases lapsed.
    assert len(load.accepted) == DOSSIERS
    assert in_flight, "the kill came when the dead node had nothing in flight"
    _wait_delivered(site.database, set(load.accepted.values()))
    rows = _rows(site.database)
    assert set(rows) == set(load.accepted.values()), "a push stored twice, or one no client knows of"
    took_over = {rows[i][2] for i in in_flight}
    assert all(worker is not None and worker.startswith("b:") for worker in took_over), took_over
    sent, held = _portal(site.portal)
    for code in load.accepted:
        assert held[code]["HoSo"]["MaHoSo"] == code, code
        assert 1 <= sent[code] <= rows[load.accepted[code]][3], code  # never more than the attempts
    repeated = {load.accepted[c] for c in load.accepted if sent[c] > 1}
    assert repeated <= in_flight, f"sent twice though not in flight on the dead node: {repeated - in_flight}"
    assert sum(held[c]["SoLanLap"] for c in load.accepted) == sum(sent[c] - 1 for c in load.accepted)
    print(f"two nodes: {dict(load.by_node)} echoes answered, {len(in_flight)} claims held by the dead "
          f"node, {len(repeated)} dossiers sent twice")

    # One audit sequence: indexes 0..n-1, every answered exchange has its leaf, and it verifies.
    log = AuditLog(create_engine(site.database))
    leaves = log.read(0, 10_000_000)
    assert [leaf.idx for leaf in leaves] == list(range(len(leaves)))
    assert load.by_node["a"] > 0 and load.by_node["b"] > 0
    missing = load.answered - {leaf.exchange_id for leaf in leaves}
    assert not missing, f"{len(missing)} answered exchanges have no leaf"
    result = _verify(victim.config)
    assert result.returncode == 0, result.stdout + result.stderr

    # The dead node, started again, appends to the same tree.
    size = log.size()
    victim.start()
    victim.ready()
    r = httpx.post(f"{victim.base}/r1/{ECHO}", content=b"{}", timeout=30,
                   headers={"Authorization": f"Bearer {tokens[ECHO_CLIENT]}",
                            "Content-Type": "application/json"})
    assert r.status_code == 200, r.text
    assert log.size() == size + 1 and log.read(size, 1)[0].exchange_id == r.headers["x-road-id"]
    result = _verify(survivor.config)
    assert result.returncode == 0, result.stdout + result.stderr
