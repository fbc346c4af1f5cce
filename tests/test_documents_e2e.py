"""The edXML document exchange end to end (issue 16, items 2, 3 and 6), through real sockets: the
gateway (``lienthong serve``), a provincial document-management system and the national document
exchange platform (their simulators) as processes on loopback, on SQLite and PostgreSQL.

Tuyên Quang's system (QLVB) sends for 000.00.00.H60 and receives, pushed, for 000.00.00.H60 and
000.01.00.H60; Nghệ An's (QLVB) pulls for 000.00.00.H41; the national platform (TRUCVB) is pushed the
ministries' documents (000.00.00.G12, 000.00.00.G06) and sends theirs.
"""

from __future__ import annotations

import base64
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
import sqlalchemy as sa
import yaml

from connectors.dms import data
from gateway.simulation import free_port
from tests.conftest import stop

GW = "VN/GOV/000.00.00.G22"
TQ, NA = "VN/GOV/000.00.00.H60", "VN/GOV/000.00.00.H41"
SERVICE = f"{GW}/LIENTHONG/VanBan"
TQ_DMS, NA_DMS, PLATFORM = f"{TQ}/QLVB", f"{NA}/QLVB", f"{GW}/TRUCVB"
H60, H60_OFFICE, H41, MINISTRY, FINANCE = ("000.00.00.H60", "000.01.00.H60", "000.00.00.H41",
                                           "000.00.00.G12", "000.00.00.G06")
FAST = {"backoff_base": 0.05, "backoff_max": 0.3, "poll_interval": 0.05, "breaker_failures": 1000,
        "max_attempts": 1000, "lease_margin": 2}


@dataclass
class Exchange:
    """The running gateway, its two document simulators, and tokens for the three systems."""

    workdir: Path
    config_path: Path
    database: str
    base: str
    dms: str
    platform: str
    secrets: dict[str, str]
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    tokens: dict[str, str] = field(default_factory=dict)

    def token(self, client: str) -> str:
        if client not in self.tokens:
            r = httpx.post(f"{self.base}/oauth/token", data={"grant_type": "client_credentials"},
                           auth=(client, self.secrets[client]))
            assert r.status_code == 200, r.text
            self.tokens[client] = r.json()["access_token"]
        return self.tokens[client]

    def post(self, body: bytes, client: str = TQ_DMS, content_type: str = "application/xml",
             path: str = "") -> httpx.Response:
        return httpx.post(f"{self.base}/r1/{SERVICE}{path}", content=body, timeout=30, headers={
            "Authorization": f"Bearer {self.token(client)}", "Content-Type": content_type})

    def get(self, path: str, client: str = NA_DMS) -> httpx.Response:
        return httpx.get(f"{self.base}/r1/{SERVICE}{path}", timeout=30,
                         headers={"Authorization": f"Bearer {self.token(client)}"})

    def held(self, sim: str) -> list[dict[str, Any]]:
        return list(httpx.get(f"{sim}/_sim/documents", timeout=10).json()["items"])

    def wait_held(self, sim: str, count: int, timeout: float = 60) -> list[dict[str, Any]]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            items = self.held(sim)
            if len(items) >= count:
                return items
            time.sleep(0.05)
        raise AssertionError(f"{sim} holds {self.held(sim)}, not {count} items")

    def mode(self, sim: str, **switches: Any) -> None:
        httpx.post(f"{sim}/_sim/mode", json=switches, timeout=10).raise_for_status()

    def start_gateway(self) -> None:
        log = (self.workdir / "gateway.log").open("ab")
        self.procs["gateway"] = subprocess.Popen(
            [sys.executable, "-m", "gateway", "serve", "--config", str(self.config_path), "--workers", "1"],
            stdout=log, stderr=subprocess.STDOUT)
        _wait(f"{self.base}/readyz", self.procs["gateway"], self.workdir / "gateway.log")
        self.tokens.clear()

    def rows(self, query: Callable[[sa.MetaData], Any]) -> list[Any]:
        engine = sa.create_engine(self.database)
        try:
            meta = sa.MetaData()
            meta.reflect(engine, only=["documents", "document_messages", "deliveries", "audit_leaves"])
            with engine.connect() as conn:
                return list(conn.execute(query(meta)).all())
        finally:
            engine.dispose()

    def leaves(self, exchange_id: str) -> list[dict[str, Any]]:
        rows = self.rows(lambda m: sa.select(m.tables["audit_leaves"].c.leaf).where(
            m.tables["audit_leaves"].c.exchange_id == exchange_id))
        return [orjson.loads(r.leaf) for r in rows]


def _wait(url: str, proc: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"exited {proc.returncode}:\n{log.read_text(errors='replace')[-3000:]}")
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"{url} not ready")


def configure(workdir: Path, database: str, dms_port: int, platform_port: int,
              **limits: int) -> tuple[Path, dict[str, str]]:
    """The demo catalog (`lienthong init`): it has the document service, the three systems' clients
    and documents blocks, their receiving services and the policy rule (lien-thong-van-ban)."""
    from gateway.init import Ports, initialise

    ports = Ports(gateway=free_port(), population=free_port(), dvcqg=free_port(), onestop=free_port(),
                  rest=free_port(), dms=dms_port, document_platform=platform_port)
    init = initialise(workdir, ports=ports, database=database, force=True)
    cfg = yaml.safe_load(init.config_path.read_text())
    documents = {member["id"]: member.get("documents") for member in cfg["members"]}
    assert documents[TQ] == {"organs": [H60, H60_OFFICE, "000.12.00.H60"], "subsystem": "QLVB",
                             "receive": "QLVB/NhanVanBan"}
    assert documents[NA] == {"subsystem": "QLVB"}
    assert documents[GW] == {"organs": [MINISTRY, FINANCE], "subsystem": "TRUCVB",
                             "receive": "TRUCVB/sendDocument"}
    for service in cfg["services"]:
        if service["id"] in (f"{TQ}/QLVB/NhanVanBan", f"{GW}/TRUCVB/sendDocument"):
            service["timeout"] = 5
    secrets = {client: init.secrets[client] for client in (TQ_DMS, NA_DMS, PLATFORM)}
    cfg["delivery"] = FAST
    cfg["limits"] = {**cfg.get("limits", {}), **limits}
    init.config_path.write_text(yaml.safe_dump(cfg, allow_unicode=True, sort_keys=False))
    return init.config_path, secrets


def start(workdir: Path, database: str, **limits: int) -> Exchange:
    dms_port, platform_port = free_port(), free_port()
    config_path, secrets = configure(workdir, database, dms_port, platform_port, **limits)
    from gateway.config import load_config

    config = load_config(config_path)
    ex = Exchange(workdir, config_path, config.database_url, f"http://127.0.0.1:{config.listen.port}",
                  f"http://127.0.0.1:{dms_port}", f"http://127.0.0.1:{platform_port}", secrets)
    for name, module, port in (("dms", "connectors.dms.simulator", dms_port),
                               ("platform", "connectors.document_platform.simulator", platform_port)):
        log = workdir / f"{name}.log"
        ex.procs[name] = subprocess.Popen([sys.executable, "-m", module, "--port", str(port)],
                                          stdout=log.open("wb"), stderr=subprocess.STDOUT)
        _wait(f"http://127.0.0.1:{port}/_sim/received", ex.procs[name], log)
    ex.start_gateway()
    return ex


@pytest.fixture
def exchange(database_url: str, tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Exchange]:
    ex = start(tmp_path / "gw", database_url, **getattr(request, "param", {}))
    yield ex
    stop(list(ex.procs.values()))


def document_id(number: int, sender: str = H60) -> str:
    notation = "UBND-VP" if sender.endswith("00.00.H60") else "VP"
    return f"{sender},2026/11/21,{number}/{notation}"


def test_send_pull_push_and_statuses_round_trip(exchange: Exchange) -> None:
    """One package to three organs (pushed to the platform and to Tuyên Quang's own system, pulled by
    Nghệ An), each exactly once; statuses back to the sender in order; a recall to every recipient;
    every send, delivery, fetch and status audited with the document's id and digests."""
    ex = exchange
    package = data.package_bytes(H60, [MINISTRY, H41, H60_OFFICE], 101, attachments=3)
    r = ex.post(package)
    assert r.status_code == 202, r.text
    sent = r.json()
    assert sent["documentId"] == document_id(101) and sent["duplicate"] is False
    modes = {x["organ"]: x["mode"] for x in sent["recipients"]}
    assert modes == {MINISTRY: "push", H41: "pull", H60_OFFICE: "push"}

    # pushed: each receiver holds the package's very bytes, once
    (at_platform,) = ex.wait_held(ex.platform, 1)
    assert at_platform["organId"] == MINISTRY and at_platform["kind"] == "package"
    (at_dms,) = ex.wait_held(ex.dms, 1)
    assert at_dms["to"] == H60_OFFICE and at_dms["xroadClient"] == TQ_DMS
    assert at_dms["sha256"] == at_platform["sha256"] == sent_sha(package)

    # pulled: Nghệ An lists, fetches (the same bytes) and confirms
    pending = ex.get("/pending")
    assert pending.status_code == 200, pending.text
    (item,) = pending.json()["items"]
    assert item["documentId"] == document_id(101) and item["kind"] == "package" and item["from"] == H60
    got = ex.get(f"/messages/{item['id']}")
    assert got.status_code == 200 and got.content == package
    assert got.headers["content-type"].startswith("application/xml")
    assert ex.get(f"/messages/{item['id']}", client=TQ_DMS).status_code == 404  # not Tuyên Quang's
    confirmed = ex.post(b"", client=NA_DMS, path=f"/messages/{item['id']}/confirm")
    assert confirmed.status_code == 200 and confirmed.json()["state"] == "confirmed"
    assert ex.get("/pending").json()["items"] == []

    # statuses go back to the sender, in the order sent: received (Nghệ An), then done (the ministry,
    # sent by the platform's system through the gateway)
    received = data.status_bytes(document_id(101), H60, "03", H41)
    r = ex.post(received, client=NA_DMS)
    assert r.status_code == 202, r.text
    assert [x["organ"] for x in r.json()["recipients"]] == [H60]
    done = data.status_bytes(document_id(101), H60, "06", MINISTRY)
    via = httpx.post(f"{ex.platform}/_sim/send", timeout=30, json={
        "url": f"{ex.base}/r1/{SERVICE}", "token": ex.token(PLATFORM),
        "document": base64.b64encode(done).decode()}).json()
    assert via["status"] == 202, via
    held = ex.wait_held(ex.dms, 3)
    assert [(h["kind"], h["to"], h.get("statusCode")) for h in held] == [
        ("package", H60_OFFICE, None), ("status", H60, "03"), ("status", H60, "06")]

    # the sender recalls it: the status goes to every recipient, after the package
    recall = data.status_bytes(document_id(101), H60, "13", H60)
    r = ex.post(recall)
    assert r.status_code == 202, r.text
    assert sorted(x["organ"] for x in r.json()["recipients"]) == sorted([MINISTRY, H41, H60_OFFICE])
    held = ex.wait_held(ex.dms, 4)
    assert (held[3]["kind"], held[3]["to"], held[3]["statusCode"]) == ("status", H60_OFFICE, "13")
    platform = ex.wait_held(ex.platform, 2)
    assert [(p["kind"], p.get("statusCode")) for p in platform] == [("package", None), ("status", "13")]
    (recalled,) = ex.get("/pending").json()["items"]
    assert recalled["kind"] == "status" and recalled["statusCode"] == "13"

    # a package sent again is the same send: nothing new reaches anyone
    again = ex.post(package)
    assert again.status_code == 202 and again.json()["duplicate"] is True
    assert again.json()["id"] == sent["id"]
    time.sleep(0.5)
    assert len(ex.held(ex.dms)) == 4 and len(ex.held(ex.platform)) == 2

    # the audit: the send with its attachments' digests, each delivery attempt, the fetch, a status
    (send_leaf,) = ex.leaves(r_id(sent, ex, package))
    assert send_leaf["operation"] == "send" and send_leaf["status"] == 202
    assert send_leaf["document"]["id"] == document_id(101)
    assert send_leaf["document"]["sha256"] == sent_sha(package)
    assert len(send_leaf["document"]["attachments"]) == 3
    push = next(x for x in sent["recipients"] if x["organ"] == H60_OFFICE)
    (attempt,) = ex.leaves(f"{push['deliveryId']}.1")
    assert attempt["protocol"] == "delivery" and attempt["operation"] == "edxml.package"
    assert attempt["document"] == {"id": document_id(101), "kind": "package", "sha256": sent_sha(package),
                                   "size": len(package)}
    fetch = [leaf for leaf in all_leaves(ex) if leaf.get("operation") == "get"]
    assert fetch and fetch[0]["document"]["id"] == document_id(101) and fetch[0]["client"] == NA_DMS
    statuses = [leaf for leaf in all_leaves(ex) if leaf.get("operation") == "status"]
    assert [s["document"]["statusCode"] for s in statuses] == ["03", "06", "13"]


def sent_sha(body: bytes) -> str:
    import hashlib

    return hashlib.sha256(body).hexdigest()


def r_id(sent: dict[str, Any], ex: Exchange, package: bytes) -> str:
    """The exchange id of the first send of a package (the one that stored it)."""
    rows = ex.rows(lambda m: sa.select(m.tables["documents"].c.exchange_id).where(
        m.tables["documents"].c.id == sent["id"]))
    return str(rows[0].exchange_id)


def all_leaves(ex: Exchange) -> list[dict[str, Any]]:
    def query(meta: sa.MetaData) -> Any:
        table = meta.tables["audit_leaves"]
        return sa.select(table.c.leaf).order_by(table.c.idx)

    rows = ex.rows(query)
    return [orjson.loads(r.leaf) for r in rows]


def test_a_package_of_hundreds_of_kilobytes_round_trips(exchange: Exchange) -> None:
    """A package over 64 KiB (its bytes kept beside a SQLite database: gateway/documents/bodies.py),
    pushed to two organs and pulled by a third: each gets its very bytes."""
    ex = exchange
    package = data.package_bytes(H60, [MINISTRY, H41, H60_OFFICE], 120, attachments=2,
                                 attachment_size=150_000)
    assert len(package) > 128 * 1024
    r = ex.post(package)
    assert r.status_code == 202, r.text
    (at_platform,) = ex.wait_held(ex.platform, 1)
    (at_dms,) = ex.wait_held(ex.dms, 1)
    assert at_dms["sha256"] == at_platform["sha256"] == sent_sha(package)
    (item,) = ex.get("/pending").json()["items"]
    got = ex.get(f"/messages/{item['id']}")
    assert got.status_code == 200 and got.content == package
    (row,) = ex.rows(lambda m: sa.select(sa.func.length(m.tables["documents"].c.body)))
    assert row[0] == (0 if ex.database.startswith("sqlite") else len(package))
    assert ex.post(package).json()["duplicate"] is True


def test_one_recipients_outage_is_ridden_out(exchange: Exchange) -> None:
    """Tuyên Quang's system is down: the platform gets its copy at once; the package and the recall
    sent meanwhile reach Tuyên Quang once it is back, each once, the recall after the package."""
    ex = exchange
    ex.mode(ex.dms, fail="http500")
    package = data.package_bytes(H60, [H60_OFFICE, MINISTRY], 102)
    assert ex.post(package).status_code == 202
    ex.wait_held(ex.platform, 1)
    recall = data.status_bytes(document_id(102), H60, "13", H60)
    assert ex.post(recall).status_code == 202
    ex.wait_held(ex.platform, 2)
    deadline = time.monotonic() + 30
    while not [f for f in httpx.get(f"{ex.dms}/_sim/received").json()["items"] if f["kind"] == "fault"]:
        assert time.monotonic() < deadline, "the system was never tried"
        time.sleep(0.05)
    assert ex.held(ex.dms) == []
    ex.mode(ex.dms, fail=None)
    held = ex.wait_held(ex.dms, 2)
    time.sleep(0.5)
    held = ex.held(ex.dms)
    assert [(h["kind"], h.get("statusCode")) for h in held] == [("package", None), ("status", "13")]
    states = ex.rows(lambda m: sa.select(m.tables["deliveries"].c.state, m.tables["deliveries"].c.attempts)
                     .where(m.tables["deliveries"].c.service == f"{TQ}/QLVB/NhanVanBan"))
    assert [s.state for s in states] == ["delivered", "delivered"]
    assert max(s.attempts for s in states) > 1


@pytest.mark.parametrize("exchange", [{"max_document_bytes": 20_000}], indirect=True)
def test_bad_input_is_refused_and_nothing_stored(exchange: Exchange) -> None:
    ex = exchange
    good = data.package_bytes(H60, [MINISTRY], 103)

    malformed = good.replace(b"</edXML:Subject>", b"</edXML:Subjec>", 1)
    r = ex.post(malformed)
    assert r.status_code == 400 and r.headers["content-type"] == "application/problem+json"
    problem = r.json()
    assert problem["edxmlError"] == "malformed" and "line" in problem["detail"]
    assert problem["errors"][0]["line"] is not None

    invalid = good.replace(b"<edXML:CodeNumber>103</edXML:CodeNumber>", b"", 1)
    r = ex.post(invalid)
    assert r.status_code == 400, r.text
    assert r.json()["edxmlError"] == "invalid" and "edXML:Code" in r.text

    r = ex.post(data.package_bytes(H60, [MINISTRY, "000.00.00.H99", "000.00.77.H41"], 104))
    assert r.status_code == 422, r.text
    assert "000.00.00.H99, 000.00.77.H41" in r.json()["detail"]
    assert [e["path"].endswith("edXML:To[2]/edXML:OrganId") for e in r.json()["errors"]] == [True, False]

    r = ex.post(good.replace(b"cid:att1", b"cid:att9"))  # the manifest names an attachment not there
    assert r.status_code == 400, r.text
    assert r.json()["edxmlError"] == "missing-attachment" and "att9" in r.json()["detail"]
    two = data.package_bytes(H60, [MINISTRY], 103, attachments=2)
    start, end = two.index(b"<edXML:Reference"), two.index(b"</edXML:Reference>") + len(b"</edXML:Reference>")
    r = ex.post(two[:start] + two[end:])  # an attachment the manifest does not name
    assert r.status_code == 400, r.text
    assert r.json()["edxmlError"] == "unreferenced-attachment" and "att1" in r.json()["detail"]

    r = ex.post(data.package_bytes(H60, [MINISTRY], 105, attachment_size=40_000))
    assert r.status_code == 413, r.text

    closing = b"</edXML:DocumentId>"
    r = ex.post(good.replace(b"103/UBND-VP" + closing, b"103/" + b"X" * 300 + closing))  # longer than kept
    assert r.status_code == 422 and r.json()["errors"][0]["path"].endswith("edXML:DocumentId")

    assert ex.post(good, content_type="text/plain").status_code == 415
    r = ex.post(data.package_bytes(H41, [MINISTRY], 106))  # Tuyên Quang's system writing as Nghệ An
    assert r.status_code == 403 and H41 in r.json()["detail"]
    r = ex.post(data.status_bytes(document_id(999), H60, "03", H60))
    assert r.status_code == 422 and document_id(999) in r.json()["detail"]
    assert ex.get("/nothing-here").status_code == 404
    assert ex.get("/messages/0123").status_code == 404

    assert ex.rows(lambda m: sa.select(sa.func.count()).select_from(m.tables["documents"]))[0][0] == 0
    assert ex.rows(lambda m: sa.select(sa.func.count()).select_from(m.tables["document_messages"]))[0][0] == 0
    assert ex.rows(lambda m: sa.select(sa.func.count()).select_from(m.tables["deliveries"]))[0][0] == 0
    refused = [leaf for leaf in all_leaves(ex) if leaf.get("service") == SERVICE]
    assert len(refused) >= 10 and all(leaf["outcome"] == "refused" for leaf in refused)

    # an organ's system cannot answer for a document it never got
    assert ex.post(good).status_code == 202
    r = ex.post(data.status_bytes(document_id(103), H60, "03", H41), client=NA_DMS)
    assert r.status_code == 403, r.text


def test_kill_9_mid_delivery_loses_and_doubles_nothing(exchange: Exchange) -> None:
    """Packages accepted while Tuyên Quang's system answers slowly; the gateway killed with SIGKILL
    while deliveries are in flight and restarted: each package reaches each organ exactly once."""
    ex = exchange
    ex.mode(ex.dms, delay_ms=1500)
    numbers = range(110, 116)
    for n in numbers:  # every other one over 64 KiB: its bytes kept aside (gateway/documents/bodies.py)
        size = 150_000 if n % 2 else 2048
        package = data.package_bytes(H60, [H60_OFFICE, MINISTRY], n, attachment_size=size)
        assert ex.post(package).status_code == 202
    deadline = time.monotonic() + 30
    while httpx.get(f"{ex.dms}/_sim/received").json()["total"] == 0:  # a delivery is in flight
        assert time.monotonic() < deadline
        time.sleep(0.02)
    os.kill(ex.procs["gateway"].pid, signal.SIGKILL)
    ex.procs["gateway"].wait()
    ex.mode(ex.dms, delay_ms=0)
    ex.start_gateway()
    dms = ex.wait_held(ex.dms, len(numbers))
    platform = ex.wait_held(ex.platform, len(numbers))
    time.sleep(1.0)
    dms, platform = ex.held(ex.dms), ex.held(ex.platform)
    assert sorted(h["documentId"] for h in dms) == sorted(document_id(n) for n in numbers)
    assert sorted(h["documentId"] for h in platform) == sorted(document_id(n) for n in numbers)
    states = ex.rows(lambda m: sa.select(m.tables["deliveries"].c.state))
    assert [s.state for s in states] == ["delivered"] * 2 * len(numbers)
