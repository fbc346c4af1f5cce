"""Joint procedures' figures: "3 in 1" flows started durably per second, and 10,000 flows drained.

    .venv/bin/python bench/flow_bench.py [--seconds 10] [--connections 64] [--flows 10000]
                                         [--workers 2] [--database-url URL] [--json FILE]
                                         [--skip-rate] [--skip-drain] [--filing-only] [--keep]

Everything runs on loopback, started here and stopped on the way out (Ctrl+C included): the
simulators the configuration names (one process), among them the four agencies' (civil status,
residence, social insurance, postal service), reset so that they answer at once (no delay, no
fault) and ``lienthong serve`` on a configuration that
``lienthong init`` wrote into a temporary folder (SQLite there, or ``--database-url``), with two
changes: tokens live an hour, and the one-stop systems' rule for filing joint dossiers has no rate
limit or quota (the demo's 100/s would cap the figure itself).

Every joint dossier is a "3 in 1" of its own (connectors/synthetic.py names, a mother with a
personal id of her own, a child born last month, results by post): four steps, each a delivery to
an agency.

1. Rate. wrk (a Lua script) files a different joint dossier in every request at
   ``/r1/VN/GOV/000.00.00.G22/LIENTHONG/KhaiSinh3Trong1`` as Nghệ An's one-stop system, for
   ``--seconds`` on ``--connections``. The figure is the 202 answers per second (a 202 leaves once
   the flow's rows are committed), with the flows the table gained as a check. The flow engine runs
   meanwhile, as it does in service; ``--filing-only`` measures with the delivery workers and the
   engine switched off (``delivery.workers: false``). The flows filed are then left to finish
   before the drain.
2. Drain. ``--flows`` joint dossiers are filed by ``--clients`` concurrent clients (aiohttp) as fast
   as the gateway takes them; the clock runs from the first filing until the last of them is
   ``completed`` (the ``flows`` table's newest ``finished_us``, by the gateway's clock, the same
   wall clock). Checked: every one completed, every step sent once (``sends`` 1), and the civil-status
   simulator registered each birth once. On SQLite the write lock's figures from ``/metrics``
   (``lienthong_db_write_lock_seconds``) before and after give ``write_lock``: how much of the drain
   the database's one write lock was held, and by which writer.

Both parts also say how fast the machine itself ran (``machine``: ``bench/machine.py``'s readings
just before, and the lowest, median and highest of those taken every 3 s throughout: ms of CPU for
a fixed exchange-like workload and for reads spread over memory; lower is faster). The machines
here change speed by half within minutes: a figure is read with its readings.

The shipped definitions also notify the national portal and the filing one-stop system as a flow
goes (``notify:``, six more deliveries per "3 in 1": seven notifications, the last
progress and the end's in one request); ``--without-notifications`` takes
those entries out of the work folder's copy, to measure the steps alone.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import orjson
import sqlalchemy as sa
import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.machine import Sampler, speed  # noqa: E402
from bench.targets import busy_cores, cpu_sample  # noqa: E402
from bench.wrk import find_wrk, lua_string, parse  # noqa: E402
from connectors import synthetic  # noqa: E402
from gateway.flows.tables import flow_steps, flows  # noqa: E402
from gateway.simulation import free_port, wait_listening  # noqa: E402
from gateway.storage.db import create_engine, upgrade  # noqa: E402

SERVICE = "VN/GOV/000.00.00.G22/LIENTHONG/KhaiSinh3Trong1"
MOTCUA = "VN/GOV/000.00.00.H41/MOTCUA"  # Nghệ An's one-stop system
MONITOR = "VN/GOV/000.00.00.G22/GIAMSAT"  # the demo's monitoring client (scope metrics)
RULE = "motcua-nop-ho-so-lien-thong"
AGENCIES = ("civil_status", "residence", "social_insurance", "postal")
FINISHED = ("completed", "rejected", "failed")
VN = ZoneInfo("Asia/Ho_Chi_Minh")
KNOWN = {p.so_dinh_danh for p in synthetic.people(1000, seed=2026)}  # the registry checks their names


def wait_up(url: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"{url} did not come up")


# -- the joint dossiers --------------------------------------------------------------------------------

def mother_id(serial: int) -> str:
    """A woman born in 1992 in Nghệ An (040), serial ``serial``: one of her own per dossier."""
    return f"040192{serial % 1_000_000:06d}"


def joint_dossier(code: str, serial: int, today: date, rng: random.Random) -> dict[str, Any]:
    """A "3 in 1" joint dossier: a different mother (and so a different child) for every serial; the
    residence step, the card (the child is weeks old) and the post (results by post) all run."""
    mother = (f"{rng.choice(synthetic.FAMILY)} {rng.choice(synthetic.MIDDLE_F)} "
              f"{rng.choice(synthetic.GIVEN_F)}")
    family = mother.split()[0]
    boy = rng.random() < 0.5
    child = (f"{family} {rng.choice(synthetic.MIDDLE_M if boy else synthetic.MIDDLE_F)} "
             f"{rng.choice(synthetic.GIVEN_M if boy else synthetic.GIVEN_F)}")
    me = {"HoTen": mother, "SoDinhDanh": mother_id(serial)}
    address = {"MaTinh": "40", "MaXa": "16681",
               "ChiTiet": f"Số {rng.randrange(1, 200)}, đường Lê Lợi, TP Vinh"}
    return {
        "MaHoSo": code, "NoiDangKy": "16681",
        "Tre": {"HoTen": child, "GioiTinh": 1 if boy else 2,
                "NgaySinh": (today - timedelta(days=rng.randrange(2, 40))).isoformat(),
                "NoiSinh": "Bệnh viện Sản Nhi Nghệ An", "DanToc": "Kinh", "QuocTich": "Việt Nam"},
        "Me": me,
        "NguoiYeuCau": {**me, "QuanHe": "Mẹ", "SoDienThoai": f"09{rng.randrange(10**7, 10**8)}"},
        "ThuongTru": {"ChuHo": me, "QuanHeVoiChuHo": "Con", "DiaChi": address},
        "NhanKetQua": {"HinhThuc": "buu_chinh", "DiaChi": address},
    }


def serials(count: int, start: int) -> list[int]:
    """``count`` serials from ``start`` whose mother's id is not one the registry knows by name."""
    out: list[int] = []
    n = start
    while len(out) < count:
        if mother_id(n) not in KNOWN:
            out.append(n)
        n += 1
    return out


def rate_script(token: str, path: str, template: bytes, run: str) -> str:
    """wrk: each request a dossier of its own, ``@CODE@`` and ``@ID@`` (the mother's id's serial)
    replaced by the thread's number and its count."""
    return f"""-- written by bench/flow_bench.py
local threads = {{}}
function setup(thread)
  thread:set("tid", #threads)
  table.insert(threads, thread)
end
function init(args)
  body = {lua_string(template)}
  headers = {{["Authorization"] = "Bearer {token}", ["Content-Type"] = "application/json"}}
  counter = 0
end
function request()
  counter = counter + 1
  local serial = string.format("%01d%05d", tid % 10, counter % 100000)
  local code = string.format("H41.31-{run}-%02d%07d", tid, counter)
  local out = string.gsub(string.gsub(body, "@CODE@", code), "@ID@", serial)
  return wrk.format("POST", "{path}", headers, out)
end
"""


# -- the processes ---------------------------------------------------------------------------------

class Stack:
    """The agencies' simulators and the gateway, on loopback, in a work folder of their own."""

    def __init__(self, workdir: Path, database: str | None, workers: int, *,
                 notifications: bool = True) -> None:
        from gateway.config import load_config
        from gateway.init import Ports, initialise

        self.workdir, self.workers = workdir, workers
        self.ports = Ports(gateway=free_port(), population=free_port(), dvcqg=free_port(),
                           onestop=free_port(), rest=free_port())
        init = initialise(workdir, ports=self.ports, database=database, force=True)
        self.config_path, self.secret = init.config_path, init.secrets[MOTCUA]
        self.monitor_secret = init.secrets[MONITOR]
        self.config = yaml.safe_load(self.config_path.read_text())
        self.config["token"]["lifetime"] = 3600
        self.write_config(workers_on=True)
        if not notifications:  # the steps alone: the definitions' notify: entries taken out
            for path in (workdir / "flows").glob("*.yaml"):
                definition = yaml.safe_load(path.read_text())
                definition.pop("notify", None)
                path.write_text(yaml.safe_dump(definition, allow_unicode=True, sort_keys=False))
        policy = workdir / "policies" / "demo.yaml"
        rules = yaml.safe_load(policy.read_text())
        for rule in rules["rules"]:
            if rule["name"] == RULE:
                rule.pop("rate_limit", None)
                rule.pop("quota", None)
        policy.write_text(yaml.safe_dump(rules, allow_unicode=True, sort_keys=False))
        self.url = load_config(self.config_path).database_url
        upgrade(self.url)
        self.base = f"http://127.0.0.1:{self.ports.gateway}"
        self.sims: subprocess.Popen[bytes] | None = None
        self.gateway: subprocess.Popen[bytes] | None = None

    def write_config(self, *, workers_on: bool) -> None:
        self.config["delivery"]["workers"] = workers_on
        self.config_path.write_text(yaml.safe_dump(self.config, allow_unicode=True, sort_keys=False))

    def sim(self, name: str) -> str:
        return f"http://127.0.0.1:{getattr(self.ports, name)}"

    def start_simulators(self) -> None:
        # Every simulator the configuration names: the agencies, and the portal and one-stop
        # systems that flows may notify of their progress.
        argv = [sys.executable, "-m", "gateway", "simulators", "--config", str(self.config_path)]
        self.sims = subprocess.Popen(argv, stdout=(self.workdir / "simulators.log").open("wb"),
                                     stderr=subprocess.STDOUT, start_new_session=True, cwd=self.workdir)
        for name in AGENCIES:
            wait_up(f"{self.sim(name)}/_sim/mode")
            httpx.post(f"{self.sim(name)}/_sim/reset").raise_for_status()
            mode = httpx.get(f"{self.sim(name)}/_sim/mode").json()
            if mode.get("delay_ms") or mode.get("fail") or mode.get("mode", "normal") != "normal":
                raise RuntimeError(f"simulator {name} does not answer at once: {mode}")

    def start_gateway(self) -> None:
        log = (self.workdir / "gateway.log").open("ab")
        self.gateway = subprocess.Popen([sys.executable, "-m", "gateway", "serve", "--config",
                                         str(self.config_path), "--workers", str(self.workers)],
                                        stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
                                        cwd=self.workdir)
        wait_up(f"{self.base}/readyz")
        wait_listening(self.ports.gateway, self.workers)  # every worker, not only the first

    def stop_gateway(self) -> None:
        _stop(self.gateway)
        self.gateway = None

    def stop(self) -> None:
        self.stop_gateway()
        _stop(self.sims)
        self.sims = None

    def token(self, client: str = MOTCUA) -> str:
        secret = self.monitor_secret if client == MONITOR else self.secret
        answer = httpx.post(f"{self.base}/oauth/token", data={"grant_type": "client_credentials"},
                            auth=(client, secret))
        answer.raise_for_status()
        return str(answer.json()["access_token"])

    def write_lock(self) -> dict[str, list[float]]:
        """Per writer, the SQLite write lock's [seconds waited, seconds held, times taken, seconds
        of the holder's CPU] so far, summed over the gateway's workers
        (``lienthong_db_write_lock_seconds`` in /metrics; nothing on PostgreSQL)."""
        from prometheus_client.parser import text_string_to_metric_families

        answer = httpx.get(f"{self.base}/metrics", timeout=30,
                           headers={"Authorization": f"Bearer {self.token(MONITOR)}"})
        answer.raise_for_status()
        out: dict[str, list[float]] = {}
        for family in text_string_to_metric_families(answer.text):
            if family.name != "lienthong_db_write_lock_seconds":
                continue
            for sample in family.samples:
                one = out.setdefault(sample.labels["writer"], [0.0, 0.0, 0.0, 0.0])
                if sample.name.endswith("_sum"):
                    one[{"wait": 0, "held": 1, "cpu": 3}[sample.labels["phase"]]] += sample.value
                elif sample.name.endswith("_count") and sample.labels["phase"] == "held":
                    one[2] += sample.value
        return out


def lock_report(before: dict[str, list[float]], after: dict[str, list[float]],
                seconds: float) -> dict[str, Any]:
    """What the write lock did between two readings: per writer the commits, seconds waited, held
    and computed while holding, and the share of the span the lock was held by anyone."""
    writers = {}
    held = 0.0
    for writer, (wait, hold, taken, cpu) in sorted(after.items()):
        was = before.get(writer, [0.0, 0.0, 0.0, 0.0])
        writers[writer] = {"taken": int(taken - was[2]), "waited_s": round(wait - was[0], 2),
                           "held_s": round(hold - was[1], 2), "cpu_s": round(cpu - was[3], 2)}
        held += hold - was[1]
    return {"held_share": round(held / max(seconds, 1e-6), 3), "by_writer": writers}


def _stop(proc: subprocess.Popen[bytes] | None) -> None:
    if proc is None or proc.poll() is not None:
        return
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=60)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def cpu_seconds(pid: int) -> float:
    """User and system CPU time of a process and its live children (uvicorn's workers)."""
    total = 0.0
    pids = [pid]
    children = Path(f"/proc/{pid}/task/{pid}/children")
    if children.exists():
        pids += [int(p) for p in children.read_text().split()]
    for one in pids:
        try:
            fields = Path(f"/proc/{one}/stat").read_text().rsplit(")", 1)[1].split()
        except FileNotFoundError:
            continue
        total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return total


class Meter:
    """Where the machine's CPUs went during a part: the gateway, the simulators, this script and
    its wrk (the clients), and everything else on the machine (other work on a shared machine,
    which the figures should be read against), in cores."""

    def __init__(self, stack: Stack) -> None:
        self.stack = stack
        self.started = time.monotonic()
        self.machine = cpu_sample()
        self.ours = self._ours()

    def _ours(self) -> tuple[float, float, float]:
        import resource

        me = resource.getrusage(resource.RUSAGE_SELF)
        kids = resource.getrusage(resource.RUSAGE_CHILDREN)  # wrk, once it has ended
        return (cpu_seconds(self.stack.gateway.pid) if self.stack.gateway is not None else 0.0,
                cpu_seconds(self.stack.sims.pid) if self.stack.sims is not None else 0.0,
                me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime)

    def read(self) -> dict[str, float]:
        seconds = max(1e-6, time.monotonic() - self.started)
        machine = busy_cores(self.machine, cpu_sample())
        used = [(b - a) / seconds for a, b in zip(self.ours, self._ours(), strict=True)]
        return {"gateway_cores": round(used[0], 2), "simulators_cores": round(used[1], 2),
                "clients_cores": round(used[2], 2),
                "other_work_cores": round(max(0.0, machine["processes"] - sum(used)), 2),
                "steal_cores": round(machine["steal"], 2), "irq_cores": round(machine["irq"], 2)}


def flow_counts(engine: sa.engine.Engine, prefix: str) -> dict[str, int]:
    with engine.connect() as conn:
        return dict(conn.execute(sa.select(flows.c.state, sa.func.count())
                                 .where(flows.c.dossier_code.like(f"{prefix}%"))
                                 .group_by(flows.c.state)).all())


def wait_finished(engine: sa.engine.Engine, prefix: str, expected: int, patience: float) -> float:
    """Seconds until ``expected`` flows of ``prefix`` are finished (or ``patience`` runs out)."""
    started = time.monotonic()
    while time.monotonic() - started < patience:
        counts = flow_counts(engine, prefix)
        if sum(counts.get(s, 0) for s in FINISHED) >= expected:
            break
        time.sleep(0.25)
    return time.monotonic() - started


# -- 1. flows started per second -------------------------------------------------------------------

def measure_rate(stack: Stack, engine: sa.engine.Engine, args: argparse.Namespace) -> dict[str, Any]:
    run = f"{datetime.now(VN):%Y%m%d}-R{int(time.time()) % 100000:05d}"
    template = joint_dossier("@CODE@", 0, datetime.now(VN).date(), random.Random(1))
    template["Me"]["SoDinhDanh"] = template["NguoiYeuCau"]["SoDinhDanh"] = "040192@ID@"
    template["ThuongTru"]["ChuHo"]["SoDinhDanh"] = "040192@ID@"
    script = stack.workdir / "rate.lua"
    script.write_text(rate_script(stack.token(), f"/r1/{SERVICE}", orjson.dumps(template), run))
    prefix = f"H41.31-{run}-"
    assert stack.gateway is not None
    idle_speed = speed()  # before the gateway's counters start: its time is not the gateway's
    sampler = Sampler()
    cpu_before = cpu_seconds(stack.gateway.pid)
    meter = Meter(stack)
    result = subprocess.run([find_wrk(), f"-t{args.threads}", f"-c{args.connections}",
                             f"-d{round(args.seconds)}s", "--timeout=10s", "--latency", "-s", str(script),
                             f"{stack.base}/r1/{SERVICE}"],
                            capture_output=True, text=True, timeout=args.seconds + 120, check=True)
    report = parse(result.stdout)
    cpu = cpu_seconds(stack.gateway.pid) - cpu_before
    machine = {"before": idle_speed, "during": sampler.stop()}
    cores = meter.read()
    stored = sum(flow_counts(engine, prefix).values())
    accepted = report.requests - report.non_2xx
    figures = {"seconds": report.seconds, "connections": args.connections,
               "engine_running": not args.filing_only, "requests": report.requests,
               "non_2xx": report.non_2xx, "socket_errors": report.socket_errors,
               "accepted_per_second": round(accepted / report.seconds, 1) if report.seconds else 0,
               "flows_stored": stored, "p50_ms": report.p50, "p99_ms": report.p99,
               "gateway_cpu_ms_per_flow": round(cpu * 1000 / max(stored, 1), 3), "cpu": cores,
               "machine": machine, "load_average": os.getloadavg()[0]}
    print(json.dumps({"rate": figures}, indent=2), flush=True)
    if not args.filing_only:  # the next part starts on a quiet gateway
        figures["then_finished_in_s"] = round(wait_finished(engine, prefix, stored, 600), 1)
    return figures


# -- 2. 10,000 flows drained -----------------------------------------------------------------------

async def file_all(base: str, token: str, bodies: list[bytes], clients: int) -> tuple[float, dict[int, int]]:
    """File every body with ``clients`` concurrent clients; the wall time of the first filing and
    the answers' statuses counted."""
    import aiohttp

    statuses: dict[int, int] = {}
    queue = iter(bodies)
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    connector = aiohttp.TCPConnector(limit=clients)
    first = time.time()
    async with aiohttp.ClientSession(connector=connector) as session:

        async def client() -> None:
            for body in queue:
                for _ in range(20):  # a refused connection under load: try again, it is not a filing
                    try:
                        async with session.post(f"{base}/r1/{SERVICE}", data=body, headers=headers) as r:
                            await r.read()
                            statuses[r.status] = statuses.get(r.status, 0) + 1
                            break
                    except aiohttp.ClientConnectionError:
                        await asyncio.sleep(0.05)

        first = time.time()
        await asyncio.gather(*(client() for _ in range(clients)))
    return first, statuses


def measure_drain(stack: Stack, engine: sa.engine.Engine, args: argparse.Namespace) -> dict[str, Any]:
    run = f"{datetime.now(VN):%Y%m%d}-D{int(time.time()) % 100000:05d}"
    prefix = f"H41.31-{run}-"
    rng = random.Random(13)
    today = datetime.now(VN).date()
    bodies = [orjson.dumps(joint_dossier(f"{prefix}{i:07d}", serial, today, rng))
              for i, serial in enumerate(serials(args.flows, 500_000))]
    assert stack.gateway is not None
    token = stack.token()
    idle_speed = speed()  # before the gateway's counters start: its time is not the gateway's
    sampler = Sampler()
    cpu_before = cpu_seconds(stack.gateway.pid)
    sims_before = cpu_seconds(stack.sims.pid) if stack.sims is not None else 0.0
    lock_before = stack.write_lock()
    meter = Meter(stack)
    first, statuses = asyncio.run(file_all(stack.base, token, bodies, args.clients))
    filed_s = time.time() - first
    print(f"filed {args.flows} in {filed_s:.1f} s: {statuses}", flush=True)
    accepted = statuses.get(202, 0)
    progress = []
    while True:
        counts = flow_counts(engine, prefix)
        done = sum(counts.get(s, 0) for s in FINISHED)
        progress.append((round(time.time() - first, 1), counts.get("completed", 0)))
        if done >= accepted or time.time() - first > args.patience:
            break
        time.sleep(0.25)
    cpu = cpu_seconds(stack.gateway.pid) - cpu_before
    machine = {"before": idle_speed, "during": sampler.stop()}
    cores = meter.read()
    lock = lock_report(lock_before, stack.write_lock(), time.time() - first)
    sims_cpu = (cpu_seconds(stack.sims.pid) - sims_before) if stack.sims is not None else 0.0
    with engine.connect() as conn:
        last = conn.execute(sa.select(sa.func.max(flows.c.finished_us))
                            .where(flows.c.dossier_code.like(f"{prefix}%"))).scalar()
        sends: dict[int, int] = dict(conn.execute(
            sa.select(flow_steps.c.sends, sa.func.count()).select_from(
                flow_steps.join(flows, flows.c.id == flow_steps.c.flow_id))
            .where(flows.c.dossier_code.like(f"{prefix}%")).group_by(flow_steps.c.sends)).all())
    seconds = (last / 1e6 - first) if last else None
    births = httpx.get(f"{stack.sim('civil_status')}/_sim/registrations",
                       params={"service": "DangKyKhaiSinh"}, timeout=120).json()
    registered = sum(1 for item in _items(births) if str(item.get("MaHoSo", "")).startswith(prefix))
    counts = flow_counts(engine, prefix)
    figures = {"flows": args.flows, "clients": args.clients, "filing_statuses": statuses,
               "filed_in_s": round(filed_s, 1), "seconds": round(seconds, 1) if seconds else None,
               "flows_per_second": round(counts.get("completed", 0) / seconds, 1) if seconds else None,
               "states": counts, "steps_by_sends": sends, "births_registered": registered,
               "gateway_cpu_seconds": round(cpu, 1), "simulators_cpu_seconds": round(sims_cpu, 1),
               "gateway_cpu_ms_per_flow": round(cpu * 1000 / max(accepted, 1), 2),
               "cpu": cores, "machine": machine, "write_lock": lock,
               "progress": [f"{t}s:{n}" for t, n in progress[:: max(1, len(progress) // 20)]],
               "load_average": os.getloadavg()[0]}
    print(json.dumps({"drain": figures}, indent=2), flush=True)
    return figures


def _items(view: Any) -> list[dict[str, Any]]:
    """The registrations as the simulator lists them (a list, or under ``items``)."""
    if isinstance(view, dict):
        view = view.get("items", [])
    return [item for item in view if isinstance(item, dict)] if isinstance(view, list) else []


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--seconds", type=float, default=10, help="the rate's run (wrk)")
    parser.add_argument("--connections", type=int, default=64, help="wrk's connections")
    parser.add_argument("--threads", type=int, default=2, help="wrk's threads")
    parser.add_argument("--flows", type=int, default=10_000, help="flows filed for the drain")
    parser.add_argument("--clients", type=int, default=64, help="concurrent clients filing the drain's flows")
    parser.add_argument("--patience", type=float, default=900, help="seconds the drain may take at most")
    parser.add_argument("--workers", type=int, default=2, help="gateway processes")
    parser.add_argument("--database-url", help="a database URL (default: SQLite in the work folder)")
    parser.add_argument("--skip-rate", action="store_true")
    parser.add_argument("--skip-drain", action="store_true")
    parser.add_argument("--filing-only", action="store_true",
                        help="the rate with the engine and delivery workers off")
    parser.add_argument("--without-notifications", action="store_true",
                        help="the flows' steps alone: their notify: entries (portal, one-stop) taken out")
    parser.add_argument("--keep", action="store_true", help="keep the work folder")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()

    # Ctrl+C and a TERM both end in the finally below, which stops every process started here
    # (SIGINT explicitly too: a shell's background job starts with it ignored).
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
    workdir = Path(tempfile.mkdtemp(prefix="lienthong-flow-bench-"))
    stack = Stack(workdir, args.database_url, args.workers, notifications=not args.without_notifications)
    engine = create_engine(stack.url)
    figures: dict[str, Any] = {"database": "postgresql" if stack.url.startswith("postgresql") else "sqlite",
                               "workers": args.workers, "cpus": os.cpu_count(),
                               "notifications": not args.without_notifications}
    try:
        stack.start_simulators()
        if not args.skip_rate:
            stack.write_config(workers_on=not args.filing_only)
            stack.start_gateway()
            figures["rate"] = measure_rate(stack, engine, args)
            if args.filing_only:
                stack.stop_gateway()
                stack.write_config(workers_on=True)
        if not args.skip_drain:
            if stack.gateway is None:
                stack.start_gateway()
            figures["drain"] = measure_drain(stack, engine, args)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    finally:
        stack.stop()
        engine.dispose()
        if args.json:
            args.json.write_text(json.dumps(figures, indent=2))
        if args.keep:
            print(f"work folder: {workdir}")
        else:
            import shutil

            shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
