"""Signing in to the console through an outside OpenID Connect provider (authlib's Starlette client).

The provider is a small real server on loopback: discovery document, an authorization endpoint that
approves at once, a token endpoint that issues an RS256 ID token carrying the nonce it was given,
and its JWKS. The gateway runs in a TestClient.
"""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import httpx
import pytest
import uvicorn
import yaml
from fastapi.testclient import TestClient
from joserfc import jwt
from joserfc.jwk import RSAKey
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import Route

from gateway.app import create_app
from gateway.config import load_config
from gateway.console.users import UserStore
from gateway.init import initialise
from gateway.storage.db import upgrade
from tests.conftest import free_port

CLIENT_ID = "lienthong-console"


class Provider:
    """What the fake provider issues: who signs in next and the roles they carry."""

    def __init__(self, port: int) -> None:
        self.base = f"http://127.0.0.1:{port}"
        self.key = RSAKey.generate_key(2048, parameters={"kid": "k1", "alg": "RS256", "use": "sig"})
        self.person: dict[str, Any] = {"sub": "u-1", "preferred_username": "an.nguyen", "roles": ["lt-audit"]}
        self.codes: dict[str, dict[str, str]] = {}

    def app(self) -> Starlette:
        async def discovery(request: Request) -> Response:
            return JSONResponse({"issuer": self.base, "authorization_endpoint": f"{self.base}/authorize",
                                 "token_endpoint": f"{self.base}/token", "jwks_uri": f"{self.base}/jwks",
                                 "response_types_supported": ["code"], "subject_types_supported": ["public"],
                                 "id_token_signing_alg_values_supported": ["RS256"]})

        async def authorize(request: Request) -> Response:
            q = request.query_params
            code = secrets.token_urlsafe(8)
            self.codes[code] = {"nonce": q.get("nonce", ""), "challenge": q.get("code_challenge", "")}
            return RedirectResponse(f"{q['redirect_uri']}?{urlencode({'code': code, 'state': q['state']})}")

        async def token(request: Request) -> Response:
            form = parse_qs((await request.body()).decode())
            grant = self.codes.pop(form["code"][0], None)
            verifier = form.get("code_verifier", [""])[0]
            challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=")
            if grant is None or challenge.decode() != grant["challenge"]:
                return JSONResponse({"error": "invalid_grant"}, status_code=400)
            now = int(time.time())
            claims = {"iss": self.base, "aud": CLIENT_ID, "iat": now, "exp": now + 300,
                      "nonce": grant["nonce"], **self.person}
            id_token = jwt.encode({"alg": "RS256", "kid": "k1"}, claims, self.key)
            return JSONResponse({"access_token": "at", "token_type": "Bearer", "expires_in": 300,
                                 "id_token": id_token})

        async def jwks(request: Request) -> Response:
            return JSONResponse({"keys": [self.key.as_dict(private=False)]})

        return Starlette(routes=[Route("/.well-known/openid-configuration", discovery),
                                 Route("/authorize", authorize), Route("/token", token, methods=["POST"]),
                                 Route("/jwks", jwks)])


@pytest.fixture
def provider() -> Iterator[Provider]:
    port = free_port()
    found = Provider(port)
    server = uvicorn.Server(uvicorn.Config(found.app(), host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.02)
    yield found
    server.should_exit = True
    thread.join(5)


@pytest.fixture
def client(tmp_path: Path, provider: Provider) -> Iterator[TestClient]:
    init = initialise(tmp_path / "gw")
    cfg = yaml.safe_load(init.config_path.read_text())
    cfg["console"] = {"oidc": {"name": "Định danh cán bộ", "client_id": CLIENT_ID, "client_secret": "s3cret",
                               "metadata_url": f"{provider.base}/.well-known/openid-configuration",
                               "roles": {"lt-audit": "auditor", "lt-ops": "operator"}}}
    init.config_path.write_text(yaml.safe_dump(cfg, allow_unicode=True, sort_keys=False))
    config = load_config(init.config_path)
    upgrade(config.database_url)
    with TestClient(create_app(config), base_url="http://127.0.0.1") as test_client:
        yield test_client


def _sign_in(client: TestClient) -> Any:
    start = client.get("/console/oidc/start", follow_redirects=False)
    assert start.status_code in (302, 307), start.text
    approved = httpx.get(start.headers["location"], follow_redirects=False)
    back = urlsplit(approved.headers["location"])
    assert back.path == "/console/oidc/callback"
    return client.get(f"{back.path}?{back.query}", follow_redirects=False)


def test_oidc_sign_in_maps_a_role(client: TestClient) -> None:
    """The sign-in page offers the provider; a person whose roles map to auditor gets in as one."""
    assert "Đăng nhập qua Định danh cán bộ" in client.get("/console/login").text
    done = _sign_in(client)
    assert done.status_code == 303 and done.headers["location"] == "/console/overview"
    page = client.get("/console/log")
    assert page.status_code == 200 and "an.nguyen" in page.text
    assert client.get("/console/deliveries").status_code == 403


def test_oidc_person_without_a_role_is_refused(client: TestClient, provider: Provider) -> None:
    """Claims that map to no console role, and no local account: refused."""
    provider.person = {"sub": "u-2", "preferred_username": "khach", "roles": ["other"]}
    refused = _sign_in(client)
    assert refused.status_code == 403 and "chưa được cấp vai trò" in refused.text
    assert client.get("/console/overview", follow_redirects=False).status_code == 303


def test_oidc_local_account_decides_the_role(client: TestClient, provider: Provider) -> None:
    """A local account of the same name gives its role (operator here), and a disabled one refuses."""
    runtime = client.app.api.state.runtime  # type: ignore[attr-defined]
    store = UserStore(runtime.engine)
    store.add("an.nguyen", "operator", None, "Nguyễn An")
    assert _sign_in(client).status_code == 303
    assert client.get("/console/deliveries").status_code == 200
    store.set_enabled("an.nguyen", False)
    assert client.get("/console/deliveries", follow_redirects=False).status_code == 303
    assert _sign_in(client).status_code == 403


def test_a_forged_callback_is_refused(client: TestClient) -> None:
    """A callback with a state this session never started is refused and audited."""
    r = client.get("/console/oidc/callback?code=x&state=nope", follow_redirects=False)
    assert r.status_code == 401 and "không xác nhận" in r.text
    audit = client.app.api.state.runtime.audit  # type: ignore[attr-defined]
    last = json.loads(audit.read(0, 100)[-1].leaf)
    assert (last["protocol"], last["operation"], last["outcome"]) == ("console", "signin", "refused")
