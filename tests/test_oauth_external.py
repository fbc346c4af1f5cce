"""Tokens of a trusted outside issuer (e.g. a national identity platform), its keys fetched from its
JWKS URL and refreshed when a token names a new key."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from fastapi.testclient import TestClient
from joserfc import jwt
from joserfc.jwk import ECKey, KeySet

from gateway.app import create_app
from gateway.connector import Call, Reply
from gateway.storage.db import upgrade
from tests.helpers import FunctionConnector, rest_only_config
from tests.oauth_helpers import ECHO, MOTCUA_H60, runtime

ISSUER = "https://vneid.example.gov.vn"


class JwksServer:
    """A tiny outside authorization server: it only publishes its JWKS."""

    def __init__(self) -> None:
        self.keys = KeySet([ECKey.generate_key("P-256", parameters={"kid": "k1", "alg": "ES256"})])
        self.fetches = 0
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                outer.fetches += 1
                body = json.dumps(outer.keys.as_dict(private=False)).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/jwks.json"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def token(self, kid: str = "k1", **changes: Any) -> str:
        now = int(time.time())
        claims = {"iss": ISSUER, "aud": "lienthong", "sub": "vneid-user", "client_id": MOTCUA_H60,
                  "scope": "exchange", "jti": f"x-{time.time_ns()}", "iat": now, "nbf": now, "exp": now + 300,
                  **changes}
        header = {"alg": "ES256", "typ": "at+jwt", "kid": kid}
        return jwt.encode(header, claims, self.keys, algorithms=["ES256"])


@pytest.fixture(scope="module")
def outside(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[TestClient, JwksServer]]:
    server = JwksServer()
    config, _ = rest_only_config(tmp_path_factory.mktemp("external"), token={
        "issuer": "http://127.0.0.1:8080", "audience": "lienthong", "lifetime": 300, "algorithm": "ES256",
        "trusted_issuers": [{"issuer": ISSUER, "jwks_url": server.url, "algorithms": ["ES256"]}]})
    upgrade(config.database_url)

    async def ok(call: Call) -> Reply:
        return Reply({"ok": True})

    with TestClient(create_app(config)) as client:
        runtime(client).connectors[ECHO.removeprefix("/r1/")] = FunctionConnector(ok)
        assert wait(lambda: server.fetches >= 1)
        yield client, server
    server.server.shutdown()


def wait(check: Any, seconds: float = 10.0) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.05)
    return False


def call(client: TestClient, token: str) -> Any:
    return client.post(ECHO, json={}, headers={"Authorization": f"Bearer {token}"})


def test_outside_token_is_accepted(outside: tuple[TestClient, JwksServer]) -> None:
    """A token of the trusted issuer, signed with a key of its JWKS, is accepted for its client."""
    client, server = outside
    r = call(client, server.token())
    assert r.status_code == 200, r.text
    leaf = json.loads(runtime(client).audit.read(runtime(client).audit.size() - 1, 1)[0].leaf)
    assert leaf["client"] == MOTCUA_H60


@pytest.mark.parametrize(("changes", "why"), [
    ({"aud": "other"}, "audience"), ({"client_id": "not a subsystem"}, "subsystem"),
    ({"exp": int(time.time()) - 3600}, "expired"),
])
def test_outside_token_claims_checked(outside: tuple[TestClient, JwksServer], changes: dict[str, Any],
                                      why: str) -> None:
    """An outside token gets the same checks as the gateway's own."""
    client, server = outside
    r = call(client, server.token(**changes))
    assert r.status_code == 401 and why in r.json()["detail"]


def test_outside_issuer_key_rotation(outside: tuple[TestClient, JwksServer],
                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """A token naming a key the issuer just added is refused at first, and accepted once the JWKS
    has been fetched again (asked for by the unknown kid, without waiting for the refresh period)."""
    import gateway.oauth.external as external

    client, server = outside
    monkeypatch.setattr(external, "MIN_REFETCH", 0.1)
    server.keys = KeySet([*server.keys.keys, ECKey.generate_key("P-256", parameters={"kid": "k2",
                                                                                      "alg": "ES256"})])
    token = server.token(kid="k2")
    first = call(client, token)
    assert first.status_code == 401 and "key" in first.json()["detail"]
    assert wait(lambda: call(client, token).status_code == 200)
