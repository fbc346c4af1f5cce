"""The demo's delivery scene: the portal goes down, the province keeps pushing, nothing is lost.

Hà Giang's one-stop system pushes dossiers, each followed by a status update, while the portal
simulator drops every connection. The gateway accepts each push once it is stored (202), tries,
backs off, opens its circuit; when the portal is back every dossier arrives, once, its update after
it. ``lienthong demo`` (gateway/demo.py) plays it and prints the checks and the KPIs.

Then the other way (``route_down``): the portal hands dossiers filed nationally to the gateway's
routing service, which sends each to the one-stop system of the agency its code names (Hà Giang's),
and their progress follows them there.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import sqlalchemy as sa
from rich.table import Table

__all__ = ["kpi_table", "progress_of", "ride_out_portal_outage", "route_down"]

PUSH = "VN/GOV/000.00.00.G22/DVCQG/DongBoHoSoMC"
PROGRESS = "VN/GOV/000.00.00.G22/DVCQG/CapNhatTienDoHoSoMC"
ROUTE = "VN/GOV/000.00.00.G22/LIENTHONG/ChuyenHoSoVeDiaPhuong"
ROUTE_PROGRESS = "VN/GOV/000.00.00.G22/LIENTHONG/ChuyenTienDoVeDiaPhuong"
VN = ZoneInfo("Asia/Ho_Chi_Minh")

Exchange = Callable[..., Awaitable[httpx.Response]]  # (label, token, client, service, body) -> answer
Check = Callable[[str, bool, str], None]


def progress_of(dossier: dict[str, Any], done: bool = False) -> dict[str, Any]:
    """A step: sent to processing (status 4) or, ``done``, result returned (10)."""
    return {"MaHoSo": dossier["MaHoSo"], "NguoiXuLy": "Nguyễn Thị Lan", "ChucDanh": "Chuyên viên",
            "ThoiDiemXuLy": datetime.now(VN).strftime("%Y%m%d%H%M%S"), "PhongBanXuLy": "Bộ phận một cửa",
            "NoiDungXuLy": "Đã trả kết quả" if done else "Chuyển xử lý", "TrangThai": "10" if done else "4",
            "NgayBatDau": dossier["NgayTiepNhan"], "NgayKetThucTheoQuyDinh": dossier["NgayHenTra"]}


async def ride_out_portal_outage(http: httpx.AsyncClient, base: str, token: str, client: str,
                                 portal_sim: str, batch: list[dict[str, Any]], exchange: Exchange,
                                 check: Check, *, outage: float = 3.0, patience: float = 90.0) -> None:
    await http.post(f"{portal_sim}/_sim/mode", json={"fail": "drop"})
    updates = {d["MaHoSo"]: progress_of(d, done=i % 2 == 1) for i, d in enumerate(batch)}

    async def push(dossier: dict[str, Any]) -> list[httpx.Response]:
        first = await exchange("DongBoHoSoMC", token, client, PUSH, dossier)
        then = await exchange("CapNhatTienDoHoSoMC", token, client, PROGRESS, updates[dossier["MaHoSo"]])
        return [first, then]

    try:
        answers = [r for pair in await asyncio.gather(*(push(d) for d in batch)) for r in pair]
        accepted = [r for r in answers if r.status_code == 202]
        check(f"the portal is down: {len(batch)} dossiers and {len(batch)} status updates are still "
              "accepted (202, stored durably, each with a delivery id)", len(accepted) == len(answers),
              f"{len(accepted)}/{len(answers)} accepted")
        codes = {d["MaHoSo"] for d in batch}
        await asyncio.sleep(outage)
        held = await _held(http, portal_sim)
        tried = await _attempts(http, base, token, accepted)
        check("during the outage nothing reaches the portal; the gateway retries with backoff and "
              "opens its circuit", not codes & held.keys(), f"{tried} attempts failed so far")
    finally:
        await http.post(f"{portal_sim}/_sim/mode", json={"fail": None})
    started = time.monotonic()
    states: dict[str, int] = {}
    while time.monotonic() - started < patience:
        states = await _states(http, base, token, accepted)
        if states.get("delivered", 0) == len(accepted):
            break
        await asyncio.sleep(0.2)
    check("the portal is back: every accepted push is delivered", states.get("delivered", 0) == len(accepted),
          f"{states.get('delivered', 0)}/{len(accepted)} in {time.monotonic() - started:.1f} s")
    held = await _held(http, portal_sim)
    in_order = [code for code in codes if code in held and held[code]["QuaTrinhXuLy"] == [updates[code]]]
    repeats = sum(held[code].get("SoLanLap", 0) for code in codes if code in held)
    check("the portal holds each dossier once, with its status update applied after it",
          len(in_order) == len(batch), f"{len(in_order)}/{len(batch)} in order; {repeats} repeated "
          "sends absorbed by the portal's idempotency")


async def route_down(http: httpx.AsyncClient, base: str, token: str, client: str, onestop_sim: str,
                     exchange: Exchange, check: Check, *, count: int = 2, patience: float = 60.0) -> None:
    """The portal routes ``count`` nationally filed dossiers down by their agency, then a step of
    each. Their codes name a unit of Hà Giang (H22.31.20), a former agency since its merger into
    Tuyên Quang: both arrive at Tuyên Quang's one-stop system, the step after its dossier."""
    from connectors.dvcqg import data

    batch = [data.dossier(7000, i, agency="000.20.31.H22") for i in range(count)]
    steps = {d["MaHoSo"]: data.progress(d, 1) for d in batch}
    answers = []
    for dossier in batch:  # each dossier, then its step: the order the province must see them in
        answers.append(await exchange("ChuyenHoSoVeDiaPhuong", token, client, ROUTE, dossier))
        answers.append(await exchange("ChuyenTienDoVeDiaPhuong", token, client, ROUTE_PROGRESS,
                                      steps[dossier["MaHoSo"]]))
    accepted = [r for r in answers if r.status_code == 202]
    where = sorted({r.json().get("routedTo", {}).get("service", "?") for r in accepted})
    successor = all(r.json().get("routedTo", {}).get("addressedMember") == "VN/GOV/000.00.00.H22"
                    for r in accepted)
    started = time.monotonic()
    states: dict[str, int] = {}
    while accepted and time.monotonic() - started < patience:
        states = await _states(http, base, token, accepted)
        if states.get("delivered", 0) == len(accepted):
            break
        await asyncio.sleep(0.2)
    held = await _held(http, onestop_sim)
    arrived = [d for d in batch if held.get(d["MaHoSo"], {}).get("TienDo") == [steps[d["MaHoSo"]]]]
    check(f"the portal routes {count} nationally filed dossiers down by the agency in their code "
          "(H22.31.20: former Hà Giang, merged into Tuyên Quang), each arrives at Tuyên Quang's "
          "one-stop system with its update after it",
          len(accepted) == len(answers) and states.get("delivered", 0) == len(accepted)
          and len(arrived) == count and successor,
          f"{len(accepted)}/{len(answers)} accepted for {', '.join(where)}; {len(arrived)}/{count} held "
          "with their update")


async def _held(http: httpx.AsyncClient, portal_sim: str) -> dict[str, dict[str, Any]]:
    items = (await http.get(f"{portal_sim}/_sim/dossiers")).json()["items"]
    return {item["MaHoSo"]: item for item in items}


async def _shown(http: httpx.AsyncClient, base: str, token: str,
                 accepted: list[httpx.Response]) -> list[dict[str, Any]]:
    headers = {"Authorization": f"Bearer {token}"}
    answers = await asyncio.gather(*(http.get(f"{base}{r.headers['location']}", headers=headers)
                                     for r in accepted))
    return [a.json() for a in answers]


async def _states(http: httpx.AsyncClient, base: str, token: str,
                  accepted: list[httpx.Response]) -> dict[str, int]:
    out: dict[str, int] = {}
    for shown in await _shown(http, base, token, accepted):
        out[shown["state"]] = out.get(shown["state"], 0) + 1
    return out


async def _attempts(http: httpx.AsyncClient, base: str, token: str, accepted: list[httpx.Response]) -> int:
    return sum(int(s["attempts"]) for s in await _shown(http, base, token, accepted))


def kpi_table(database: str) -> Table:
    """The KPIs per agency and month, from the dossiers that went through."""
    from gateway.delivery.stats import report
    from gateway.storage.db import create_engine

    engine: sa.engine.Engine = create_engine(database)
    try:
        items = report(engine, period="month")
    finally:
        engine.dispose()
    table = Table(title="Dossier KPIs by agency and month (lienthong stats, GET /stats/dossiers)")
    for col in ("agency", "period", "received", "online", "resolved", "on time"):
        table.add_column(col, justify="left" if col in ("agency", "period") else "right")
    for k in items:
        online = f"{k['receivedOnline']} ({k['onlineShare']:.0%})" if k["onlineShare"] is not None else "0"
        on_time = f"{k['resolvedOnTime']} ({k['onTimeShare']:.0%})" if k["onTimeShare"] is not None else "-"
        table.add_row(k["agency"], k["period"], str(k["received"]), online, str(k["resolved"]), on_time)
    return table
