"""What the benchmark measures: the targets, and the processes they need (simulators, nginx, gateways).

A target is a row of the table: a request shape (``HttpRequest``) aimed at something that runs on
loopback, the services that must be up for it, the group whose references (upstream called directly,
nginx in front of it) its ratios are taken against, and, for a gateway, which audit log to check.
Adding a target is adding a ``Target`` to ``TARGETS``; a new kind of process is a new entry in
``SERVICES``.

Everything runs from one temporary folder: ``gateway.init.initialise`` writes the configuration, keys,
policies and client secrets there, and each gateway variant gets its own configuration file and its
own fresh SQLite database beside it.

Two upstreams are measured: the simulators (real servers, with their own cost) and, as issue 17 sets,
nginx answering fixed bytes (``fixed``: the simulators' own answers to the bench's requests, captured
once), so that the upstream is never the bottleneck. Each has nginx as a plain reverse proxy in front
of it as the reference, and the gateway in front of it (variant ``fixed`` for the second).
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import orjson
import yaml

from bench.wrk import HttpRequest
from gateway.init import NGHE_AN, POPULATION, PORTAL, Ports, initialise
from gateway.simulation import free_port, wait_listening

ECHO_SERVICE = f"{NGHE_AN}/DANHMUC/echo"
ECHO_CLIENT = f"{NGHE_AN}/MOTCUA"
VERIFY_SERVICE = f"{POPULATION}/CSDLDC/XacThucThongTinCongDan"
VERIFY_CLIENT = f"{PORTAL}/DVCQG"
USER_ID = "canbo.nguyenvanan"
ISSUE = "000.00.41.H41-261122-0001"
TOKEN_LIFETIME = 3600
SEED = 2026  # the simulators' default seed: the citizen below exists in theirs


# --- request bodies -------------------------------------------------------------------------------

def echo_body(size: int = 1024) -> bytes:
    """A JSON document of exactly ``size`` bytes, shaped like a dossier a one-stop system sends."""
    doc: dict[str, Any] = {
        "MaHoSo": ISSUE, "MaTTHC": "1.001612", "TenTTHC": "Đăng ký khai sinh",
        "NgayTiepNhan": "20261122083000", "TrangThaiHoSo": "2",
        "ChuHoSo": {"HoVaTen": "Nguyễn Thị Lan", "SoDinhDanh": "040196001234", "NgaySinh": "19960312",
                    "DiaChi": "Phường Hưng Bình, Thành phố Vinh, Tỉnh Nghệ An",
                    "SoDienThoai": "0912345678", "Email": "lan.nguyen@example.vn"},
        "TaiLieu": [{"TenTepDinhKem": f"giay-to-{i}.pdf", "MaThanhPhan": f"TP{i:03d}",
                     "DuongDan": f"https://motcua.nghean.example.vn/tep/{i}"} for i in range(1, 4)],
        "GhiChu": "",
    }
    bare = len(orjson.dumps(doc))
    if bare > size:
        raise ValueError(f"the body cannot be as small as {size} bytes")
    doc["GhiChu"] = "x" * (size - bare)
    body = orjson.dumps(doc)
    assert len(body) == size
    return body


@dataclass(frozen=True)
class Citizen:
    so_dinh_danh: str
    ho_va_ten: str
    ngay_sinh: str
    so_cmnd: str = ""


def known_citizen() -> Citizen:
    from connectors.population.data import citizens

    person = next(iter(citizens(count=1000, seed=SEED).values())).person
    return Citizen(person.so_dinh_danh, person.ho_va_ten, person.ngay_sinh, person.so_cmnd)


def verify_payload(citizen: Citizen) -> dict[str, str]:
    """The JSON a client sends for XacThucThongTinCongDan (MaYeuCau and MaCanBo the gateway fills)."""
    return {"MaDichVu": "1.001612", "SoDinhDanh": citizen.so_dinh_danh, "SoCMND": citizen.so_cmnd,
            "HoVaTen": citizen.ho_va_ten}


def verify_envelope(citizen: Citizen) -> tuple[bytes, str]:
    """The SOAP envelope the gateway's connector writes for the same call, and its SOAPAction."""
    from connectors.population import WSDL
    from gateway.resources import schemas_dir
    from gateway.soap import envelope as soap
    from gateway.xml.contract import load_contract

    operation = load_contract(schemas_dir() / WSDL).operations["XacThucThongTinCongDan"]
    payload = {"MaYeuCau": "0123456789abcdef0123456789abcdef", "MaCanBo": USER_ID,
               **verify_payload(citizen)}
    root, header, body = soap.build(operation.input.nsmap)
    root.remove(header)
    operation.input.to_xml(payload, body)
    return soap.serialise(root), f'"{operation.action}"'


def population_available() -> str | None:
    """None when the population connector and simulator can be loaded, else why not."""
    try:
        from gateway import plugins

        plugins.load(plugins.CONNECTORS, "population")
        plugins.load(plugins.SIMULATORS, "population")
        verify_envelope(known_citizen())
    except Exception as exc:
        return f"population connector or simulator unusable: {type(exc).__name__}: {exc}"
    return None


# --- processes ------------------------------------------------------------------------------------

@dataclass
class Proc:
    name: str
    popen: subprocess.Popen[bytes]
    log: Path

    def tail(self, chars: int = 3000) -> str:
        try:
            return self.log.read_text(errors="replace")[-chars:]
        except OSError:
            return ""


class ServiceError(RuntimeError):
    pass


@dataclass
class Gateway:
    variant: str  # upstream transport: aiohttp | httpx
    config: Path
    database: Path
    port: int
    tokens: dict[str, str] = field(default_factory=dict)

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def audit_counts(self) -> dict[str, int]:
        """Size of the audit log (the sequencer's head) and leaves that are not outcome ok."""
        with contextlib.closing(sqlite3.connect(f"file:{self.database}?mode=ro", uri=True,
                                                timeout=30)) as conn:
            size = conn.execute("SELECT size FROM audit_head WHERE id = 1").fetchone()[0]
            rows = conn.execute("SELECT count(*) FROM audit_leaves").fetchone()[0]
            not_ok = conn.execute("SELECT count(*) FROM audit_leaves WHERE outcome != 'ok'").fetchone()[0]
        return {"size": int(size), "rows": int(rows), "not_ok": int(not_ok)}


class Bench:
    """The temporary folder, the ports, and the processes started for the targets (stopped on exit)."""

    GATEWAYS = ("aiohttp", "httpx", "fixed")  # fixed: aiohttp, echo and verify on the fixed upstream

    def __init__(self, root: Path, *, workers: int) -> None:
        self.root = root
        self.workers = workers
        self.ports = Ports(gateway=free_port(), population=free_port(), dvcqg=free_port(),
                           onestop=free_port(), rest=free_port())
        self.nginx_ports = {"rest": free_port(), "population": free_port()}
        # The fixed upstream's ports (echo, verify) and those of nginx in front of it.
        self.fixed_ports = {"rest": free_port(), "population": free_port()}
        self.fixed_proxy_ports = {"rest": free_port(), "population": free_port()}
        init = initialise(root / "gateway", ports=self.ports)
        self.config = init.config_path
        self.secrets = init.secrets
        self.gateways: dict[str, Gateway] = {}
        for variant in self.GATEWAYS:
            port = self.ports.gateway if variant == "aiohttp" else free_port()
            self.gateways[variant] = self._gateway_config(variant, port)
        self.procs: dict[str, Proc] = {}
        self.python = sys.executable
        self._citizen: Citizen | None = None

    @property
    def citizen(self) -> Citizen:
        if self._citizen is None:
            self._citizen = known_citizen()
        return self._citizen

    def _gateway_config(self, variant: str, port: int) -> Gateway:
        data = yaml.safe_load(self.config.read_text(encoding="utf-8"))
        database = self.config.parent / f"audit-{variant}.db"
        data["database"] = f"sqlite:///{database.name}"
        data["listen"]["port"] = port
        data["token"]["lifetime"] = TOKEN_LIFETIME
        data["upstream"] = {"transport": "httpx" if variant == "httpx" else "aiohttp"}
        if variant == "fixed":
            fixed = {ECHO_SERVICE: f"http://127.0.0.1:{self.fixed_ports['rest']}/echo",
                     VERIFY_SERVICE: f"http://127.0.0.1:{self.fixed_ports['population']}/dancu"}
            for service in data["services"]:
                if service["id"] in fixed:
                    service["upstream"] = fixed[service["id"]]
        path = self.config.parent / f"config-{variant}.yaml"
        path.write_text(yaml.safe_dump(data, allow_unicode=True, sort_keys=False), encoding="utf-8")
        return Gateway(variant, path, database, port)

    def ensure(self, name: str) -> None:
        if name not in self.procs:
            starter = SERVICES.get(name)
            if starter is None:
                raise ServiceError(f"no such service: {name}")
            starter(self)

    def _spawn(self, name: str, argv: list[str], ready: Callable[[], bool], timeout: float = 60) -> Proc:
        log = self.root / f"{name.replace(':', '-')}.log"
        popen = subprocess.Popen(argv, stdout=log.open("wb"), stderr=subprocess.STDOUT,
                                 stdin=subprocess.DEVNULL, start_new_session=True, cwd=self.root)
        proc = self.procs[name] = Proc(name, popen, log)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if popen.poll() is not None:
                raise ServiceError(f"{name} exited ({popen.returncode}) while starting:\n{proc.tail()}")
            with contextlib.suppress(httpx.HTTPError, OSError):
                if ready():
                    return proc
            time.sleep(0.1)
        raise ServiceError(f"{name} was not ready within {timeout:.0f} s:\n{proc.tail()}")

    def stop(self, name: str) -> None:
        proc = self.procs.pop(name, None)
        if proc is None:
            return
        # Each process leads its own session (start_new_session): the group is it and its children
        # (uvicorn's workers, nginx's workers), nothing else.
        pgid = proc.popen.pid
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pgid, signal.SIGTERM)
        try:
            proc.popen.wait(timeout=20)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pgid, signal.SIGKILL)
            proc.popen.wait(timeout=10)
        time.sleep(0.1)
        with contextlib.suppress(ProcessLookupError):  # a worker that outlived its parent
            os.killpg(pgid, signal.SIGKILL)

    def stop_all(self) -> None:
        for name in reversed(list(self.procs)):
            try:
                self.stop(name)
            except Exception as exc:  # keep stopping the others
                print(f"warning: could not stop {name}: {exc}", file=sys.stderr)

    def pid_of(self, name: str) -> int:
        return self.procs[name].popen.pid

    def cpu_seconds(self) -> dict[str, float]:
        """CPU time (user + system) used so far by each running service, its children included."""
        out = {}
        for name, proc in self.procs.items():
            pids = [proc.popen.pid]
            for pid in pids:  # grows while walking: children, then theirs
                pids.extend(_children(pid))
            out[name] = sum(_cpu_of(pid) for pid in pids)
        return out

    # -- the services ----------------------------------------------------------------------------------

    def start_simulator(self, kind: str) -> None:
        port = getattr(self.ports, kind)
        self._spawn(f"sim:{kind}", [self.python, "-m", "gateway", "simulators", "--config",
                                    str(self.config), "--only", kind],
                    lambda: httpx.get(f"http://127.0.0.1:{port}/_sim/received", timeout=2).status_code == 200)
        if kind == "rest":  # the upstream should cost as little as it can: no record of each echo
            httpx.post(f"http://127.0.0.1:{port}/_sim/mode", json={"record": False},
                       timeout=5).raise_for_status()

    def start_nginx(self) -> None:
        """nginx as a plain reverse proxy to the simulators."""
        self._nginx("nginx", self.workers, "".join(
            _proxy_block(name, self.nginx_ports[name], port)
            for name, port in {"rest": self.ports.rest, "population": self.ports.population}.items()))

    def start_fixed(self) -> None:
        """nginx answering every request with the bytes the simulators answer the bench's requests
        (captured from them once, then stopped): an upstream that costs next to nothing."""
        answers = self._captured_answers()
        self._nginx("fixed", 1, "".join(
            _fixed_block(self.fixed_ports[name], content_type, body)
            for name, (content_type, body) in answers.items()))

    def start_fixed_proxy(self) -> None:
        """nginx as a plain reverse proxy to the fixed upstream: the reference of issue 17."""
        self._nginx("nginx-fixed", self.workers, "".join(
            _proxy_block(f"fixed_{name}", self.fixed_proxy_ports[name], port)
            for name, port in self.fixed_ports.items()))

    def _captured_answers(self) -> dict[str, tuple[str, bytes]]:
        """What the simulators answer the bench's echo and verify requests: (content type, body)."""
        answers: dict[str, tuple[str, bytes]] = {}
        for name, build in (("rest", _echo_direct), ("population", _soap(lambda b: b.ports.population))):
            started = f"sim:{name}" not in self.procs
            self.ensure(f"sim:{name}")
            request = build(self)
            r = httpx.request(request.method, request.url, headers=request.headers, content=request.body,
                              timeout=30)
            r.raise_for_status()
            answers[name] = (r.headers.get("content-type", "application/octet-stream"), r.content)
            if started:
                self.stop(f"sim:{name}")
        return answers

    def _nginx(self, name: str, workers: int, blocks: str) -> None:
        nginx = shutil.which("nginx") or next(
            (p for p in ("/usr/sbin/nginx", "/usr/local/sbin/nginx") if Path(p).exists()), None)
        if nginx is None:
            raise ServiceError("nginx is not installed: bash scripts/bench-tools.sh")
        prefix = self.root / name
        prefix.mkdir(exist_ok=True)
        for sub in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"):
            (prefix / sub).mkdir(exist_ok=True)
        # nginx's workers drop to an unprivileged user when the master runs as root.
        for path in (self.root, prefix, *prefix.iterdir()):
            path.chmod(0o755)
        conf = prefix / "nginx.conf"
        conf.write_text(f"""# written by bench/targets.py
worker_processes {workers};
daemon off;
pid {prefix}/nginx.pid;
error_log {prefix}/error.log warn;
events {{
    worker_connections 4096;
}}
http {{
    access_log off;
    keepalive_requests 1000000;
    client_body_temp_path {prefix}/client_body;
    proxy_temp_path {prefix}/proxy;
    fastcgi_temp_path {prefix}/fastcgi;
    uwsgi_temp_path {prefix}/uwsgi;
    scgi_temp_path {prefix}/scgi;
{blocks}}}
""", encoding="utf-8")
        test = subprocess.run([nginx, "-t", "-p", str(prefix), "-c", str(conf)], capture_output=True,
                              text=True, timeout=30, check=False)
        if test.returncode != 0:
            raise ServiceError(f"nginx rejected its configuration:\n{test.stderr}")
        ports = [int(p) for p in re.findall(r"listen 127\.0\.0\.1:(\d+)", blocks)]

        def ready() -> bool:
            for port in ports:
                with socket.create_connection(("127.0.0.1", port), timeout=1):
                    pass
            return True

        self._spawn(name, [nginx, "-p", str(prefix), "-c", str(conf)], ready)

    def start_gateway(self, variant: str) -> None:
        gw = self.gateways[variant]
        self._spawn(f"gateway:{variant}", [self.python, "-m", "gateway", "serve", "--config",
                                           str(gw.config), "--workers", str(self.workers)],
                    lambda: httpx.get(f"{gw.base}/readyz", timeout=2).status_code == 200, timeout=90)
        wait_listening(gw.port, self.workers)
        for client in (ECHO_CLIENT, VERIFY_CLIENT):
            r = httpx.post(f"{gw.base}/oauth/token", data={"grant_type": "client_credentials"},
                           auth=(client, self.secrets[client]), timeout=30)
            if r.status_code != 200:
                raise ServiceError(f"gateway {variant}: no token for {client}: {r.status_code} {r.text}")
            gw.tokens[client] = r.json()["access_token"]

    def worker_pids(self, name: str) -> list[int]:
        """uvicorn's worker processes under service ``name`` (children running multiprocessing's spawn),
        or the service's own process when it runs one worker in-process."""
        pids = []
        for pid in _children(self.pid_of(name)):
            with contextlib.suppress(OSError):
                cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
                if b"spawn_main" in cmdline:
                    pids.append(pid)
        return pids or [self.pid_of(name)]


def _proxy_block(name: str, listen: int, upstream: int) -> str:
    return f"""
    upstream {name} {{
        server 127.0.0.1:{upstream};
        keepalive 64;
        keepalive_requests 1000000;
    }}
    server {{
        listen 127.0.0.1:{listen} backlog=4096;
        location / {{
            proxy_pass http://{name};
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }}
    }}
"""


def _fixed_block(listen: int, content_type: str, body: bytes) -> str:
    text = body.decode("utf-8")
    if any(c in text for c in "'$\\"):  # nginx's string syntax: would need escapes it lacks
        raise ServiceError(f"the fixed answer holds a character nginx's return cannot carry: {text[:80]!r}")
    return f"""
    server {{
        listen 127.0.0.1:{listen} backlog=4096;
        client_max_body_size 16m;
        location / {{
            default_type "{content_type}";
            return 200 '{text}';
        }}
    }}
"""


_TICKS = os.sysconf("SC_CLK_TCK")


def _cpu_of(pid: int) -> float:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / _TICKS  # utime, stime


_STAT = ("user", "nice", "system", "idle", "iowait", "irq", "softirq", "steal")


def cpu_sample() -> dict[str, int]:
    """Jiffies of all CPUs from /proc/stat, by kind."""
    values = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:9]]
    return dict(zip(_STAT, values, strict=True))


def busy_cores(before: dict[str, int], after: dict[str, int]) -> dict[str, float]:
    """CPUs' worth of work the machine did between two ``cpu_sample`` calls: ``processes`` (user and
    system time, what per-process accounting sees), ``irq`` (interrupts, mostly loopback TCP) and
    ``steal`` (taken by the hypervisor for other guests)."""
    delta = {k: after[k] - before[k] for k in _STAT}
    scale = len(os.sched_getaffinity(0)) / max(1, sum(delta.values()))
    return {"processes": (delta["user"] + delta["nice"] + delta["system"]) * scale,
            "irq": (delta["irq"] + delta["softirq"]) * scale, "steal": delta["steal"] * scale}


def machine_busy(seconds: float = 1.0) -> float:
    """How busy the machine's CPUs were over ``seconds``, in percent."""
    before = cpu_sample()
    time.sleep(seconds)
    return 100.0 * sum(busy_cores(before, cpu_sample()).values()) / len(os.sched_getaffinity(0))


def _children(pid: int) -> list[int]:
    out: list[int] = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        with contextlib.suppress(OSError):
            out.extend(int(p) for p in (task / "children").read_text().split())
    return out


# The services a target may need: name -> how to start it.
SERVICES: dict[str, Callable[[Bench], None]] = {
    "sim:rest": lambda b: b.start_simulator("rest"),
    "sim:population": lambda b: b.start_simulator("population"),
    "nginx": Bench.start_nginx,
    "fixed": Bench.start_fixed,
    "nginx-fixed": Bench.start_fixed_proxy,
    "gateway:aiohttp": lambda b: b.start_gateway("aiohttp"),
    "gateway:httpx": lambda b: b.start_gateway("httpx"),
    "gateway:fixed": lambda b: b.start_gateway("fixed"),
}


# --- targets --------------------------------------------------------------------------------------

Check = Callable[[int, bytes], str | None]


@dataclass(frozen=True)
class Target:
    name: str  # what --only takes
    label: str  # the table's row
    group: str  # ratios are taken against the "upstream" and "nginx" targets of the same group
    role: str  # "upstream" | "nginx" | "gateway"
    needs: tuple[str, ...]  # services, started in this order
    request: Callable[[Bench], HttpRequest]
    gateway: str | None = None  # the variant whose audit log must hold one leaf per exchange
    own: str = ""  # the service whose CPU time is this target's cost per request
    check: Check | None = None  # on the probe's answer: None if right, else what is wrong
    available: Callable[[], str | None] = lambda: None
    description: str = ""


def _json_headers() -> dict[str, str]:
    return {"Content-Type": "application/json"}


def exchange_headers(token: str, client: str | None = None) -> dict[str, str]:
    """What a client sends with an exchange: JSON and its bearer token, and with ``client`` the
    X-Road headers naming the client, the acting official and the purpose."""
    headers = {"Content-Type": "application/json", "Authorization": f"Bearer {token}"}
    if client is not None:
        headers |= {"X-Road-Client": client, "X-Road-UserId": USER_ID, "X-Road-Issue": ISSUE}
    return headers


def _exchange_headers(bench: Bench, variant: str, client: str) -> dict[str, str]:
    return exchange_headers(bench.gateways[variant].tokens[client], client)


def _echoed(status: int, body: bytes) -> str | None:
    if status != 200:
        return f"HTTP {status}: {body[:300]!r}"
    try:
        echoed = orjson.loads(body).get("json")
    except (orjson.JSONDecodeError, AttributeError):
        return f"not the echo's JSON: {body[:300]!r}"
    return None if echoed == orjson.loads(echo_body()) else "the echo does not carry the body sent"


def _verified(status: int, body: bytes) -> str | None:
    if status != 200:
        return f"HTTP {status}: {body[:300]!r}"
    if b"<soap" in body[:200].lower() or b"Envelope" in body[:300]:
        return None if b"TonTai>true<" in body else f"the citizen was not verified: {body[:300]!r}"
    try:
        answer = orjson.loads(body)
    except orjson.JSONDecodeError:
        return f"neither SOAP nor JSON: {body[:300]!r}"
    return None if answer == {"TonTai": True} else f"unexpected answer: {body[:300]!r}"


def _echo_direct(b: Bench) -> HttpRequest:
    return HttpRequest(f"http://127.0.0.1:{b.ports.rest}/echo", headers=_json_headers(), body=echo_body())


def _echo_nginx(b: Bench) -> HttpRequest:
    return HttpRequest(f"http://127.0.0.1:{b.nginx_ports['rest']}/echo", headers=_json_headers(),
                       body=echo_body())


def _echo_gateway(variant: str) -> Callable[[Bench], HttpRequest]:
    def build(b: Bench) -> HttpRequest:
        return HttpRequest(f"{b.gateways[variant].base}/r1/{ECHO_SERVICE}",
                           headers=_exchange_headers(b, variant, ECHO_CLIENT), body=echo_body())
    return build


def _echo_at(port_of: Callable[[Bench], int]) -> Callable[[Bench], HttpRequest]:
    def build(b: Bench) -> HttpRequest:
        return HttpRequest(f"http://127.0.0.1:{port_of(b)}/echo", headers=_json_headers(), body=echo_body())
    return build


def _soap(port_of: Callable[[Bench], int]) -> Callable[[Bench], HttpRequest]:
    def build(b: Bench) -> HttpRequest:
        envelope, action = verify_envelope(b.citizen)
        return HttpRequest(f"http://127.0.0.1:{port_of(b)}/dancu", body=envelope,
                           headers={"Content-Type": "text/xml; charset=utf-8", "SOAPAction": action})
    return build


def _verify_gateway(variant: str) -> Callable[[Bench], HttpRequest]:
    def build(b: Bench) -> HttpRequest:
        return HttpRequest(f"{b.gateways[variant].base}/r1/{VERIFY_SERVICE}",
                           headers=_exchange_headers(b, variant, VERIFY_CLIENT),
                           body=orjson.dumps(verify_payload(b.citizen)))
    return build


TARGETS: list[Target] = [
    Target("upstream", "upstream direct", "echo", "upstream", ("sim:rest",), _echo_direct,
           own="sim:rest", check=_echoed, description="the REST simulator, POST /echo, 1 KiB JSON"),
    Target("nginx", "nginx", "echo", "nginx", ("sim:rest", "nginx"), _echo_nginx, own="nginx",
           check=_echoed,
           description="nginx as a plain reverse proxy (keepalive pool of 64) to the REST simulator"),
    Target("gateway-aiohttp", "gateway (aiohttp)", "echo", "gateway", ("sim:rest", "gateway:aiohttp"),
           _echo_gateway("aiohttp"), gateway="aiohttp", own="gateway:aiohttp", check=_echoed,
           description="POST /r1/.../DANHMUC/echo: token, policy, durable audit, aiohttp transport"),
    Target("gateway-httpx", "gateway (httpx)", "echo", "gateway", ("sim:rest", "gateway:httpx"),
           _echo_gateway("httpx"), gateway="httpx", own="gateway:httpx", check=_echoed,
           description="the same through httpx's own transport (upstream.transport: httpx)"),
    Target("soap-upstream", "upstream direct SOAP", "population", "upstream", ("sim:population",),
           _soap(lambda b: b.ports.population), own="sim:population", check=_verified,
           available=population_available,
           description="the population simulator, the SOAP envelope the connector writes"),
    Target("soap-nginx", "nginx SOAP", "population", "nginx", ("sim:population", "nginx"),
           _soap(lambda b: b.nginx_ports["population"]), own="nginx", check=_verified,
           available=population_available,
           description="nginx as a plain reverse proxy to the population simulator"),
    Target("gateway-population", "gateway JSON->SOAP", "population", "gateway",
           ("sim:population", "gateway:aiohttp"), _verify_gateway("aiohttp"), gateway="aiohttp",
           own="gateway:aiohttp",
           check=_verified, available=population_available,
           description="POST /r1/.../CSDLDC/XacThucThongTinCongDan: JSON in, SOAP upstream, JSON out"),
    # Issue 17's shape: nginx with fixed answers as the upstream, never the bottleneck.
    Target("fixed", "fixed upstream", "fixed-echo", "upstream", ("fixed",),
           _echo_at(lambda b: b.fixed_ports["rest"]), own="fixed", check=_echoed,
           description="nginx answering the echo's answer, fixed bytes"),
    Target("nginx-fixed", "nginx → fixed", "fixed-echo", "nginx", ("fixed", "nginx-fixed"),
           _echo_at(lambda b: b.fixed_proxy_ports["rest"]), own="nginx-fixed", check=_echoed,
           description="nginx as a plain reverse proxy to the fixed upstream (the reference)"),
    Target("gateway-fixed", "gateway → fixed", "fixed-echo", "gateway", ("fixed", "gateway:fixed"),
           _echo_gateway("fixed"), gateway="fixed", own="gateway:fixed", check=_echoed,
           description="POST /r1/.../DANHMUC/echo, every feature on, in front of the fixed upstream"),
    Target("soap-fixed", "fixed upstream SOAP", "fixed-soap", "upstream", ("fixed",),
           _soap(lambda b: b.fixed_ports["population"]), own="fixed", check=_verified,
           available=population_available, description="nginx answering the verify call's envelope"),
    Target("soap-nginx-fixed", "nginx → fixed SOAP", "fixed-soap", "nginx", ("fixed", "nginx-fixed"),
           _soap(lambda b: b.fixed_proxy_ports["population"]), own="nginx-fixed", check=_verified,
           available=population_available, description="nginx as a plain reverse proxy to it"),
    Target("gateway-soap-fixed", "gateway JSON->SOAP → fixed", "fixed-soap", "gateway",
           ("fixed", "gateway:fixed"), _verify_gateway("fixed"), gateway="fixed", own="gateway:fixed",
           check=_verified, available=population_available,
           description="JSON in, SOAP to the fixed upstream (schema checked both ways), JSON out"),
]
