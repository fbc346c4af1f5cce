"""The console's page modules without a gateway: the pure helpers (agency and client names, short
service ids, percentages and durations, redirect targets) and each area's route table (paths,
methods, permissions, audit actions), and that every signed-in page refuses a visitor."""

from __future__ import annotations

from collections.abc import Callable
from datetime import date
from typing import Any
from urllib.parse import urljoin, urlsplit

import pytest
from starlette.testclient import TestClient
from starlette.types import Receive, Scope, Send

from gateway.config import Config
from gateway.console import (
    page_auth,
    page_catalog,
    page_deliveries,
    page_documents,
    page_flows,
    page_log,
    page_overview,
    page_subjects,
    pages,
)
from gateway.console.i18n import translator
from gateway.console.labels import agency_names, client_names, duration, percent, short_service
from gateway.console.page_auth import safe_next
from gateway.console.page_deliveries import back_to
from gateway.console.permissions import PAGES, allowed
from gateway.console.sessions import Session
from gateway.console.web import Console, OpenRoute, PageRoute
from gateway.runtime import Runtime

TUYEN_QUANG, HA_GIANG = "VN/GOV/000.00.00.H60", "VN/GOV/000.00.00.H22"
DISTRICT, EAST, WEST = "VN/GOV/000.20.31.H60", "VN/GOV/000.20.01.H60", "VN/GOV/000.20.02.H60"
UNNAMED = "VN/GOV/000.00.00.G01"
AFTER, LAST_DAY = date(2026, 1, 1), date(2025, 6, 30)


@pytest.fixture(scope="module")
def config() -> Config:
    """Hà Giang merged into Tuyên Quang after 2025-06-30; a district split between two communes the
    same day; a member without a name."""
    return Config.model_validate({"members": [
        {"id": TUYEN_QUANG, "name": "UBND tỉnh Tuyên Quang",
         "subsystems": [{"code": "MOTCUA", "name": "Một cửa"}, {"code": "KHO"}]},
        {"id": HA_GIANG, "name": "UBND tỉnh Hà Giang", "valid_until": "2025-06-30", "successor": TUYEN_QUANG},
        {"id": DISTRICT, "name": "UBND huyện cũ", "valid_until": "2025-06-30",
         "split": [{"agencies": ["H60.31.1"], "successor": EAST},
                   {"agencies": ["H60.31.2"], "successor": WEST}]},
        {"id": EAST, "name": "UBND xã Đông"}, {"id": WEST, "name": "UBND xã Tây"},
        {"id": UNNAMED, "subsystems": [{"code": "CSDLDC", "name": "CSDL dân cư"}]}]})


# -- agency and client names ------------------------------------------------------------------------

def test_agency_names_without_a_translator_are_the_members_names_by_code(config: Config) -> None:
    """No translator: each agency code names its member as configured, the id when it has no name."""
    assert agency_names(config) == {
        "000.00.00.H60": "UBND tỉnh Tuyên Quang", "000.00.00.H22": "UBND tỉnh Hà Giang",
        "000.20.31.H60": "UBND huyện cũ", "000.20.01.H60": "UBND xã Đông", "000.20.02.H60": "UBND xã Tây",
        "000.00.00.G01": UNNAMED}


def test_a_former_agency_names_the_agency_it_is_now_part_of(config: Config) -> None:
    """After the merger Hà Giang says it is part of Tuyên Quang; a split agency names every part."""
    names = agency_names(config, translator("en"), day=AFTER)
    assert names["000.00.00.H22"] == "UBND tỉnh Hà Giang (former, now part of UBND tỉnh Tuyên Quang)"
    assert names["000.20.31.H60"] == "UBND huyện cũ (former, now part of UBND xã Đông, UBND xã Tây)"
    assert names["000.00.00.H60"] == "UBND tỉnh Tuyên Quang"  # not rolled up: no mention of formers
    vi = agency_names(config, translator("vi"), day=AFTER)
    assert vi["000.00.00.H22"] == "UBND tỉnh Hà Giang (cũ, nay thuộc UBND tỉnh Tuyên Quang)"


def test_on_its_last_day_an_agency_is_not_former(config: Config) -> None:
    """Up to and including valid_until, the agency goes by its own name."""
    assert agency_names(config, translator("en"), day=LAST_DAY) == agency_names(config)
    assert agency_names(config, translator("en"), rollup=True, day=LAST_DAY) == agency_names(config)


def test_rolled_up_a_current_agency_names_the_formers_it_includes(config: Config) -> None:
    """Rolled up, Tuyên Quang names Hà Giang; the communes do not take in the split district."""
    names = agency_names(config, translator("en"), rollup=True, day=AFTER)
    assert names["000.00.00.H60"] == "UBND tỉnh Tuyên Quang (including UBND tỉnh Hà Giang)"
    assert names["000.20.01.H60"] == "UBND xã Đông"
    assert names["000.20.02.H60"] == "UBND xã Tây"
    assert names["000.00.00.H22"] == "UBND tỉnh Hà Giang (former, now part of UBND tỉnh Tuyên Quang)"


def test_short_agency_names_fit_a_chart_label(config: Config) -> None:
    """``short``: "(former)" and "(+1 former)" instead of the whole story."""
    names = agency_names(config, translator("en"), rollup=True, day=AFTER, short=True)
    assert names["000.00.00.H22"] == "UBND tỉnh Hà Giang (former)"
    assert names["000.20.31.H60"] == "UBND huyện cũ (former)"
    assert names["000.00.00.H60"] == "UBND tỉnh Tuyên Quang (+1 former)"
    assert agency_names(config, translator("vi"), rollup=True, day=AFTER, short=True)[
        "000.00.00.H60"] == "UBND tỉnh Tuyên Quang (+1 cũ)"


def test_client_names_join_member_and_subsystem(config: Config) -> None:
    """Each subsystem as "member · subsystem", falling back to ids and codes; the console by name."""
    names = client_names(config)
    assert names[f"{TUYEN_QUANG}/MOTCUA"] == "UBND tỉnh Tuyên Quang · Một cửa"
    assert names[f"{TUYEN_QUANG}/KHO"] == "UBND tỉnh Tuyên Quang · KHO"
    assert names[f"{UNNAMED}/CSDLDC"] == f"{UNNAMED} · CSDL dân cư"
    assert names["console"] == "Liên Thông console"
    assert TUYEN_QUANG not in names  # members without a subsystem code are not clients here
    assert len(names) == 4


# -- figures ---------------------------------------------------------------------------------------

@pytest.mark.parametrize(("service_id", "label"), [
    ("VN/GOV/000.00.00.G22/DVCQG/DongBoHoSoMC", "G22 DVCQG/DongBoHoSoMC"),
    ("VN/GOV/000.00.00.G01/CSDLDC/XacThuc/v2", "G01 CSDLDC/XacThuc/v2"),
    ("VN/GOV/G22/DVCQG/X", "G22 DVCQG/X"),
    ("VN/GOV/000.00.00.G22/DVCQG", "VN/GOV/000.00.00.G22/DVCQG"),  # not a service id: as it is
    ("-", "-"),
])
def test_short_service_keeps_the_agency_code_and_what_follows(service_id: str, label: str) -> None:
    """A chart label drops the instance, class and the agency code's prefix."""
    assert short_service(service_id) == label


@pytest.mark.parametrize(("share", "text"), [
    (None, "–"), (0, "0.0 %"), (0.5, "50.0 %"), (1, "100.0 %"), (0.12345, "12.3 %"), (0.99951, "100.0 %")])
def test_percent(share: float | None, text: str) -> None:
    """Shares (0..1) as percentages with one decimal; no share, a dash."""
    assert percent(share) == text


@pytest.mark.parametrize(("us", "text"), [
    (None, "–"), (0, "0 µs"), (999, "999 µs"), (1000, "1.0 ms"), (999_949, "999.9 ms"),
    (1_000_000, "1.00 s"), (12_345_678, "12.35 s")])
def test_duration(us: int | None, text: str) -> None:
    """Microseconds in the largest unit that keeps them above one."""
    assert duration(us) == text


# -- redirect targets --------------------------------------------------------------------------------

def _as_a_browser_reads(location: str, page: str = "https://gw.example/console/login") -> str:
    """Where a browser goes for a Location header: tabs and newlines dropped, a backslash read as a
    slash (WHATWG URL parsing of http(s) URLs), then resolved against the page."""
    cleaned = location.replace("\t", "").replace("\n", "").replace("\r", "").replace("\\", "/")
    return urljoin(page, cleaned)


# Away from the host, whatever the console's base: another host, a scheme, a protocol-relative or
# backslashed path, a control character a browser drops (turning "/\t/evil" into "//evil").
AWAY = [
    "//evil.example", "//evil.example/console/", "/\\evil.example", "\\\\evil.example",
    "/\\/evil.example", "https://evil.example/console/overview", "http:evil.example", "HTTPS://evil.example",
    "javascript:alert(1)", "/\t/evil.example", "/\n/evil.example", "/\r\n/evil.example",
    "/console\\..\\..\\/evil.example", "%2F%2Fevil.example", "https%3A%2F%2Fevil.example",
    " //evil.example",
]
# On this host but outside the console (or no path at all), or with a character no link has.
OUTSIDE = [None, "", "/console", "/consoleevil/overview", "/overview", "/console/\t/evil", "/console/\x00",
           "/console/\x7f", " /console/overview"]


@pytest.mark.parametrize("base", ["/console", ""])
@pytest.mark.parametrize("target", AWAY)
def test_safe_next_never_sends_a_browser_away(base: str, target: str) -> None:
    """A target that would leave the host becomes the overview, wherever the console is mounted."""
    assert safe_next(base, target) == f"{base}/overview"


@pytest.mark.parametrize("target", OUTSIDE)
def test_safe_next_keeps_to_the_console(target: str | None) -> None:
    """A target outside the console, or with a control character, becomes the overview."""
    assert safe_next("/console", target) == "/console/overview"


@pytest.mark.parametrize("target", [
    "/console/log?subject=ab&before=10", "/console/log/42", "/console/deliveries?state=dead",
    "/console/%2F%2Fevil.example", "/console/%5Cevil", "/console//evil.example", "/console/tra-cứu",
])
def test_safe_next_keeps_a_path_inside_the_console(target: str) -> None:
    """A path under the console is kept as it is, encoded slashes included: the browser reads them as
    one segment of a path on this host."""
    assert safe_next("/console", target) == target
    assert urlsplit(_as_a_browser_reads(target)).netloc == "gw.example"


@pytest.mark.parametrize("target", [*AWAY, *OUTSIDE[1:], "/console/log", "/console/%2F%2Fx"])
@pytest.mark.parametrize("base", ["/console", ""])
def test_a_browser_never_leaves_the_host_after_safe_next(base: str, target: str) -> None:
    """Whatever comes in, the browser resolves the answer to this host."""
    assert urlsplit(_as_a_browser_reads(safe_next(base, target))).netloc == "gw.example"


@pytest.mark.parametrize(("back", "target"), [
    ("/console/deliveries?state=pending&service=X", "/console/deliveries?state=pending&service=X"),
    ("/console/deliveries", "/console/deliveries"),
    ("", "/console/deliveries"), ("https://evil.example/console/deliveries", "/console/deliveries"),
    ("//evil.example/console/deliveries", "/console/deliveries"), ("/console/log", "/console/deliveries"),
])
def test_a_delivery_action_returns_to_the_list_it_came_from(back: str, target: str) -> None:
    """Retry and replay go back to the deliveries list (its filters kept), nowhere else."""
    assert back_to("/console", back) == target


# -- route tables ------------------------------------------------------------------------------------

Table = list[tuple[str, tuple[str, ...], str | None, str | None]]


def _table(routes: tuple[OpenRoute | PageRoute, ...]) -> Table:
    """(path, methods, permission, audit action); an open page has neither."""
    return [(r.path, r.methods, r.permission, r.action) if isinstance(r, PageRoute) else
            (r.path, r.methods, None, None) for r in routes]


EXPECTED: dict[str, Table] = {
    "page_auth": [("/", ("GET",), None, None), ("/login", ("GET",), None, None),
                  ("/login", ("POST",), None, None), ("/logout", ("POST",), "account", "signout"),
                  ("/lang/{code}", ("GET",), None, None)],
    "page_overview": [("/overview", ("GET",), "overview", "overview")],
    "page_log": [("/log", ("GET",), "log", "log.search"), ("/log", ("POST",), "log", None),
                 ("/log/export.csv", ("GET",), "log", "log.export.csv"),
                 ("/log/export.jsonl", ("GET",), "log", "log.export.jsonl"),
                 ("/log/{idx}", ("GET",), "log", "log.entry"),
                 ("/checkpoints", ("GET",), "checkpoints", "checkpoints")],
    "page_subjects": [("/subjects", ("GET",), "subjects", None), ("/subjects", ("POST",), "subjects", None),
                      ("/subjects/{subject}", ("GET",), "subjects", "subjects.report")],
    "page_deliveries": [("/deliveries", ("GET",), "deliveries", "deliveries"),
                        ("/deliveries/{delivery_id}/retry", ("POST",), "deliveries.act", "deliveries.retry"),
                        ("/deliveries/{delivery_id}/replay", ("POST",), "deliveries.act",
                         "deliveries.replay")],
    "page_flows": [("/flows", ("GET",), "flows", "flows"),
                   ("/flows/{flow_id}", ("GET",), "flows", "flows.show")],
    "page_documents": [("/documents", ("GET",), "documents", "documents"),
                       ("/documents/{doc_id}", ("GET",), "documents", "documents.show")],
    "page_catalog": [("/catalog", ("GET",), "catalog", "catalog")],
}
MODULES = {"page_auth": page_auth, "page_overview": page_overview, "page_log": page_log,
           "page_subjects": page_subjects, "page_deliveries": page_deliveries, "page_flows": page_flows,
           "page_documents": page_documents, "page_catalog": page_catalog}


@pytest.mark.parametrize("name", list(EXPECTED))
def test_each_area_routes_its_paths_with_their_permissions_and_actions(name: str) -> None:
    """Each page module's table: paths, methods, the permission each page needs, its audit action."""
    assert _table(MODULES[name].ROUTES) == EXPECTED[name]


def test_every_permission_is_in_the_roles_table_and_every_area_is_mounted() -> None:
    """Pages name only permissions ``permissions.PAGES`` knows; ``pages.AREAS`` holds every module."""
    used = {r.permission for area in pages.AREAS for r in area if isinstance(r, PageRoute)}
    assert used == set(PAGES)
    assert list(pages.AREAS) == [MODULES[name].ROUTES for name in EXPECTED]


@pytest.mark.parametrize(("role", "opens", "refused"), [
    ("auditor", {"/overview", "/log", "/log/{idx}", "/subjects/{subject}", "/catalog", "/checkpoints"},
     {"/deliveries", "/deliveries/{delivery_id}/retry"}),
    ("operator", {"/overview", "/deliveries", "/deliveries/{delivery_id}/replay", "/catalog", "/checkpoints"},
     {"/log", "/log/export.csv", "/subjects", "/subjects/{subject}"}),
    ("admin", {r.path for area in pages.AREAS for r in area if isinstance(r, PageRoute)}, set()),
])
def test_which_role_opens_which_path(role: str, opens: set[str], refused: set[str]) -> None:
    """An auditor reads the log and reports but acts on no delivery; an operator the reverse."""
    by_path: dict[str, set[str]] = {}
    for area in pages.AREAS:
        for r in area:
            if isinstance(r, PageRoute):
                by_path.setdefault(r.path, set()).add(r.permission)
    assert all(allowed(role, p) for path in opens for p in by_path[path])
    assert not any(allowed(role, p) for path in refused for p in by_path[path])


def _no_runtime() -> Runtime:
    raise AssertionError("the route table and a visitor's refusal need no runtime")


@pytest.fixture(scope="module")
def console() -> Console:
    return Console(_no_runtime)


def test_the_console_mounts_the_tables_in_order(console: Console) -> None:
    """The Starlette routes are the tables' in order (GET answers HEAD too); the exports come before
    ``/log/{idx}``, which would take them."""
    mounted = [(r.path, r.methods) for r in pages.routes(console)]
    wanted = [(path, {*methods, *(("HEAD",) if "GET" in methods else ())})
              for table in EXPECTED.values() for path, methods, _, _ in table]
    assert mounted == wanted
    paths = [path for path, _ in mounted]
    assert paths.index("/log/export.csv") < paths.index("/log/{idx}")
    assert paths.index("/log/export.jsonl") < paths.index("/log/{idx}")


def _visitor(console: Console) -> Callable[[Scope, Receive, Send], Any]:
    """The console's router as a visitor reaches it: a fresh session, no sign-in (the middleware,
    which reads the session cookie, is left out)."""
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            scope["console.session"], scope["console.lang"] = Session(), "en"
        await console.router(scope, receive, send)

    return app


def _concrete(path: str) -> str:
    return path.replace("{idx}", "7").replace("{subject}", "ab" * 32).replace("{delivery_id}", "d1")


@pytest.mark.parametrize("route", [r for area in pages.AREAS for r in area if isinstance(r, PageRoute)],
                         ids=lambda r: f"{r.methods[0]} {r.path}")
def test_a_visitor_is_sent_to_sign_in_or_refused(console: Console, route: PageRoute) -> None:
    """No page opens without signing in: a GET goes to the sign-in page with the way back, a POST
    is refused (401)."""
    with TestClient(_visitor(console), follow_redirects=False) as client:
        response = client.request(route.methods[0], _concrete(route.path))
    if route.methods[0] == "GET":
        assert response.status_code == 303
        assert response.headers["location"].startswith("/login?next=/")
    else:
        assert response.status_code == 401


@pytest.mark.parametrize(("path", "location"), [
    ("/", "/overview"), ("/lang/xx?next=/log", "/log"), ("/lang/xx?next=//evil.example", "/overview"),
    ("/lang/xx?next=/%09/evil.example", "/overview"), ("/lang/xx?next=https://evil.example", "/overview"),
])
def test_open_pages_redirect_inside_the_console(console: Console, path: str, location: str) -> None:
    """The home page and the language switch need no sign-in and redirect only inside the console."""
    with TestClient(_visitor(console), follow_redirects=False) as client:
        response = client.get(path)
    assert (response.status_code, response.headers["location"]) == (303, location)
