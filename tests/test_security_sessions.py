"""Console sessions held server-side: signing out, a new password and a disabled account end a
session at once, for every copy of its cookie and in every worker; the cookie is ``Secure`` behind a
TLS proxy; the OpenID Connect redirect names ``public.url``, never the request's Host."""

from __future__ import annotations

import base64
import hashlib
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import sqlalchemy as sa
import yaml
from fastapi.testclient import TestClient

from gateway.app import create_app
from gateway.config import Config, load_config
from gateway.console.tables import console_sessions
from gateway.console.users import UserStore
from gateway.init import initialise
from gateway.storage.db import create_engine, upgrade
from tests import test_console_oidc
from tests.test_console_oidc import CLIENT_ID, Provider

PASSWORD = "mat-khau-du-dai-1"
PUBLIC = "https://lgsp.example.gov.vn"
PAGES = ("/console/log", "/console/log/export.csv")


def _config(tmp_path: Path, **settings: Any) -> Config:
    init = initialise(tmp_path / "gw")
    data = yaml.safe_load(init.config_path.read_text())
    data.update(settings)
    init.config_path.write_text(yaml.safe_dump(data, allow_unicode=True, sort_keys=False))
    config = load_config(init.config_path)
    upgrade(config.database_url)
    engine = create_engine(config.database_url)
    UserStore(engine).add("kiemtoan", "auditor", PASSWORD)
    engine.dispose()
    return config


def _csrf(client: TestClient, path: str) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', client.get(path).text)
    assert found
    return found.group(1)


def _sign_in(client: TestClient) -> str:
    r = client.post("/console/login", data={"csrf": _csrf(client, "/console/login"), "username": "kiemtoan",
                                            "password": PASSWORD, "next": ""}, follow_redirects=False)
    assert r.status_code == 303, r.text
    cookie = client.cookies.get("lt_console")
    assert cookie
    return str(cookie)


def _reads(client: TestClient, cookie: str) -> list[int]:
    """What the log and its CSV export answer to this cookie (200: read; 303: sent to sign in)."""
    client.cookies.set("lt_console", cookie, path="/console")
    return [client.get(path, follow_redirects=False).status_code for path in PAGES]


@pytest.fixture
def config(tmp_path: Path) -> Config:
    return _config(tmp_path)


@pytest.fixture
def client(config: Config) -> Iterator[TestClient]:
    with TestClient(create_app(config), base_url="http://127.0.0.1") as test_client:
        yield test_client


def test_signing_out_ends_every_copy_of_the_session(client: TestClient) -> None:
    """A cookie copied before signing out reads neither the log nor its CSV export afterwards."""
    cookie = _sign_in(client)
    assert _reads(client, cookie) == [200, 200]
    client.post("/console/logout", data={"csrf": _csrf(client, "/console/overview")})
    assert _reads(client, cookie) == [303, 303]


def test_signing_out_in_one_worker_ends_the_session_in_another(config: Config) -> None:
    """Two gateway processes on one database: a session signed out in one is over in the other at once."""
    with TestClient(create_app(config), base_url="http://127.0.0.1") as one, \
            TestClient(create_app(config), base_url="http://127.0.0.1") as two:
        cookie = _sign_in(one)
        assert _reads(two, cookie) == [200, 200]
        one.post("/console/logout", data={"csrf": _csrf(one, "/console/overview")})
        assert _reads(two, cookie) == [303, 303]


@pytest.mark.parametrize("change", ["password", "disable", "end_sessions"])
def test_account_changes_end_its_sessions(client: TestClient, change: str) -> None:
    """A new password, a disabled account or "end sessions" closes every open session of the account."""
    cookie = _sign_in(client)
    engine = client.app.api.state.runtime.engine  # type: ignore[attr-defined]
    store = UserStore(engine)
    {"password": lambda: store.set_password("kiemtoan", "mot-mat-khau-moi-2"),
     "disable": lambda: store.set_enabled("kiemtoan", False),
     "end_sessions": lambda: store.end_sessions("kiemtoan")}[change]()
    with engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(console_sessions)).scalar() == 0
    assert _reads(client, cookie) == [303, 303]


def test_the_table_holds_only_a_hash_of_the_session_id(client: TestClient) -> None:
    """The session id in the cookie is not stored: only its SHA-256 is."""
    _sign_in(client)
    body = client.cookies["lt_console"].split(".")[0]
    sid = json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))["sid"]
    engine = client.app.api.state.runtime.engine  # type: ignore[attr-defined]
    with engine.connect() as conn:
        rows = conn.execute(sa.select(console_sessions.c.id_hash)).scalars().all()
    assert rows == [hashlib.sha256(sid.encode()).hexdigest()]


# -- the cookie's Secure flag -------------------------------------------------------------------------

@pytest.mark.parametrize(("settings", "peer", "headers", "secure"), [
    ({}, "10.0.0.2", {}, False),
    ({}, "10.0.0.2", {"X-Forwarded-Proto": "https"}, False),  # from no trusted proxy: ignored
    ({"public": {"trusted_proxies": ["10.0.0.0/8"]}}, "10.0.0.2", {"X-Forwarded-Proto": "https"}, True),
    ({"public": {"trusted_proxies": ["10.0.0.0/8"]}}, "10.0.0.2", {"X-Forwarded-Proto": "http"}, False),
    ({"public": {"trusted_proxies": ["10.0.0.0/8"]}}, "192.0.2.7", {"X-Forwarded-Proto": "https"}, False),
    ({"public": {"url": PUBLIC}}, "10.0.0.2", {}, True),
    ({"public": {"url": PUBLIC}, "console": {"secure_cookies": False}}, "10.0.0.2", {}, False),
    ({"console": {"secure_cookies": True}}, "10.0.0.2", {}, True),
])
def test_the_session_cookie_is_secure_behind_tls(tmp_path: Path, settings: dict[str, Any], peer: str,
                                                 headers: dict[str, str], secure: bool) -> None:
    """Secure when public.url is https or a trusted proxy says https; console.secure_cookies decides
    when it is set."""
    config = _config(tmp_path, **settings)
    with TestClient(create_app(config), base_url="http://127.0.0.1", client=(peer, 5000)) as test_client:
        cookie = test_client.get("/console/login", headers=headers).headers["set-cookie"]
    assert ("; Secure" in cookie) is secure, cookie


# -- OpenID Connect's redirect ------------------------------------------------------------------------

provider = test_console_oidc.provider  # the same OpenID provider, served on loopback


def test_the_oidc_redirect_names_the_public_url_not_the_host(tmp_path: Path, provider: Provider) -> None:
    """A forged Host header does not change where the provider sends the code back."""
    oidc = {"client_id": CLIENT_ID, "client_secret": "s3cret", "roles": {"lt-audit": "auditor"},
            "metadata_url": f"{provider.base}/.well-known/openid-configuration"}
    config = _config(tmp_path, public={"url": PUBLIC + "/"}, console={"oidc": oidc})
    with TestClient(create_app(config), base_url="http://127.0.0.1") as test_client:
        start = test_client.get("/console/oidc/start", headers={"Host": "evil.example"},
                                follow_redirects=False)
    assert start.status_code in (302, 307), start.text
    redirect = parse_qs(urlsplit(start.headers["location"]).query)["redirect_uri"]
    assert redirect == [f"{PUBLIC}/console/oidc/callback"]
