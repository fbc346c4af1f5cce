"""Delivery queue figures: dossiers accepted durably per second, and how long a backlog takes to drain.

    .venv/bin/python bench/delivery_bench.py [--seconds 10] [--connections 64] [--backlog 100000]
                                             [--workers 1] [--database URL] [--json FILE]

1. Intake. The simulators and the gateway run as processes on loopback (``lienthong serve``) with the
   demo catalog, where ``DongBoHoSoMC`` is an async service. The portal simulator drops every
   connection (it is "down"), so what is measured is the gateway accepting dossiers while it cannot
   deliver them: wrk pushes a different, schema-valid dossier in every request (its own ``MaHoSo``),
   each answered 202 only once its row and its audit record are committed. The figure is the number
   of rows in the queue divided by the run's length, next to wrk's own count and latency.
   ``--store-only`` measures the queue's storage alone (``DeliveryStore.accept_many``, batches of 256).
2. Drain. The queue is topped up to ``--backlog`` pending dossiers (stored directly, as the intake
   would), the gateway is restarted with the portal simulator back, and the clock runs from the
   gateway's start until the last delivery is ``delivered``; the portal simulator must then hold
   every dossier.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import orjson
import sqlalchemy as sa
import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.wrk import find_wrk, parse  # noqa: E402
from connectors.dvcqg import data  # noqa: E402
from gateway.delivery.store import DeliveryStore, NewDelivery  # noqa: E402
from gateway.delivery.tables import deliveries  # noqa: E402
from gateway.ids import new_id  # noqa: E402
from gateway.simulation import free_port  # noqa: E402
from gateway.storage.db import create_engine, upgrade  # noqa: E402

MOTCUA = "VN/GOV/000.00.00.H60/MOTCUA"  # Tuyên Quang's one-stop system
PUSH = "VN/GOV/000.00.00.G22/DVCQG/DongBoHoSoMC"
OWNER = "VN/GOV/000.00.00.G22/DVCQG"


def wait(url: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"{url} did not come up")


def template(index: int) -> dict[str, Any]:
    return data.dossier(2026, index, agency="000.00.23.H60")


def lua(token: str, path: str, bodies: list[bytes]) -> str:
    """Each request a dossier of its own: a template with ``@CODE@`` replaced by thread and count."""
    from bench.wrk import lua_string

    templates = ", ".join(lua_string(b) for b in bodies)
    return f"""-- written by bench/delivery_bench.py
local threads = {{}}
local counter = 0
function setup(thread)
  thread:set("tid", #threads)
  table.insert(threads, thread)
end
function init(args)
  bodies = {{{templates}}}
  headers = {{["Authorization"] = "Bearer {token}", ["Content-Type"] = "application/json"}}
end
function request()
  counter = counter + 1
  local code = string.format("B%02d.%07d", tid, counter)
  local body = string.gsub(bodies[(counter % #bodies) + 1], "@CODE@", code)
  return wrk.format("POST", "{path}", headers, body)
end
"""


class Gateway:
    def __init__(self, workdir: Path, config_path: Path, base: str, workers: int) -> None:
        self.workdir, self.config_path, self.base, self.workers = workdir, config_path, base, workers
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        log = (self.workdir / "gateway.log").open("ab")
        self.proc = subprocess.Popen([sys.executable, "-m", "gateway", "serve", "--config",
                                      str(self.config_path), "--workers", str(self.workers)],
                                     stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
                                     cwd=self.workdir)
        wait(f"{self.base}/readyz")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            self.proc.wait(timeout=60)


def cpu_seconds(pid: int) -> float:
    """User and system CPU time of a process and its live children (uvicorn's workers)."""
    total = 0.0
    pids = [pid]
    children = Path(f"/proc/{pid}/task/{pid}/children")
    if children.exists():
        pids += [int(p) for p in children.read_text().split()]
    for one in pids:
        fields = Path(f"/proc/{one}/stat").read_text().rsplit(")", 1)[1].split()
        total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return total


def counts(engine: sa.engine.Engine) -> dict[str, int]:
    with engine.connect() as conn:
        return dict(conn.execute(sa.select(deliveries.c.state, sa.func.count())
                                 .group_by(deliveries.c.state)).all())


def top_up(url: str, backlog: int) -> int:
    """Store pending dossiers directly, as the intake would, until the queue holds ``backlog``."""
    engine = create_engine(url)
    have = sum(counts(engine).values())
    store = DeliveryStore(engine)
    bodies = [template(i) for i in range(200)]
    added = 0
    for start in range(have, backlog, 1000):
        batch = []
        for i in range(start, min(backlog, start + 1000)):
            record = {**bodies[i % len(bodies)], "MaHoSo": f"H60.23-20260601-T{i:07d}"}
            body = orjson.dumps(record)
            sha = hashlib.sha256(body).hexdigest()
            batch.append(NewDelivery(
                id=new_id(), idem_key=hashlib.sha256(f"bench|{i}".encode()).hexdigest(),
                order_key=f"{OWNER}|{record['MaHoSo']}", dossier=record["MaHoSo"], service=PUSH,
                operation="DongBoHoSoMC", client=MOTCUA, rule="motcua-day-ho-so-len-cong",
                exchange_id=f"bench-{i}", user_id=None, purpose=None, represented_party=None,
                method="POST", path="", query="", content_type="application/json", body=body,
                body_sha256=sha, subjects=(), agency="000.00.00.H60", status=2))
        store.accept_many(batch)
        added += len(batch)
    engine.dispose()
    return added


def store_rate(workdir: Path, rows: int = 10_240, batch: int = 256) -> dict[str, Any]:
    """The queue's storage alone: ``accept_many`` into a fresh SQLite file, same durability."""
    url = f"sqlite:///{workdir / 'store-only.db'}"
    upgrade(url)
    engine = create_engine(url)
    store = DeliveryStore(engine)
    bodies = [template(i) for i in range(50)]
    batches = []
    for start in range(0, rows, batch):
        news = []
        for i in range(start, start + batch):
            record = {**bodies[i % len(bodies)], "MaHoSo": f"S{i:08d}"}
            body = orjson.dumps(record)
            news.append(NewDelivery(
                id=new_id(), idem_key=hashlib.sha256(body).hexdigest(),
                order_key=f"{OWNER}|{record['MaHoSo']}", dossier=record["MaHoSo"], service=PUSH,
                operation="DongBoHoSoMC", client=MOTCUA, rule="r", exchange_id=f"s-{i}", user_id=None,
                purpose=None, represented_party=None, method="POST", path="", query="",
                content_type="application/json", body=body, body_sha256="", subjects=(),
                agency="000.00.00.H60", status=2, transitions="refuse"))
        batches.append(news)
    started = time.perf_counter()
    for news in batches:
        store.accept_many(news)
    seconds = time.perf_counter() - started
    engine.dispose()
    return {"rows": rows, "batch": batch, "seconds": round(seconds, 2), "per_second": round(rows / seconds)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--backlog", type=int, default=100_000)
    parser.add_argument("--workers", type=int, default=1, help="gateway processes")
    parser.add_argument("--database", help="a database URL (default: SQLite in the work folder)")
    parser.add_argument("--skip-intake", action="store_true")
    parser.add_argument("--skip-drain", action="store_true")
    parser.add_argument("--store-only", action="store_true", help="only the queue's storage, in process")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()

    from gateway.config import load_config
    from gateway.init import Ports, initialise

    workdir = Path(tempfile.mkdtemp(prefix="lienthong-delivery-bench-"))
    if args.store_only:
        print(json.dumps({"store": store_rate(workdir)}, indent=2))
        return 0
    ports = Ports(gateway=free_port(), population=free_port(), dvcqg=free_port(), onestop=free_port(),
                  rest=free_port())
    init = initialise(workdir, ports=ports, database=args.database, force=True)
    cfg = yaml.safe_load(init.config_path.read_text())
    cfg["token"]["lifetime"] = 3600
    cfg["delivery"] = {"concurrency": 128, "breaker_cooldown": 1.0, "breaker_cooldown_max": 5.0}
    init.config_path.write_text(yaml.safe_dump(cfg, allow_unicode=True, sort_keys=False))
    policy = workdir / "policies" / "demo.yaml"  # the demo's rate limit would cap the figure itself
    rules = yaml.safe_load(policy.read_text())
    for rule in rules["rules"]:
        if rule["name"] == "motcua-day-ho-so-len-cong":
            rule.pop("rate_limit", None)
            rule.pop("quota", None)
    policy.write_text(yaml.safe_dump(rules, allow_unicode=True, sort_keys=False))
    url = load_config(init.config_path).database_url
    upgrade(url)
    portal = f"http://127.0.0.1:{ports.dvcqg}"
    base = f"http://127.0.0.1:{ports.gateway}"
    sims = subprocess.Popen([sys.executable, "-m", "gateway", "simulators", "--config",
                             str(init.config_path), "--only", "dvcqg"],
                            stdout=(workdir / "simulators.log").open("wb"), stderr=subprocess.STDOUT,
                            cwd=workdir)
    gateway = Gateway(workdir, init.config_path, base, args.workers)
    figures: dict[str, Any] = {"database": "postgresql" if url.startswith("postgresql") else "sqlite",
                               "workers": args.workers, "cpus": os.cpu_count()}
    engine = create_engine(url)
    try:
        wait(f"{portal}/_sim/received")
        if not args.skip_intake:
            httpx.post(f"{portal}/_sim/mode", json={"fail": "drop"}).raise_for_status()
            gateway.start()
            token = httpx.post(f"{base}/oauth/token", data={"grant_type": "client_credentials"},
                               auth=(MOTCUA, init.secrets[MOTCUA])).json()["access_token"]
            bodies = [orjson.dumps({**template(i), "MaHoSo": "@CODE@"}) for i in range(50)]
            script = workdir / "intake.lua"
            script.write_text(lua(token, f"/r1/{PUSH}", bodies))
            before = sum(counts(engine).values())
            assert gateway.proc is not None
            cpu_before = cpu_seconds(gateway.proc.pid)
            run = subprocess.run([find_wrk(), f"-t{args.threads}", f"-c{args.connections}",
                                  f"-d{round(args.seconds)}s", "--timeout=10s", "--latency", "-s",
                                  str(script), f"{base}/r1/{PUSH}"],
                                 capture_output=True, text=True, timeout=args.seconds + 120, check=True)
            result = parse(run.stdout)
            cpu = cpu_seconds(gateway.proc.pid) - cpu_before
            stored = sum(counts(engine).values()) - before
            figures["intake"] = {"seconds": result.seconds, "connections": args.connections,
                                 "wrk_requests": result.requests, "wrk_rps": result.rps,
                                 "non_2xx": result.non_2xx, "socket_errors": result.socket_errors,
                                 "p50_ms": result.p50, "p99_ms": result.p99, "stored": stored,
                                 "stored_per_second": round(stored / result.seconds, 1),
                                 "gateway_cpu_seconds": round(cpu, 2),
                                 "gateway_cpu_ms_per_dossier": round(cpu * 1000 / max(stored, 1), 3),
                                 "load_average": os.getloadavg()[0]}
            print(json.dumps({"intake": figures["intake"]}, indent=2), flush=True)
            gateway.stop()
        if not args.skip_drain:
            added = top_up(url, args.backlog)
            pending = counts(engine).get("pending", 0)
            httpx.post(f"{portal}/_sim/mode", json={"fail": None}).raise_for_status()
            started = time.monotonic()
            gateway.start()
            progress = []
            while True:
                now = counts(engine)
                progress.append((round(time.monotonic() - started, 1), now.get("delivered", 0)))
                if now.get("pending", 0) == 0:
                    break
                time.sleep(1)
            seconds = time.monotonic() - started
            drain_cpu = cpu_seconds(gateway.proc.pid) if gateway.proc else 0.0
            held = httpx.get(f"{portal}/_sim/dossiers", timeout=120).json()["total"]
            final = counts(engine)
            figures["drain"] = {"backlog": pending, "topped_up": added, "seconds": round(seconds, 1),
                                "per_second": round(pending / seconds, 1), "states": final,
                                "portal_holds": held, "gateway_cpu_seconds": round(drain_cpu, 1),
                                "gateway_cpu_ms_per_delivery": round(drain_cpu * 1000 / max(pending, 1), 3),
                                "load_average": os.getloadavg()[0]}
            print(json.dumps({"drain": figures["drain"]}, indent=2), flush=True)
    finally:
        gateway.stop()
        sims.send_signal(signal.SIGTERM)
        sims.wait(timeout=30)
        engine.dispose()
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2))
    print(f"work folder: {workdir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
