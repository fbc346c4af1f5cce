"""Helpers of the OAuth, policy and rate-limit tests: a gateway in-process with test policies, token
requests by both client authentication methods, forged tokens."""

from __future__ import annotations

import base64
import json
import time
from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient
from joserfc import jwt
from joserfc.jwk import KeySet

from gateway import keys
from gateway.config import Config
from gateway.oauth.assertion import client_assertion
from gateway.runtime import Runtime

MOTCUA_H60 = "VN/GOV/000.00.00.H60/MOTCUA"  # Tuyên Quang's one-stop system
MOTCUA_H41 = "VN/GOV/000.00.00.H41/MOTCUA"
PORTAL = "VN/GOV/000.00.00.G22/DVCQG"
ECHO = "/r1/VN/GOV/000.00.00.H41/DANHMUC/echo"
ITEMS = "/r1/VN/GOV/000.00.00.H41/DANHMUC/items"


def runtime(client: TestClient) -> Runtime:
    return client.app.api.state.runtime  # type: ignore[attr-defined,no-any-return]


def portal_key(config: Config) -> dict[str, Any]:
    """The private JWK `lienthong init` made for the portal (private_key_jwt)."""
    path = config.base_dir / "client-keys" / (PORTAL.replace("/", "_") + ".jwk")
    return dict(json.loads(path.read_text()))


def token_url(config: Config) -> str:
    return config.token.issuer.rstrip("/") + "/oauth/token"


def basic_token(client: TestClient, who: str, secret: str, **form: str) -> str:
    r = client.post("/oauth/token", data={"grant_type": "client_credentials", **form}, auth=(who, secret))
    assert r.status_code == 200, r.text
    return str(r.json()["access_token"])


def jwt_token(client: TestClient, config: Config, **form: str) -> str:
    data = {"grant_type": "client_credentials",
            **client_assertion(portal_key(config), PORTAL, token_url(config)), **form}
    r = client.post("/oauth/token", data=data)
    assert r.status_code == 200, r.text
    return str(r.json()["access_token"])


def forge(config: Config, *, header: dict[str, Any] | None = None, key: KeySet | None = None,
          **claims: Any) -> str:
    """A token signed with the gateway's own key (or ``key``), with claims changed (None drops)."""
    key_set = key or keys.load_signing_keys(config.path(config.keys_dir))
    now = int(time.time())
    body: dict[str, Any] = {"iss": config.token.issuer, "aud": config.token.audience, "sub": MOTCUA_H41,
                            "client_id": MOTCUA_H41, "scope": "exchange", "jti": f"j-{time.time_ns()}",
                            "iat": now, "nbf": now, "exp": now + 300}
    for name, value in claims.items():
        if value is None:
            body.pop(name, None)
        else:
            body[name] = value
    signer = key_set.keys[-1]
    head: dict[str, Any] = {"alg": signer.alg or "ES256", "typ": "at+jwt", "kid": signer.kid,
                            **(header or {})}
    return jwt.encode(head, body, key_set, algorithms=[str(head["alg"])])


def b64(data: dict[str, Any] | bytes) -> str:
    raw = data if isinstance(data, bytes) else json.dumps(data).encode()
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def write_policies(folder: Path, text: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "test.yaml").write_text(text)
    return folder
