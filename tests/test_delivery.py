"""Store-and-forward delivery in-process: intake, order, idempotency, retries, dead letters, views.

The gateway runs in a TestClient with the demo catalog; the portal's and the one-stop system's
connectors are plain functions, so each test decides what the upstream answers.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
import yaml
from fastapi.testclient import TestClient

from connectors.dvcqg import data
from gateway.app import create_app
from gateway.config import load_config
from gateway.connector import Call, Reply
from gateway.delivery.tables import deliveries
from gateway.errors import UpstreamError, UpstreamTimeout, UpstreamUnavailable
from gateway.init import initialise
from gateway.runtime import Runtime
from gateway.storage.db import upgrade
from tests.helpers import FunctionConnector

MOTCUA = "VN/GOV/000.00.00.H60/MOTCUA"  # Tuyên Quang's one-stop system
PORTAL_CLIENT = "VN/GOV/000.00.00.G22/DVCQG"
PUSH = "VN/GOV/000.00.00.G22/DVCQG/DongBoHoSoMC"
PROGRESS = "VN/GOV/000.00.00.G22/DVCQG/CapNhatTienDoHoSoMC"
DOWN = "VN/GOV/000.00.00.H60/MOTCUA/NhanHoSo"
FAST = {"backoff_base": 0.05, "backoff_max": 0.2, "poll_interval": 0.05, "breaker_failures": 1000,
        "max_attempts": 4, "lease_margin": 2}


class Gateway:
    """A gateway in a TestClient, tokens for its clients, and the upstream functions it calls."""

    def __init__(self, client: TestClient, secrets: dict[str, str], config_path: Path) -> None:
        self.client = client
        self.secrets = secrets
        self.config_path = config_path
        self.sent: list[tuple[str, Any]] = []  # (operation, payload) as the upstream got them
        self.answer: Callable[[Call], Reply] = lambda call: Reply({"error_code": "00"})
        self._tokens: dict[tuple[str, str], str] = {}
        for service in (PUSH, PROGRESS, DOWN):
            self.runtime.connectors[service] = FunctionConnector(self._upstream)

    @property
    def runtime(self) -> Runtime:
        return self.client.app.api.state.runtime  # type: ignore[attr-defined,no-any-return]

    async def _upstream(self, call: Call) -> Reply:
        await asyncio.sleep(0)
        reply = self.answer(call)
        self.sent.append((call.operation, call.payload))
        return reply

    def token(self, client: str = MOTCUA, scope: str | None = None) -> str:
        key = (client, scope or "")
        if key not in self._tokens:
            form = {"grant_type": "client_credentials", **({"scope": scope} if scope else {})}
            r = self.client.post("/oauth/token", data=form, auth=(client, self.secrets[client]))
            assert r.status_code == 200, r.text
            self._tokens[key] = r.json()["access_token"]
        return self._tokens[key]

    def push(self, service: str, body: Any, client: str = MOTCUA, **headers: str) -> Any:
        return self.client.post(f"/r1/{service}", content=json.dumps(body),
                                headers={"Authorization": f"Bearer {self.token(client)}",
                                         "Content-Type": "application/json", **headers})

    def show(self, delivery_id: str, client: str = MOTCUA) -> dict[str, Any]:
        r = self.client.get(f"/deliveries/{delivery_id}",
                            headers={"Authorization": f"Bearer {self.token(client)}"})
        assert r.status_code == 200, r.text
        return dict(r.json())

    def wait(self, ids: list[str], states: tuple[str, ...] = ("delivered",), timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.runtime.deliveries.store.reader.connect() as conn:  # takes no write lock
                got = dict(conn.execute(sa.select(deliveries.c.id, deliveries.c.state)
                                        .where(deliveries.c.id.in_(ids))).all())
            if all(got.get(i) in states for i in ids):
                return
            time.sleep(0.02)
        raise AssertionError(f"not all {states} in time: {got}")


def make_config(tmp_path: Path, **delivery: object) -> tuple[Path, dict[str, str]]:
    init = initialise(tmp_path / "gw")
    cfg = yaml.safe_load(init.config_path.read_text())
    cfg["delivery"] = {**FAST, **delivery}
    cfg["clients"] = [{**c, "scopes": ["exchange", "operator", "stats"]} if c["id"] == MOTCUA else c
                      for c in cfg["clients"]]
    init.config_path.write_text(yaml.safe_dump(cfg, allow_unicode=True, sort_keys=False))
    return init.config_path, init.secrets


@pytest.fixture
def gateway(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Gateway]:
    delivery = getattr(request, "param", {})
    path, secrets = make_config(tmp_path, **delivery)
    config = load_config(path)
    upgrade(config.database_url)
    with TestClient(create_app(config)) as client:
        yield Gateway(client, secrets, path)


def dossier(index: int, status: int = 2, **changes: Any) -> dict[str, Any]:
    return {**data.dossier(2026, index, agency="000.00.23.H60", status=status), **changes}


def progress(record: dict[str, Any], step: int) -> dict[str, Any]:
    return data.progress(record, step)


def test_async_push_is_stored_audited_then_delivered(gateway: Gateway) -> None:
    """202 with a delivery id and Location once stored; the worker delivers it, audited as an attempt."""
    record = dossier(1)
    r = gateway.push(PUSH, record)
    assert r.status_code == 202, r.text
    body = r.json()
    assert r.headers["location"] == f"/deliveries/{body['deliveryId']}" == body["location"]
    assert body["state"] == "pending" and body["duplicate"] is False
    gateway.wait([body["deliveryId"]])
    assert gateway.sent == [("DongBoHoSoMC", record)]
    shown = gateway.show(body["deliveryId"])
    assert shown["state"] == "delivered" and shown["attempts"] == 1 and shown["dossier"] == record["MaHoSo"]
    assert shown["response"] == {"status": 200, "body": {"error_code": "00"}}
    audit = gateway.runtime.audit
    intake = [json.loads(leaf.leaf) for leaf in audit.by_exchange(r.headers["x-road-id"])]
    attempt = [json.loads(leaf.leaf) for leaf in audit.by_exchange(f"{body['deliveryId']}.1")]
    assert [leaf["status"] for leaf in intake] == [202]
    assert [(leaf["protocol"], leaf["status"], leaf["outcome"]) for leaf in attempt] == [
        ("delivery", 200, "ok")]
    assert attempt[0]["client"] == MOTCUA and attempt[0]["rule"] == intake[0]["rule"]


def test_invalid_dossier_gets_422_with_every_path_and_is_not_queued(gateway: Gateway) -> None:
    """Schema errors come back with the JSON path of each; nothing is stored."""
    bad = dossier(2, NgayTiepNhan="2026-13-45", TrangThaiHoSo="11")
    del bad["MaTTHC"]
    r = gateway.push(PUSH, {"data": [bad], "isUpdating": False})
    assert r.status_code == 422, r.text
    paths = {e["path"] for e in r.json()["errors"]}
    assert paths == {"$.data[0].MaTTHC", "$.data[0].NgayTiepNhan", "$.data[0].TrangThaiHoSo"}
    with gateway.runtime.engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(deliveries)).scalar() == 0


def test_one_request_concerns_one_dossier(gateway: Gateway) -> None:
    """An async request with records of two dossiers is refused: each dossier has its own order."""
    r = gateway.push(PUSH, [dossier(3), dossier(4)])
    assert r.status_code == 422 and r.json()["errors"][0]["path"] == "$.data"


def test_repeated_push_returns_the_first_delivery(gateway: Gateway) -> None:
    """The same dossier content, or the same Idempotency-Key, finds the first delivery."""
    record = dossier(5)
    first = gateway.push(PUSH, record).json()
    again = gateway.push(PUSH, record).json()
    assert again["deliveryId"] == first["deliveryId"] and again["duplicate"] is True
    keyed = gateway.push(PUSH, dossier(6), **{"Idempotency-Key": "motcua-42"}).json()
    changed = gateway.push(PUSH, dossier(6, GhiChu="sửa"), **{"Idempotency-Key": "motcua-42"}).json()
    assert changed["deliveryId"] == keyed["deliveryId"] and changed["duplicate"]
    gateway.wait([first["deliveryId"], keyed["deliveryId"]])
    assert len(gateway.sent) == 2


def test_a_dossier_goes_before_its_updates_and_dossiers_in_parallel(gateway: Gateway) -> None:
    """Per MaHoSo, deliveries leave in the order accepted, even when the first ones fail for a while."""
    records = [dossier(10 + i) for i in range(3)]
    # Each dossier's push fails twice (of max_attempts 4): which dossier the workers try first must
    # not decide whether one of them runs out of attempts.
    failures = {record["MaHoSo"]: 2 for record in records}

    def flaky(call: Call) -> Reply:
        code = call.payload["MaHoSo"] if isinstance(call.payload, dict) else None
        if call.operation == "DongBoHoSoMC" and failures.get(code, 0) > 0:
            failures[code] -= 1
            raise UpstreamUnavailable("portal down")
        return Reply({"error_code": "00"})

    gateway.answer = flaky
    ids = []
    for record in records:
        ids.append(gateway.push(PUSH, record).json()["deliveryId"])
        for step in range(3):
            ids.append(gateway.push(PROGRESS, progress(record, step)).json()["deliveryId"])
    gateway.wait(ids)
    for record in records:
        mine = [(op, p) for op, p in gateway.sent if p["MaHoSo"] == record["MaHoSo"]]
        assert [op for op, _ in mine] == ["DongBoHoSoMC"] + ["CapNhatTienDoHoSoMC"] * 3
        assert [p for _, p in mine[1:]] == [progress(record, step) for step in range(3)]


def test_retryable_failures_back_off_then_dead_letter(gateway: Gateway) -> None:
    """Timeouts are retried up to max_attempts, then the delivery is dead, with the last error."""
    def slow(call: Call) -> Reply:
        raise UpstreamTimeout("the portal did not answer in time")

    gateway.answer = slow
    delivery = gateway.push(PUSH, dossier(20)).json()["deliveryId"]
    gateway.wait([delivery], ("dead",))
    shown = gateway.show(delivery)
    assert shown["attempts"] == FAST["max_attempts"]
    assert shown["lastError"]["code"] == "Server.ServiceTimeout" and shown["lastError"]["retryable"]


def test_a_permanent_refusal_is_dead_at_once_and_holds_its_chain(gateway: Gateway) -> None:
    """The portal's "02" (invalid data) is not retried; the dossier's updates wait for an operator."""
    def refuse(call: Call) -> Reply:
        if call.operation == "DongBoHoSoMC":
            raise UpstreamError("[02] Dữ liệu không hợp lệ", extra={"error_code": "02"}, retryable=False)
        return Reply({"error_code": "00"})

    gateway.answer = refuse
    record = dossier(21)
    first = gateway.push(PUSH, record).json()["deliveryId"]
    update = gateway.push(PROGRESS, progress(record, 1)).json()["deliveryId"]
    gateway.wait([first], ("dead",))
    time.sleep(0.3)
    shown = gateway.show(first)
    assert shown["attempts"] == 1 and shown["lastError"]["error_code"] == "02"
    assert gateway.show(update)["waitingFor"] == first
    assert [op for op, _ in gateway.sent] == []
    gateway.answer = lambda call: Reply({"error_code": "00"})
    operator = {"Authorization": f"Bearer {gateway.token(MOTCUA, 'operator')}"}
    assert gateway.client.post(f"/deliveries/{first}/retry", headers=operator).json() == {"retried": 1}
    gateway.wait([first, update])
    assert [op for op, _ in gateway.sent] == ["DongBoHoSoMC", "CapNhatTienDoHoSoMC"]


def test_impossible_status_change_is_refused(gateway: Gateway) -> None:
    """A dossier whose result was returned (10) cannot go back to processing (4): 422, not queued."""
    record = dossier(30)
    assert gateway.push(PUSH, record).status_code == 202
    done = progress(record, 4)
    assert done["TrangThai"] == "10"
    assert gateway.push(PROGRESS, done).status_code == 202
    back = {**progress(record, 1), "NoiDungXuLy": "Xử lý lại"}
    r = gateway.push(PROGRESS, back)
    assert r.status_code == 422, r.text
    assert "cannot become 4" in r.json()["detail"]


@pytest.mark.parametrize("gateway", [{"transitions": "flag"}], indirect=True)
def test_impossible_status_change_can_be_flagged_instead(gateway: Gateway) -> None:
    """With transitions: flag the change is accepted, delivered, and flagged for operators."""
    record = dossier(31, status=10)
    gateway.push(PUSH, record)
    r = gateway.push(PROGRESS, progress(record, 1))
    assert r.status_code == 202 and "cannot become 4" in r.json()["flag"]
    operator = {"Authorization": f"Bearer {gateway.token(MOTCUA, 'operator')}"}
    listed = gateway.client.get("/deliveries?flagged=true", headers=operator).json()["items"]
    assert [d["id"] for d in listed] == [r.json()["deliveryId"]]


def test_downward_flow_delivers_portal_dossiers_to_the_province(gateway: Gateway) -> None:
    """A dossier filed on the portal goes down to the one-stop system the same way."""
    record = dossier(40)
    r = gateway.push(DOWN, record, client=PORTAL_CLIENT)
    assert r.status_code == 202, r.text
    gateway.wait([r.json()["deliveryId"]])
    assert gateway.sent == [("NhanHoSo", record)]


def test_only_the_owner_or_an_operator_sees_a_delivery(gateway: Gateway) -> None:
    """Another client gets 404 for a delivery it did not make; operators see all."""
    delivery = gateway.push(PUSH, dossier(50)).json()["deliveryId"]
    other = {"Authorization": f"Bearer {gateway.token(PORTAL_CLIENT)}"}
    assert gateway.client.get(f"/deliveries/{delivery}", headers=other).status_code == 404
    assert gateway.client.get("/deliveries", headers=other).status_code == 403
    assert gateway.client.get(f"/deliveries/{delivery}").status_code == 401


def test_metrics_count_the_queue(gateway: Gateway) -> None:
    """/metrics reports depth by state, attempts and the oldest pending delivery's age."""
    gateway.answer = lambda call: (_ for _ in ()).throw(UpstreamError("x", retryable=False))
    delivery = gateway.push(PUSH, dossier(60)).json()["deliveryId"]
    gateway.wait([delivery], ("dead",))
    scraper = {"Authorization": f"Bearer {gateway.token('VN/GOV/000.00.00.G22/GIAMSAT')}"}
    text = gateway.client.get("/metrics", headers=scraper).text
    assert f'lienthong_deliveries{{service="{PUSH}",state="dead"}} 1.0' in text
    assert f'lienthong_delivery_dead_letters{{service="{PUSH}"}} 1.0' in text
    assert "lienthong_delivery_oldest_pending_seconds 0.0" in text


def test_operators_cli_lists_retries_replays_and_reports(gateway: Gateway) -> None:
    """lienthong deliveries list/show/retry/cancel/replay and lienthong stats work on the database."""
    from click.testing import CliRunner

    from gateway.cli import main

    def cli(*args: str) -> str:
        words = 1 if args[0] == "stats" else 2
        out = CliRunner().invoke(main, [*args[:words], "--config", str(gateway.config_path),
                                        *args[words:]])
        assert out.exit_code == 0, out.output
        return out.output

    gateway.answer = lambda call: (_ for _ in ()).throw(UpstreamError("[02]", retryable=False))
    record = dossier(70, status=10, NgayKetThucXuLy="20260602100000")
    dead = gateway.push(PUSH, record).json()["deliveryId"]
    other = gateway.push(PUSH, dossier(71)).json()["deliveryId"]
    gateway.wait([dead, other], ("dead",))
    listed = json.loads(cli("deliveries", "list", "--state", "dead", "--json"))
    assert {d["id"] for d in listed} == {dead, other}
    assert json.loads(cli("deliveries", "show", dead))["lastError"]["retryable"] is False
    assert "1 deliveries cancelled" in cli("deliveries", "cancel", other)
    gateway.answer = lambda call: Reply({"error_code": "00"})
    assert "1 deliveries queued again" in cli("deliveries", "retry", "--dead")
    gateway.wait([dead])
    replayed = cli("deliveries", "replay", "--dossier", record["MaHoSo"]).split(": ")[1].split()
    gateway.wait(replayed)
    assert [op for op, p in gateway.sent if p["MaHoSo"] == record["MaHoSo"]] == ["DongBoHoSoMC"] * 2
    assert gateway.show(replayed[0])["replayOf"] == dead
    attempts = [leaf.exchange_id for leaf in gateway.runtime.audit.read(0, 1000)
                if leaf.exchange_id.startswith(dead)]
    assert attempts == [f"{dead}.1", f"{dead}.2"]  # a retried delivery's attempts keep counting
    (kpi,) = json.loads(cli("stats", "--period", "all", "--json"))
    assert (kpi["agency"], kpi["received"], kpi["resolved"], kpi["resolvedOnTime"]) == (
        "000.00.00.H60", 1, 1, 1)
