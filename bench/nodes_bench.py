"""One gateway node against two, on one PostgreSQL database, in front of the fixed upstream.

    .venv/bin/python bench/nodes_bench.py --database URL [--redis URL] [--duration 10]
                                          [--connections 100] [--threads 1] [--workers 2]
                                          [--warmup 2] [--nodes 1,2] [--json out.json] [--keep]

``--database`` names a PostgreSQL server (a fresh database is made on it for the run, and left
there); both nodes use it, and ``--redis`` when given (``redis:`` in their configuration). The
upstream is nginx answering fixed bytes (``bench/targets.py``'s ``fixed``), so that it is never the
bottleneck. Each node is ``lienthong serve --workers N`` of its own, on its own port, in front of
the same catalog, keys and policies: the two configuration files differ in ``listen.port``.

For 1 node, wrk (``-c connections``) drives node a; for 2 nodes, two wrk processes at once, each
with half the connections, drive one node each, and the table sums them. Every run checks the
audit log grew by one leaf per exchange (at least every completed one, at most every one sent) and
reports the load average and the cores the machine spent beside ours, as ``run.py`` does: on a
shared machine, quote only quiet rows. On one machine the nodes share its cores: this measures what
a second node costs (the shared audit sequence, PostgreSQL's locks), not what a second host adds.
See docs/operations.md#several-nodes.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: import ``bench`` as a package (see run.py)
    _here = Path(__file__).resolve().parent
    if sys.path and Path(sys.path[0] or ".").resolve() == _here:
        del sys.path[0]
    sys.path.append(str(_here.parent))

import httpx
import orjson
import sqlalchemy as sa
import yaml

from bench import wrk
from bench.targets import (
    ECHO_CLIENT,
    ECHO_SERVICE,
    TOKEN_LIFETIME,
    Bench,
    busy_cores,
    cpu_sample,
    echo_body,
    exchange_headers,
)
from gateway.simulation import free_port, wait_listening


def fresh_database(server: str) -> str:
    """A new, empty database on ``server``; its URL (the gateway migrates it at start)."""
    name = f"nodes_bench_{uuid.uuid4().hex[:10]}"
    admin = sa.create_engine(server, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    admin.dispose()
    return server.rsplit("/", 1)[0] + "/" + name


def node_configs(bench: Bench, database: str, redis: str | None) -> list[tuple[Path, int]]:
    """Two configurations of one deployment, on the fixed upstream: (path, port) of each node."""
    data = yaml.safe_load(bench.config.read_text(encoding="utf-8"))
    data["database"] = database
    data["token"]["lifetime"] = TOKEN_LIFETIME
    if redis:
        data["redis"] = redis
    for service in data["services"]:
        if service["id"] == ECHO_SERVICE:
            service["upstream"] = f"http://127.0.0.1:{bench.fixed_ports['rest']}/echo"
    out = []
    for name in ("a", "b"):
        port = free_port()
        data["listen"]["port"] = port
        path = bench.config.parent / f"config-node-{name}.yaml"
        path.write_text(yaml.safe_dump(data, allow_unicode=True, sort_keys=False), encoding="utf-8")
        out.append((path, port))
    return out


def start_node(bench: Bench, name: str, config: Path, port: int) -> str:
    base = f"http://127.0.0.1:{port}"
    bench._spawn(f"node:{name}", [bench.python, "-m", "gateway", "serve", "--config", str(config),
                                  "--workers", str(bench.workers)],
                 lambda: httpx.get(f"{base}/readyz", timeout=2).status_code == 200, timeout=90)
    wait_listening(port, bench.workers)
    return base


def audit_size(database: str) -> int:
    engine = sa.create_engine(database)
    try:
        with engine.connect() as conn:
            return int(conn.execute(sa.text("SELECT size FROM audit_head WHERE id = 1")).scalar_one())
    finally:
        engine.dispose()


def settle(database: str, timeout: float = 30) -> int:
    """The audit log's size once it stopped growing (the nodes answer what wrk abandoned)."""
    last, stable, deadline = audit_size(database), 0, time.monotonic() + timeout
    while stable < 3 and time.monotonic() < deadline:
        time.sleep(0.3)
        now = audit_size(database)
        stable, last = (stable + 1 if now == last else 0), now
    return last


def drive(requests: list[wrk.HttpRequest], scratch: Path, *, duration: float, connections: int,
          threads: int) -> list[wrk.WrkResult]:
    """One wrk per request (node) at once, the connections shared out between them."""
    each = max(1, connections // len(requests))
    with ThreadPoolExecutor(len(requests)) as pool:
        runs = [pool.submit(wrk.run, r, scratch / f"node-{i}.lua", duration=duration, connections=each,
                            threads=threads) for i, r in enumerate(requests)]
        return [run.result() for run in runs]


def measure(bench: Bench, database: str, bases: list[str], token: str, args: argparse.Namespace,
            scratch: Path) -> dict[str, Any]:
    requests = [wrk.HttpRequest(f"{base}/r1/{ECHO_SERVICE}", headers=exchange_headers(token, ECHO_CLIENT),
                                body=echo_body()) for base in bases]
    for request in requests:  # the probe: the echo answers through every node
        r = httpx.post(request.url, headers=request.headers, content=request.body, timeout=30)
        if r.status_code != 200:
            raise RuntimeError(f"probe of {request.url}: HTTP {r.status_code} {r.text[:300]}")
    if args.warmup > 0:
        drive(requests, scratch, duration=args.warmup, connections=args.connections, threads=args.threads)
    before = settle(database)
    load0, machine0, cpu0, t0 = os.getloadavg()[0], cpu_sample(), bench.cpu_seconds(), time.monotonic()
    runs = drive(requests, scratch, duration=args.duration, connections=args.connections,
                 threads=args.threads)
    elapsed, machine, cpu1 = time.monotonic() - t0, busy_cores(machine0, cpu_sample()), bench.cpu_seconds()
    load1 = os.getloadavg()[0]
    added = settle(database) - before
    completed, sent = sum(r.requests for r in runs), sum(r.sent or r.requests for r in runs)
    nodes_cpu = sum(cpu1[n] - cpu0.get(n, 0.0) for n in cpu1 if n.startswith("node:")) / elapsed
    return {"nodes": len(bases), "rps": round(sum(r.rps for r in runs), 1),
            "rps_per_node": [round(r.rps, 1) for r in runs],
            "p50_ms": max(r.p50 or 0.0 for r in runs), "p99_ms": max(r.p99 or 0.0 for r in runs),
            "errors": sum(r.errors for r in runs),
            "gateway_cpu_us_per_req": round(nodes_cpu * elapsed / max(1, completed) * 1e6),
            "machine_cores_busy": round(machine["processes"], 2), "steal": round(machine["steal"], 2),
            "load_average": [round(load0, 2), round(load1, 2)],
            "audit": {"leaves_added": added, "completed": completed, "sent": sent,
                      "ok": completed <= added <= sent}}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--database", default=os.environ.get("LIENTHONG_TEST_PG_URL"),
                        help="a PostgreSQL server URL (default: $LIENTHONG_TEST_PG_URL)")
    parser.add_argument("--redis", default=os.environ.get("LIENTHONG_TEST_REDIS_URL"))
    parser.add_argument("--duration", type=float, default=10)
    parser.add_argument("--warmup", type=float, default=2)
    parser.add_argument("--connections", type=int, default=100)
    parser.add_argument("--threads", type=int, default=1, help="wrk threads per wrk process")
    parser.add_argument("--workers", type=int, default=2, help="worker processes per node")
    parser.add_argument("--nodes", default="1,2", help="node counts to measure, in order")
    parser.add_argument("--json", type=Path)
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder")
    args = parser.parse_args()
    if not args.database or not args.database.startswith("postgresql"):
        parser.error("--database: a PostgreSQL server URL is needed (bash scripts/postgres.sh start)")
    root = Path(tempfile.mkdtemp(prefix="lienthong-nodes-bench-"))
    bench = Bench(root, workers=args.workers)
    results = []
    try:
        database = fresh_database(args.database)
        bench.start_fixed()
        configs = node_configs(bench, database, args.redis)
        bases = [start_node(bench, name, path, port)
                 for name, (path, port) in zip("ab", configs, strict=True)]
        r = httpx.post(f"{bases[0]}/oauth/token", data={"grant_type": "client_credentials"},
                       auth=(ECHO_CLIENT, bench.secrets[ECHO_CLIENT]), timeout=30)
        r.raise_for_status()
        token = str(r.json()["access_token"])
        for count in (int(n) for n in args.nodes.split(",")):
            result = measure(bench, database, bases[:count], token, args, root)
            results.append(result)
            print(orjson.dumps(result).decode(), flush=True)
    finally:
        bench.stop_all()
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)
    print(f"\n{'nodes':>5} {'req/s':>9} {'per node':>18} {'p50 ms':>7} {'p99 ms':>7} {'errors':>6} "
          f"{'CPU µs/req':>10} {'audit':>6} {'load avg':>11}")
    for res in results:
        per_node = " / ".join(f"{x:,.0f}" for x in res["rps_per_node"])
        print(f"{res['nodes']:>5} {res['rps']:>9,.0f} {per_node:>18} "
              f"{res['p50_ms']:>7.1f} {res['p99_ms']:>7.1f} {res['errors']:>6} "
              f"{res['gateway_cpu_us_per_req']:>10} {'ok' if res['audit']['ok'] else 'BAD':>6} "
              f"{res['load_average'][0]:>5.2f}-{res['load_average'][1]:<5.2f}")
    if args.json:
        args.json.write_text(orjson.dumps(results, option=orjson.OPT_INDENT_2).decode())
    return 0 if results and all(r["audit"]["ok"] and r["errors"] == 0 for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
