"""Numbers out of range are the caller's mistake (4xx, before any query), /metrics needs a token with
the ``metrics`` scope, and the API's documentation pages load nothing from outside the gateway.

The gateway runs in a TestClient with the demo catalog; one client holds every scope the API asks
for, and an admin account signs in to the console.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml
from fastapi.testclient import TestClient

from gateway.app import create_app
from gateway.bounds import MAX_INDEX, OutOfRange, index
from gateway.config import load_config
from gateway.console.users import UserStore
from gateway.init import CLIENT_SCOPES, initialise
from gateway.storage.db import create_engine, upgrade

CLIENT = "VN/GOV/000.00.00.H60/MOTCUA"
SCRAPER = "VN/GOV/000.00.00.G22/GIAMSAT"
SCOPES = "exchange operator stats audit.read audit.subject"
PASSWORD = "mat-khau-du-dai-1"
HUGE = str(2**64)  # past what a BIGINT column holds, in either sign
PROBLEM = "application/problem+json"


@dataclass
class Gateway:
    client: TestClient
    secrets: dict[str, str]

    def token(self, client: str = CLIENT, scope: str | None = SCOPES) -> str:
        form = {"grant_type": "client_credentials", **({"scope": scope} if scope else {})}
        r = self.client.post("/oauth/token", data=form, auth=(client, self.secrets[client]))
        assert r.status_code == 200, r.text
        return str(r.json()["access_token"])

    def bearer(self, client: str = CLIENT, scope: str | None = SCOPES) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token(client, scope)}"}

    def sign_in(self) -> None:
        page = self.client.get("/console/login")
        csrf = re.search(r'name="csrf" value="([^"]+)"', page.text)
        assert csrf, page.text[:300]
        r = self.client.post("/console/login", follow_redirects=False, data={
            "csrf": csrf.group(1), "username": "quantri", "password": PASSWORD, "next": ""})
        assert r.status_code == 303, r.text[:300]


@pytest.fixture
def gateway(tmp_path: Path) -> Iterator[Gateway]:
    init = initialise(tmp_path / "gw")
    cfg = yaml.safe_load(init.config_path.read_text())
    cfg["clients"] = [{**c, "scopes": SCOPES.split()} if c["id"] == CLIENT else c for c in cfg["clients"]]
    init.config_path.write_text(yaml.safe_dump(cfg, allow_unicode=True, sort_keys=False))
    config = load_config(init.config_path)
    upgrade(config.database_url)
    engine = create_engine(config.database_url)
    UserStore(engine).add("quantri", "admin", PASSWORD, "Quản Trị")
    engine.dispose()
    app = create_app(config)
    with TestClient(app, base_url="http://127.0.0.1", raise_server_exceptions=False) as client:
        yield Gateway(client, init.secrets)


# -- numbers in range -------------------------------------------------------------------------------

def test_index_reads_ascii_digits_within_64_bits() -> None:
    """Digits up to 2**63-1 are read; absent or non-digit text is None; more digits are refused."""
    assert index("0") == 0 and index("0042") == 42 and index(str(MAX_INDEX)) == MAX_INDEX
    assert index("0" * 100_000) == 0 and index("0" * 5000 + "7") == 7
    for text in (None, "", "-1", "1.5", "abc", "²", "١٢", " 1"):
        assert index(text) is None, text
    for text in (str(MAX_INDEX + 1), HUGE, "9" * 100_000):
        with pytest.raises(OutOfRange):
            index(text)


API_PATHS = [
    f"/deliveries?after={HUGE}", f"/deliveries?after=-{HUGE}", "/deliveries?after=-1",
    f"/audit/entries/{HUGE}", "/audit/entries/-1", f"/audit/entries?after={HUGE}",
    f"/audit/entries?after=-{HUGE}", f"/audit/entries/0?checkpoint={HUGE}",
    f"/audit/checkpoints?after={HUGE}", f"/audit/consistency?from={HUGE}",
    f"/audit/consistency?from=1&to={HUGE}", "/audit/entries/" + "9" * 5000,
]


def test_api_numbers_out_of_range_are_400_problems(gateway: Gateway) -> None:
    """Every numeric parameter past the 64-bit range (or below its floor) is a 400 problem+json."""
    headers = gateway.bearer()
    for path in API_PATHS:
        r = gateway.client.get(path, headers=headers)
        assert r.status_code == 400, (path, r.status_code, r.text[:200])
        assert r.headers["content-type"].startswith(PROBLEM), path
        assert r.json()["code"] == "Client.InvalidRequest", path


def test_api_text_with_nul_is_400_before_any_query(gateway: Gateway) -> None:
    """A NUL in a string that would reach a query is refused: PostgreSQL's text cannot hold one and
    its driver fails on it (SQLite, used here, would not show it)."""
    headers = gateway.bearer()
    for path in ("/deliveries?service=%00", "/deliveries?dossier=a%00b", "/deliveries/%00",
                 "/audit/entries?client=%00", "/audit/entries?purpose=%00", "/audit/export?official=%00",
                 "/stats/dossiers?agency=%00"):
        r = gateway.client.get(path, headers=headers)
        assert r.status_code == 400 and r.headers["content-type"].startswith(PROBLEM), (path, r.text[:200])


def test_an_existing_leaf_with_a_huge_checkpoint_is_400(gateway: Gateway) -> None:
    """With a leaf in the log, a checkpoint size past 64 bits is refused before it is looked up."""
    gateway.bearer()  # the token request itself leaves no leaf; a console sign-in does
    gateway.sign_in()
    r = gateway.client.get(f"/audit/entries/0?checkpoint={HUGE}", headers=gateway.bearer())
    assert r.status_code == 400, r.text[:200]


def test_subject_report_after_out_of_range_is_400(gateway: Gateway) -> None:
    """The subject report's body ``after`` has the same range as the query parameters."""
    r = gateway.client.post("/audit/subject-report", json={"subject": "001099000001", "after": 2**64},
                            headers=gateway.bearer())
    assert r.status_code == 400 and r.headers["content-type"].startswith(PROBLEM), r.text[:200]


CONSOLE_PATHS = [
    f"/console/deliveries?after={HUGE}", f"/console/log/{HUGE}", f"/console/log?before={HUGE}",
    f"/console/checkpoints?first={HUGE}&second={HUGE}", f"/console/checkpoints?first=1&second={HUGE}",
    f"/console/log/export.csv?before={HUGE}", "/console/log/" + "9" * 5000,
]


def test_console_numbers_out_of_range_are_its_400_page(gateway: Gateway) -> None:
    """The console answers its own 400 error page, never a 500, for numbers past 64 bits."""
    gateway.sign_in()
    for path in CONSOLE_PATHS:
        r = gateway.client.get(path)
        assert r.status_code == 400, (path, r.status_code)
        assert r.headers["content-type"].startswith("text/html"), path
        assert "Một số trong địa chỉ nằm ngoài khoảng cho phép." in r.text, path


def test_long_runs_of_leading_zeros_are_read_not_crashed_on(gateway: Gateway) -> None:
    """Python's int() refuses over 4,300 digits even when they are zeros: such numbers still get an
    answer (the number they spell, or a 400), never a 500."""
    gateway.sign_in()
    many = "0" * 5000
    for path in (f"/console/log/{many}0", f"/console/deliveries?after={many}",
                 f"/console/log?before={many}5"):
        assert gateway.client.get(path).status_code == 200, path
    headers = gateway.bearer()
    for path in (f"/deliveries?after={many}", f"/audit/entries?after={many}", f"/audit/entries/{many}"):
        assert gateway.client.get(path, headers=headers).status_code in (200, 400, 404), path


def test_console_ignores_digits_that_are_not_ascii(gateway: Gateway) -> None:
    """Superscript and Arabic-Indic digits are not numbers to the console: the page shows as usual."""
    gateway.sign_in()
    for path in ("/console/deliveries?after=²", "/console/log?before=²",
                 "/console/checkpoints?first=²&second=١"):
        assert gateway.client.get(path).status_code == 200, path


# -- /metrics ---------------------------------------------------------------------------------------

def test_metrics_need_a_token_with_the_metrics_scope(gateway: Gateway) -> None:
    """No token: 401; a token without ``metrics`` (even an operator's): 403; with it: the metrics."""
    r = gateway.client.get("/metrics")
    assert r.status_code == 401 and r.headers["content-type"].startswith(PROBLEM)
    assert r.headers["www-authenticate"].startswith("Bearer")
    r = gateway.client.get("/metrics", headers=gateway.bearer())
    assert r.status_code == 403 and r.headers["content-type"].startswith(PROBLEM)
    assert 'error="insufficient_scope", scope="metrics"' in r.headers["www-authenticate"]
    r = gateway.client.get("/metrics", headers=gateway.bearer(SCRAPER, "metrics"))
    assert r.status_code == 200 and "lienthong_delivery_oldest_pending_seconds" in r.text


def test_init_registers_a_monitoring_client_with_only_the_metrics_scope() -> None:
    """`lienthong init` gives the metrics scope to its own monitoring client, and nothing else."""
    assert CLIENT_SCOPES[SCRAPER] == ["metrics"]
    assert all("metrics" not in scopes for client, scopes in CLIENT_SCOPES.items() if client != SCRAPER)


# -- the documentation pages ------------------------------------------------------------------------

_URL = re.compile(r"""(?:src|href)\s*=\s*["']([^"']+)["']|url:\s*'([^']+)'|https?://[^\s"'<>)]+""")


def _references(html: str) -> list[str]:
    return [m.group(1) or m.group(2) or m.group(0) for m in _URL.finditer(html)]


@pytest.mark.parametrize("page", ["/docs", "/redoc"])
def test_docs_pages_load_only_the_gateways_own_files(gateway: Gateway, page: str) -> None:
    """The Swagger UI and ReDoc pages name no other host, and every file they name is served here."""
    r = gateway.client.get(page)
    assert r.status_code == 200
    found = _references(r.text)
    assert found, r.text
    for url in found:
        assert url.startswith("/") and not url.startswith("//"), url
        asset = gateway.client.get(url)
        assert asset.status_code == 200 and asset.content, url
    if page == "/docs":
        assert {"/docs/assets/swagger-ui-bundle.js", "/docs/assets/swagger-ui.css"} <= set(found)
        assert '"validatorUrl": null' in r.text
    else:
        assert "/docs/assets/redoc.standalone.js" in found
