"""Agencies change (gateway/agencies.py): validity periods and successors across the 2025
reorganisation, end to end through a served gateway, and the catalog checks.

The served catalog is the demo's (Hà Giang, H22, ended on 2025-06-30 and merged into Tuyên Quang,
H60) with two more agencies: "H98", a former agency whose operator let its policies carry over to
the successor, and "H99", which ends tomorrow: until then, it still gets its own dossiers.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from click.testing import CliRunner

from connectors.dvcqg import data
from gateway.agencies import Agencies, Ended, today
from gateway.cli import main
from gateway.config import Config, load_config
from gateway.init import HA_GIANG, NGHE_AN, PORTAL, TUYEN_QUANG, Ports, catalog, initialise
from gateway.oauth.secrets import hash_secret
from gateway.routing import Routes
from gateway.yamlfile import FileError
from tests.conftest import Stack, start_stack, stop
from tests.oauth_helpers import forge
from tests.test_e2e import leaves_of
from tests.test_routing import _delivered, _post

PORTAL_CLIENT = f"{PORTAL}/DVCQG"
ROUTE_DOSSIER = "VN/GOV/000.00.00.G22/LIENTHONG/ChuyenHoSoVeDiaPhuong"
FORMER_CARRY = "VN/GOV/000.00.00.H98"  # former, carry_policies: true
ENDS_TOMORROW = "VN/GOV/000.00.00.H99"
FORMER_SECRET = secrets.token_urlsafe(24)


def _receiving_services(raw: dict[str, Any], member: str) -> list[dict[str, Any]]:
    """Copies of Tuyên Quang's one-stop services for ``member`` (same simulator upstream)."""
    return [{**s, "id": s["id"].replace(TUYEN_QUANG, member)} for s in raw["services"]
            if s["id"].startswith(f"{TUYEN_QUANG}/MOTCUA/")]


def _edit(raw: dict[str, Any], folder: Path) -> None:
    tomorrow = (today() + timedelta(days=1)).isoformat()
    yesterday = (today() - timedelta(days=1)).isoformat()
    raw["members"] += [
        {"id": FORMER_CARRY, "name": "UBND huyện Thử Nghiệm (cũ)", "valid_until": yesterday,
         "successor": TUYEN_QUANG, "carry_policies": True,
         "subsystems": [{"code": "MOTCUA", "name": "Một cửa"}], "routing": {"agencies": ["H98"]}},
        {"id": ENDS_TOMORROW, "name": "UBND tỉnh Sắp Nhập", "valid_until": tomorrow,
         "successor": TUYEN_QUANG, "subsystems": [{"code": "MOTCUA", "name": "Một cửa"}],
         "routing": {"agencies": ["H99"], "dossier": "MOTCUA/NhanHoSo",
                     "progress": "MOTCUA/CapNhatTienDoHoSo"}},
    ]
    raw["services"] += _receiving_services(raw, ENDS_TOMORROW)
    raw["clients"] += [{"id": f"{member}/MOTCUA", "name": "một cửa", "scopes": ["exchange"],
                        "secret_hash": hash_secret(FORMER_SECRET)} for member in (HA_GIANG, ENDS_TOMORROW)]
    # Nghệ An may look dossiers up at two former agencies only: rules that name them alone.
    policies = folder / raw["policies_dir"] / "former.yaml"
    policies.write_text(yaml.safe_dump({"rules": [{
        "name": "nghe-an-tra-cuu-co-quan-cu", "clients": [f"{NGHE_AN}/MOTCUA"], "scopes": ["exchange"],
        "services": [f"{HA_GIANG}/MOTCUA/TraCuuHoSo", f"{FORMER_CARRY}/MOTCUA/TraCuuHoSo"]}]}))


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    workdir = tmp_path_factory.mktemp("agencies")
    running, procs = start_stack(workdir, edit=lambda raw: _edit(raw, workdir))
    running.secrets.update({f"{HA_GIANG}/MOTCUA": FORMER_SECRET, f"{ENDS_TOMORROW}/MOTCUA": FORMER_SECRET})
    yield running
    stop(procs)


# -- routing ---------------------------------------------------------------------------------------

def test_a_dossier_addressed_to_a_former_agency_goes_to_its_successor(stack: Stack) -> None:
    """Hà Giang ended on 2025-06-30: a dossier whose code names one of its units is delivered to
    Tuyên Quang's one-stop system, and the 202 and the audit record keep both agencies."""
    token = stack.token(PORTAL_CLIENT)
    dossier = data.dossier(secrets.randbelow(10**9), 0, agency="000.20.31.H22")
    sent = _post(stack, ROUTE_DOSSIER, dossier, token)
    assert sent.status_code == 202, sent.text
    assert sent.json()["routedTo"] == {"agency": "H22.31.20", "member": TUYEN_QUANG,
                                       "service": f"{TUYEN_QUANG}/MOTCUA/NhanHoSo",
                                       "addressedMember": HA_GIANG}
    delivered = _delivered(stack, sent, token)
    assert delivered["service"] == f"{TUYEN_QUANG}/MOTCUA/NhanHoSo"
    held = httpx.get(f"{stack.sims['onestop']}/hoso/{dossier['MaHoSo']}").json()["data"]
    assert held["ChuHoSo"] == dossier["ChuHoSo"]
    [intake] = leaves_of(stack, sent.headers["X-Road-Id"])
    assert intake["agency"] == {"addressed": HA_GIANG, "actual": TUYEN_QUANG}
    [attempt] = leaves_of(stack, f"{delivered['id']}.1")  # the delivery keeps both agencies too
    assert attempt["service"] == f"{TUYEN_QUANG}/MOTCUA/NhanHoSo"
    assert attempt["agency"] == {"addressed": HA_GIANG, "actual": TUYEN_QUANG}


def test_before_its_last_day_an_agency_gets_its_own_dossiers(stack: Stack) -> None:
    """H99 ends tomorrow: today its dossiers still go to its own receiving service."""
    token = stack.token(PORTAL_CLIENT)
    dossier = data.dossier(secrets.randbelow(10**9), 0, agency="000.00.00.H99")
    sent = _post(stack, ROUTE_DOSSIER, dossier, token)
    assert sent.json()["routedTo"] == {"agency": "H99", "member": ENDS_TOMORROW,
                                       "service": f"{ENDS_TOMORROW}/MOTCUA/NhanHoSo"}
    assert _delivered(stack, sent, token)["service"] == f"{ENDS_TOMORROW}/MOTCUA/NhanHoSo"
    [intake] = leaves_of(stack, sent.headers["X-Road-Id"])
    assert intake["agency"] == {"addressed": ENDS_TOMORROW, "actual": ENDS_TOMORROW}


def test_a_former_agencys_service_is_answered_by_the_successors(stack: Stack) -> None:
    """A push to Hà Giang's own receiving service (no longer listed) is stored for Tuyên Quang's
    service of the same code; the record keeps both agencies. A code the successor lacks is
    refused naming the successor."""
    token = stack.token(PORTAL_CLIENT)
    dossier = data.dossier(secrets.randbelow(10**9), 0, agency="000.00.00.H22")
    sent = _post(stack, f"{HA_GIANG}/MOTCUA/NhanHoSo", dossier, token)
    assert _delivered(stack, sent, token)["service"] == f"{TUYEN_QUANG}/MOTCUA/NhanHoSo"
    [intake] = leaves_of(stack, sent.headers["X-Road-Id"])
    assert (intake["service"], intake["agency"]) == (f"{TUYEN_QUANG}/MOTCUA/NhanHoSo",
                                                     {"addressed": HA_GIANG, "actual": TUYEN_QUANG})
    missing = _post(stack, f"{HA_GIANG}/MOTCUA/KhongCo", {}, token)
    assert missing.status_code == 404, missing.text
    detail = missing.json()["detail"]
    assert TUYEN_QUANG in detail and "UBND tỉnh Tuyên Quang" in detail and "2025-06-30" in detail


def test_policies_of_a_former_agency_carry_over_only_where_the_operator_says(stack: Stack) -> None:
    """Nghệ An's rule names two former agencies' look-up service. Hà Giang's does not carry over:
    the call, now Tuyên Quang's, is refused. H98's does (carry_policies): allowed, answered by
    Tuyên Quang's service. A direct call to Tuyên Quang stays refused: nothing widened."""
    token = stack.token(f"{NGHE_AN}/MOTCUA")
    code = "H60.23-20261121-0000001"
    for member, status in [(HA_GIANG, 403), (FORMER_CARRY, None), (TUYEN_QUANG, 403)]:
        r = httpx.get(f"{stack.base}/r1/{member}/MOTCUA/TraCuuHoSo/{code}", timeout=30,
                      headers={"Authorization": f"Bearer {token}"})
        if status is None:
            assert r.json().get("error_code") == "04", r.text  # allowed: the one-stop system answers
                                                               # it holds no such dossier
            [leaf] = leaves_of(stack, r.headers["X-Road-Id"])
            assert leaf["rule"] == "nghe-an-tra-cuu-co-quan-cu"
            assert leaf["agency"] == {"addressed": FORMER_CARRY, "actual": TUYEN_QUANG}
        else:
            assert r.status_code == status, (member, r.text)


# -- identity --------------------------------------------------------------------------------------

def test_a_former_agencys_client_gets_no_token_naming_the_successor(stack: Stack) -> None:
    """Hà Giang's one-stop system, with the right secret, is refused after Hà Giang's last day;
    H99's, ending tomorrow, still gets its token. A wrong secret is still invalid_client (the
    refusal tells an outsider nothing)."""
    r = httpx.post(f"{stack.base}/oauth/token", data={"grant_type": "client_credentials"},
                   auth=(f"{HA_GIANG}/MOTCUA", FORMER_SECRET))
    assert r.status_code == 400, r.text
    body = r.json()
    assert body["error"] == "unauthorized_client"
    assert TUYEN_QUANG in body["error_description"] and "2025-06-30" in body["error_description"]
    wrong = httpx.post(f"{stack.base}/oauth/token", data={"grant_type": "client_credentials"},
                       auth=(f"{HA_GIANG}/MOTCUA", "not-the-secret"))
    assert wrong.json()["error"] == "invalid_client"
    assert stack.token(f"{ENDS_TOMORROW}/MOTCUA")


def test_a_token_a_former_agencys_client_still_holds_is_refused(stack: Stack) -> None:
    """A token issued before the end date (forged here with the gateway's own key) no longer
    works after it: 403 naming the successor."""
    token = forge(load_config(stack.config_path), sub=f"{HA_GIANG}/MOTCUA", client_id=f"{HA_GIANG}/MOTCUA")
    r = httpx.post(f"{stack.base}/r1/VN/GOV/000.00.00.H41/DANHMUC/echo", json={"a": 1},
                   headers={"Authorization": f"Bearer {token}"})
    assert r.status_code == 403, r.text
    assert TUYEN_QUANG in r.json()["detail"] and "2025-06-30" in r.json()["detail"]


# -- the table and the chain, pure ----------------------------------------------------------------

def _config(edit: Any) -> Config:
    raw = catalog(Ports())
    edit(raw)
    return Config.model_validate(raw)


def _member(raw: dict[str, Any], member_id: str) -> dict[str, Any]:
    return next(m for m in raw["members"] if m["id"] == member_id)


def test_routing_follows_the_day() -> None:
    """On Hà Giang's last day its code has no receiver of its own (the demo's Hà Giang has none);
    the day after, Tuyên Quang receives it."""
    routes = Routes.of(_config(lambda raw: None))
    assert routes.target("H22.31-20250630-0000001", "dossier", date(2025, 6, 30)) is None
    after = routes.target("H22.31-20250701-0000001", "dossier", date(2025, 7, 1))
    assert after is not None and (after.addressed, after.member) == (HA_GIANG, TUYEN_QUANG)


def test_a_split_sends_each_part_to_its_successor_and_refuses_the_rest() -> None:
    """A district split between two communes: the most specific code picks the successor; a code
    no part names is refused, naming the parts."""
    district, east, west = "VN/GOV/000.20.31.H60", "VN/GOV/000.20.01.H60", "VN/GOV/000.20.02.H60"

    def edit(raw: dict[str, Any]) -> None:
        raw["members"] += [
            {"id": district, "name": "UBND huyện cũ", "valid_until": "2025-06-30",
             "split": [{"agencies": ["H60.31.1"], "successor": east},
                       {"agencies": ["H60.31.2", "H60.31.2.9"], "successor": west}]},
            {"id": east, "name": "UBND xã Đông"}, {"id": west, "name": "UBND xã Tây"}]
    agencies = _config(edit).agencies
    day = date(2026, 1, 1)
    assert agencies.current(district, day, "H60.31.1.4") == east
    assert agencies.current(district, day, "H60.31.2") == west
    assert agencies.current(district, date(2025, 6, 30), "H60.31.2") == district
    with pytest.raises(Ended, match=r"split .*H60\.31\.1 to VN/GOV/000\.20\.01\.H60.*H60\.31\.7"):
        agencies.current(district, day, "H60.31.7")


def test_chains_lead_to_the_agency_current_that_day_and_formers_are_found() -> None:
    """A merged into B, later B into C: A's work is C's after both dates, B's in between."""
    a, b, c = "VN/GOV/000.00.00.A01", "VN/GOV/000.00.00.B01", "VN/GOV/000.00.00.C01"
    agencies = _config(lambda raw: raw["members"].extend([
        {"id": a, "valid_until": "2024-12-31", "successor": b},
        {"id": b, "valid_until": "2025-06-30", "successor": c},
        {"id": c, "valid_from": "2025-07-01"}])).agencies
    days = (date(2024, 12, 31), date(2025, 1, 1), date(2025, 7, 1))
    assert [agencies.current(a, d) for d in days] == [a, b, c]
    assert agencies.formers(c) == [b, a]
    assert agencies.rolled_up(a, date(2026, 1, 1)) == c
    assert isinstance(agencies, Agencies)


# -- the catalog checks (lienthong check) --------------------------------------------------------------

@pytest.fixture
def config_file(tmp_path: Path) -> Path:
    return initialise(tmp_path / "gw").config_path


def _checked(config_file: Path, edit: Any) -> tuple[Path, str]:
    raw = yaml.safe_load(config_file.read_text())
    edit(raw)
    bad = config_file.with_name("bad.yaml")
    bad.write_text(yaml.safe_dump(raw, allow_unicode=True, sort_keys=False))
    result = CliRunner().invoke(main, ["check", "--config", str(bad)])
    assert result.exit_code != 0, result.output
    return bad, result.output


def _line(path: Path, needle: str, after: int = 0) -> int:
    return next(i for i, line in enumerate(path.read_text().splitlines(), 1) if i > after and needle in line)


def test_check_refuses_a_cycle_at_its_line(config_file: Path) -> None:
    """Tuyên Quang naming Hà Giang as its successor, which names Tuyên Quang: a cycle."""
    bad, output = _checked(config_file, lambda raw: _member(raw, TUYEN_QUANG).update(
        valid_until="2026-12-31", successor=HA_GIANG))
    assert "cycle" in output and f"{TUYEN_QUANG} -> {HA_GIANG}" in output
    assert f"{bad}:{_line(bad, 'successor: ' + HA_GIANG)}:" in output


@pytest.mark.parametrize(("edit", "needle"), [
    (lambda raw: _member(raw, HA_GIANG).update(successor="VN/GOV/000.00.00.H77"),
     "successor VN/GOV/000.00.00.H77 is not a member listed in 'members'"),
    (lambda raw: _member(raw, TUYEN_QUANG).update(valid_from="2025-08-01"), "a gap"),
    (lambda raw: _member(raw, TUYEN_QUANG).update(valid_from="2025-01-01", valid_until="2025-05-31"),
     "ended before that"),
    (lambda raw: _member(raw, HA_GIANG).update(successor=HA_GIANG), "names itself"),
    (lambda raw: _member(raw, HA_GIANG).pop("valid_until"), "set the agency's last day"),
    (lambda raw: _member(raw, HA_GIANG).update(valid_from="2025-07-01"), "is before valid_from"),
    (lambda raw: _member(raw, HA_GIANG).update(split=[{"agencies": ["H22"], "successor": TUYEN_QUANG}]),
     "not both"),
])
def test_check_refuses_what_leaves_work_nowhere(config_file: Path, edit: Any, needle: str) -> None:
    _, output = _checked(config_file, edit)
    assert needle in output


def test_the_demo_catalog_records_the_merger(config_file: Path) -> None:
    """`lienthong init` writes Hà Giang as former, merged into Tuyên Quang, which is current."""
    cfg = load_config(config_file)
    assert cfg.agencies.current(HA_GIANG, today()) == TUYEN_QUANG
    assert cfg.agencies.formers(TUYEN_QUANG) == [HA_GIANG]
    assert not [c for c in cfg.clients if c.id.startswith(HA_GIANG)]
    with pytest.raises(FileError):  # the loaded file is the one `lienthong check` reads
        bad = config_file.with_name("broken.yaml")
        bad.write_text(config_file.read_text().replace(f"successor: {TUYEN_QUANG}", "successor: x"))
        load_config(bad)


def test_list_clients_names_current_agencies_only() -> None:
    """X-Road's listClients lists registered clients: Hà Giang's ids are gone after its last day."""
    from gateway.metadata import client_list

    ids = [item.id for item in client_list(_config(lambda raw: None))]
    assert TUYEN_QUANG in ids and f"{TUYEN_QUANG}/MOTCUA" in ids
    assert not [i for i in ids if i.startswith(HA_GIANG)]
