"""Routing by agency: the portal hands a dossier, then its progress, to the gateway, and the agency in
the dossier code picks the province's one-stop system (gateway/routing.py, members[].routing). In the
demo catalog that is Tuyên Quang's (H60); the codes of Hà Giang (H22), a former agency merged into it,
reach it too (gateway/agencies.py)."""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import AsyncIterator
from datetime import date
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from connectors.dvcqg import data
from connectors.onestop import simulator
from connectors.onestop.connector import create
from gateway.config import Config, Service, load_config
from gateway.connector import Call, ConnectorContext
from gateway.errors import InvalidBody, UpstreamError
from gateway.init import HA_GIANG, TUYEN_QUANG, Ports, catalog, initialise
from gateway.resources import schemas_dir
from gateway.routing import Routes
from gateway.upstream import create_client
from gateway.yamlfile import FileError
from tests.conftest import Stack
from tests.test_e2e import leaves_of
from tests.test_onestop import serving

PORTAL = "VN/GOV/000.00.00.G22/DVCQG"
MOTCUA = f"{TUYEN_QUANG}/MOTCUA"
ROUTE_DOSSIER = "VN/GOV/000.00.00.G22/LIENTHONG/ChuyenHoSoVeDiaPhuong"
ROUTE_PROGRESS = "VN/GOV/000.00.00.G22/LIENTHONG/ChuyenTienDoVeDiaPhuong"
RECEIVE = f"{MOTCUA}/NhanHoSo"
RECEIVE_PROGRESS = f"{MOTCUA}/CapNhatTienDoHoSo"
AFTER_THE_MERGER = date(2026, 11, 21)  # Hà Giang's last day was 2025-06-30


def _post(stack: Stack, service: str, body: Any, token: str) -> httpx.Response:
    return httpx.post(f"{stack.base}/r1/{service}", content=json.dumps(body), timeout=30,
                      headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"})


def _delivered(stack: Stack, accepted: httpx.Response, token: str) -> dict[str, Any]:
    assert accepted.status_code == 202, accepted.text
    deadline = time.monotonic() + 60  # a bound on waiting, not an assertion about speed
    while True:
        shown = httpx.get(f"{stack.base}{accepted.headers['location']}",
                          headers={"Authorization": f"Bearer {token}"}).json()
        if shown["state"] in ("delivered", "dead") or time.monotonic() > deadline:
            assert shown["state"] == "delivered", shown
            return dict(shown)
        time.sleep(0.05)


def _nationally_filed(agency: str = "000.20.31.H22") -> dict[str, Any]:
    return data.dossier(secrets.randbelow(10**9), 0, agency=agency)


# -- end to end ------------------------------------------------------------------------------------

@pytest.mark.parametrize(("agency", "addressed"), [
    ("000.20.31.H60", None),  # Tuyên Quang's own unit: routed to it, nobody else named
    ("000.20.31.H22", HA_GIANG),  # a unit of former Hà Giang: routed to its successor, Tuyên Quang
])
def test_dossier_and_its_update_reach_the_provinces_one_stop_system(stack: Stack, agency: str,
                                                                     addressed: str | None) -> None:
    """The portal routes a dossier by its agency to Tuyên Quang's one-stop system, then its
    progress; both arrive there, in order, and the 202 and the audit say where they went (and, for
    a former agency's code, to whom it was addressed)."""
    token = stack.token(PORTAL)
    dossier = _nationally_filed(agency)
    code = dossier["MaHoSo"]
    short = data.short_code(agency)
    assert code.startswith(f"{short}-")
    sent = _post(stack, ROUTE_DOSSIER, dossier, token)
    assert sent.status_code == 202, sent.text
    routed = {"agency": short, "member": TUYEN_QUANG, "service": RECEIVE}
    assert sent.json()["routedTo"] == (routed if addressed is None
                                       else {**routed, "addressedMember": addressed})
    step = {**data.progress(dossier, 1), "TrangThai": "4"}
    update = _post(stack, ROUTE_PROGRESS, step, token)
    assert update.status_code == 202, update.text
    assert update.json()["routedTo"]["service"] == RECEIVE_PROGRESS

    first, then = _delivered(stack, sent, token), _delivered(stack, update, token)
    assert (first["service"], then["service"]) == (RECEIVE, RECEIVE_PROGRESS)
    # the receipt number the one-stop simulator gives, in its own agency's numbering
    assert first["response"]["body"]["SoBienNhan"].startswith(f"{data.short_code(simulator.AGENCY)}-")

    onestop = stack.sims["onestop"]
    held = httpx.get(f"{onestop}/hoso/{code}").json()["data"]
    assert held["ChuHoSo"] == dossier["ChuHoSo"]
    assert held["TienDo"] == [step] and held["TrangThaiHoSo"] == "4"
    arrived = [(item["kind"], json.loads(item["body"])["MaHoSo"])
               for item in httpx.get(f"{onestop}/_sim/received").json()["items"]
               if item["body"] and code in item["body"]]
    assert arrived == [("NhanHoSo", code), ("CapNhatTienDoHoSo", code)]

    intake = leaves_of(stack, sent.headers["X-Road-Id"])
    assert [(leaf["service"], leaf["status"]) for leaf in intake] == [(ROUTE_DOSSIER, 202)]
    # a routed dossier's record names the agency its code addressed and the one that got it
    assert intake[0]["agency"] == {"addressed": addressed or TUYEN_QUANG, "actual": TUYEN_QUANG}
    attempt = leaves_of(stack, f"{first['id']}.1")
    assert [(leaf["service"], leaf["operation"]) for leaf in attempt] == [(RECEIVE, "NhanHoSo")]


def test_unknown_agency_is_refused_naming_it(stack: Stack) -> None:
    """A dossier, or progress, whose code names an agency no member receives is refused, 422,
    naming the agency, and nothing is stored or sent."""
    token = stack.token(PORTAL)
    dossier = _nationally_filed(agency="000.00.00.H99")
    for service, body, what in [(ROUTE_DOSSIER, dossier, "dossiers"),
                                (ROUTE_PROGRESS, data.progress(dossier, 0), "progress updates")]:
        r = _post(stack, service, body, token)
        assert r.status_code == 422, r.text
        assert r.headers["content-type"].startswith("application/problem+json")
        assert r.json()["detail"] == f"no agency H99 is configured to receive {what}"
    received = httpx.get(f"{stack.sims['onestop']}/_sim/received").json()["items"]
    assert not [item for item in received if item["body"] and dossier["MaHoSo"] in item["body"]]


def test_only_the_portal_may_route(stack: Stack) -> None:
    """The routing service is under policy like any other: a province may not route dossiers."""
    r = _post(stack, ROUTE_DOSSIER, _nationally_filed(), stack.token(MOTCUA))
    assert r.status_code == 403, r.text


# -- the table ---------------------------------------------------------------------------------------

def test_most_specific_agency_wins() -> None:
    """A unit given to another member goes there; the rest of the province stays."""
    raw = catalog(Ports())
    members: list[dict[str, Any]] = raw["members"]  # type: ignore[assignment]
    nghe_an = next(m for m in members if m["id"].endswith("H41"))
    nghe_an["routing"] = {"agencies": ["H60.31"], "dossier": "MOTCUA/NhanHoSo"}
    services: list[dict[str, Any]] = raw["services"]  # type: ignore[assignment]
    services.append({**next(s for s in services if s["id"] == RECEIVE),
                     "id": "VN/GOV/000.00.00.H41/MOTCUA/NhanHoSo"})
    routes = Routes.of(Config.model_validate(raw))
    day = AFTER_THE_MERGER
    found = routes.target("H60.31.20-20261121-0000001", "dossier", day)
    assert found is not None and (found.matched, found.member) == ("H60.31", "VN/GOV/000.00.00.H41")
    found = routes.target("H60.10-20261121-0000001", "dossier", day)
    assert found is not None and (found.matched, found.service) == ("H60", RECEIVE)
    assert routes.target("H60.31-20261121-0000001", "progress", day) is None  # that member takes no progress
    assert routes.target("H6-20261121-0000001", "dossier", day) is None
    # a former agency's unit goes to its successor, the target naming both
    found = routes.target("H22.31.20-20261121-0000001", "dossier", day)
    assert found is not None and (found.matched, found.addressed, found.member, found.service) == (
        "H22", HA_GIANG, TUYEN_QUANG, RECEIVE)


# -- configuration -----------------------------------------------------------------------------------

@pytest.fixture
def config_file(tmp_path: Path) -> Path:
    return initialise(tmp_path / "gw").config_path


def _broken(config_file: Path, edit: Any) -> Path:
    raw = yaml.safe_load(config_file.read_text())
    edit(raw)
    bad = config_file.with_name("bad.yaml")
    bad.write_text(yaml.safe_dump(raw, allow_unicode=True, sort_keys=False))
    return bad


def _member(raw: dict[str, Any], member_id: str) -> dict[str, Any]:
    return next(m for m in raw["members"] if m["id"] == member_id)  # type: ignore[no-any-return]


def _tuyen_quang(raw: dict[str, Any]) -> dict[str, Any]:
    return _member(raw, TUYEN_QUANG)


def _refused(bad: Path, needle: str) -> FileError:
    with pytest.raises(FileError) as info:
        load_config(bad)
    assert needle in info.value.message, info.value.message
    assert str(bad) in str(info.value) and info.value.line is not None
    return info.value


def _line_of(path: Path, needle: str) -> int:
    return next(i for i, line in enumerate(path.read_text().splitlines(), 1) if needle in line)


def test_demo_catalog_routes_tuyen_quang(config_file: Path) -> None:
    """`lienthong init` writes routing for Tuyên Quang, Hà Giang's codes (a former agency, without
    receiving services of its own) and the two routing services."""
    cfg = load_config(config_file)
    raw = yaml.safe_load(config_file.read_text())
    assert _tuyen_quang(raw)["routing"] == {"agencies": ["H60"], "dossier": "MOTCUA/NhanHoSo",
                                            "progress": "MOTCUA/CapNhatTienDoHoSo"}
    assert _member(raw, HA_GIANG)["routing"] == {"agencies": ["H22"]}
    routed = [s.id for s in cfg.services if s.route]
    assert routed == [ROUTE_DOSSIER, ROUTE_PROGRESS]


def test_receiving_service_must_exist(config_file: Path) -> None:
    """A routing entry naming a service not in 'services' is refused at its line."""
    def edit(raw: dict[str, Any]) -> None:
        _tuyen_quang(raw)["routing"]["dossier"] = "MOTCUA/KhongCo"
    bad = _broken(config_file, edit)
    err = _refused(bad, "no service VN/GOV/000.00.00.H60/MOTCUA/KhongCo")
    assert err.line == _line_of(bad, "MOTCUA/KhongCo")


def test_receiving_service_must_carry_that_message(config_file: Path) -> None:
    """Progress routed to a service that takes dossiers (or a sync one) is refused."""
    def edit(raw: dict[str, Any]) -> None:
        _tuyen_quang(raw)["routing"]["progress"] = "MOTCUA/TraCuuHoSo"
    _refused(_broken(config_file, edit), "must be an async service carrying progress messages")


def test_agency_listed_by_two_members_is_refused(config_file: Path) -> None:
    """One agency's dossiers go to one member."""
    def edit(raw: dict[str, Any]) -> None:
        nghe_an = next(m for m in raw["members"] if m["id"].endswith("H41"))
        nghe_an["routing"] = {"agencies": ["H41", "H60"], "dossier": "MOTCUA/NhanHoSo"}
        raw["services"].append({**next(s for s in raw["services"] if s["id"] == RECEIVE),
                                "id": "VN/GOV/000.00.00.H41/MOTCUA/NhanHoSo"})
    _refused(_broken(config_file, edit), "agency H60 is listed twice")


def test_agency_code_must_look_like_one(config_file: Path) -> None:
    """An agency that cannot begin a dossier code is refused, naming it."""
    def edit(raw: dict[str, Any]) -> None:
        _tuyen_quang(raw)["routing"]["agencies"] = ["000.00.00.H60"]
    _refused(_broken(config_file, edit), "'000.00.00.H60' is not the agency part of a dossier code")


def test_routing_service_needs_async_and_no_connector(config_file: Path) -> None:
    """A routing service is store-and-forward and has no upstream of its own; any other service
    needs a connector and an upstream."""
    def sync(raw: dict[str, Any]) -> None:
        next(s for s in raw["services"] if s["id"] == ROUTE_DOSSIER)["delivery"] = "sync"
    _refused(_broken(config_file, sync), "needs delivery: async")

    def upstream(raw: dict[str, Any]) -> None:
        next(s for s in raw["services"] if s["id"] == ROUTE_DOSSIER)["upstream"] = "http://x"
    _refused(_broken(config_file, upstream), "has no connector or upstream of its own")

    def no_connector(raw: dict[str, Any]) -> None:
        del next(s for s in raw["services"] if s["id"] == RECEIVE)["connector"]
    _refused(_broken(config_file, no_connector), "needs a connector and an upstream")


# -- the one-stop system's receiving side ------------------------------------------------------------

@pytest.fixture
async def onestop() -> AsyncIterator[str]:
    async with serving(simulator.create_app()) as url:
        yield url


def _call(url: str, operation: str, payload: Any, http: httpx.AsyncClient) -> Any:
    service = Service(id=RECEIVE_PROGRESS, connector="onestop", upstream=url)
    connector = create(service, ConnectorContext(http=http, schemas_dir=schemas_dir()))
    return connector.call(Call(exchange_id="ex-1", service=service, operation=operation, payload=payload))


async def test_progress_applies_to_a_held_dossier_once(onestop: str) -> None:
    """CapNhatTienDoHoSo appends the step and sets the dossier's status; the same step again is
    not added twice."""
    http = create_client()
    try:
        dossier = _nationally_filed()
        await _call(onestop, "NhanHoSo", dossier, http)
        step = {**data.progress(dossier, 4), "TrangThai": "10"}
        reply = await _call(onestop, "CapNhatTienDoHoSo", {"data": [step]}, http)
        assert reply.payload["TrangThaiHoSo"] == "10"
        await _call(onestop, "CapNhatTienDoHoSo", step, http)
        held = (await http.get(f"{onestop}/hoso/{dossier['MaHoSo']}")).json()["data"]
        assert held["TienDo"] == [step]
    finally:
        await http.aclose()


async def test_progress_for_an_unknown_dossier_is_a_permanent_refusal(onestop: str) -> None:
    """Progress for a dossier the one-stop system does not hold is refused ("04"), not retried."""
    http = create_client()
    try:
        with pytest.raises(UpstreamError) as caught:
            await _call(onestop, "CapNhatTienDoHoSo", data.progress(_nationally_filed(), 0), http)
        assert caught.value.extra["error_code"] == "04" and not caught.value.retryable
        with pytest.raises(InvalidBody) as invalid:
            await _call(onestop, "CapNhatTienDoHoSo", [{"TrangThai": "4"}], http)
        assert invalid.value.extra["errors"][0]["path"] == "$[0].MaHoSo"
    finally:
        await http.aclose()
