"""The token endpoint and the bearer-token check, in-process."""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Iterator
import pytest
from fastapi.testclient import TestClient
from joserfc import jwt
from joserfc.jwk import ECKey, KeySet

from gateway import keys
from gateway.app import create_app
from gateway.config import Config
from gateway.errors import Unauthenticated
from gateway.oauth.verifier import TokenVerifier, bearer_token
from gateway.storage.db import upgrade
from tests.helpers import rest_only_config

CLIENT = "VN/GOV/000.00.00.H41/MOTCUA"
ECHO = "/r1/VN/GOV/000.00.00.H41/DANHMUC/echo"


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[TestClient, Config, dict[str, str]]]:
    """One gateway app for the module (starting one costs a second)."""
    config, secrets = rest_only_config(tmp_path_factory.mktemp("oauth"))
    upgrade(config.database_url)
    with TestClient(create_app(config)) as client:
        yield client, config, secrets


def token_for(client: TestClient, secret: str, who: str = CLIENT, **form: str) -> dict[str, object]:
    r = client.post("/oauth/token", data={"grant_type": "client_credentials", **form}, auth=(who, secret))
    assert r.status_code == 200, r.text
    assert r.headers["cache-control"] == "no-store"
    return dict(r.json())


def test_token_is_an_rfc9068_jwt(setup: tuple[TestClient, Config, dict[str, str]]) -> None:
    """A client-credentials token is a signed at+jwt with the RFC 9068 claims."""
    client, config, secrets = setup
    body = token_for(client, secrets[CLIENT])
    assert body["token_type"] == "Bearer" and body["expires_in"] == config.token.lifetime
    jwks = KeySet.import_key_set(client.get("/.well-known/jwks.json").json())
    decoded = jwt.decode(str(body["access_token"]), jwks, algorithms=["ES256"])
    assert decoded.header["typ"] == "at+jwt" and decoded.header["kid"]
    claims = decoded.claims
    assert claims["iss"] == config.token.issuer and claims["aud"] == "lienthong"
    assert claims["sub"] == claims["client_id"] == CLIENT and claims["scope"] == "exchange"
    assert claims["exp"] - claims["iat"] == config.token.lifetime and claims["jti"]


def test_metadata_document(setup: tuple[TestClient, Config, dict[str, str]]) -> None:
    """RFC 8414 metadata names the token endpoint and the JWKS."""
    client, config, _ = setup
    meta = client.get("/.well-known/oauth-authorization-server").json()
    assert meta["token_endpoint"].endswith("/oauth/token")
    assert meta["grant_types_supported"] == ["client_credentials"]


@pytest.mark.parametrize(("kwargs", "status", "error"), [
    ({"auth": (CLIENT, "wrong")}, 401, "invalid_client"),
    ({"auth": ("VN/GOV/000.00.00.H99/NOBODY", "x")}, 401, "invalid_client"),
    ({}, 401, "invalid_client"),
    ({"grant": "password"}, 400, "unsupported_grant_type"),
    ({"grant": None}, 400, "invalid_request"),
    ({"json": True}, 400, "invalid_request"),
])
def test_bad_token_requests(setup: tuple[TestClient, Config, dict[str, str]], kwargs: dict[str, object],
                            status: int, error: str) -> None:
    """Bad token requests get the RFC 6749 5.2 error, never a token."""
    client, _, secrets = setup
    auth = kwargs.get("auth", (CLIENT, secrets[CLIENT]) if kwargs else None)
    grant = kwargs.get("grant", "client_credentials")
    data = {"grant_type": grant} if grant else {}
    if kwargs.get("json"):
        r = client.post("/oauth/token", json=data, auth=auth)  # type: ignore[arg-type]
    else:
        r = client.post("/oauth/token", data=data, auth=auth)  # type: ignore[arg-type]
    assert r.status_code == status, r.text
    assert r.json()["error"] == error
    assert "access_token" not in r.json()


def _forge(config: Config, **changes: object) -> str:
    key_set = keys.load_signing_keys(config.path(config.keys_dir))
    now = int(time.time())
    claims = {"iss": config.token.issuer, "aud": "lienthong", "sub": CLIENT, "client_id": CLIENT,
              "scope": "exchange", "jti": "j", "iat": now, "nbf": now, "exp": now + 300}
    header: dict[str, object] = {"alg": "ES256", "typ": "at+jwt", "kid": key_set.keys[-1].kid}
    for k, v in changes.items():
        if k.startswith("h_"):
            header[k[2:]] = v
        elif v is None:
            claims.pop(k, None)
        else:
            claims[k] = v
    signing = changes.get("key", key_set)
    claims.pop("key", None)
    return jwt.encode(header, claims, signing)  # type: ignore[arg-type]


def _b64(data: dict[str, object]) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


@pytest.mark.parametrize("case", ["expired", "not-yet", "wrong-aud", "wrong-iss", "other-key", "alg-none",
                                  "tampered", "typ", "garbage"])
def test_hostile_tokens_are_refused(setup: tuple[TestClient, Config, dict[str, str]], case: str) -> None:
    """Forged, expired or altered tokens get 401 invalid_token and never reach the upstream."""
    client, config, _ = setup
    now = int(time.time())
    token = {
        "expired": lambda: _forge(config, exp=now - 3600, iat=now - 4000, nbf=now - 4000),
        "not-yet": lambda: _forge(config, nbf=now + 3600),
        "wrong-aud": lambda: _forge(config, aud="someone-else"),
        "wrong-iss": lambda: _forge(config, iss="https://evil.example"),
        "other-key": lambda: _forge(config, key=KeySet([ECKey.generate_key("P-256", parameters={
            "kid": "x"})]), h_kid="x"),
        "alg-none": lambda: _b64({"alg": "none", "typ": "at+jwt"}) + "." + _b64(
            {"iss": config.token.issuer, "aud": "lienthong", "client_id": CLIENT, "exp": now + 60}) + ".",
        "tampered": lambda: (lambda t: t[:-4] + ("AAAA" if not t.endswith("AAAA") else "BBBB"))(
            _forge(config)),
        "typ": lambda: _forge(config, h_typ="JWT"),
        "garbage": lambda: "not.a.jwt",
    }[case]()
    r = client.post(ECHO, json={}, headers={"Authorization": f"Bearer {token}"})
    assert r.status_code == 401, r.text
    assert 'error="invalid_token"' in r.headers["www-authenticate"]
    assert r.headers["content-type"] == "application/problem+json"


@pytest.mark.parametrize(("header", "error"), [(None, None), ("Basic abc", None), ("Bearer", "invalid_request"),
                                               ("Bearer a b", "invalid_request")])
def test_malformed_authorization_headers(header: str | None, error: str | None) -> None:
    """Missing or malformed Authorization headers get the RFC 6750 answer."""
    with pytest.raises(Unauthenticated) as info:
        bearer_token(header)
    assert info.value.error == error
    challenge = info.value.headers["WWW-Authenticate"]
    assert challenge.startswith("Bearer realm=")
    assert ("error=" in challenge) == (error is not None)


def test_verified_tokens_are_cached(setup: tuple[TestClient, Config, dict[str, str]]) -> None:
    """A token is verified once and then served from the cache until it expires."""
    _, config, _ = setup
    verifier = TokenVerifier(keys.load_signing_keys(config.path(config.keys_dir)), config.token)
    token = _forge(config)
    first = verifier.verify(token)
    assert verifier.verify(token) is first
