"""edXML documents' figures (issue 16): 1 MiB packages accepted durably per second, and one 100 MB
attachment through the gateway with its memory measured.

    .venv/bin/python bench/document_bench.py [--seconds 10] [--connections 16] [--threads 2]
                                             [--workers 1] [--big-mb 100] [--database-url URL]
                                             [--json FILE] [--skip-rate] [--skip-big] [--keep]

Everything runs on loopback, started here and stopped on the way out: ``lienthong serve`` on a
configuration ``lienthong init`` wrote into a temporary folder (SQLite there, or ``--database-url``),
with a document service (``documents: true``), Tuyên Quang's document-management system sending for
000.00.00.H60 and Nghệ An's pulling for 000.00.00.H41 (a pulled recipient: the figure is the
gateway's acceptance, not a receiving system's), a rule without rate limit, and
``limits.max_body_bytes`` and ``limits.max_document_bytes`` raised to 200 MiB.

1. Rate. wrk (a Lua script) sends a different package in every request (its DocumentId and
   CodeNumber numbered per thread): a công văn of 1 MiB with three PDF-like attachments of about
   250 KiB each (connectors/dms/data.py), for ``--seconds`` on ``--connections``. A 202 leaves once
   the package and its message are committed (accepted means durable); the figure is the 202
   answers per second, checked against the rows the ``documents`` table gained, with the gateway's
   CPU per stored package (user and system time apart: the kernel's share is SQLite's writes and the
   socket's) and wrk's per request (the client runs on the same cores).
2. Big. One package whose single attachment is ``--big-mb`` MB (random bytes, base64 written to a
   file here in pieces, then streamed by httpx from that file). The gateway's resident memory
   (``VmRSS`` of its process and children, read from /proc every 20 ms) is measured from just
   before the request to its answer: the growth is the peak minus the level before. Then Nghệ An
   fetches it (``GET messages/{id}``, read by the client in pieces), measured the same way, and the
   bytes it got are checked against those sent. Then another such package goes to Tuyên Quang's
   office (000.01.00.H60), a pushed recipient: the gateway delivers it to Tuyên Quang's
   document-management system (its simulator, connectors/dms, started here), measured from the send
   to the simulator's holding it, whose digest is checked against the bytes sent.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import os
import resource
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import sqlalchemy as sa
import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.wrk import find_wrk, lua_string, parse  # noqa: E402
from connectors.dms import data  # noqa: E402
from gateway.oauth.secrets import hash_secret, new_secret  # noqa: E402
from gateway.simulation import free_port, wait_listening  # noqa: E402
from gateway.storage.db import upgrade  # noqa: E402

GW, TQ, NA = "VN/GOV/000.00.00.G22", "VN/GOV/000.00.00.H60", "VN/GOV/000.00.00.H41"
SERVICE = f"{GW}/LIENTHONG/VanBan"
TQ_DMS, NA_DMS = f"{TQ}/QLVB", f"{NA}/QLVB"
H60, H41, H60_OFFICE = "000.00.00.H60", "000.00.00.H41", "000.01.00.H60"
MIB = 1_048_576
LIMIT = 200 * MIB
ATTACHMENT = 363_800  # data.py makes about 262 KB of it; three in base64: a package of 1 MiB


class Stack:
    """The gateway on loopback in a work folder of its own, with the document service."""

    def __init__(self, workdir: Path, database: str | None, workers: int) -> None:
        from gateway.config import load_config
        from gateway.init import Ports, initialise

        self.workdir, self.workers = workdir, workers
        ports = Ports(gateway=free_port(), population=free_port(), dvcqg=free_port(), onestop=free_port(),
                      rest=free_port(), dms=free_port())
        self.dms = f"http://127.0.0.1:{ports.dms}"
        init = initialise(workdir, ports=ports, database=database, force=True)
        self.config_path = init.config_path
        cfg = yaml.safe_load(self.config_path.read_text())
        cfg["token"]["lifetime"] = 3600
        documents = {TQ: {"organs": [H60], "subsystem": "QLVB"}, NA: {"subsystem": "QLVB"}}
        for member in cfg["members"]:
            if member["id"] in documents and not member.get("documents"):
                if not any(s.get("code") == "QLVB" for s in member.get("subsystems", [])):
                    member.setdefault("subsystems", []).append({"code": "QLVB", "name": "Quản lý văn bản"})
                member["documents"] = documents[member["id"]]
        if not any(s["id"] == SERVICE for s in cfg["services"]):
            cfg["services"].append({"id": SERVICE, "documents": True, "description": "Liên thông văn bản"})
        self.secrets: dict[str, str] = {}
        cfg["clients"] = [c for c in cfg["clients"] if c["id"] not in (TQ_DMS, NA_DMS)]
        for client in (TQ_DMS, NA_DMS):
            self.secrets[client] = new_secret()
            cfg["clients"].append({"id": client, "secret_hash": hash_secret(self.secrets[client]),
                                   "scopes": ["documents"]})
        cfg["limits"] = {**cfg.get("limits", {}), "max_body_bytes": LIMIT, "max_document_bytes": LIMIT}
        self.config_path.write_text(yaml.safe_dump(cfg, allow_unicode=True, sort_keys=False))
        policies = self.config_path.parent / "policies"
        for path in policies.glob("*.yaml"):  # the demo's own document rule, if any, gives way to ours
            rules = yaml.safe_load(path.read_text()) or {}
            kept = [r for r in rules.get("rules", []) if SERVICE not in r.get("services", [])]
            if len(kept) != len(rules.get("rules", [])):
                path.write_text(yaml.safe_dump({**rules, "rules": kept}, allow_unicode=True, sort_keys=False))
        (policies / "bench-documents.yaml").write_text(yaml.safe_dump({"rules": [
            {"name": "bench-van-ban", "services": [SERVICE], "clients": [TQ_DMS, NA_DMS],
             "scopes": ["documents"]}]}))
        self.url = load_config(self.config_path).database_url
        upgrade(self.url)
        self.port = ports.gateway
        self.base = f"http://127.0.0.1:{ports.gateway}"
        self.gateway: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        log = (self.workdir / "gateway.log").open("ab")
        self.gateway = subprocess.Popen([sys.executable, "-m", "gateway", "serve", "--config",
                                         str(self.config_path), "--workers", str(self.workers)],
                                        stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
                                        cwd=self.workdir)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.gateway.poll() is not None:
                raise RuntimeError(f"the gateway exited: see {self.workdir / 'gateway.log'}")
            try:
                if httpx.get(f"{self.base}/readyz", timeout=1).status_code == 200:
                    wait_listening(self.port, self.workers)  # every worker, not only the first
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise RuntimeError("the gateway is not ready")

    def stop(self) -> None:
        if self.gateway is None or self.gateway.poll() is not None:
            return
        os.killpg(self.gateway.pid, signal.SIGTERM)
        try:
            self.gateway.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(self.gateway.pid, signal.SIGKILL)
            self.gateway.wait()

    def token(self, client: str) -> str:
        answer = httpx.post(f"{self.base}/oauth/token", data={"grant_type": "client_credentials"},
                            auth=(client, self.secrets[client]))
        answer.raise_for_status()
        return str(answer.json()["access_token"])

    def documents(self, prefix: str) -> int:
        engine = sa.create_engine(self.url)
        try:
            meta = sa.MetaData()
            table = sa.Table("documents", meta, autoload_with=engine)
            with engine.connect() as conn:
                return int(conn.execute(sa.select(sa.func.count()).select_from(table).where(
                    table.c.document_id.like(f"{prefix}%"))).scalar_one())
        finally:
            engine.dispose()


# -- 1. rate ---------------------------------------------------------------------------------------

def rate_script(token: str, path: str, template: bytes) -> str:
    """wrk: each request a package of its own, ``999999`` (CodeNumber and DocumentId's number)
    replaced by the thread's number and its count; the body is put together from its pieces."""
    pieces = template.split(b"999999")
    if len(pieces) < 3:  # CodeNumber and DocumentId (and the attachments' names)
        raise SystemExit(f"the template has {len(pieces) - 1} places numbered, not 2 or more")
    parts = ", ".join(lua_string(p) for p in pieces)
    return f"""-- written by bench/document_bench.py
local threads = {{}}
function setup(thread)
  thread:set("tid", #threads)
  table.insert(threads, thread)
end
function init(args)
  pieces = {{{parts}}}
  headers = {{["Authorization"] = "Bearer {token}", ["Content-Type"] = "application/xml"}}
  counter = 0
end
function request()
  counter = counter + 1
  local number = string.format("%d%07d", tid + 1, counter)
  return wrk.format("POST", "{path}", headers, table.concat(pieces, number))
end
"""


def measure_rate(stack: Stack, args: argparse.Namespace) -> dict[str, Any]:
    template = data.package_bytes(H60, [H41], 999999, attachments=3, attachment_size=ATTACHMENT)
    with data.package(H60, [H41], 999999) as sample:
        prefix = sample.header.document_id.rsplit(",", 1)[0] + ","
    script = stack.workdir / "rate.lua"
    script.write_text(rate_script(stack.token(TQ_DMS), f"/r1/{SERVICE}", template))
    before = stack.documents(prefix)
    assert stack.gateway is not None
    cpu_before = cpu_times(stack.gateway.pid)
    clients_before = resource.getrusage(resource.RUSAGE_CHILDREN)  # wrk's, once it has been waited for
    result = subprocess.run([find_wrk(), f"-t{args.threads}", f"-c{args.connections}",
                             f"-d{round(args.seconds)}s", "--timeout=10s", "--latency", "-s", str(script),
                             f"{stack.base}/r1/{SERVICE}"],
                            capture_output=True, text=True, timeout=args.seconds + 120, check=True)
    report = parse(result.stdout)
    user, system = (after - before for after, before in zip(cpu_times(stack.gateway.pid), cpu_before,
                                                             strict=True))
    cpu = user + system
    clients = resource.getrusage(resource.RUSAGE_CHILDREN)
    wrk_cpu = (clients.ru_utime + clients.ru_stime) - (clients_before.ru_utime + clients_before.ru_stime)
    stored = stack.documents(prefix) - before
    accepted = report.requests - report.non_2xx
    figures = {"package_bytes": len(template), "attachments": 3, "seconds": report.seconds,
               "connections": args.connections, "threads": args.threads, "workers": args.workers,
               "requests": report.requests, "non_2xx": report.non_2xx,
               "socket_errors": report.socket_errors,
               "accepted_per_second": round(accepted / report.seconds, 1) if report.seconds else 0,
               "documents_stored": stored, "p50_ms": report.p50, "p99_ms": report.p99,
               "gateway_cpu_ms_per_document": round(cpu * 1000 / max(stored, 1), 1),
               # the kernel's share (socket reads, SQLite's writes) apart from the process's own
               "gateway_user_ms_per_document": round(user * 1000 / max(stored, 1), 1),
               "gateway_system_ms_per_document": round(system * 1000 / max(stored, 1), 1),
               # the client's share of the same 2 cores: what the gateway cannot have
               "wrk_cpu_ms_per_request": round(wrk_cpu * 1000 / max(report.requests, 1), 1),
               "load_average": os.getloadavg()[0]}
    print(json.dumps({"rate": figures}, indent=2), flush=True)
    if stored < accepted:
        raise SystemExit(f"{accepted} packages answered 202 but only {stored} were stored")
    return figures


# -- 2. one big attachment -------------------------------------------------------------------------

def big_package(path: Path, megabytes: int, to: str = H41, number: int = 7777777) -> int:
    """A package to organ ``to`` with one attachment of ``megabytes`` MB of random bytes, written to
    ``path`` in pieces (the base64 of a small stand-in attachment replaced by the big one's, line by
    line)."""
    small = data.package_bytes(H60, [to], number, attachments=1, attachment_size=3 * 64)
    start = small.index(b"ContentTransferEncoded>") + len(b"ContentTransferEncoded>")
    head, tail = small[:start], small[small.index(b"</", start):]
    line = 57 * 1024  # bytes of attachment per base64 line (a multiple of 3)
    total = megabytes * 1_000_000
    written = 0
    with path.open("wb") as out:
        out.write(head)
        while written < total:
            chunk = os.urandom(min(line, total - written))
            out.write(base64.b64encode(chunk) + b"\n")
            written += len(chunk)
        out.write(tail)
    return path.stat().st_size


def _family(pid: int) -> list[int]:
    """``pid`` and its children (the server's worker processes)."""
    try:
        return [pid, *(int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split())]
    except OSError:
        return [pid]


def cpu_times(pid: int) -> tuple[float, float]:
    """User and system CPU time of ``pid`` and its children, from /proc."""
    tick = os.sysconf("SC_CLK_TCK")
    user = system = 0.0
    for each in _family(pid):
        try:
            fields = Path(f"/proc/{each}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        user += int(fields[11]) / tick
        system += int(fields[12]) / tick
    return user, system


def rss_bytes(pid: int) -> int:
    """Resident memory of ``pid`` and its children (the server's worker processes)."""
    total = 0
    for each in _family(pid):
        try:
            for row in Path(f"/proc/{each}/status").read_text().splitlines():
                if row.startswith("VmRSS:"):
                    total += int(row.split()[1]) * 1024
        except OSError:
            continue
    return total


class Peak:
    """The peak resident memory of the gateway's processes while the block runs (every 20 ms)."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.before = self.peak = rss_bytes(pid)
        self._done = threading.Event()
        self._watcher = threading.Thread(target=self._sample, daemon=True)

    def __enter__(self) -> Peak:
        self._watcher.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._done.set()
        self._watcher.join()

    def _sample(self) -> None:
        while not self._done.is_set():
            self.peak = max(self.peak, rss_bytes(self.pid))
            time.sleep(0.02)

    @property
    def growth_mb(self) -> float:
        return round((self.peak - self.before) / 1e6, 1)


def send_big(stack: Stack, path: Path, size: int, sent: Any) -> httpx.Response:
    """POST the package at ``path`` as Tuyên Quang's system, streamed from the file (``sent`` hashes it)."""

    def stream() -> Any:
        with path.open("rb") as source:
            while piece := source.read(MIB):
                sent.update(piece)
                yield piece

    return httpx.post(f"{stack.base}/r1/{SERVICE}", content=stream(), timeout=600, headers={
        "Authorization": f"Bearer {stack.token(TQ_DMS)}", "Content-Type": "application/xml",
        "Content-Length": str(size)})


def measure_big(stack: Stack, args: argparse.Namespace) -> dict[str, Any]:
    """Send the big package (Tuyên Quang), then fetch it (Nghệ An), each under its own ``Peak``;
    then push another to Tuyên Quang's office."""
    assert stack.gateway is not None
    path = stack.workdir / "big.edxml"
    size = big_package(path, args.big_mb)
    sent = hashlib.sha256()
    time.sleep(1.0)
    with Peak(stack.gateway.pid) as sending:
        started = time.monotonic()
        answer = send_big(stack, path, size, sent)
        seconds = time.monotonic() - started
    after = rss_bytes(stack.gateway.pid)
    figures: dict[str, Any] = {
        "attachment_mb": args.big_mb, "package_bytes": size, "status": answer.status_code,
        "seconds": round(seconds, 2), "rss_before_mb": round(sending.before / 1e6, 1),
        "rss_peak_mb": round(sending.peak / 1e6, 1), "rss_after_mb": round(after / 1e6, 1),
        "growth_mb": sending.growth_mb}
    if answer.status_code != 202:
        figures["answer"] = answer.text[:500]
    else:
        figures.update(measure_fetch(stack, answer.json()["recipients"][0]["messageId"], sent.hexdigest()))
    path.unlink()
    figures.update(measure_push(stack, args))
    print(json.dumps({"big": figures}, indent=2), flush=True)
    return figures


def measure_push(stack: Stack, args: argparse.Namespace) -> dict[str, Any]:
    """A big package to a pushed recipient, under its own ``Peak`` from the send until Tuyên Quang's
    system (its simulator) holds it."""
    assert stack.gateway is not None
    path = stack.workdir / "big-push.edxml"
    size = big_package(path, args.big_mb, to=H60_OFFICE, number=7777778)
    log = (stack.workdir / "dms.log").open("ab")
    port = stack.dms.rsplit(":", 1)[1]
    simulator = subprocess.Popen([sys.executable, "-m", "connectors.dms.simulator", "--port", port],
                                 stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
                                 cwd=stack.workdir)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(f"{stack.dms}/_sim/received", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"the DMS simulator is not ready: see {stack.workdir / 'dms.log'}")
            time.sleep(0.1)
        sent = hashlib.sha256()
        time.sleep(1.0)
        held: list[dict[str, Any]] = []
        with Peak(stack.gateway.pid) as pushing:
            started = time.monotonic()
            answer = send_big(stack, path, size, sent)
            while answer.status_code == 202 and not held and time.monotonic() - started < 600:
                held = httpx.get(f"{stack.dms}/_sim/documents", timeout=10).json()["items"]
                time.sleep(0.05)
            seconds = time.monotonic() - started
        return {"push_status": answer.status_code, "push_seconds": round(seconds, 2),
                "push_identical": bool(held) and held[0].get("sha256") == sent.hexdigest(),
                "push_growth_mb": pushing.growth_mb}
    finally:
        simulator.terminate()
        simulator.wait(timeout=30)


def measure_fetch(stack: Stack, message: str, sha256: str) -> dict[str, Any]:
    """Nghệ An pulls the big package (its message, from the send's answer), read by the client in pieces."""
    assert stack.gateway is not None
    headers = {"Authorization": f"Bearer {stack.token(NA_DMS)}"}
    time.sleep(1.0)
    got = hashlib.sha256()
    with Peak(stack.gateway.pid) as fetching:
        started = time.monotonic()
        with httpx.stream("GET", f"{stack.base}/r1/{SERVICE}/messages/{message}", headers=headers,
                          timeout=600) as answer:
            for piece in answer.iter_bytes(MIB):
                got.update(piece)
        seconds = time.monotonic() - started
    return {"fetch_status": answer.status_code, "fetch_seconds": round(seconds, 2),
            "fetch_identical": got.hexdigest() == sha256, "fetch_growth_mb": fetching.growth_mb}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--big-mb", type=int, default=100)
    parser.add_argument("--database-url")
    parser.add_argument("--json", type=Path)
    parser.add_argument("--skip-rate", action="store_true")
    parser.add_argument("--skip-big", action="store_true")
    parser.add_argument("--keep", action="store_true", help="keep the work folder")
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="document-bench-"))
    stack = Stack(workdir, args.database_url, args.workers)
    results: dict[str, Any] = {}
    try:
        stack.start()
        if not args.skip_rate:
            results["rate"] = measure_rate(stack, args)
        if not args.skip_big:
            results["big"] = measure_big(stack, args)
    finally:
        stack.stop()
        if args.keep:
            print(f"work folder: {workdir}", file=sys.stderr)
        else:
            import shutil

            shutil.rmtree(workdir, ignore_errors=True)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
