"""``lienthong demo``: the whole exchange path, on loopback, with a report.

Starts the upstream simulators and the gateway as real processes over a fresh configuration (SQLite
database, generated keys and secrets), then plays the scenario a newcomer should see:

1. Hà Giang's one-stop system pushes 20 dossiers to the national portal, each followed by a status
   update (JSON in, the portal's JSON form upstream), while the portal is down: the gateway accepts
   them (202, store-and-forward), rides out the outage and, once the portal is back, delivers each
   dossier once with its update after it (gateway/delivery/demo.py);
   then the portal routes two nationally filed dossiers down by the agency in their code, and their
   updates after them, to Hà Giang's one-stop system (gateway/routing.py);
2. Nghệ An's and Tuyên Quang's one-stop systems file ten "3 in 1" and five death-group joint
   dossiers, which the gateway runs as flows across the agencies' simulators while the residence
   registry is down for a while and the civil-status registry refuses one (gateway/flows/demo.py);
3. the national portal verifies 20 citizens against the population database (JSON in, SOAP
   upstream, JSON out);
4. Tuyên Quang's one-stop system pushes four signed dossiers (detached JWS, the demo CA that
   ``lienthong init`` made): a citizen's and an officer's are accepted, one changed after signing and
   one signed with a revoked certificate are refused, and the citizen's access report shows the
   verdicts (gateway/demo_signed.py);
5. five official documents (edXML) go between Tuyên Quang's departments and two ministries, one
   pulled by Nghệ An, with their statuses back (received, assigned, done, refused, recalled)
   (gateway/documents/demo.py);
6. a call without a token, and a call to a service the client may not use, are refused;

and checks that the upstreams received what was sent and that every exchange, refused ones
included, has its audit record.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import orjson
from rich.console import Console
from rich.table import Table

from gateway.client import tool_client
from gateway.config import load_config
from gateway.demo_pki import FOLDER as PKI_FOLDER
from gateway.demo_signed import SignedOutcome, signed_dossiers, signed_table
from gateway.documents.bodies import bodies_path
from gateway.documents.demo import DocumentOutcome, documents_table, exchange_documents
from gateway.errors import describe
from gateway.flows.demo import FlowOutcome, flows_table, run_joint_procedures
from gateway.init import NGHE_AN, POPULATION, PORTAL, TUYEN_QUANG, Ports, initialise
from gateway.simulation import free_port

VN_TZ = ZoneInfo("Asia/Ho_Chi_Minh")
console = Console(width=None if sys.stdout.isatty() else 140)

PROCEDURES = [
    ("1.001193.000.00.00.H22", "Đăng ký khai sinh", "G22.HT", "Hộ tịch"),
    ("1.004222.000.00.00.H22", "Đăng ký thường trú", "G22.CT", "Cư trú"),
    ("1.009994.000.00.00.H22", "Cấp giấy phép xây dựng nhà ở riêng lẻ", "G22.XD", "Hoạt động xây dựng"),
    ("2.000908.000.00.00.H22", "Chứng thực bản sao từ bản chính", "G22.CTH", "Chứng thực"),
]


@dataclass
class Outcome:
    label: str
    ok: bool
    detail: str = ""


@dataclass
class Scenario:
    base: str
    secrets: dict[str, str]
    sim_dvcqg: str  # the portal simulator's base URL, to check what arrived upstream
    sim_onestop: str = ""  # Hà Giang's one-stop simulator, to check what was routed down
    sim_residence: str = ""  # the residence registry's simulator, switched down and back
    sim_dms: str = ""  # Tuyên Quang's document-management system's simulator
    sim_platform: str = ""  # the national document exchange platform's simulator
    sent: dict[str, str] = field(default_factory=dict)  # exchange id -> what it was
    checks: list[Outcome] = field(default_factory=list)
    refused: list[tuple[str, int, str]] = field(default_factory=list)
    verified: Counter[str] = field(default_factory=Counter)
    flows: list[FlowOutcome] = field(default_factory=list)  # the joint procedures, for the report
    signed: list[SignedOutcome] = field(default_factory=list)  # the signed dossiers, for the report
    documents: list[DocumentOutcome] = field(default_factory=list)  # the official documents
    pki: Path | None = None  # the demo CA's folder (gateway/demo_pki.py): the signers' keys
    client_keys: dict[str, Any] = field(default_factory=dict)  # client -> private JWK (private_key_jwt)
    step: str = "starting"  # what the scenario is doing, for an error message that says so

    def doing(self, step: str) -> None:
        self.step = step

    def check(self, label: str, ok: bool, detail: str = "") -> None:
        self.checks.append(Outcome(label, ok, detail))


def _ts(dt: datetime) -> str:
    return dt.astimezone(VN_TZ).strftime("%Y%m%d%H%M%S")


def dossiers(count: int) -> list[dict[str, Any]]:
    from connectors.synthetic import people

    now = datetime.now(VN_TZ).replace(microsecond=0)
    out = []
    for i, person in enumerate(people(count, seed=7)):
        code, name, field_code, field_name = PROCEDURES[i % len(PROCEDURES)]
        received = now - timedelta(days=i % 5, hours=i)
        out.append({
            "MaHoSo": f"H60.23-{now:%Y%m%d}-{i + 1:07d}",
            "MaTTHC": code, "TenTTHC": name, "MaLinhVuc": field_code, "TenLinhVuc": field_name,
            "SoBienNhan": f"{i + 1:06d}/BN", "ChuHoSo": person.ho_va_ten, "LoaiDoiTuong": "1",
            "MaDoiTuong": person.so_dinh_danh, "Email": person.email,
            "SoDienThoai": person.so_dien_thoai, "TrichYeuHoSo": f"{name} cho {person.ho_va_ten}",
            "NgayTiepNhan": _ts(received), "NgayHenTra": _ts(received + timedelta(days=5)),
            "TrangThaiHoSo": "2", "HinhThuc": "1" if i % 3 else "0",
            "DonViXuLy": "UBND tỉnh Tuyên Quang", "GhiChu": "",
            "TaiLieuNop": [{"TenTepDinhKem": "to-khai.pdf", "DuongDanTaiTep": f"/hoso/{i + 1}/to-khai.pdf"}],
            "DanhSachLePhi": [], "DanhSachHoSoBoSung": [], "DanhSachGiayToKetQua": [],
        })
    return out


async def _token(http: httpx.AsyncClient, base: str, client: str, secret: str,
                 key: dict[str, Any] | None = None) -> str:
    """A token by client_secret_basic, or by private_key_jwt when the client's key is given."""
    form = {"grant_type": "client_credentials"}
    if key is not None:
        from gateway.oauth.assertion import client_assertion

        form |= client_assertion(key, client, f"{base}/oauth/token")
        r = await http.post(f"{base}/oauth/token", data=form)
    else:
        r = await http.post(f"{base}/oauth/token", data=form, auth=(client, secret))
    r.raise_for_status()
    return str(r.json()["access_token"])


async def play(sc: Scenario) -> None:
    motcua, portal = f"{TUYEN_QUANG}/MOTCUA", f"{PORTAL}/DVCQG"
    async with tool_client() as http:
        sc.doing("asking for tokens")
        t_motcua = await _token(http, sc.base, motcua, sc.secrets[motcua])
        t_portal = await _token(http, sc.base, portal, sc.secrets[portal], sc.client_keys.get(portal))
        sc.check("tokens issued (client_credentials: client_secret_basic"
                 + (", private_key_jwt)" if portal in sc.client_keys else ")"), True)

        async def exchange(label: str, token: str | None, client: str, service: str,
                           body: dict[str, Any], **headers: str) -> httpx.Response:
            h = {"Content-Type": "application/json", "X-Road-Client": client, **headers}
            if token:
                h["Authorization"] = f"Bearer {token}"
            r = await http.post(f"{sc.base}/r1/{service}", content=orjson.dumps(body), headers=h)
            sc.sent[r.headers.get("x-road-id", "?")] = label
            return r

        from gateway.delivery.demo import ride_out_portal_outage

        batch = dossiers(20)
        sc.doing("pushing 20 dossiers while the portal is down, then waiting for their delivery")
        await ride_out_portal_outage(http, sc.base, t_motcua, motcua, sc.sim_dvcqg, batch, exchange,
                                     sc.check)
        from gateway.delivery.demo import route_down

        sc.doing("routing dossiers addressed to former Hà Giang down to Tuyên Quang, then their updates")
        await route_down(http, sc.base, t_portal, portal, sc.sim_onestop, exchange, sc.check)

        sc.doing("running 15 joint procedures, the residence registry down for a while")
        nghe_an = f"{NGHE_AN}/MOTCUA"
        tokens = {motcua: t_motcua, nghe_an: await _token(http, sc.base, nghe_an, sc.secrets[nghe_an])}
        sc.flows = await run_joint_procedures(http, sc.base, tokens, sc.sim_residence, exchange, sc.check)

        from connectors.synthetic import people

        citizens = people(1000, seed=2026)[:20]

        async def verify(i: int) -> bool:
            p = citizens[i]
            name = p.ho_va_ten if i % 10 else f"{p.ho} {p.ten}"  # two with a wrong name
            body = {"MaYeuCau": f"DEMO-{i:04d}", "MaDichVu": "1.001193.000.00.00.H22",
                    "MaCanBo": "canbo.nguyenvanan", "SoDinhDanh": p.so_dinh_danh,
                    "SoCMND": p.so_cmnd, "HoVaTen": name}
            r = await exchange("XacThucThongTinCongDan", t_portal, portal,
                               f"{POPULATION}/CSDLDC/XacThucThongTinCongDan", body,
                               **{"X-Road-UserId": "VN-canbo.nguyenvanan",
                                  "X-Road-Issue": batch[i]["MaHoSo"]})
            if r.status_code == 200:
                sc.verified[str(r.json().get("TonTai"))] += 1
            return r.status_code == 200

        sc.doing("verifying 20 citizens against the population database")
        answers = await asyncio.gather(*(verify(i) for i in range(20)))
        sc.check("20 citizens verified against the population database (JSON -> SOAP -> JSON)",
                 all(answers) and sc.verified["True"] == 18 and sc.verified["False"] == 2,
                 f"{sum(answers)}/20 answered; TonTai true {sc.verified['True']}, "
                 f"false {sc.verified['False']}")

        if sc.pki is not None:
            sc.doing("pushing signed dossiers: two valid, one changed after signing, one revoked signer")
            auditor = f"{PORTAL}/KIEMTOAN"
            # The owner is the citizen the console hint names, so that their report shows verdicts.
            sc.signed = await signed_dossiers(http, sc.base, t_motcua, motcua, sc.pki, sc.sim_dvcqg,
                                              dossiers(24)[20:], exchange, sc.check, sc.secrets[auditor],
                                              citizens[1].so_dinh_danh)
            sc.refused += [(f"signed dossier {o.what}", o.status, o.reason) for o in sc.signed
                           if o.status != 202]

        if sc.sim_dms and sc.sim_platform:
            sc.doing("exchanging five official documents and their statuses")
            sc.documents = await exchange_documents(
                http, sc.base, sc.secrets, sc.sim_dms, sc.sim_platform,
                lambda xid, label: sc.sent.__setitem__(xid, label), sc.check)

        sc.doing("sending the calls that must be refused")
        r = await exchange("no token", None, motcua, f"{PORTAL}/DVCQG/DongBoHoSoMC", batch[0])
        sc.refused.append(("call without a token", r.status_code, r.json().get("detail", "")))
        sc.check("a call without a token is refused with 401 and WWW-Authenticate",
                 r.status_code == 401 and "bearer" in r.headers.get("www-authenticate", "").lower())
        r = await exchange("not allowed", t_motcua, motcua,
                           f"{POPULATION}/CSDLDC/TraCuuThongTinCongDan",
                           {"SoDinhDanh": citizens[0].so_dinh_danh},
                           **{"X-Road-UserId": "VN-canbo.x", "X-Road-Issue": batch[0]["MaHoSo"]})
        sc.refused.append(("one-stop system looks up a citizen's full record", r.status_code,
                           r.json().get("detail", "")))
        sc.check("a call to a service the client may not use is refused with 403",
                 r.status_code == 403)

        sc.doing("reading what the portal simulator received")
        received = (await http.get(f"{sc.sim_dvcqg}/_sim/received")).json()["items"]
        text = " ".join(item.get("body") or "" for item in received)
        arrived = sum(1 for d in batch if d["MaHoSo"] in text)
        sc.check("the portal simulator received all 20 dossiers", arrived == 20, f"{arrived}/20")


def _wait_ready(url: str, procs: list[subprocess.Popen[bytes]], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for p in procs:
            if p.poll() is not None:
                raise RuntimeError(f"a demo process exited early (code {p.returncode})")
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"{url} did not become ready in {timeout:.0f} s")


def _report(sc: Scenario, config_path: Path, database: str) -> bool:
    from gateway.audit.log import AuditLog
    from gateway.storage.db import create_engine

    engine = create_engine(database)
    leaves = AuditLog(engine).read(0, 100_000)
    engine.dispose()
    by_id = Counter(leaf.exchange_id for leaf in leaves)
    missing = [xid for xid in sc.sent if by_id[xid] != 1]
    sc.check("every exchange has exactly one audit record (refused ones too)", not missing,
             f"{len(sc.sent) - len(missing)}/{len(sc.sent)} exchanges audited")

    from gateway.audit.service import AuditService

    audit = AuditService.open(load_config(config_path))
    checkpoint = audit.checkpointer.make()  # on demand, of every exchange above
    verdict = audit.verify(audit.witness_notes())
    audit.log.engine.dispose()
    sc.check("the audit log verifies: every leaf, the Merkle tree and each signed checkpoint",
             verdict.ok and checkpoint.size >= len(leaves),
             f"{verdict.leaves} leaves, {verdict.checkpoints} checkpoints hold" if verdict.ok
             else f"{len(verdict.problems)} problem(s), first: {verdict.problems[0]}")

    table = Table(title="Exchanges and API actions by service and outcome (from the audit log)")
    for col in ("service", "outcome", "status", "count"):
        table.add_column(col, justify="right" if col == "count" else "left")
    # An operator's or client's API action (reading a delivery's state) has no service: its name.
    groups = Counter((leaf.service or f"API {leaf.operation or '-'}", leaf.outcome, leaf.status)
                     for leaf in leaves)
    for (service, outcome, status), n in sorted(groups.items()):
        style = {"ok": "green", "refused": "yellow"}.get(outcome, "red")
        table.add_row(service, f"[{style}]{outcome}[/{style}]", str(status), str(n))
    console.print(table)

    refused = Table(title="Refused calls")
    for col in ("call", "status", "why"):
        refused.add_column(col)
    for label, status, why in sc.refused:
        refused.add_row(label, str(status), why)
    console.print(refused)
    if sc.flows:
        console.print(flows_table(sc.flows))
    if sc.signed:
        console.print(signed_table(sc.signed))
    if sc.documents:
        console.print(documents_table(sc.documents))

    checks = Table(title="Checks", show_header=False)
    checks.add_column("")
    checks.add_column("check")
    checks.add_column("detail")
    for c in sc.checks:
        checks.add_row("[green]✔[/green]" if c.ok else "[red]✘[/red]", c.label, c.detail)
    console.print(checks)
    from gateway.delivery.demo import kpi_table

    console.print(kpi_table(database))
    console.print(f"Audit records: {len(leaves)}   Database: {database}\nConfiguration: {config_path}")
    state = "[green]verified[/green]" if verdict.ok else "[red]NOT verified[/red]"
    console.print(f"\nSigned checkpoint of the audit log ({state}; verifier key "
                  f"{audit.checkpointer.vkey}):")
    console.print(checkpoint.note.decode(), markup=False, highlight=False, end="")
    return all(c.ok for c in sc.checks)


def run_demo(directory: Path | None, *, keep_running: bool = False, port: int = 0) -> int:
    workdir = (directory or Path(tempfile.mkdtemp(prefix="lienthong-demo-"))).resolve()
    ports = Ports(gateway=port or free_port(), population=free_port(), dvcqg=free_port(),
                  onestop=free_port(), rest=free_port())
    init = initialise(workdir, ports=ports, force=True)
    db_file = workdir / "lienthong.db"
    # A fresh log in a reused folder: the last run's database and the witness file of its
    # checkpoints, signed by keys that init has just replaced, would not verify against the new ones.
    audit = load_config(init.config_path).audit
    stale = [Path(f"{db_file}{suffix}") for suffix in ("", "-wal", "-shm", "-writer.lock")]
    stale += [Path(f"{bodies_path(db_file)}{suffix}") for suffix in ("", "-journal", "-writer.lock")]
    for path in [*stale, *([workdir / audit.witness_file] if audit.witness_file else [])]:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
    console.print(f"[bold]Liên Thông demo[/bold] in {workdir}")
    logs = (workdir / "gateway.log").open("wb"), (workdir / "simulators.log").open("wb")
    cmd = [sys.executable, "-m", "gateway"]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    sims = subprocess.Popen([*cmd, "simulators", "--config", str(init.config_path)],
                            stdout=logs[1], stderr=subprocess.STDOUT, env=env)
    gw = subprocess.Popen([*cmd, "serve", "--config", str(init.config_path)],
                          stdout=logs[0], stderr=subprocess.STDOUT, env=env)
    procs = [sims, gw]
    base = f"http://127.0.0.1:{ports.gateway}"
    sc: Scenario | None = None
    try:
        with console.status("starting the simulators and the gateway…"):
            _wait_ready(f"http://127.0.0.1:{ports.rest}/_sim/received", procs)
            _wait_ready(f"http://127.0.0.1:{ports.residence}/_sim/received", procs)
            _wait_ready(f"http://127.0.0.1:{ports.document_platform}/_sim/received", procs)
            _wait_ready(f"{base}/readyz", procs)
        sc = Scenario(base=base, secrets=init.secrets, sim_dvcqg=f"http://127.0.0.1:{ports.dvcqg}",
                      sim_onestop=f"http://127.0.0.1:{ports.onestop}",
                      sim_residence=f"http://127.0.0.1:{ports.residence}",
                      sim_dms=f"http://127.0.0.1:{ports.dms}",
                      sim_platform=f"http://127.0.0.1:{ports.document_platform}",
                      client_keys={c: orjson.loads(k.read_bytes()) for c, k in init.client_keys.items()},
                      pki=init.config_path.parent / PKI_FOLDER)
        with console.status("playing the scenario…"):
            asyncio.run(play(sc))
        sc.doing("reading the audit log for the report")
        ok = _report(sc, init.config_path, f"sqlite:///{db_file}")
        if keep_running:
            from connectors.synthetic import people
            from gateway.console.demo import console_hint

            console.print(console_hint(base, f"sqlite:///{db_file}",
                                       people(1000, seed=2026)[1].so_dinh_danh), highlight=False)
            motcua = f"{TUYEN_QUANG}/MOTCUA"
            console.print(
                f"\nThe gateway serves at {base} (OpenAPI docs: {base}/docs). Try:\n"
                f"  TOKEN=$(curl -s -u '{motcua}:{init.secrets[motcua]}' "
                f"-d grant_type=client_credentials {base}/oauth/token | python3 -c "
                "'import json,sys; print(json.load(sys.stdin)[\"access_token\"])')\n"
                f"  curl -s -H \"Authorization: Bearer $TOKEN\" -H 'Content-Type: application/json' "
                f"-d '{{\"hello\": \"world\"}}' {base}/r1/VN/GOV/000.00.00.H41/DANHMUC/echo\n"
                "Press Ctrl+C to stop.")
            with contextlib.suppress(KeyboardInterrupt):
                while all(p.poll() is None for p in procs):
                    time.sleep(0.5)
        if not ok:
            console.print("[red]The demo found a problem: see the checks above and "
                          f"{workdir}/gateway.log.[/red]")
        return 0 if ok else 1
    except Exception as exc:
        step = sc.step if sc is not None else "starting the simulators and the gateway"
        console.print(f"demo failed while {step}: {describe(exc)}", style="red", markup=False,
                      highlight=False)
        console.print(f"Logs: {workdir}/gateway.log, {workdir}/simulators.log", markup=False)
        return 1
    finally:
        for p in procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in procs:
            try:
                p.wait(timeout=15)
            except subprocess.TimeoutExpired:
                p.kill()
        for fh in logs:
            fh.close()
