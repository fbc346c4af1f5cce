"""The joint procedures' KPIs: counts, overdue, medians and p90s, shares, per flow kind, step and
agency, from rows with known times (SQLite and PostgreSQL); ``GET /stats/flows``; ``lienthong stats
flows`` and ``lienthong flows list|show``; and, through a running stack, the KPIs against a naive
count from the agencies' simulators."""

from __future__ import annotations

import json
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from click.testing import CliRunner
from fastapi.testclient import TestClient

from gateway.app import create_app
from gateway.cli import main
from gateway.config import load_config
from gateway.delivery.messages import VIETNAM
from gateway.flows import stats
from gateway.flows.tables import flow_steps, flows
from gateway.init import AGENCY_SIMULATORS, initialise
from gateway.storage.db import create_engine

BIRTH, DEATH = "khai-sinh-3-trong-1", "khai-tu"
G15, G01 = "VN/GOV/000.00.00.G15", "VN/GOV/000.00.00.G01"
KS, TT = f"{G15}/HOTICH/DangKyKhaiSinh", f"{G01}/CUTRU/DangKyThuongTru"
T0 = int(datetime(2026, 6, 1, 9, 0, tzinfo=VIETNAM).timestamp()) * 1_000_000
M, H, D = 60_000_000, 3_600_000_000, 86_400_000_000
LIMITS = {BIRTH: 7 * 86_400.0, DEATH: 7 * 86_400.0}
NOW = T0 + 10 * D


def flow(fid: str, state: str, start: int, took: int | None, *, name: str = BIRTH, overdue: bool = False,
         deadline: int = 2 * D) -> dict[str, Any]:
    return {"id": fid, "name": name, "dossier_code": f"H41.31-20260601-{fid}", "client": "VN/GOV/X/MOTCUA",
            "exchange_id": fid, "state": state, "dossier": b"{}", "subjects": "[]", "started_us": start,
            "updated_us": start, "finished_us": None if took is None else start + took,
            "deadline_us": start + deadline, "overdue": overdue, "reason": None, "next_us": 0, "lease": None}


def step(fid: str, sid: str, pos: int, service: str, state: str, start: int | None, took: int | None,
         deadline: int | None = D, result: Any = None) -> dict[str, Any]:
    return {"flow_id": fid, "step": sid, "position": pos, "service": service, "state": state,
            "delivery_id": None, "undo_delivery_id": None, "sends": 1, "due_us": 0, "started_us": start,
            "finished_us": None if took is None or start is None else start + took,
            "deadline_us": None if deadline is None or start is None else start + deadline, "overdue": False,
            "result": None if result is None else json.dumps(result).encode(), "reason": None}


FLOWS = [
    flow("f1", "completed", T0, 1 * H),
    flow("f2", "completed", T0 + D, 3 * H),
    flow("f3", "completed", T0 + 2 * D, 3 * D, overdue=True),   # past its 2-day deadline, within 7 days
    flow("f4", "completed", T0 + 3 * D, 8 * D, overdue=True),   # past the legal limit too
    flow("f5", "rejected", T0 + 4 * D, 1 * H),
    flow("f6", "running", T0 + 5 * D, None),                    # past its deadline at NOW, not marked yet
    flow("f7", "waiting", T0 + 30 * D, None),                   # July
    flow("f8", "completed", T0, 2 * H, name=DEATH),
]
STEPS = [
    step("f1", "khai_sinh", 0, KS, "done", T0, 10 * M, result={"SoDinhDanh": "040126000123"}),
    step("f1", "thuong_tru", 1, TT, "done", T0 + 10 * M, 30 * M),
    step("f2", "khai_sinh", 0, KS, "done", T0 + D, 2 * D),      # past its 1-day deadline
    step("f5", "khai_sinh", 0, KS, "rejected", T0 + 4 * D, 1 * H),
    step("f5", "thuong_tru", 1, TT, "pending", None, None),
    step("f6", "khai_sinh", 0, KS, "sent", T0 + 5 * D, None),  # still out, past its deadline
]


@pytest.fixture
def engine(database_url: str) -> Any:
    eng = create_engine(database_url)
    with eng.begin() as conn:
        conn.execute(flows.insert(), FLOWS)
        conn.execute(flow_steps.insert(), STEPS)
    yield eng
    eng.dispose()


def by(items: list[dict[str, Any]], *keys: str) -> dict[tuple[Any, ...], dict[str, Any]]:
    return {tuple(i[k] for k in keys): i for i in items}


def test_counts_times_and_shares_per_flow_kind(engine: Any) -> None:
    """Started, active and overdue by the start; ended by the end; nearest-rank median and p90 of the
    completed; shares within the deadline and the legal limit."""
    got = by(stats.report(engine, period="month", limits=LIMITS, now_us=NOW)["flows"], "flow", "period")
    june = got[(BIRTH, "2026-06")]
    assert (june["started"], june["running"], june["waiting"], june["overdue"]) == (6, 1, 0, 3)
    assert (june["completed"], june["rejected"], june["failed"]) == (4, 1, 0)
    assert june["medianSeconds"] == 3 * 3600 and june["p90Seconds"] == 8 * 86_400  # of 1h, 3h, 3d, 8d
    assert (june["withinDeadline"], june["withinDeadlineShare"]) == (2, 0.5)
    assert (june["withinLegalLimit"], june["withinLegalLimitShare"]) == (3, 0.75)
    assert june["legalLimitSeconds"] == 7 * 86_400
    july = got[(BIRTH, "2026-07")]
    assert (july["started"], july["waiting"], july["completed"], july["medianSeconds"]) == (1, 1, 0, None)
    assert july["withinLegalLimitShare"] is None
    death = got[(DEATH, "2026-06")]
    assert (death["completed"], death["medianSeconds"], death["withinLegalLimitShare"]) == (1, 7200, 1.0)


def test_per_step_and_per_agency(engine: Any) -> None:
    """A step's figures are its own (sent, answered, refused, overdue, times); an agency's sum its
    steps."""
    found = stats.report(engine, period="all", limits=LIMITS, now_us=NOW)
    (birth,) = [f for f in found["flows"] if f["flow"] == BIRTH]
    steps = by(birth["steps"], "step")
    ks = steps[("khai_sinh",)]
    assert (ks["agency"], ks["started"], ks["running"], ks["completed"], ks["rejected"]) == (G15, 4, 1, 2, 1)
    assert ks["overdue"] == 1 and ks["medianSeconds"] == 600 and ks["p90Seconds"] == 2 * 86_400
    assert ks["withinDeadlineShare"] == 0.5
    agencies = by(found["agencies"], "agency")
    assert agencies[(G15,)]["started"] == 4 and agencies[(G15,)]["rejected"] == 1
    assert (agencies[(G01,)]["completed"], agencies[(G01,)]["medianSeconds"]) == (1, 1800)


def test_filters_window_and_days(engine: Any) -> None:
    """--flow, --agency (its steps, and the flows that sent it one), a window, per-day buckets."""
    only = stats.report(engine, period="all", flow=DEATH, limits=LIMITS, now_us=NOW)
    assert [f["flow"] for f in only["flows"]] == [DEATH] and only["agencies"] == []
    at = stats.report(engine, period="all", agency=G01, limits=LIMITS, now_us=NOW)
    (birth,) = at["flows"]
    assert birth["started"] == 1 and [s["step"] for s in birth["steps"]] == ["thuong_tru"]
    window = stats.report(engine, period="day", start="20260602000000", end="20260603000000", limits=LIMITS,
                          now_us=NOW)
    (day,) = window["flows"]
    assert (day["period"], day["started"], day["completed"]) == ("2026-06-02", 1, 1)  # f2
    with pytest.raises(ValueError, match="period"):
        stats.report(engine, period="week", now_us=NOW)


def test_a_naive_count_agrees() -> None:
    """The SQL folding equals a count made row by row (a flow without a loaded definition has no
    legal-limit share)."""
    eng = create_engine("sqlite://")
    flows.metadata.create_all(eng, tables=[flows, flow_steps])
    with eng.begin() as conn:
        conn.execute(flows.insert(), FLOWS)
    got = stats.report(eng, period="all", limits={BIRTH: LIMITS[BIRTH]}, now_us=NOW)["flows"]
    for item in got:
        mine = [f for f in FLOWS if f["name"] == item["flow"]]
        assert item["started"] == len(mine)
        assert item["completed"] == sum(f["state"] == "completed" for f in mine)
        assert item["overdue"] == sum(f["overdue"] or (f["state"] in ("running", "waiting")
                                                       and f["deadline_us"] < NOW) for f in mine)
    assert by(got, "flow")[(DEATH,)]["withinLegalLimitShare"] is None


# -- the API and the command line ----------------------------------------------------------------------


@pytest.fixture
def gateway(tmp_path: Path, database_url: str) -> Any:
    init = initialise(tmp_path / "gw", database=database_url)
    raw = yaml.safe_load(init.config_path.read_text())
    for client in raw["clients"]:
        if client["id"].endswith("/GIAMSAT"):
            client["scopes"] = ["metrics", "stats"]
    init.config_path.write_text(yaml.safe_dump(raw, allow_unicode=True, sort_keys=False))
    eng = create_engine(database_url)
    with eng.begin() as conn:
        conn.execute(flows.insert(), FLOWS)
        conn.execute(flow_steps.insert(), STEPS)
    eng.dispose()
    return init


def test_api_scopes_and_bad_parameters(gateway: Any) -> None:
    """GET /stats/flows answers the stats (or operator) scope, refuses others, and says 400 as
    problem+json for a bad period or date."""
    with TestClient(create_app(load_config(gateway.config_path)), base_url="http://127.0.0.1") as client:
        def token(cid: str) -> str:
            r = client.post("/oauth/token", data={"grant_type": "client_credentials"},
                            auth=(cid, gateway.secrets[cid]))
            assert r.status_code == 200, r.text
            return str(r.json()["access_token"])

        stats_client = next(c for c in gateway.secrets if c.endswith("/GIAMSAT"))
        auth = {"Authorization": f"Bearer {token(stats_client)}"}
        r = client.get("/stats/flows", headers=auth, params={"period": "all", "flow": BIRTH})
        assert r.status_code == 200, r.text
        (birth,) = r.json()["flows"]
        assert (birth["started"], birth["completed"], birth["withinLegalLimitShare"]) == (7, 4, 0.75)
        assert {a["agency"] for a in r.json()["agencies"]} == {G15, G01}
        for params in ({"period": "week"}, {"from": "not-a-date"}):
            bad = client.get("/stats/flows", headers=auth, params=params)
            assert bad.status_code == 400
            assert bad.headers["content-type"].startswith("application/problem+json")
        onestop = next(c for c in gateway.secrets if c.endswith("H41/MOTCUA"))
        refused = client.get("/stats/flows", headers={"Authorization": f"Bearer {token(onestop)}"})
        assert refused.status_code == 403
        assert client.get("/stats/flows").status_code == 401


def test_cli_stats_flows_and_flows_list_show(gateway: Any) -> None:
    """lienthong stats flows (table and --json), the dossier KPIs still at lienthong stats, and the
    read-only lienthong flows list / show."""
    runner = CliRunner()
    config = str(gateway.config_path)
    out = runner.invoke(main, ["stats", "flows", "--config", config, "--period", "all", "--json"])
    assert out.exit_code == 0, out.output
    found = json.loads(out.output)
    assert by(found["flows"], "flow")[(BIRTH,)]["withinLegalLimitShare"] == 0.75
    table = runner.invoke(main, ["stats", "flows", "--config", config, "--start", "2026-06", "--end",
                                 "2026-07"], env={"COLUMNS": "250"})
    assert table.exit_code == 0 and "khai_sinh" in table.output and "75.0%" in table.output
    assert runner.invoke(main, ["stats", "flows", "--config", config, "--from", "x"]).exit_code == 2
    dossiers = runner.invoke(main, ["stats", "--config", config, "--period", "all", "--json"])
    assert dossiers.exit_code == 0 and json.loads(dossiers.output) == []
    assert runner.invoke(main, ["stats", "--period", "all"]).exit_code == 2  # --config still needed
    helped = runner.invoke(main, ["stats", "--help"])
    assert "--rollup" in helped.output and "flows" in helped.output
    assert "--period" in runner.invoke(main, ["stats", "flows", "--help"]).output
    listed = runner.invoke(main, ["flows", "list", "--config", config, "--state", "completed", "--json"])
    assert listed.exit_code == 0, listed.output
    assert sorted(f["id"] for f in json.loads(listed.output)) == ["f1", "f2", "f3", "f4", "f8"]
    table = runner.invoke(main, ["flows", "list", "--config", config], env={"COLUMNS": "250"})
    assert "khai_sinh:done" in table.output
    shown = runner.invoke(main, ["flows", "show", "--config", config, "f1"])
    assert shown.exit_code == 0 and json.loads(shown.output)["steps"][0]["step"] == "khai_sinh"
    assert runner.invoke(main, ["flows", "show", "--config", config, "nope"]).exit_code == 1
    assert "--dossier" in runner.invoke(main, ["flows", "list", "--help"]).output


# -- through a running stack: the KPIs against the simulators' own record ------------------------------


@pytest.mark.slow
def test_kpis_equal_a_naive_count_from_the_simulators(stack: Any) -> None:
    """After flows run through the gateway, the KPIs grew by what the agencies' simulators registered
    for them: each agency's answered steps, and each flow kind's completed flows (a dossier every
    service of its path registered)."""
    from tests.test_flows_e2e import BIRTH as BIRTH_SERVICE
    from tests.test_flows_e2e import DEATH as DEATH_SERVICE
    from tests.test_flows_e2e import birth, death, file, follow

    def kpis() -> dict[str, Any]:
        eng = create_engine(stack.database)
        try:
            return stats.report(eng, period="all", limits=LIMITS, now_us=time.time_ns() // 1000)
        finally:
            eng.dispose()

    def completed(found: dict[str, Any], key: str, what: str) -> dict[str, int]:
        return {i[key]: i["completed"] for i in found[what]}

    before = kpis()
    # (flow kind, dossier, the services its path registers at)
    runs = [(BIRTH, birth(), {"DangKyKhaiSinh", "DangKyThuongTru", "CapTheBHYT", "TaoDonHang"}),
            (BIRTH, birth(NhanKetQua={"HinhThuc": "truc_tiep"}), {"DangKyKhaiSinh", "DangKyThuongTru",
                                                                "CapTheBHYT"}),
            (DEATH, death(), {"DangKyKhaiTu", "XoaDangKyThuongTru"})]
    services: dict[str, str] = {}  # service code -> its agency, from the flows' own steps
    for name, dossier, _ in runs:
        r = file(stack, BIRTH_SERVICE if name == BIRTH else DEATH_SERVICE, dossier)
        assert r.status_code == 202, r.text
        flow = follow(stack, r.headers["location"])
        assert flow["state"] == "completed", flow
        services.update({s["service"].split("/")[4]: stats.agency_of(s["service"]) for s in flow["steps"]})
    after = kpis()
    codes = {d["MaHoSo"]: (name, path) for name, d, path in runs}
    seen: dict[str, set[str]] = {code: set() for code in codes}
    per_agency: dict[str, int] = {}
    for sim in AGENCY_SIMULATORS:
        for item in httpx.get(f"{stack.sims[sim]}/_sim/registrations", timeout=10).json().get("items", []):
            if item.get("MaHoSo") in codes:
                seen[item["MaHoSo"]].add(item["service"])
                agency = services[item["service"]]
                per_agency[agency] = per_agency.get(agency, 0) + 1
    grew = {a: n - completed(before, "agency", "agencies").get(a, 0)
            for a, n in completed(after, "agency", "agencies").items()}
    assert {a: n for a, n in grew.items() if n} == per_agency
    naive_flows: dict[str, int] = {}
    for code, (name, path) in codes.items():
        naive_flows[name] = naive_flows.get(name, 0) + (seen[code] == path)
    grew = {f: n - completed(before, "flow", "flows").get(f, 0)
            for f, n in completed(after, "flow", "flows").items()}
    assert {f: n for f, n in grew.items() if n} == naive_flows == {BIRTH: 2, DEATH: 1}
