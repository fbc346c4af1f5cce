"""Traffic for the console to show, played through the gateway's REST entry point like real clients:
citizens verified by the national portal (one of them, ``CITIZEN``, several times), dossiers pushed
by two provinces with their progress (some resolved), one dossier left dead by a failing portal, and
two refused calls."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import httpx
import orjson

from connectors.dvcqg import data
from tests.conftest import Stack

VERIFY = "VN/GOV/000.00.00.G01/CSDLDC/XacThucThongTinCongDan"
LOOKUP = "VN/GOV/000.00.00.G01/CSDLDC/TraCuuThongTinCongDan"
PUSH = "VN/GOV/000.00.00.G22/DVCQG/DongBoHoSoMC"
PROGRESS = "VN/GOV/000.00.00.G22/DVCQG/CapNhatTienDoHoSoMC"
PORTAL = "VN/GOV/000.00.00.G22/DVCQG"
TUYEN_QUANG = "VN/GOV/000.00.00.H60/MOTCUA"
NGHE_AN = "VN/GOV/000.00.00.H41/MOTCUA"
CITIZEN = "001203004567"
OTHERS = ["036198001122", "040301009876", "001085002233", "079190004455"]


@dataclass
class Played:
    citizen_exchanges: list[str] = field(default_factory=list)  # X-Road-Id of CITIZEN's verifications
    dead_delivery: str = ""
    dead_dossier: str = ""
    refused: list[str] = field(default_factory=list)


def play(stack: Stack) -> Played:
    played = Played()
    with httpx.Client(base_url=stack.base, timeout=30) as http:
        portal, tuyenquang, nghean = (stack.token(c) for c in (PORTAL, TUYEN_QUANG, NGHE_AN))

        def call(token: str | None, client: str, service: str, body: object,
                 **headers: str) -> httpx.Response:
            h = {"Content-Type": "application/json", "X-Road-Client": client, **headers}
            if token:
                h["Authorization"] = f"Bearer {token}"
            return http.post(f"/r1/{service}", content=orjson.dumps(body), headers=h)

        people = [(CITIZEN, "H60.20-20260603-0000101"),
                  *((p, f"H60.20-20260604-000020{n}") for n, p in enumerate(OTHERS)),
                  (CITIZEN, "H41.10-20260611-0000007")]
        for i, (person, purpose) in enumerate(people):
            r = call(portal, PORTAL, VERIFY, {"MaYeuCau": f"KT-{i:04d}", "MaDichVu": "1.001193.000.00.00.H22",
                                              "MaCanBo": "canbo.tranthimai", "SoDinhDanh": person,
                                              "SoCMND": "", "HoVaTen": "Nguyễn Văn An"},
                     **{"X-Road-UserId": "VN-canbo.tranthimai", "X-Road-Issue": purpose})
            assert r.status_code == 200, r.text
            if person == CITIZEN:
                played.citizen_exchanges.append(r.headers["x-road-id"])

        # One dossier the portal keeps failing: two attempts, then a dead letter.
        http.post(f"{stack.sims['dvcqg']}/_sim/mode", json={"fail": "http500"})
        doomed = data.dossier(7, 99, agency="000.00.00.H60")
        r = call(tuyenquang, TUYEN_QUANG, PUSH, doomed)
        assert r.status_code == 202, r.text
        played.dead_delivery, played.dead_dossier = r.json()["deliveryId"], doomed["MaHoSo"]
        _wait(http, stack, played.dead_delivery, "dead", timeout=90)
        http.post(f"{stack.sims['dvcqg']}/_sim/mode", json={"fail": None})

        for n, (token, client, agency) in enumerate([(tuyenquang, TUYEN_QUANG, "000.00.00.H60")] * 6
                                                    + [(nghean, NGHE_AN, "000.00.00.H41")] * 4):
            record = data.dossier(7, n, agency=agency)
            assert call(token, client, PUSH, record).status_code == 202
            for step in range(5 if n % 3 else 2):
                assert call(token, client, PROGRESS, data.progress(record, step)).status_code == 202

        r = call(None, TUYEN_QUANG, PUSH, doomed)
        played.refused.append(r.headers["x-road-id"])
        r = call(tuyenquang, TUYEN_QUANG, LOOKUP, {"SoDinhDanh": CITIZEN},
                 **{"X-Road-UserId": "VN-canbo.x", "X-Road-Issue": "H60.20-20260603-0000101"})
        assert r.status_code == 403
        played.refused.append(r.headers["x-road-id"])
    return played


def _wait(http: httpx.Client, stack: Stack, delivery: str, state: str, timeout: float = 30) -> None:
    import sqlalchemy as sa

    from gateway.delivery.tables import deliveries
    from gateway.storage.db import create_engine

    engine = create_engine(stack.database)
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            with engine.connect() as conn:
                got = conn.execute(sa.select(deliveries.c.state).where(deliveries.c.id == delivery)).scalar()
            if got == state:
                return
            time.sleep(0.1)
    finally:
        engine.dispose()
    raise AssertionError(f"delivery {delivery} is {got}, not {state}")
