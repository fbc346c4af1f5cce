"""Dossier KPIs across the 2025 reorganisation (gateway/delivery/stats.py, issue 21): per recorded
agency, a former one's items marked with its successor, and rolled up into the agency current today;
over HTTP (``GET /stats/dossiers?rollup=true``), on the command line (``lienthong stats --rollup``)
and in the console (former names beside current ones, in Vietnamese and English; the catalog's
validity periods and successors).

The served gateway first runs the catalog as it was before the merger (Hà Giang, H22, current, with
its one-stop client), which pushes its June 2025 dossiers to the portal; then the demo catalog, in
which Hà Giang ended on 2025-06-30 and Tuyên Quang (H60) took its work over: Tuyên Quang's client
pushes its own dossiers and resolves some of Hà Giang's, which stay Hà Giang's in the figures. Every
figure is compared with a count written the obvious way from what was pushed.
"""

from __future__ import annotations

import asyncio
import json
import random
import re
import secrets
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
import yaml
from click.testing import CliRunner
from fastapi.testclient import TestClient

from connectors.dvcqg import data
from gateway.agencies import Agencies
from gateway.app import create_app
from gateway.cli import main
from gateway.config import Member, Split, load_config
from gateway.connector import Call, Reply
from gateway.console.users import UserStore
from gateway.delivery.stats import Succession, bucket, compute, report
from gateway.delivery.tables import deliveries, delivery_dossiers
from gateway.init import HA_GIANG, NGHE_AN, TUYEN_QUANG, Ports, initialise
from gateway.init import catalog as demo_catalog
from gateway.oauth.secrets import hash_secret
from gateway.storage.db import create_engine, upgrade
from tests.helpers import FunctionConnector

H22, H60, H41 = "000.00.00.H22", "000.00.00.H60", "000.00.00.H41"
HA_GIANG_CLIENT = f"{HA_GIANG}/MOTCUA"
TUYEN_QUANG_CLIENT = f"{TUYEN_QUANG}/MOTCUA"
PUSH = "VN/GOV/000.00.00.G22/DVCQG/DongBoHoSoMC"
PROGRESS = "VN/GOV/000.00.00.G22/DVCQG/CapNhatTienDoHoSoMC"
FAST = {"backoff_base": 0.05, "backoff_max": 0.2, "poll_interval": 0.05, "breaker_failures": 1000,
        "max_attempts": 4, "lease_margin": 2}
DAY = date(2026, 1, 15)  # a day after the merger
PASSWORD = "mat-khau-du-dai-1"
FIGURES = ("received", "receivedOnline", "resolved", "resolvedOnTime")


def demo_agencies() -> Agencies:
    """The demo catalog's agencies (Hà Giang former, merged into Tuyên Quang; Nghệ An unchanged)."""
    members = demo_catalog(Ports())["members"]
    assert isinstance(members, list)
    return Agencies([Member.model_validate(m) for m in members])


# -- the figures, pure ------------------------------------------------------------------------------

def row(agency: str, received: str | None, *, online: bool = False, status: int | None = 2,
        resolved: str | None = None, due: str | None = None) -> dict[str, Any]:
    return {"agency": agency, "received_at": received, "online": online, "status": status,
            "resolved_at": resolved, "due_at": due}


def random_rows(seed: int, agencies: tuple[str, ...], n: int = 600) -> list[dict[str, Any]]:
    rng = random.Random(seed)
    rows = []
    for _ in range(n):
        day = rng.randrange(0, 120)
        received = f"2025{5 + day // 30:02d}{1 + day % 28:02d}0800{rng.randrange(60):02d}"
        status = rng.choice([2, 4, 5, 9, 10])
        later = day + rng.randrange(1, 20)
        resolved = (f"2025{5 + later // 30:02d}{1 + later % 28:02d}1000{rng.randrange(60):02d}"
                    if status in (9, 10) else None)
        due = f"2025{5 + (day + 10) // 30:02d}{1 + (day + 10) % 28:02d}170000"
        rows.append(row(rng.choice(agencies), received, online=rng.random() < 0.4, status=status,
                        resolved=resolved, due=due))
    return rows


def naive(rows: list[dict[str, Any]], period: str, into: dict[str, str] | None = None
          ) -> dict[tuple[str, str], dict[str, Any]]:
    """The reference: one dossier at a time, into (agency, period) -> figures and agencies counted."""
    out: dict[tuple[str, str], dict[str, Any]] = {}

    def item(agency: str, moment: str) -> dict[str, Any]:
        key = ((into or {}).get(agency, agency), bucket(moment, period))
        found = out.setdefault(key, {**dict.fromkeys(FIGURES, 0), "includes": set()})
        found["includes"].add(agency)
        return found

    for r in rows:
        if r["received_at"]:
            k = item(r["agency"], r["received_at"])
            k["received"] += 1
            k["receivedOnline"] += bool(r["online"])
        if r["resolved_at"] and r["status"] in (9, 10):
            k = item(r["agency"], r["resolved_at"])
            k["resolved"] += 1
            k["resolvedOnTime"] += bool(r["due_at"] and r["resolved_at"] <= r["due_at"])
    return out


def figures(item: dict[str, Any]) -> dict[str, int]:
    return {f: item[f] for f in FIGURES}


@pytest.mark.parametrize("period", ["month", "quarter", "all"])
def test_rolled_up_figures_equal_a_naive_count(period: str) -> None:
    """Random dossiers of Hà Giang, Tuyên Quang and Nghệ An: per agency as recorded, each figure is
    that agency's own count; rolled up, Tuyên Quang's is the sum of both, and Nghệ An's unchanged."""
    rows = random_rows(21, (H22, H60, H41))
    into = {H22: H60}
    per_agency = {(k.agency, k.period): k.as_dict() for k in compute(rows, period=period)}
    rolled = {(k.agency, k.period): k.as_dict()
              for k in compute(rows, period=period, rollup=lambda code: into.get(code, code))}
    expected_per_agency = naive(rows, period)
    expected_rolled = naive(rows, period, into)
    assert set(per_agency) == set(expected_per_agency)
    assert set(rolled) == set(expected_rolled)
    assert {a for a, _ in rolled} == {H60, H41}
    for key, item in per_agency.items():
        assert figures(item) == figures(expected_per_agency[key]), key
        assert "includes" not in item  # per agency: the keys are as they were
    for key, item in rolled.items():
        assert figures(item) == figures(expected_rolled[key]), key
        assert item["includes"] == sorted(expected_rolled[key]["includes"]), key
    # the roll-up only moves figures: the totals are the same
    for f in FIGURES:
        assert sum(i[f] for i in rolled.values()) == sum(i[f] for i in per_agency.values())
    if period == "all":
        assert rolled[(H60, "all")]["includes"] == [H22, H60]
        assert rolled[(H41, "all")]["includes"] == [H41]


def test_shares_are_recomputed_from_the_summed_counts() -> None:
    """A rolled-up share is the share of the sums, not an average of the agencies' shares."""
    rows = [row(H22, "20250610080000", online=True), row(H60, "20250710080000"),
            row(H60, "20250711080000"), row(H60, "20250712080000", online=True)]
    (k,) = compute(rows, period="all", rollup=lambda code: H60 if code == H22 else code)
    assert (k.received, k.received_online, k.as_dict()["onlineShare"]) == (4, 2, 0.5)


def test_succession_of_the_demo_catalog() -> None:
    """Hà Giang rolls up into Tuyên Quang and is former; Tuyên Quang's group holds both; Nghệ An and
    codes no member has stay themselves."""
    succession = Succession(demo_agencies(), DAY)
    assert succession.rolled_up(H22) == H60 and succession.rolled_up(H60) == H60
    assert succession.rolled_up(H41) == H41 and succession.rolled_up("000.00.00.X99") == "000.00.00.X99"
    assert succession.group(H60) == succession.group(H22) == [H60, H22]
    assert succession.group(H41) == [H41]
    assert succession.former(H22) == {"former": True, "successor": H60}
    assert succession.former(H60) == succession.former(H41) == {}
    before = Succession(demo_agencies(), date(2025, 6, 30))  # Hà Giang's last day: not former yet
    assert before.former(H22) == {} and before.rolled_up(H22) == H22


def test_succession_of_a_split_and_a_chain() -> None:
    """A split agency stays itself when rolled up (its work went several ways) and names where its
    parts went; a chain of mergers rolls up into the last agency."""
    members = [
        Member(id="VN/GOV/000.00.00.A01", name="A", valid_until=date(2025, 6, 30),
               successor="VN/GOV/000.00.00.B02"),
        Member(id="VN/GOV/000.00.00.B02", name="B", valid_until=date(2025, 12, 31),
               successor="VN/GOV/000.00.00.C03"),
        Member(id="VN/GOV/000.00.00.C03", name="C"),
        Member(id="VN/GOV/000.00.00.D04", name="D", valid_until=date(2025, 6, 30),
               split=[Split(agencies=["D04.01"], successor="VN/GOV/000.00.00.C03"),
                      Split(agencies=["D04.02"], successor="VN/GOV/000.00.00.E05")]),
        Member(id="VN/GOV/000.00.00.E05", name="E"),
    ]
    succession = Succession(Agencies(members), DAY)
    assert succession.rolled_up("000.00.00.A01") == succession.rolled_up("000.00.00.B02") == "000.00.00.C03"
    assert succession.group("000.00.00.C03") == ["000.00.00.C03", "000.00.00.B02", "000.00.00.A01"]
    assert succession.former("000.00.00.A01") == {"former": True, "successor": "000.00.00.C03"}
    assert succession.rolled_up("000.00.00.D04") == "000.00.00.D04"
    assert succession.former("000.00.00.D04") == {"former": True,
                                                  "successors": ["000.00.00.C03", "000.00.00.E05"]}
    assert succession.group("000.00.00.D04") == ["000.00.00.D04"]


def test_report_per_agency_and_rolled_up_on_each_database(database_url: str) -> None:
    """Rows of Hà Giang, Tuyên Quang and Nghệ An in delivery_dossiers: the report per recorded agency
    marks Hà Giang's items former; rolled up they are summed into Tuyên Quang; filtering by either code
    with the roll-up selects both; the same on SQLite and PostgreSQL."""
    rows = random_rows(7, (H22, H60, H41), n=300)
    engine = create_engine(database_url)
    with engine.begin() as conn:
        conn.execute(sa.insert(delivery_dossiers), [
            {"code": f"X{i:06d}", "agency": r["agency"], "received_at": r["received_at"],
             "resolved_at": r["resolved_at"], "due_at": r["due_at"], "online": r["online"],
             "status": r["status"], "updated_us": 0} for i, r in enumerate(rows)])
    agencies = demo_agencies()
    try:
        per_agency = report(engine, period="month", agencies=agencies, day=DAY)
        expected = naive(rows, "month")
        assert {(i["agency"], i["period"]) for i in per_agency} == set(expected)
        for item in per_agency:
            assert figures(item) == figures(expected[(item["agency"], item["period"])])
            assert (item.get("former"), item.get("successor")) == (
                (True, H60) if item["agency"] == H22 else (None, None))
        rolled = report(engine, period="month", rollup=True, agencies=agencies, day=DAY)
        expected = naive(rows, "month", {H22: H60})
        assert {(i["agency"], i["period"]) for i in rolled} == set(expected)
        for item in rolled:
            key = (item["agency"], item["period"])
            assert figures(item) == figures(expected[key])
            assert item["includes"] == sorted(expected[key]["includes"])
            assert "former" not in item
        group = [i for i in rolled if i["agency"] == H60]
        assert report(engine, period="month", rollup=True, agencies=agencies, day=DAY, agency=H60) == group
        assert report(engine, period="month", rollup=True, agencies=agencies, day=DAY, agency=H22) == group
        only = report(engine, period="month", agencies=agencies, day=DAY, agency=H22)
        assert only == [i for i in per_agency if i["agency"] == H22]
        # without the agencies (an old caller), nothing is former and nothing moves
        assert [{k: v for k, v in i.items() if k not in ("former", "successor")} for i in per_agency] \
            == report(engine, period="month", day=DAY)
    finally:
        engine.dispose()


# -- served: dossiers pushed before and after the merger ---------------------------------------------

def _dossier(index: int, agency: str, month: str, *, resolved: int | None = None) -> dict[str, Any]:
    """A dossier received in ``month`` (``202506``), resolved that day (status ``resolved``) if given."""
    record = data.dossier(2125, index, agency=agency)
    for name in ("NgayTiepNhan", "NgayHenTra"):
        record[name] = month + record[name][6:]
    if record["NgayHenTra"] < record["NgayTiepNhan"]:  # its due date was in the next month
        record["NgayHenTra"] = record["NgayTiepNhan"][:8] + "235959"
    if resolved is not None:
        record.update(TrangThaiHoSo=str(resolved), NgayKetThucXuLy=record["NgayTiepNhan"][:8] + "180000")
    return record


class Served:
    def __init__(self, client: TestClient, secrets_: dict[str, str]) -> None:
        self.client = client
        self.secrets = secrets_
        self.sent: list[tuple[str, Any]] = []
        self._tokens: dict[str, str] = {}
        for service in (PUSH, PROGRESS):
            self.runtime.connectors[service] = FunctionConnector(self._upstream)

    @property
    def runtime(self) -> Any:
        return self.client.app.api.state.runtime  # type: ignore[attr-defined]

    async def _upstream(self, call: Call) -> Reply:
        await asyncio.sleep(0)
        self.sent.append((call.operation, call.payload))
        return Reply({"error_code": "00"})

    def token(self, client: str) -> str:
        if client not in self._tokens:
            r = self.client.post("/oauth/token", data={"grant_type": "client_credentials"},
                                 auth=(client, self.secrets[client]))
            assert r.status_code == 200, r.text
            self._tokens[client] = r.json()["access_token"]
        return self._tokens[client]

    def push(self, service: str, body: dict[str, Any], client: str) -> str:
        r = self.client.post(f"/r1/{service}", content=json.dumps(body),
                             headers={"Authorization": f"Bearer {self.token(client)}",
                                      "Content-Type": "application/json"})
        assert r.status_code == 202, r.text
        return str(r.json()["deliveryId"])

    def wait(self, ids: list[str], timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        got: dict[str, str] = {}
        while time.monotonic() < deadline:
            with self.runtime.deliveries.store.reader.connect() as conn:
                got = dict(conn.execute(sa.select(deliveries.c.id, deliveries.c.state)
                                        .where(deliveries.c.id.in_(ids))).all())
            if all(got.get(i) == "delivered" for i in ids):
                return
            time.sleep(0.02)
        raise AssertionError(f"not all delivered in time: {got}")


@dataclass
class History:
    folder: Path
    config_path: Path
    secrets: dict[str, str]
    rows: list[dict[str, Any]]  # one per dossier, the naive count's input


@contextmanager
def _served(config_path: Path, secrets_: dict[str, str]) -> Iterator[Served]:
    config = load_config(config_path)
    upgrade(config.database_url)
    with TestClient(create_app(config), base_url="http://127.0.0.1") as client:
        yield Served(client, secrets_)


@pytest.fixture
def history(tmp_path: Path) -> History:
    """Hà Giang's dossiers before the merger, then Tuyên Quang's after it, on one database."""
    init = initialise(tmp_path / "gw")
    raw = yaml.safe_load(init.config_path.read_text())
    raw["delivery"] = FAST
    raw["clients"] = [{**c, "scopes": ["exchange", "operator", "stats"]} if c["id"] == TUYEN_QUANG_CLIENT
                      else c for c in raw["clients"]]
    init.config_path.write_text(yaml.safe_dump(raw, allow_unicode=True, sort_keys=False))
    # The catalog as it was in June 2025: Hà Giang current, with its one-stop system as a client.
    before = json.loads(json.dumps(raw))
    for member in before["members"]:
        if member["id"] == HA_GIANG:
            for key in ("valid_until", "successor", "routing"):
                member.pop(key, None)
    secret = secrets.token_urlsafe(24)
    before["clients"].append({"id": HA_GIANG_CLIENT, "name": "Hệ thống một cửa điện tử tỉnh Hà Giang",
                              "secret_hash": hash_secret(secret), "scopes": ["exchange"]})
    before_path = init.config_path.with_name("before-2025-07.yaml")
    before_path.write_text(yaml.safe_dump(before, allow_unicode=True, sort_keys=False))
    secrets_ = {**init.secrets, HA_GIANG_CLIENT: secret}

    facts: dict[str, dict[str, Any]] = {}

    def fact(record: dict[str, Any], agency: str) -> None:
        status = int(record["TrangThaiHoSo"])
        facts[record["MaHoSo"]] = {
            "agency": agency, "received_at": record["NgayTiepNhan"], "online": record["HinhThuc"] == "1",
            "status": status, "due_at": record["NgayHenTra"],
            "resolved_at": record["NgayKetThucXuLy"] or None if status in (9, 10) else None}

    # Before: Hà Giang's twelve June dossiers, four of them resolved in June (by their own date).
    ha_giang = [_dossier(i, "000.23.20.H22", "202506", resolved=10 if i % 3 == 0 else None)
                for i in range(12)]
    with _served(before_path, secrets_) as served:
        served.wait([served.push(PUSH, r, HA_GIANG_CLIENT) for r in ha_giang])
    for record in ha_giang:
        fact(record, H22)

    # After: Tuyên Quang's eight July dossiers (three resolved in July), and Tuyên Quang resolving
    # four of Hà Giang's open ones in July by a progress step: they stay Hà Giang's dossiers.
    tuyen_quang = [_dossier(100 + i, "000.31.20.H60", "202507", resolved=9 if i % 3 == 1 else None)
                   for i in range(8)]
    open_ones = [r for r in ha_giang if r["TrangThaiHoSo"] == "2"][:4]
    steps = []
    for n, record in enumerate(open_ones):
        step = {**data.progress(record, 4), "TrangThai": "10",
                "ThoiDiemXuLy": f"202507{10 + n:02d}090000"}
        step["NgayBatDau"] = step["ThoiDiemXuLy"]
        steps.append(step)
    with _served(init.config_path, secrets_) as served:
        ids = [served.push(PUSH, r, TUYEN_QUANG_CLIENT) for r in tuyen_quang]
        ids += [served.push(PROGRESS, s, TUYEN_QUANG_CLIENT) for s in steps]
        served.wait(ids)
    for record in tuyen_quang:
        fact(record, H60)
    for step in steps:
        facts[step["MaHoSo"]].update(status=10, resolved_at=step["ThoiDiemXuLy"])
    return History(init.config_path.parent, init.config_path, secrets_, list(facts.values()))


def test_history_as_recorded_and_rolled_up(history: History) -> None:
    """Over HTTP: per recorded agency, Hà Giang keeps its dossiers (those Tuyên Quang resolved too)
    and its items say it is former, now Tuyên Quang; rolled up, one row per successor and month, equal
    to the naive sums and naming the agencies they include; the API, the CLI and the database agree."""
    per_agency_expected = naive(history.rows, "month")
    rolled_expected = naive(history.rows, "month", {H22: H60})
    assert per_agency_expected[(H22, "2025-07")]["resolved"] == 4  # resolved by Tuyên Quang, still H22's
    assert rolled_expected[(H60, "2025-07")]["includes"] == {H22, H60}
    with _served(history.config_path, history.secrets) as served:
        auth = {"Authorization": f"Bearer {served.token(TUYEN_QUANG_CLIENT)}"}
        r = served.client.get("/stats/dossiers", params={"period": "month"}, headers=auth)
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["rollup"] is False
        per_agency = {(i["agency"], i["period"]): i for i in body["items"]}
        assert set(per_agency) == set(per_agency_expected)
        for key, item in per_agency.items():
            assert figures(item) == figures(per_agency_expected[key]), key
            if key[0] == H22:
                assert item["former"] is True and item["successor"] == H60
            else:
                assert "former" not in item and "successor" not in item and "includes" not in item
        r = served.client.get("/stats/dossiers", params={"period": "month", "rollup": "true"}, headers=auth)
        rolled = r.json()["items"]
        assert r.json()["rollup"] is True
        assert [(i["agency"], i["period"]) for i in rolled] == sorted(rolled_expected)
        for item in rolled:
            expected = rolled_expected[(item["agency"], item["period"])]
            assert figures(item) == figures(expected)
            assert item["includes"] == sorted(expected["includes"])
        assert [i["includes"] for i in rolled] == [[H22], [H22, H60]]  # June 2025: Hà Giang's only
        for code in (H60, H22):
            r = served.client.get("/stats/dossiers", headers=auth,
                                  params={"period": "all", "rollup": "true", "agency": code})
            (everything,) = r.json()["items"]
            assert figures(everything) == figures(naive(history.rows, "all", {H22: H60})[(H60, "all")])
        r = served.client.get("/stats/dossiers", headers=auth, params={"period": "all", "agency": H60})
        (own,) = r.json()["items"]
        assert figures(own) == figures(naive(history.rows, "all")[(H60, "all")])
        spec = served.client.get("/openapi.json").json()
        params = {p["name"]: p for p in spec["paths"]["/stats/dossiers"]["get"]["parameters"]}
        assert "roll former agencies' figures up" in params["rollup"]["description"]
        api_rolled = rolled

    runner = CliRunner()
    out = runner.invoke(main, ["stats", "--config", str(history.config_path), "--period", "month",
                               "--rollup", "--json"])
    assert out.exit_code == 0, out.output
    assert json.loads(out.output) == api_rolled
    out = runner.invoke(main, ["stats", "--config", str(history.config_path), "--period", "month",
                               "--json"])
    assert {(i["agency"], i["period"]): figures(i) for i in json.loads(out.output)} == {
        key: figures(value) for key, value in per_agency_expected.items()}
    table = runner.invoke(main, ["stats", "--config", str(history.config_path), "--period", "all",
                                 "--rollup"], env={"COLUMNS": "250"})
    assert table.exit_code == 0 and "includes" in table.output
    assert f"{H22}, {H60}" in table.output
    table = runner.invoke(main, ["stats", "--config", str(history.config_path), "--period", "all"],
                          env={"COLUMNS": "250"})
    assert f"→ {H60}" in table.output
    helped = runner.invoke(main, ["stats", "--help"], env={"COLUMNS": "200"})
    assert "--rollup" in helped.output and "former agencies" in helped.output


def _sign_in(client: TestClient, username: str) -> None:
    page = client.get("/console/login")
    csrf = re.search(r'name="csrf" value="([^"]+)"', page.text)
    assert csrf
    r = client.post("/console/login", data={"csrf": csrf.group(1), "username": username,
                                             "password": PASSWORD, "next": ""}, follow_redirects=False)
    assert r.status_code == 303, r.text


def test_console_names_former_agencies_beside_current_ones(history: History) -> None:
    """The overview's KPIs name Hà Giang as former, now part of Tuyên Quang, in Vietnamese and English;
    the roll-up toggle shows Tuyên Quang including Hà Giang; the catalog shows validity and successor."""
    config = load_config(history.config_path)
    store = UserStore(create_engine(config.database_url))
    store.add("vanhanh", "operator", PASSWORD, "Phạm Văn Hành")
    store.engine.dispose()
    with _served(history.config_path, history.secrets) as served:
        client = served.client
        _sign_in(client, "vanhanh")
        page = client.get("/console/overview?period=month")
        assert page.status_code == 200
        table = page.text[page.text.index('id="kpi-table"'):]
        assert "UBND tỉnh Hà Giang (cũ, nay thuộc UBND tỉnh Tuyên Quang)" in table
        assert "UBND tỉnh Tuyên Quang <small" in table  # per agency: Tuyên Quang as itself
        assert "UBND tỉnh Hà Giang (cũ) · 2025-07" in page.text  # the chart's short label
        toggle = re.search(r'id="kpi-rollup" href="([^"]+)"', page.text)
        assert toggle and "rollup=1" in toggle.group(1)
        rolled = client.get(toggle.group(1).replace("&amp;", "&"))
        assert rolled.status_code == 200
        table = rolled.text[rolled.text.index('id="kpi-table"'):]
        assert "UBND tỉnh Tuyên Quang (gồm cả UBND tỉnh Hà Giang)" in table
        assert "UBND tỉnh Hà Giang (cũ" not in table and f'<small class="id">{H22}</small>' in table
        assert "Gồm số liệu của" in table
        assert re.search(r'name="rollup" value="1"\s+checked', rolled.text)  # the filter form keeps it
        back = re.search(r'id="kpi-rollup" href="([^"]+)"', rolled.text)
        assert back and "rollup" not in back.group(1)
        client.get("/console/lang/en?next=/console/overview")
        english = client.get("/console/overview?period=month").text
        assert "UBND tỉnh Hà Giang (former, now part of UBND tỉnh Tuyên Quang)" in english
        english = client.get("/console/overview?period=month&rollup=1").text
        assert "UBND tỉnh Tuyên Quang (including UBND tỉnh Hà Giang)" in english
        catalog = client.get("/console/catalog").text
        assert "from 2025-07-01" in catalog and "until the end of 2025-06-30" in catalog
        ha_giang = _member_section(catalog, "UBND tỉnh Hà Giang", HA_GIANG)
        assert "former agency" in ha_giang and "Successor" in ha_giang
        assert f'UBND tỉnh Tuyên Quang <small class="id">{TUYEN_QUANG}</small>' in ha_giang
        tuyen_quang = _member_section(catalog, "UBND tỉnh Tuyên Quang", TUYEN_QUANG)
        assert "Includes former agencies" in tuyen_quang and "UBND tỉnh Hà Giang" in tuyen_quang
        assert "agency-change" not in _member_section(catalog, "UBND tỉnh Nghệ An", NGHE_AN)
        client.get("/console/lang/vi?next=/console/catalog")
        catalog = client.get("/console/catalog").text
        assert "từ 2025-07-01" in catalog and "đến hết 2025-06-30" in catalog and "Cơ quan kế thừa" in catalog
        purposes = [json.loads(bytes(r.leaf)).get("purpose") for r in _console_records(served)]
        assert "window=24h period=month rollup" in purposes


def _member_section(page: str, name: str, member: str) -> str:
    """One member's part of the catalog page, from its heading to the end of its card."""
    found = page[page.index(f'<h2>{name} <small class="id">{member}</small>'):]
    return found[:found.index("</section>")]


def _console_records(served: Served) -> list[Any]:
    from gateway.storage.tables import audit_leaves

    with served.runtime.engine.connect() as conn:
        return list(conn.execute(sa.select(audit_leaves.c.leaf)
                                 .where(audit_leaves.c.client == "console")).all())
