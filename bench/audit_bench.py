"""Audit log benchmark: append + integrate throughput, verify of a large log, and the audit's share of
an exchange's CPU cost.

    .venv/bin/python bench/audit_bench.py [--leaves 100000] [--verify-leaves 1000000]
                                          [--database URL]
                                          [--only append,concurrent,verify,cpu,added]
                                          [--ids random|timed] [--exchanges echo,verify]
                                          [--rates 500,1000] [--added-repeats 3]
                                          [--commit-window GAP_MS,MAX_MS] [--json out.json]

append      ``AuditLog.append_many`` in batches (each batch one transaction: sequence, store the
            leaves, integrate them into the Merkle tree, move the head), on a fresh database
concurrent  ``AuditLog.append`` from many coroutines at once (group commit by the writer thread),
            as the gateway's exchanges do
verify      fills a log of ``--verify-leaves`` leaves (append_many, big batches), then times
            ``verify_log`` in full (leaves, index columns, subjects, tree, head, checkpoints) and
            quick (no index columns and subjects)
cpu         the gateway (1 worker) under wrk (16 and 64 connections), on two exchanges: the REST echo
            (a bare pass-through, the cheapest exchange there is: the audit's worst case) and the
            population database's XacThucThongTinCongDan (JSON in, SOAP upstream, JSON out, with an
            official, a purpose and a data subject: the exchange the gateway exists for). Its CPU per
            exchange (/proc), and the audit's part of it: the audit writer thread's CPU (/proc) plus
            the event loop's CPU in audit code (py-spy samples); needs wrk and py-spy
added       what the audit adds to the CPU cost of an exchange, as measured, not summed: the gateway's
            CPU per exchange against the same gateway with the audit's steps taken out
            (``bench/no_audit.py``), under the same load: 64 callers at random intervals, about
            ``--rates`` exchanges a second (wrk with random pauses), runs alternating; needs wrk

SQLite by default (a file in a temporary folder, WAL, synchronous=FULL as the gateway runs it).
Figures on a shared machine are noisy: run it at least twice. Results go to docs/audit.md.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: the repository goes last on the path
    _here = Path(__file__).resolve().parent
    if sys.path and Path(sys.path[0] or ".").resolve() == _here:
        del sys.path[0]
    sys.path.append(str(_here.parent))

import httpx
import orjson

from gateway.audit.checkpoint import Signer
from gateway.audit.checkpointer import Checkpointer
from gateway.audit.log import AuditLog
from gateway.audit.record import AuditRecord, BodyDigest, SubjectHasher
from gateway.audit.verify import verify_log
from gateway.ids import new_id
from gateway.simulation import free_port
from gateway.storage.db import create_engine, upgrade

HASHER = SubjectHasher(b"b" * 32)
BODY = b'{"SoDinhDanh": "001099000001", "HoVaTen": "Nguy\xe1\xbb\x85n V\xc4\x83n A", "pad": "' + \
    b"x" * 900 + b'"}'
ORIGIN = "lienthong.bench/VN/audit"


IDS = "timed"  # --ids: how exchange ids look (see exchange_id)


def exchange_id() -> str:
    """An exchange id as the gateway makes them (``gateway.ids.new_id``: time-ordered, so the
    exchange-id index grows at its end), or with ``--ids random`` 128 random bits, as a client's own
    X-Road-Id may be."""
    if IDS == "timed":
        return new_id()
    return os.urandom(16).hex()


def records(start: int, count: int, base_us: int) -> list[AuditRecord]:
    """Leaves shaped like the gateway's: digests of ~1 KB bodies, a subject on every third."""
    out = []
    for i in range(start, start + count):
        out.append(AuditRecord(
            exchange_id=exchange_id(), ts_us=base_us + i * 50, protocol="rest",
            outcome="ok", status=200, client="VN/GOV/000.00.00.H60/MOTCUA",
            service="VN/GOV/000.00.00.G01/CSDLDC/XacThucThongTinCongDan",
            operation="XacThucThongTinCongDan", rule="xac-thuc-cong-dan",
            user_id="VN-canbo.nguyenvanan" if i % 2 else None,
            purpose=f"H22.23-20261121-{i % 1_000_000:07d}" if i % 2 else None,
            total_us=2300 + i % 500, upstream_us=1800, request=BodyDigest.of(BODY),
            response=BodyDigest("a" * 64, 84), upstream_request=BodyDigest("b" * 64, 610),
            upstream_response=BodyDigest("c" * 64, 742),
            subjects=(HASHER(f"0010{i:08d}"),) if i % 3 == 0 else ()))
    return out


@contextlib.contextmanager
def database(url: str | None) -> Iterator[str]:
    """A fresh, migrated database: a SQLite file in a temporary folder unless a URL is given."""
    folder = Path(tempfile.mkdtemp(prefix="lienthong-audit-bench-"))
    try:
        if url is None:
            target = f"sqlite:///{folder / 'audit.db'}"
        else:
            import sqlalchemy as sa

            name = f"audit_bench_{os.getpid()}_{int(time.time())}"
            admin = sa.create_engine(url, isolation_level="AUTOCOMMIT")
            with admin.connect() as conn:
                conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
            admin.dispose()
            target = url.rsplit("/", 1)[0] + "/" + name
        upgrade(target)
        yield target
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def bench_append(url: str | None, leaves: int, batch: int) -> dict[str, Any]:
    with database(url) as target:
        log = AuditLog(create_engine(target))
        base = time.time_ns() // 1000
        todo = [records(i, min(batch, leaves - i), base) for i in range(0, leaves, batch)]
        started, cpu = time.perf_counter(), time.process_time()
        for chunk in todo:
            log.append_many(chunk)
        wall, cpu = time.perf_counter() - started, time.process_time() - cpu
        assert log.size() == leaves
    return {"leaves": leaves, "batch": batch, "seconds": round(wall, 3),
            "leaves_per_s": round(leaves / wall), "cpu_us_per_leaf": round(cpu / leaves * 1e6, 1)}


def bench_concurrent(url: str | None, leaves: int, in_flight: int, batch_wait_ms: float) -> dict[str, Any]:
    """Appends from ``in_flight`` coroutines at a time: each await returns once its leaf is durable."""
    with database(url) as target:
        log = AuditLog(create_engine(target), batch_max=512, batch_wait_ms=batch_wait_ms)
        log.start()
        base = time.time_ns() // 1000
        all_records = records(0, leaves, base)

        async def run() -> None:
            queue = iter(all_records)

            async def worker() -> None:
                for rec in queue:
                    await log.append(rec)

            await asyncio.gather(*(worker() for _ in range(in_flight)))

        started, cpu = time.perf_counter(), time.process_time()
        asyncio.run(run())
        wall, cpu = time.perf_counter() - started, time.process_time() - cpu
        log.close()
        assert log.size() == leaves
    return {"leaves": leaves, "in_flight": in_flight, "batch_wait_ms": batch_wait_ms,
            "seconds": round(wall, 3), "leaves_per_s": round(leaves / wall),
            "commits": log.batches, "leaves_per_commit": round(leaves / log.batches, 1),
            "cpu_us_per_leaf": round(cpu / leaves * 1e6, 1)}


def bench_verify(url: str | None, leaves: int, repeats: int) -> dict[str, Any]:
    signer = Signer.generate(ORIGIN)
    with database(url) as target:
        engine = create_engine(target)
        log = AuditLog(engine)
        checkpointer = Checkpointer(engine, signer, ORIGIN)
        base = time.time_ns() // 1000
        started = time.perf_counter()
        for start in range(0, leaves, 20_000):
            log.append_many(records(start, min(20_000, leaves - start), base))
            if (start // 20_000) % 10 == 9:
                checkpointer.make()
        checkpointer.make()
        fill = time.perf_counter() - started
        out: dict[str, Any] = {"leaves": leaves, "fill_seconds": round(fill, 1),
                               "fill_leaves_per_s": round(leaves / fill),
                               "checkpoints": len(checkpointer.all())}
        for mode, indexes in (("full", True), ("quick", False)):
            times = []
            for _ in range(repeats):
                t = time.perf_counter()
                report = verify_log(engine, verifiers=[signer.verifier()], origin=ORIGIN, indexes=indexes)
                times.append(time.perf_counter() - t)
                assert report.ok and report.leaves == leaves, report.problems[:3]
            out[f"verify_{mode}_seconds"] = [round(x, 2) for x in times]
        engine.dispose()
    return out


# ---------------------------------------------------------------------------------------------- cpu


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _wait(url: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(url, timeout=1).status_code == 200:
                return
        time.sleep(0.1)
    raise RuntimeError(f"{url} did not become ready")


def _wrk(url: str, headers: dict[str, str], body: bytes, seconds: int, connections: int,
         scratch: Path, think_ms: float = 0.0) -> int:
    """One wrk run (``bench/wrk.py``, one thread); how many exchanges were answered. Any non-2xx
    answer or socket error fails the run: a refused exchange costs less and would flatter it."""
    from bench import wrk

    result = wrk.run(wrk.HttpRequest(url, headers=headers, body=body), scratch / "post.lua",
                     duration=seconds, connections=connections, threads=1, think_ms=think_ms)
    if result.errors:
        raise RuntimeError(f"wrk saw {result.non_2xx} non-2xx answers and socket errors "
                           f"{result.socket_errors}:\n{result.output[-1000:]}")
    return result.requests


def _thread_cpu_seconds(pid: int, tid: int) -> float:
    fields = Path(f"/proc/{pid}/task/{tid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _py_spy() -> str | None:
    here = Path(sys.executable).parent / "py-spy"
    return str(here) if here.exists() else shutil.which("py-spy")


def _is_audit_frame(frame: str) -> bool:
    """A frame of the audit's own work on the event loop: gateway/audit, and the pipeline's
    ``record`` (body digests) and ``kept_bodies`` steps."""
    if "gateway/audit/" in frame:
        return True
    if "gateway/exchange.py" not in frame:
        return False
    name = frame.split(" (", 1)[0].rsplit(".", 1)[-1]  # py-spy names methods Class.method
    return name in ("record", "kept_bodies")


def _audit_share_of_main(raw: Path) -> float:
    """Of the event loop thread's samples, the share inside the audit's own work."""
    total = audit = 0
    for line in raw.read_text(errors="replace").splitlines():
        stack, _, count = line.rpartition(" ")
        frames = stack.split(";")
        if not frames or "MainThread" not in frames[0] or not count.isdigit():
            continue
        total += int(count)
        if any(_is_audit_frame(f) for f in frames[1:]):
            audit += int(count)
    return audit / total if total else 0.0


@dataclass(frozen=True)
class _Exchange:
    """One kind of exchange for the cpu step: which simulator answers it, the client, the service,
    the body, and whether the X-Road headers (client, official, purpose) go with it."""

    simulator: str
    client: str
    service: str
    body: bytes
    x_road: bool


def _exchanges() -> dict[str, _Exchange]:
    from bench import targets

    return {
        "echo": _Exchange("rest", targets.ECHO_CLIENT, targets.ECHO_SERVICE, BODY, x_road=False),
        "verify": _Exchange("population", targets.VERIFY_CLIENT, targets.VERIFY_SERVICE,
                            orjson.dumps(targets.verify_payload(targets.known_citizen())), x_road=True),
    }


@dataclass(frozen=True)
class _Serving:
    """A gateway (one worker) and the simulator its exchange needs, ready, with a probe answered."""

    pid: int
    url: str
    headers: dict[str, str]
    body: bytes
    scratch: Path


COMMIT_WINDOW: dict[str, float] = {}  # --commit-window: the audit settings the gateway runs with


@contextlib.contextmanager
def _serving(kind: str, server: list[str]) -> Iterator[_Serving]:
    """``server`` (``-m gateway`` or ``-m bench.no_audit``) serving a fresh configuration, with the
    simulator that answers ``kind``, and a token; stopped and removed afterwards."""
    import yaml

    from bench.targets import exchange_headers
    from gateway.init import Ports, initialise

    exchange = _exchanges()[kind]
    scratch = Path(tempfile.mkdtemp(prefix="lienthong-audit-cpu-"))
    ports = Ports(gateway=free_port(), population=free_port(), dvcqg=free_port(),
                  onestop=free_port(), rest=free_port())
    init = initialise(scratch, ports=ports, force=True)
    if COMMIT_WINDOW:
        config = yaml.safe_load(init.config_path.read_text())
        config.setdefault("audit", {}).update(COMMIT_WINDOW)
        init.config_path.write_text(yaml.safe_dump(config, allow_unicode=True, sort_keys=False))
    log_file = (scratch / "procs.log").open("wb")
    root = Path(__file__).resolve().parent.parent  # -m bench.no_audit must find the bench package
    sims = subprocess.Popen([sys.executable, "-m", "gateway", "simulators", "--config",
                             str(init.config_path), "--only", exchange.simulator],
                            stdout=log_file, stderr=subprocess.STDOUT, cwd=root)
    gateway = subprocess.Popen([sys.executable, *server, "serve", "--config", str(init.config_path)],
                               stdout=log_file, stderr=subprocess.STDOUT, cwd=root)
    try:
        base = f"http://127.0.0.1:{ports.gateway}"
        _wait(f"http://127.0.0.1:{getattr(ports, exchange.simulator)}/_sim/received")
        _wait(f"{base}/readyz")
        token = httpx.post(f"{base}/oauth/token", data={"grant_type": "client_credentials"},
                           auth=(exchange.client, init.secrets[exchange.client])).json()["access_token"]
        url = f"{base}/r1/{exchange.service}"
        headers = exchange_headers(token, exchange.client if exchange.x_road else None)
        answer = httpx.post(url, content=exchange.body, headers=headers)
        if answer.status_code != 200:
            raise RuntimeError(f"{kind}: HTTP {answer.status_code}: {answer.text[:300]}")
        yield _Serving(gateway.pid, url, headers, exchange.body, scratch)
    finally:
        for proc in (gateway, sims):
            proc.send_signal(signal.SIGTERM)
        for proc in (gateway, sims):
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
        log_file.close()
        shutil.rmtree(scratch, ignore_errors=True)


def bench_exchange_cpu(seconds: int, connections: int, kind: str = "echo") -> dict[str, Any]:
    """The gateway (1 worker) under wrk on one kind of exchange: its CPU per exchange, and the part
    of it that is the audit's. The audit writer thread's CPU is read from /proc (its id from
    ``py-spy dump``): storing, integrating, committing (fsync included). The audit's work on the
    event loop thread (body digests, record, canonical JSON, leaf hash, queueing) is that thread's
    CPU times the share of py-spy's samples of it that are inside that work."""
    py_spy = _py_spy()
    if shutil.which("wrk") is None or py_spy is None:
        return {"skipped": "needs wrk and py-spy"}
    with _serving(kind, ["-m", "gateway"]) as gw:
        run = partial(_wrk, gw.url, gw.headers, gw.body, connections=connections, scratch=gw.scratch)
        run(2)  # warm up (and start the writer thread)
        dump = subprocess.run([py_spy, "dump", "--pid", str(gw.pid), "--json"], capture_output=True,
                              text=True, check=True).stdout
        writer = next(t["os_thread_id"] for t in orjson.loads(dump) if t.get("thread_name") == "audit-writer")
        raw = gw.scratch / "samples.txt"
        before = (_cpu_seconds(gw.pid), _thread_cpu_seconds(gw.pid, writer),
                  _thread_cpu_seconds(gw.pid, gw.pid))
        spy = subprocess.Popen([py_spy, "record", "--pid", str(gw.pid), "--duration", str(seconds - 1),
                                "--rate", "250", "--format", "raw", "--threads", "--nonblocking",
                                "--output", str(raw)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        count = run(seconds)
        after = (_cpu_seconds(gw.pid), _thread_cpu_seconds(gw.pid, writer),
                 _thread_cpu_seconds(gw.pid, gw.pid))
        spy.wait(30)
        share = _audit_share_of_main(raw)
    process, writer_cpu, loop_cpu = (a - b for a, b in zip(after, before, strict=True))
    audit = writer_cpu + share * loop_cpu
    return {"exchange": kind, "exchanges": count, "seconds": seconds, "connections": connections,
            "cpu_us_per_exchange": round(process / count * 1e6, 1),
            "audit_writer_us_per_exchange": round(writer_cpu / count * 1e6, 1),
            "audit_on_event_loop_us_per_exchange": round(share * loop_cpu / count * 1e6, 1),
            "audit_us_per_exchange": round(audit / count * 1e6, 1),
            "audit_share_of_exchange_cpu_pct": round(audit / process * 100, 1),
            "audit_added_to_the_rest_pct": round(audit / (process - audit) * 100, 1)}


def bench_added(kind: str, rate: int, seconds: int, repeats: int) -> dict[str, Any]:
    """What the audit adds to an exchange's CPU, by its definition: the gateway's CPU per exchange
    with the audit, against the same gateway with the audit's steps taken out (``bench/no_audit.py``),
    under the same load, runs alternating, ``repeats`` of each. The load is 64 independent callers,
    each pausing a random time (exponential, mean 64 s / ``rate``) after each answer: about
    ``rate`` exchanges a second arriving at random, as from many clients, not wrk's closed loop
    (without the audit the gateway answers sooner, so a closed loop would drive it harder and
    compare two loads) nor a fixed-rate generator's ticks (its callers fire together, which hands
    group commit batches that random arrivals do not)."""
    if shutil.which("wrk") is None:
        return {"skipped": "needs wrk"}
    callers = 64
    runs: dict[str, list[dict[str, float]]] = {"audit": [], "no_audit": []}
    for _ in range(repeats):
        for mode, server in (("no_audit", ["-m", "bench.no_audit"]), ("audit", ["-m", "gateway"])):
            with _serving(kind, server) as gw:
                _wrk(gw.url, gw.headers, gw.body, 2, 16, gw.scratch)  # warm up
                before = (_cpu_seconds(gw.pid), _thread_cpu_seconds(gw.pid, gw.pid))
                count = _wrk(gw.url, gw.headers, gw.body, seconds, callers, gw.scratch,
                             think_ms=callers * 1000 / rate)
                after = (_cpu_seconds(gw.pid), _thread_cpu_seconds(gw.pid, gw.pid))
            cpu, loop = (a - b for a, b in zip(after, before, strict=True))
            runs[mode].append({"exchanges_per_s": round(count / seconds),
                               "cpu_us_per_exchange": round(cpu / count * 1e6, 1),
                               "event_loop_us_per_exchange": round(loop / count * 1e6, 1),
                               "other_threads_us_per_exchange": round((cpu - loop) / count * 1e6, 1)})
    on = statistics.median(r["cpu_us_per_exchange"] for r in runs["audit"])
    off = statistics.median(r["cpu_us_per_exchange"] for r in runs["no_audit"])
    pairs = [(a["cpu_us_per_exchange"] - b["cpu_us_per_exchange"]) / b["cpu_us_per_exchange"] * 100
             for a, b in zip(runs["audit"], runs["no_audit"], strict=True)]
    return {"exchange": kind, "rate": rate, "seconds": seconds, "runs": runs,
            "cpu_us_per_exchange_audit": on, "cpu_us_per_exchange_no_audit": off,
            "added_pct": round((on - off) / off * 100, 1),
            "added_pct_by_pair": [round(p, 1) for p in pairs]}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--leaves", type=int, default=100_000, help="leaves for append and concurrent")
    parser.add_argument("--verify-leaves", type=int, default=1_000_000)
    parser.add_argument("--repeats", type=int, default=2, help="verify runs per mode")
    parser.add_argument("--database", help="a PostgreSQL server URL (a fresh database is made on it); "
                        "SQLite by default")
    parser.add_argument("--only", default="append,concurrent,verify,cpu,added")
    parser.add_argument("--ids", choices=["random", "timed"], default="timed",
                        help="exchange ids as the gateway makes them today, or time-ordered")
    parser.add_argument("--exchanges", default="echo,verify",
                        help="for cpu: echo (REST pass-through), verify (JSON->SOAP, population database)")
    parser.add_argument("--rates", default="500,1000",
                        help="for added: about how many exchanges a second the callers send")
    parser.add_argument("--added-repeats", type=int, default=3,
                        help="for added: runs with and without the audit, alternating")
    parser.add_argument("--commit-window", metavar="GAP_MS,MAX_MS",
                        help="for cpu and added: the gateway's audit.batch_wait_ms and "
                        "audit.batch_wait_max_ms (2,10 by default)")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args(argv)
    only = set(args.only.split(","))
    global IDS
    IDS = args.ids
    if args.commit_window:
        gap, longest = (float(v) for v in args.commit_window.split(","))
        COMMIT_WINDOW.update(batch_wait_ms=gap, batch_wait_max_ms=longest)
    results: dict[str, Any] = {
        "when": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "python": platform.python_version(),
        "cpus": os.cpu_count(), "load_before": os.getloadavg(),
        "database": "postgresql" if args.database else "sqlite", "exchange_ids": args.ids,
        "commit_window": COMMIT_WINDOW or "default"}

    def step(name: str, fn: Callable[[], Any]) -> None:
        print(f"== {name} …", flush=True)
        results[name] = fn()
        print(orjson.dumps(results[name]).decode(), flush=True)

    if "append" in only:
        for batch in (512, 5000):
            step(f"append_many_batch_{batch}", partial(bench_append, args.database, args.leaves, batch))
    if "concurrent" in only:
        step("concurrent_appends", lambda: bench_concurrent(args.database, args.leaves, 1000, 0.0))
    if "verify" in only:
        step("verify", lambda: bench_verify(args.database, args.verify_leaves, args.repeats))
    if "cpu" in only:
        for kind in args.exchanges.split(","):
            for connections in (16, 64):
                step(f"exchange_cpu_{kind}_c{connections}",
                     partial(bench_exchange_cpu, 10, connections, kind))
    if "added" in only:
        for kind in args.exchanges.split(","):
            for rate in (int(r) for r in args.rates.split(",")):
                step(f"added_{kind}_{rate}_per_s",
                     partial(bench_added, kind, rate, 10, args.added_repeats))
    results["load_after"] = os.getloadavg()
    if args.json:
        args.json.write_text(orjson.dumps(results, option=orjson.OPT_INDENT_2).decode())
    return 0


if __name__ == "__main__":
    sys.exit(main())
