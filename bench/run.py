"""Liên Thông benchmark: the gateway beside the upstream called directly and nginx, in one run.

    .venv/bin/python bench/run.py [--duration 10] [--connections 100] [--workers 2] [--only NAME ...]
                                  [--json out.json] [--profile] [--list]

Each target is probed once (its answer checked), warmed up with wrk, then measured with wrk, one
after another with the same duration, connections and threads. The table gives requests/s, p50 and
p99 latency, errors (non-2xx answers and socket errors, flagged loudly), and ratios to nginx and to
the upstream called directly. For gateway targets the audit log must have grown by one leaf per
exchange. Every process started here is stopped on the way out, Ctrl+C and errors included.
See bench/README.md and docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: import ``bench`` as a package, never its modules
    # as top-level ones; the repository goes last, so that a PYTHONPATH naming another copy of the
    # gateway (a snapshot of one commit) wins for ``gateway`` and ``connectors``.
    _here = Path(__file__).resolve().parent
    if sys.path and Path(sys.path[0] or ".").resolve() == _here:
        del sys.path[0]
    sys.path.append(str(_here.parent))

import httpx
import orjson
from rich.console import Console
from rich.table import Table

from bench import pyspy, wrk
from bench.targets import TARGETS, Bench, ServiceError, Target, busy_cores, cpu_sample, machine_busy

console = Console(highlight=False, width=None if sys.stdout.isatty() else 140)


@dataclass
class Outcome:
    target: Target
    status: str = "ok"  # ok | skipped | failed
    reason: str = ""
    warmup: wrk.WrkResult | None = None
    result: wrk.WrkResult | None = None
    audit: dict[str, Any] | None = None
    profile: dict[str, Any] | None = None
    background_busy: float | None = None  # % of the CPUs busy just before, with our processes idle
    cpu: dict[str, float] = field(default_factory=dict)  # cores used during the measured run
    attempts: int = 0  # measured runs made (more than one when other work disturbed the first)
    ratios: dict[str, float | None] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.target.name, "label": self.target.label, "group": self.target.group,
                "role": self.target.role, "description": self.target.description,
                "status": self.status, "reason": self.reason,
                "warmup": self.warmup.as_dict() if self.warmup else None,
                "result": self.result.as_dict() if self.result else None,
                "ratios": self.ratios, "audit": self.audit, "profile": self.profile,
                "background_busy_pct": self.background_busy, "cpu_cores": self.cpu,
                "attempts": self.attempts, "own_cpu_us_per_request": self.own_cpu_us()}

    def own_cpu_us(self) -> float | None:
        """CPU time the target's own process(es) spent per request, in microseconds."""
        own = self.cpu.get(self.target.own)
        return own / self.result.rps * 1e6 if own and self.result and self.result.rps else None


# --- machine ----------------------------------------------------------------------------------------

def _first_line(argv: list[str]) -> str:
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=10, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return "not found"
    text = (done.stdout or done.stderr).strip()
    return text.splitlines()[0] if text else "?"


def machine() -> dict[str, Any]:
    cpuinfo = Path("/proc/cpuinfo").read_text(errors="replace") if Path("/proc/cpuinfo").exists() else ""
    models = [line.split(":", 1)[1].strip() for line in cpuinfo.splitlines() if line.startswith("model name")]
    mem = ""
    if Path("/proc/meminfo").exists():
        total = Path("/proc/meminfo").read_text().splitlines()[0].split()[1]
        mem = f"{int(total) / 1024 / 1024:.1f} GiB"
    debian = Path("/etc/debian_version")
    from importlib.metadata import PackageNotFoundError, version

    def ver(dist: str) -> str:
        try:
            return version(dist)
        except PackageNotFoundError:
            return "-"

    nginx = shutil.which("nginx") or "/usr/sbin/nginx"
    import gateway

    source = Path(gateway.__file__).resolve().parent.parent
    commit_file = source / "COMMIT"  # what bench/README.md's snapshot recipe writes
    commit = commit_file.read_text().strip() if commit_file.exists() else _first_line(
        ["git", "-C", str(source), "rev-parse", "HEAD"])
    return {
        "gateway_source": str(source), "commit": commit,
        "nproc": os.cpu_count(), "usable_cpus": len(os.sched_getaffinity(0)),
        "cpu_model": models[0] if models else platform.processor() or "?",
        "memory": mem, "kernel": platform.release(),
        "os": f"Debian {debian.read_text().strip()}" if debian.exists() else platform.platform(),
        "python": platform.python_version(),
        "wrk": wrk.version() if shutil.which("wrk") else "not installed",
        "nginx": _first_line([nginx, "-v"]),
        "packages": {d: ver(d) for d in ("uvicorn", "uvloop", "httptools", "fastapi", "httpx", "aiohttp",
                                          "httpx-aiohttp", "sqlalchemy", "orjson", "zeep", "lxml")},
    }


# --- one target ---------------------------------------------------------------------------------------

def probe(request: wrk.HttpRequest) -> tuple[int, bytes]:
    r = httpx.request(request.method, request.url, headers=request.headers, content=request.body or None,
                      timeout=30)
    return r.status_code, r.content


def settle(bench: Bench, variant: str, timeout: float = 30.0) -> dict[str, int]:
    """The audit counts once they stop moving: leaves of abandoned requests may still be committing."""
    gw = bench.gateways[variant]
    last, stable = gw.audit_counts(), 0
    deadline = time.monotonic() + timeout
    while stable < 3 and time.monotonic() < deadline:
        time.sleep(0.3)
        now = gw.audit_counts()
        stable = stable + 1 if now == last else 0
        last = now
    return last


def audit_check(before: dict[str, int], after: dict[str, int], probes: int,
                runs: list[wrk.WrkResult]) -> dict[str, Any]:
    """Leaves appended against requests: at least every completed one, at most every one sent."""
    added = after["size"] - before["size"]
    completed = probes + sum(r.requests for r in runs)
    sent = probes + sum(r.sent if r.sent is not None else r.requests for r in runs)
    ok = completed <= added <= sent and after["rows"] == after["size"]
    return {"leaves_added": added, "completed": completed, "sent": sent,
            "abandoned_by_wrk": sent - completed, "leaves_beyond_completed": added - completed,
            "not_ok_added": after["not_ok"] - before["not_ok"], "head_matches_rows":
            after["rows"] == after["size"], "size_after": after["size"], "ok": ok}


def measure(bench: Bench, target: Target, args: argparse.Namespace, scratch: Path) -> Outcome:
    outcome = Outcome(target)
    reason = target.available()
    if reason:
        outcome.status, outcome.reason = "skipped", reason
        return outcome
    for need in target.needs:
        bench.ensure(need)
    request = target.request(bench)
    variant = target.gateway
    before = settle(bench, variant) if variant else None
    outcome.background_busy = quiet(args.wait_idle)
    status, body = probe(request)
    problem = target.check(status, body) if target.check else None
    if problem:
        outcome.status, outcome.reason = "failed", f"probe: {problem}"
        return outcome
    script = scratch / f"{target.name}.lua"
    console.print(f"[bold]{target.label}[/]: {request.method} {request.url} "
                  f"({len(request.body)} bytes); warm-up {args.warmup:g} s, then {args.duration:g} s")
    runs: list[wrk.WrkResult] = []
    if args.warmup > 0:
        outcome.warmup = wrk.run(request, script, duration=args.warmup, connections=args.connections,
                                 threads=args.threads, timeout=args.timeout)
        runs.append(outcome.warmup)
    spy = None
    if args.profile and variant:
        workers = bench.worker_pids(f"gateway:{variant}")
        if workers:
            raw = args.profile_dir / f"{target.name}-{workers[0]}.txt"
            spy = (pyspy.start(workers[0], raw, args.duration - 1), raw, workers[0])
            time.sleep(0.5)  # attach before the load starts
    for attempt in range(1 + (0 if spy is not None else args.retry_busy)):
        if attempt:
            console.print(f"[yellow]  other work used {_foreign(outcome.cpu):.1f} cores during the run: "
                          f"measuring again ({attempt}/{args.retry_busy})[/]")
            quiet(args.wait_idle)
        result, cpu = measured_run(bench, request, script, args)
        runs.append(result)
        if outcome.result is None or _foreign(cpu) < _foreign(outcome.cpu):
            outcome.result, outcome.cpu = result, cpu  # the least disturbed run is the one reported
        outcome.attempts = attempt + 1
        if _foreign(cpu) <= OTHER_LOAD:
            break
    if spy is not None:
        outcome.profile = finish_profile(*spy)
    if variant and before is not None:
        outcome.audit = audit_check(before, settle(bench, variant), 1, runs)
    return outcome


def measured_run(bench: Bench, request: wrk.HttpRequest, script: Path,
                 args: argparse.Namespace) -> tuple[wrk.WrkResult, dict[str, float]]:
    """One measured wrk run, and the cores each of our processes used meanwhile, beside the rest."""
    cpu0, wrk0, machine0, t0 = bench.cpu_seconds(), _children_cpu(), cpu_sample(), time.monotonic()
    result = wrk.run(request, script, duration=args.duration, connections=args.connections,
                     threads=args.threads, timeout=args.timeout)
    elapsed = time.monotonic() - t0
    cpu1, machine1 = bench.cpu_seconds(), cpu_sample()
    cpu = {name: (cpu1[name] - cpu0.get(name, 0.0)) / elapsed for name in cpu1}
    cpu["wrk"] = (_children_cpu() - wrk0) / elapsed
    machine = busy_cores(machine0, machine1)
    ours = sum(cpu.values())
    # Processes' time beyond ours (py-spy when profiling, or someone else's work), the kernel's
    # interrupt time (loopback TCP), and time the hypervisor gave other guests.
    cpu.update(other=max(0.0, machine["processes"] - ours), irq=machine["irq"], steal=machine["steal"])
    return result, cpu


def _foreign(cpu: dict[str, float]) -> float:
    return cpu.get("other", 0.0) + cpu.get("steal", 0.0)


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)  # reaped children: wrk, once it is done
    return usage.ru_utime + usage.ru_stime


BUSY = 10.0  # % of the CPUs: above it, something else is running on the machine


def quiet(wait: float) -> float:
    """How busy the machine is with our processes idle; waits up to ``wait`` s for it to calm down."""
    deadline = time.monotonic() + wait
    busy = machine_busy()
    while busy > BUSY and time.monotonic() < deadline:
        busy = machine_busy()
    if busy > BUSY:
        console.print(f"[bold yellow]!! the machine is {busy:.0f}% busy before this target, with the "
                      f"benchmark's processes idle: something else is running, figures will be low[/]")
    return busy


def finish_profile(proc: subprocess.Popen[bytes] | None, raw: Path, pid: int) -> dict[str, Any]:
    if proc is None:
        return {"error": "py-spy is not installed (.venv/bin/pip install py-spy)"}
    try:
        _, err = proc.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        proc.kill()
        _, err = proc.communicate()
    if proc.returncode != 0 or not raw.exists():
        return {"error": f"py-spy failed ({proc.returncode}): {err.decode(errors='replace')[-500:]}"}
    s = pyspy.summarise(raw)
    return {"pid": pid, "raw": str(raw), "samples": s.samples, "threads": dict(s.by_thread),
            "self": s.top(s.self_time, 25), "inclusive": s.top(s.inclusive, 40),
            "packages": s.top(s.packages, 15),
            "components": {thread: [(name, n, 100 * n / max(1, sum(c.values())))
                                    for name, n in c.most_common()]
                           for thread, c in s.components.items()}}


# --- report -------------------------------------------------------------------------------------------

def ratios(outcomes: list[Outcome]) -> None:
    refs: dict[tuple[str, str], float] = {}
    for o in outcomes:
        if o.result is not None and o.target.role in ("upstream", "nginx"):
            refs[(o.target.group, o.target.role)] = o.result.rps
    for o in outcomes:
        if o.result is None:
            continue
        for role in ("nginx", "upstream"):
            ref = refs.get((o.target.group, role))
            o.ratios[role] = o.result.rps / ref if ref else None


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}" if value < 100 else f"{value:.0f}"


OTHER_LOAD = 0.25  # cores of work not ours during a measured run: the figure is suspect


def report(outcomes: list[Outcome], args: argparse.Namespace) -> int:
    """Print the table and the checks; the number of problems found."""
    problems = 0
    problems_noted: list[str] = []
    table = Table(title=f"wrk -t{args.threads} -c{args.connections} -d{args.duration:g}s, "
                        f"{args.workers} workers (gateway and nginx)", title_justify="left")
    for col, just in [("target", "left"), ("req/s", "right"), ("p50 ms", "right"), ("p99 ms", "right"),
                      ("errors", "right"), ("CPU µs/req", "right"), ("× nginx", "right"),
                      ("× upstream", "right"), ("audit", "left")]:
        table.add_column(col, justify=just)  # type: ignore[arg-type]
    for o in outcomes:
        if o.result is None:
            table.add_row(o.target.label, f"[bold red]{o.status.upper()}[/]", "", "", "", "", "", "",
                          "", style="red" if o.status == "failed" else "dim")
            problems += o.status == "failed"
            continue
        r = o.result
        errors = f"[bold red]{r.errors} !![/]" if r.errors else "0"
        audit = "-"
        if o.audit is not None:
            audit = "ok" if o.audit["ok"] else "[bold red]MISMATCH[/]"
            problems += not o.audit["ok"]
        problems += bool(r.errors)
        ratio = {k: "-" if v is None else f"{v:.3f}×" if v < 0.1 else f"{v:.2f}×"
                 for k, v in o.ratios.items()}
        label = o.target.label
        foreign = _foreign(o.cpu)
        if foreign > OTHER_LOAD:
            label += f" [yellow](+{foreign:.1f} cores not ours)[/]"
        cost_us = o.own_cpu_us()
        cost = "-" if cost_us is None else f"{cost_us:,.0f}"
        table.add_row(label, f"{r.rps:,.0f}", _ms(r.p50), _ms(r.p99), errors, cost,
                      ratio.get("nginx", "-"), ratio.get("upstream", "-"), audit,
                      style="red" if r.errors else None)
    console.print(table)
    for o in outcomes:
        if o.status != "ok":
            colour = "red" if o.status == "failed" else "yellow"
            console.print(f"[{colour}]{o.target.label}: {o.status}: {o.reason}[/]")
        if o.result is not None and o.result.errors:
            r = o.result
            console.print(f"[bold red]!! {o.target.label}: {r.errors} errors of {r.requests} requests "
                          f"(non-2xx {r.non_2xx}, sockets {r.socket_errors}): its figures are not "
                          f"those of a working exchange[/]")
        if o.cpu:
            ours = {k: v for k, v in o.cpu.items() if k not in ("other", "irq", "steal")}
            used = ", ".join(f"{k} {v:.2f}" for k, v in sorted(ours.items(), key=lambda kv: -kv[1]))
            other = _foreign(o.cpu)
            tries = f"; least disturbed of {o.attempts} runs" if o.attempts > 1 else ""
            colour = "bold yellow" if other > OTHER_LOAD else "default"
            console.print(f"cpu {o.target.label}, cores: {used}; interrupts {o.cpu.get('irq', 0):.2f}, "
                          f"[{colour}]others {o.cpu.get('other', 0):.2f} + stolen "
                          f"{o.cpu.get('steal', 0):.2f}[/] (machine {o.background_busy:.0f}% busy "
                          f"just before{tries})")
            if other > OTHER_LOAD:
                problems_noted.append(o.target.label)
        if o.audit is not None:
            a = o.audit
            colour = "green" if a["ok"] else "bold red"
            console.print(
                f"[{colour}]audit {o.target.label}: {a['leaves_added']} leaves added for "
                f"{a['completed']} completed requests (probe + warm-up + run) and {a['sent']} sent; "
                f"{a['abandoned_by_wrk']} were in flight when wrk stopped, "
                f"{a['leaves_beyond_completed']} of them audited; "
                f"{'OK' if a['ok'] else 'MISMATCH: not every exchange has exactly one leaf'}[/]")
    if problems_noted:
        console.print(f"[bold yellow]!! other work used the CPUs during: {', '.join(problems_noted)}; "
                      f"run again on a quiet machine (--wait-idle helps) before quoting them[/]")
    return problems


def print_profile(o: Outcome) -> None:
    p = o.profile
    if not p:
        return
    if "error" in p:
        console.print(f"[yellow]profile {o.target.label}: {p['error']}[/]")
        return
    console.print(f"\n[bold]profile of {o.target.label}[/], worker pid {p['pid']}: {p['samples']} samples "
                  f"({p['raw']})  threads: {p['threads']}")
    for thread, rows in p["components"].items():
        table = Table(title=f"thread {thread}: where its samples went", title_justify="left")
        table.add_column("component")
        table.add_column("samples", justify="right")
        table.add_column("% of thread", justify="right")
        for name, count, pct in rows:
            table.add_row(name, str(count), f"{pct:.1f}")
        console.print(table)
    for title, key, n in (("self time by package", "packages", 15), ("self time", "self", 25),
                          ("inclusive", "inclusive", 40)):
        table = Table(title=title, title_justify="left")
        table.add_column("function" if key != "packages" else "package")
        table.add_column("samples", justify="right")
        table.add_column("%", justify="right")
        for name, count, pct in p[key][:n]:
            table.add_row(name, str(count), f"{pct:.1f}")
        console.print(table)


# --- main -----------------------------------------------------------------------------------------------

def _interrupt(signum: int, _frame: Any) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    names = [t.name for t in TARGETS]
    p = argparse.ArgumentParser(prog="bench/run.py", description=__doc__.split("\n\n", 1)[0])
    p.add_argument("--duration", type=float, default=10, help="seconds measured per target (10)")
    p.add_argument("--warmup", type=float, default=2, help="seconds of warm-up per target (2)")
    p.add_argument("--connections", type=int, default=100, help="wrk connections (100)")
    p.add_argument("--threads", type=int, default=2, help="wrk threads (2)")
    p.add_argument("--workers", type=int, default=2, help="gateway workers and nginx worker_processes (2)")
    p.add_argument("--timeout", default="5s", help="wrk's socket timeout; slower answers count as "
                   "errors (5s)")
    p.add_argument("--only", nargs="+", choices=names, metavar="NAME",
                   help=f"run only these targets, in the table's order: {', '.join(names)}")
    p.add_argument("--json", type=Path, help="also write every figure to this JSON file")
    p.add_argument("--profile", action="store_true",
                   help="sample one gateway worker with py-spy during the measured run of gateway "
                        "targets (costs the machine some CPU: do not quote those figures)")
    p.add_argument("--profile-dir", type=Path, default=None, help="where py-spy's stacks go (the "
                   "current folder)")
    p.add_argument("--wait-idle", type=float, default=0, metavar="SECONDS",
                   help="before each target, wait up to this long for the machine to be idle (other "
                        "processes under 10%% of the CPUs); the load found is reported either way")
    p.add_argument("--retry-busy", type=int, default=0, metavar="N",
                   help="measure a target again, up to N more times, when other work used more than "
                        f"{OTHER_LOAD} cores during its run; the least disturbed run is reported")
    p.add_argument("--keep", action="store_true", help="keep the temporary folder (configs, logs, db)")
    p.add_argument("--list", action="store_true", help="list the targets and exit")
    args = p.parse_args(argv)
    if args.duration < 1 or args.connections < 1 or args.threads < 1 or args.workers < 1:
        p.error("--duration, --connections, --threads and --workers must be at least 1")
    if args.connections < args.threads:
        p.error("wrk needs at least one connection per thread")
    args.profile_dir = (args.profile_dir or Path.cwd()).resolve()
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.list:
        for t in TARGETS:
            console.print(f"{t.name:20} {t.label:22} {t.description}")
        return 0
    chosen = [t for t in TARGETS if not args.only or t.name in args.only]
    info = machine()
    console.print(f"[bold]machine[/]: {info['nproc']} CPUs ({info['usable_cpus']} usable), "
                  f"{info['cpu_model']}, {info['memory']}, {info['os']}, kernel {info['kernel']}")
    console.print(f"python {info['python']}, {info['wrk']}, {info['nginx']}")
    console.print(f"gateway from {info['gateway_source']} (commit {info['commit']})")
    try:
        wrk.find_wrk()
    except RuntimeError as exc:
        console.print(f"[bold red]{exc}[/]")
        return 2
    if args.profile:
        args.profile_dir.mkdir(parents=True, exist_ok=True)
    previous = signal.signal(signal.SIGTERM, _interrupt)
    root = Path(tempfile.mkdtemp(prefix="lienthong-bench-"))
    bench: Bench | None = None
    outcomes: list[Outcome] = []
    interrupted = False
    started = dt.datetime.now(dt.UTC)
    try:
        bench = Bench(root, workers=args.workers)
        scratch = root / "wrk"
        scratch.mkdir()
        for i, target in enumerate(chosen):
            try:
                outcomes.append(measure(bench, target, args, scratch))
            except (ServiceError, RuntimeError, httpx.HTTPError) as exc:
                outcomes.append(Outcome(target, "failed", f"{type(exc).__name__}: {exc}"))
            # Stop what no later target needs, so that idle processes do not share the CPUs.
            later = {need for t in chosen[i + 1:] for need in t.needs}
            for name in list(bench.procs):
                if name not in later:
                    bench.stop(name)
    except KeyboardInterrupt:
        interrupted = True
        console.print("[bold red]interrupted: stopping everything started; what was measured "
                      "follows[/]")
    finally:
        if bench is not None:
            bench.stop_all()
        signal.signal(signal.SIGTERM, previous)
        if args.keep:
            console.print(f"kept {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)
    ratios(outcomes)
    problems = report(outcomes, args)
    for o in outcomes:
        print_profile(o)
    if args.json:
        data = {"started": started.isoformat(timespec="seconds"), "machine": info,
                "command": " ".join([Path(sys.executable).name, *sys.argv]),
                "settings": {"duration": args.duration, "warmup": args.warmup,
                             "connections": args.connections, "threads": args.threads,
                             "workers": args.workers, "timeout": args.timeout},
                "targets": [o.as_dict() for o in outcomes], "problems": problems,
                "interrupted": interrupted}
        args.json.write_bytes(orjson.dumps(data, option=orjson.OPT_INDENT_2))
        console.print(f"wrote {args.json}")
    if problems:
        console.print(f"[bold red]{problems} problem(s): see above[/]")
    if interrupted:
        return 130
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
