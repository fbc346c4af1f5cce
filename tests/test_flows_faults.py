"""The flow engine under faults, end to end: a gateway and the agencies' simulators as real processes
on loopback (SQLite and PostgreSQL), the 3-in-1 definition edited for the faults, the agencies told
to be slow, down, refusing or answering nonsense, and the gateway killed with SIGKILL.

The judges are the simulators' own records (``/_sim/registrations``: what an agency registered,
each success once; ``/_sim/received``: every request that reached it) and the delivery table (one
row per send the engine made, under ``flow:{id}:{step}:{n}``), compared with ``GET /flows/{id}``.

The stack is this module's own (its configuration is edited and its gateway killed), started once
per database; the tests leave every agency answering normally when they end.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
import yaml

from gateway.delivery.tables import deliveries
from gateway.storage.db import create_engine
from tests.conftest import PG_URL, Stack, _fresh_pg_database, start_stack, stop
from tests.test_flows_e2e import BIRTH, birth, follow, headers, steps

pytestmark = pytest.mark.slow

FINISHED = ("completed", "rejected", "failed")
AGENCIES = ("civil_status", "residence", "social_insurance", "postal")
# The queue gives up on a delivery after two attempts, quickly, and never opens a breaker: an
# outage outlasts a delivery at once, and the engine's own re-sends (retry:) are what is tested.
DELIVERY = {"max_attempts": 2, "backoff_base": 0.2, "backoff_max": 1.0, "lease_margin": 2.0,
            "breaker_failures": 1000, "poll_interval": 0.2}


class _NotJson(BaseHTTPRequestHandler):
    """An upstream that answers every POST 200 with an HTML page (a proxy's, say), not JSON."""

    def do_POST(self) -> None:  # http.server's name for it
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        body = b"<html><body>Dang xu ly</body></html>"
        self.send_response(200)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


def _definition(workdir: Path) -> None:
    """The shipped 3-in-1, edited: a 3 s flow deadline; ``thuong_tru`` due in 1 s and re-sent up to
    10 attempts in all; ``bhyt`` compensating ``thuong_tru`` when refused, 3 attempts in all."""
    path = workdir / "flows" / "khai-sinh-3-trong-1.yaml"
    flow = yaml.safe_load(path.read_text(encoding="utf-8"))
    flow["deadline"] = "3s"
    by_id = {s["id"]: s for s in flow["steps"]}
    by_id["thuong_tru"].update(deadline="1s", retry={"attempts": 10, "backoff": "1s", "max_backoff": "2s"})
    by_id["bhyt"].update(on_reject={"compensate": ["thuong_tru"]},
                         retry={"attempts": 3, "backoff": "1s", "max_backoff": "1s"})
    path.write_text(yaml.safe_dump(flow, allow_unicode=True, sort_keys=False), encoding="utf-8")


def _editor(workdir: Path, not_json: str) -> Callable[[dict[str, Any]], None]:
    def edit(cfg: dict[str, Any]) -> None:
        cfg["delivery"] = {**(cfg.get("delivery") or {}), **DELIVERY}
        for service in cfg["services"]:
            if service["id"].endswith("/BUUCHINH/TaoDonHang"):  # the post answers HTML
                service["upstream"] = not_json
        _definition(workdir)
    return edit


class Faulty:
    """This module's stack, and what its tests do to it."""

    def __init__(self, stack: Stack, procs: list[subprocess.Popen[bytes]], workdir: Path) -> None:
        self.stack, self.procs, self.workdir = stack, procs, workdir

    def mode(self, agency: str, **switches: Any) -> None:
        httpx.post(f"{self.stack.sims[agency]}/_sim/mode", json=switches, timeout=10).raise_for_status()

    def normal(self) -> None:
        for agency in AGENCIES:
            self.mode(agency, mode="normal", fail=None, delay_ms=0)

    def file(self, dossier: dict[str, Any]) -> str:
        r = httpx.post(f"{self.stack.base}/r1/{BIRTH}", json=dossier, headers=headers(self.stack), timeout=30)
        assert r.status_code == 202, r.text
        return str(r.headers["location"])

    def registered(self, agency: str, service: str) -> Counter[str]:
        """How many times the agency registered each dossier code for ``service``."""
        items = httpx.get(f"{self.stack.sims[agency]}/_sim/registrations", timeout=10).json()["items"]
        return Counter(i["MaHoSo"] for i in items if i["service"] == service)

    def received(self, agency: str, service: str) -> list[dict[str, Any]]:
        """The requests for ``service`` that reached the agency, bodies parsed."""
        items = httpx.get(f"{self.stack.sims[agency]}/_sim/received", timeout=10).json()["items"]
        return [json.loads(i["body"]) for i in items if i["kind"] == service and i.get("body")]

    def sends(self, flow_id: str) -> list[dict[str, Any]]:
        """The deliveries the engine stored for a flow, oldest first."""
        engine = create_engine(self.stack.database)
        try:
            with engine.connect() as conn:
                rows = conn.execute(sa.select(deliveries.c.id, deliveries.c.service, deliveries.c.state,
                                              deliveries.c.attempts, deliveries.c.last_error)
                                    .where(deliveries.c.purpose.like(f"%flow/{flow_id}"))
                                    .order_by(deliveries.c.seq)).all()
        finally:
            engine.dispose()
        return [dict(r._mapping) for r in rows]

    def kill(self) -> None:
        """SIGKILL: the gateway gets no chance to finish a step or release a lease."""
        gateway = self.procs[1]
        os.kill(gateway.pid, signal.SIGKILL)
        gateway.wait(timeout=10)

    def restart(self) -> None:
        """The gateway again, on the same configuration and database."""
        log = (self.workdir / "gateway.log").open("ab")
        self.procs[1] = subprocess.Popen([sys.executable, "-m", "gateway", "serve", "--config",
                                          str(self.stack.config_path), "--workers", "1"],
                                         stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            assert self.procs[1].poll() is None, "the gateway exited at start"
            try:
                if httpx.get(f"{self.stack.base}/readyz", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        raise AssertionError("the gateway did not come back")


@pytest.fixture(scope="module", params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def faulty(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Faulty]:
    database = None
    if request.param == "postgresql":
        if not PG_URL:
            pytest.skip("no PostgreSQL: set LIENTHONG_TEST_PG_URL or run 'make test', which starts one")
        database = _fresh_pg_database()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _NotJson)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    workdir = tmp_path_factory.mktemp(f"flow-faults-{request.param}")
    not_json = f"http://127.0.0.1:{server.server_address[1]}/TaoDonHang"
    stack, procs = start_stack(workdir, database, edit=_editor(workdir, not_json))
    try:
        yield Faulty(stack, procs, workdir)
    finally:
        stop(procs)
        server.shutdown()


@pytest.fixture
def agencies(faulty: Faulty) -> Iterator[Faulty]:
    """The stack, every agency answering normally again after the test."""
    try:
        yield faulty
    finally:
        faulty.normal()


IN_PERSON = {"HinhThuc": "truc_tiep"}  # no postal step: the post is the HTML upstream here


def test_a_refused_card_undoes_the_residence_registration(agencies: Faulty) -> None:
    """``bhyt`` refused with ``on_reject: {compensate: [thuong_tru]}``: the residence registration
    is cancelled with its own confirmation number, then the flow ends rejected. The police answer
    slowly, so the engine finds the cancellation in flight and waits for it."""
    agencies.mode("social_insurance", mode="reject_all")
    agencies.mode("residence", mode="slow", slow_ms=800)
    dossier = birth(NhanKetQua=IN_PERSON)
    flow = follow(agencies.stack, agencies.file(dossier), seconds=90)
    assert flow["state"] == "rejected", flow
    by = steps(flow)
    assert by["bhyt"]["state"] == "rejected" and by["bhyt"]["reason"]["answer"]["MaLoi"] == "TU_CHOI"
    assert flow["reason"]["step"] == "bhyt" and flow["reason"]["status"] == 422
    undone = by["thuong_tru"]
    assert undone["state"] == "compensated", undone
    assert undone["undoDeliveryId"] and undone["result"]["SoXacNhan"]
    cancels = [r for r in agencies.received("residence", "HuyDangKyThuongTru")
               if r["MaHoSo"] == dossier["MaHoSo"]]
    assert [c["SoXacNhan"] for c in cancels] == [undone["result"]["SoXacNhan"]]
    assert agencies.registered("residence", "HuyDangKyThuongTru")[dossier["MaHoSo"]] == 1
    assert by["khai_sinh"]["state"] == "done" and by["buu_chinh"]["state"] == "pending"


def test_a_slow_agency_makes_the_step_and_the_flow_overdue_and_the_flow_completes(agencies: Faulty) -> None:
    """``thuong_tru`` may take 1 s and the flow 3 s; the police take 3.5 s to answer."""
    agencies.mode("residence", mode="slow", slow_ms=3500)
    flow = follow(agencies.stack, agencies.file(birth(NhanKetQua=IN_PERSON)), seconds=90)
    assert flow["state"] == "completed", flow
    by = steps(flow)
    assert by["thuong_tru"]["overdue"] is True and by["thuong_tru"]["deadline"] is not None
    assert by["khai_sinh"]["overdue"] is False  # its deadline is a day
    assert flow["overdue"] is True


def test_an_outage_that_outlasts_a_delivery_is_ridden_out_by_a_new_send(agencies: Faulty) -> None:
    """The police down past the queue's two attempts: the delivery dies, the engine sends the step
    again (a new delivery) after its backoff, and once the police are back the flow completes."""
    agencies.mode("residence", mode="down")
    dossier = birth(NhanKetQua=IN_PERSON)
    location = agencies.file(dossier)
    deadline = time.monotonic() + 60
    while steps(follow(agencies.stack, location, seconds=0))["thuong_tru"]["sends"] < 2:
        assert time.monotonic() < deadline, "the step was never sent again"
        time.sleep(0.2)
    agencies.mode("residence", mode="normal")
    flow = follow(agencies.stack, location, seconds=90)
    assert flow["state"] == "completed", flow
    step = steps(flow)["thuong_tru"]
    assert step["state"] == "done" and step["sends"] >= 2 and step["reason"] is None
    sent = [d for d in agencies.sends(flow["id"]) if d["service"].endswith("/DangKyThuongTru")]
    assert len(sent) == step["sends"]
    assert sent[0]["state"] == "dead" and json.loads(sent[0]["last_error"])["status"] == 503
    assert sent[-1]["state"] == "delivered" and sent[-1]["id"] == step["deliveryId"]
    assert agencies.registered("residence", "DangKyThuongTru")[dossier["MaHoSo"]] == 1


def test_an_outage_that_outlasts_the_steps_attempts_fails_the_flow_with_the_reason(agencies: Faulty) -> None:
    """``bhyt`` has 3 attempts in all and each delivery 2: after a second dead delivery the step and
    the flow fail, saying why; a failure is not a rejection, so nothing is undone."""
    agencies.mode("social_insurance", mode="down")
    flow = follow(agencies.stack, agencies.file(birth(NhanKetQua=IN_PERSON)), seconds=90)
    assert flow["state"] == "failed", flow
    by = steps(flow)
    card = by["bhyt"]
    assert card["state"] == "failed" and card["sends"] == 2
    assert card["reason"]["code"] == "Server.ServiceFailed" and card["reason"]["status"] == 503
    assert flow["reason"]["step"] == "bhyt" and flow["reason"]["code"] == "Server.ServiceFailed"
    sent = [d for d in agencies.sends(flow["id"]) if d["service"].endswith("/CapTheBHYT")]
    assert [d["state"] for d in sent] == ["dead", "dead"]
    assert by["thuong_tru"]["state"] == "done" and by["thuong_tru"]["undoDeliveryId"] is None


def test_an_answer_that_claims_json_and_is_not_fails_the_step_with_the_reason(agencies: Faulty) -> None:
    """Social insurance answers 200 with broken JSON: the queue counts it as a failed attempt, the
    engine re-sends while ``retry`` lasts, then the step fails with the gateway's reading of it; no
    result is recorded and the agency registered nothing."""
    agencies.mode("social_insurance", fail="garbage")
    dossier = birth(NhanKetQua=IN_PERSON)
    flow = follow(agencies.stack, agencies.file(dossier), seconds=90)
    assert flow["state"] == "failed", flow
    card = steps(flow)["bhyt"]
    assert card["state"] == "failed" and card["result"] is None
    assert card["reason"]["code"] == "Server.ServiceFailed" and "not JSON" in card["reason"]["detail"]
    assert flow["reason"]["step"] == "bhyt"
    assert agencies.registered("social_insurance", "CapTheBHYT")[dossier["MaHoSo"]] == 0


def test_a_2xx_answer_that_is_not_the_steps_json_fails_that_step(agencies: Faulty) -> None:
    """The post answers 200 with an HTML page: the step fails there, with the answer kept, rather than
    being recorded as done with nothing a later step or the one-stop system could read."""
    flow = follow(agencies.stack, agencies.file(birth()), seconds=90)
    assert flow["state"] == "failed", flow
    post = steps(flow)["buu_chinh"]
    assert post["state"] == "failed" and post["result"] is None
    assert post["reason"]["code"] == "Server.FlowAnswer" and post["reason"]["status"] == 200
    assert "MaVanDon" in post["reason"]["detail"] and "Dang xu ly" in json.dumps(post["reason"]["answer"])
    assert flow["reason"]["step"] == "buu_chinh"
    assert [steps(flow)[s]["state"] for s in ("khai_sinh", "thuong_tru", "bhyt")] == ["done"] * 3


def test_kill_9_mid_flow_loses_nothing_and_sends_no_step_twice(agencies: Faulty) -> None:
    """SIGKILL with steps in flight (the police slow), the gateway started again on the same
    configuration. Proven, against the agencies' records and the delivery table:

    - every flow filed before the kill completes, each step done or skipped;
    - the engine stored each step once: one delivery per step that ran, ``sends`` 1;
    - each agency registered each dossier once per service;
    - every request an agency received for a dossier is an attempt of that one delivery (received
      at most its attempts): the only repeats are the queue's at-least-once re-sends after the
      crash, which the agencies answer from what they hold (idempotent by MaHoSo).
    """
    agencies.mode("residence", mode="slow", slow_ms=5000)
    dossiers = [birth(NhanKetQua=IN_PERSON) for _ in range(6)]
    locations = [agencies.file(d) for d in dossiers]
    auth = headers(agencies.stack)
    deadline = time.monotonic() + 60
    while True:  # kill once a residence step is on its way to the slow police
        views = [httpx.get(f"{agencies.stack.base}{loc}", headers=auth, timeout=10).json()
                 for loc in locations]
        in_flight = [v for v in views if steps(v)["thuong_tru"]["state"] == "sent"]
        if in_flight:
            break
        assert time.monotonic() < deadline, "no residence step was ever in flight"
        time.sleep(0.05)
    agencies.kill()
    assert all(v["state"] not in FINISHED for v in in_flight)
    agencies.mode("residence", mode="normal")
    agencies.restart()

    flows = [follow(agencies.stack, loc, seconds=150) for loc in locations]
    assert [f["state"] for f in flows] == ["completed"] * len(flows), [f["steps"] for f in flows]
    services = {"khai_sinh": ("civil_status", "DangKyKhaiSinh"),
                "thuong_tru": ("residence", "DangKyThuongTru"),
                "bhyt": ("social_insurance", "CapTheBHYT")}
    registered = {step: agencies.registered(*where) for step, where in services.items()}
    received = {step: Counter(r["MaHoSo"] for r in agencies.received(*where))
                for step, where in services.items()}
    for flow, dossier in zip(flows, dossiers, strict=True):
        code, by = dossier["MaHoSo"], steps(flow)
        assert by["buu_chinh"]["state"] == "skipped"
        stored = agencies.sends(flow["id"])
        sent = [d for d in stored if d["service"] in {s["service"] for s in flow["steps"]}]
        assert len(sent) == len({d["service"] for d in sent}) == 3  # one delivery per step that ran
        # and one per notification its events called for (the portal, the filer): none twice
        told = [d for d in stored if d not in sent]
        notified = {n["delivery"]["id"] for n in flow["notifications"]}
        # (a completed flow's last progress and its end go as one request: docs/flows.md)
        assert len(told) == len(notified) == len(flow["notifications"]) - 1
        assert notified == {d["id"] for d in told}
        attempts = {d["id"]: d["attempts"] for d in sent}
        for step in services:
            assert by[step]["state"] == "done" and by[step]["sends"] == 1, by[step]
            assert registered[step][code] == 1, (step, code)
            assert 1 <= received[step][code] <= attempts[by[step]["deliveryId"]], (step, code)
