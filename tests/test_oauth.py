"""The authorization server (token, introspection, revocation, metadata, JWKS) and the bearer-token
check, in-process."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from joserfc import jwt
from joserfc.jwk import KeySet

from gateway import keys
from gateway.app import create_app
from gateway.config import Config
from gateway.connector import Call, Reply
from gateway.errors import Unauthenticated
from gateway.oauth.assertion import client_assertion
from gateway.oauth.keyring import prune, rotate
from gateway.oauth.security import Security
from gateway.oauth.verifier import TokenVerifier, bearer_token
from gateway.storage.db import create_engine, upgrade
from tests.helpers import FunctionConnector, rest_only_config
from tests.oauth_helpers import (
    ECHO,
    MOTCUA_H41,
    MOTCUA_H60,
    PORTAL,
    basic_token,
    forge,
    jwt_token,
    portal_key,
    runtime,
    token_url,
)

CLIENT = MOTCUA_H41
SERVICE = ECHO.removeprefix("/r1/")

Setup = tuple[TestClient, Config, dict[str, str]]


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Setup]:
    """One gateway app for the module (starting one costs a second)."""
    config, secrets = rest_only_config(tmp_path_factory.mktemp("oauth"))
    upgrade(config.database_url)
    with TestClient(create_app(config)) as client:
        runtime(client).connectors[SERVICE] = FunctionConnector(echo)
        yield client, config, secrets


async def echo(call: Call) -> Reply:
    return Reply({"echo": call.payload})


def token_for(client: TestClient, secret: str, who: str = CLIENT, **form: str) -> dict[str, object]:
    r = client.post("/oauth/token", data={"grant_type": "client_credentials", **form}, auth=(who, secret))
    assert r.status_code == 200, r.text
    assert r.headers["cache-control"] == "no-store"
    return dict(r.json())


def test_token_is_an_rfc9068_jwt(setup: Setup) -> None:
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


def test_jwks_publishes_public_keys_only(setup: Setup) -> None:
    """The JWKS holds the signing keys' public halves, each with kid and alg."""
    client, _, _ = setup
    for key in client.get("/.well-known/jwks.json").json()["keys"]:
        assert "d" not in key and key["kid"] and key["alg"] in ("ES256", "EdDSA")


def test_metadata_document(setup: Setup) -> None:
    """RFC 8414 metadata names every endpoint, both client authentication methods and the JWKS."""
    client, config, _ = setup
    meta = client.get("/.well-known/oauth-authorization-server").json()
    base = config.token.issuer.rstrip("/")
    assert meta["issuer"] == config.token.issuer
    assert meta["token_endpoint"] == f"{base}/oauth/token"
    assert meta["introspection_endpoint"] == f"{base}/oauth/introspect"
    assert meta["revocation_endpoint"] == f"{base}/oauth/revoke"
    assert meta["jwks_uri"] == f"{base}/.well-known/jwks.json"
    assert meta["grant_types_supported"] == ["client_credentials"]
    assert meta["token_endpoint_auth_methods_supported"] == ["client_secret_basic", "private_key_jwt"]
    assert "EdDSA" in meta["token_endpoint_auth_signing_alg_values_supported"]
    assert "HS256" not in meta["token_endpoint_auth_signing_alg_values_supported"]
    assert meta["scopes_supported"] == sorted({s for c in config.clients for s in c.scopes})


def test_private_key_jwt_gets_a_token(setup: Setup) -> None:
    """A client with registered keys authenticates with a signed assertion (RFC 7523) instead of a
    secret, and gets a token for itself."""
    client, config, _ = setup
    token = jwt_token(client, config)
    assert runtime(client).verifier.verify(token).client_id == PORTAL


def test_requested_scope_must_be_registered(setup: Setup) -> None:
    """Asking for a scope the client is not registered for is invalid_scope, not a smaller token."""
    client, _, secrets = setup
    r = client.post("/oauth/token", data={"grant_type": "client_credentials", "scope": "exchange audit"},
                    auth=(CLIENT, secrets[CLIENT]))
    assert r.status_code == 400 and r.json()["error"] == "invalid_scope"
    assert token_for(client, secrets[CLIENT], scope="exchange")["scope"] == "exchange"


def test_introspection_of_own_token(setup: Setup) -> None:
    """RFC 7662: a client introspecting its own token sees it active, with its claims."""
    client, config, secrets = setup
    token = basic_token(client, CLIENT, secrets[CLIENT])
    r = client.post("/oauth/introspect", data={"token": token}, auth=(CLIENT, secrets[CLIENT]))
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["active"] is True and body["client_id"] == CLIENT and body["scope"] == "exchange"
    assert body["iss"] == config.token.issuer and body["token_type"] == "Bearer" and body["jti"]


def test_introspection_by_private_key_jwt(setup: Setup) -> None:
    """The introspection endpoint takes private_key_jwt client authentication too."""
    client, config, _ = setup
    token = jwt_token(client, config)
    form = {"token": token, **client_assertion(portal_key(config), PORTAL, token_url(config))}
    assert client.post("/oauth/introspect", data=form).json()["active"] is True


@pytest.mark.parametrize("case", ["other-client", "garbage", "expired"])
def test_introspection_inactive(setup: Setup, case: str) -> None:
    """Another client's token, a garbage string and an expired token introspect as inactive."""
    client, config, secrets = setup
    now = int(time.time())
    cases: dict[str, Callable[[], str]] = {
             "other-client": lambda: basic_token(client, MOTCUA_H60, secrets[MOTCUA_H60]),
             "garbage": lambda: "not-a-token",
             "expired": lambda: forge(config, exp=now - 3600, iat=now - 4000, nbf=now - 4000)}
    token = cases[case]()
    r = client.post("/oauth/introspect", data={"token": token}, auth=(CLIENT, secrets[CLIENT]))
    assert r.status_code == 200 and r.json() == {"active": False}


def test_introspection_needs_client_authentication(setup: Setup) -> None:
    """Introspection without client authentication is invalid_client (401)."""
    client, _, secrets = setup
    token = basic_token(client, CLIENT, secrets[CLIENT])
    r = client.post("/oauth/introspect", data={"token": token})
    assert r.status_code == 401 and r.json()["error"] == "invalid_client"


def test_revoked_token_is_refused(setup: Setup) -> None:
    """RFC 7009: a revoked token is refused at once with 401 invalid_token, and introspects inactive."""
    client, _, secrets = setup
    token = basic_token(client, CLIENT, secrets[CLIENT])
    auth = {"Authorization": f"Bearer {token}"}
    assert client.post(ECHO, json={}, headers=auth).status_code == 200
    r = client.post("/oauth/revoke", data={"token": token, "token_type_hint": "access_token"},
                    auth=(CLIENT, secrets[CLIENT]))
    assert r.status_code == 200
    refused = client.post(ECHO, json={}, headers=auth)
    assert refused.status_code == 401 and 'error="invalid_token"' in refused.headers["www-authenticate"]
    assert "revoked" in refused.json()["detail"]
    r = client.post("/oauth/introspect", data={"token": token}, auth=(CLIENT, secrets[CLIENT]))
    assert r.json() == {"active": False}
    again = client.post("/oauth/revoke", data={"token": token}, auth=(CLIENT, secrets[CLIENT]))
    assert again.status_code == 200  # revoking twice is harmless (RFC 7009 2.2)


def test_revocation_reaches_another_worker(setup: Setup) -> None:
    """A revocation is stored: another process reading the database refuses the token too."""
    client, config, secrets = setup
    token = basic_token(client, CLIENT, secrets[CLIENT])
    other = Security.build(config, create_engine(config.database_url), config.path(config.keys_dir),
                           config.path(config.policies_dir))
    other.load_state()
    assert other.verifier.verify(token).client_id == CLIENT
    client.post("/oauth/revoke", data={"token": token}, auth=(CLIENT, secrets[CLIENT]))
    other.load_state()  # what its refresher does every token.refresh seconds
    with pytest.raises(Unauthenticated, match="revoked"):
        other.verifier.verify(token)


def test_only_the_owner_revokes(setup: Setup) -> None:
    """A client cannot revoke another client's token."""
    client, _, secrets = setup
    token = basic_token(client, MOTCUA_H60, secrets[MOTCUA_H60])
    r = client.post("/oauth/revoke", data={"token": token}, auth=(CLIENT, secrets[CLIENT]))
    assert r.status_code == 400 and r.json()["error"] == "invalid_grant"
    assert runtime(client).verifier.verify(token).client_id == MOTCUA_H60


def test_revoke_of_unknown_token_is_ok(setup: Setup) -> None:
    """RFC 7009 2.2: an invalid token in a revocation request is not an error."""
    client, _, secrets = setup
    r = client.post("/oauth/revoke", data={"token": "whatever"}, auth=(CLIENT, secrets[CLIENT]))
    assert r.status_code == 200


def test_disabled_client_gets_no_token_and_its_tokens_stop(setup: Setup) -> None:
    """Disabling a client refuses new tokens, and its live tokens once the state is reloaded."""
    client, _, secrets = setup
    rt = runtime(client)
    token = basic_token(client, MOTCUA_H60, secrets[MOTCUA_H60])
    rt.clients.update(MOTCUA_H60, enabled=False)
    try:
        r = client.post("/oauth/token", data={"grant_type": "client_credentials"},
                        auth=(MOTCUA_H60, secrets[MOTCUA_H60]))
        assert r.status_code == 401 and r.json()["error"] == "invalid_client"
        rt.security.load_state()
        with pytest.raises(Unauthenticated, match="disabled"):
            rt.verifier.verify(token)
    finally:
        rt.clients.update(MOTCUA_H60, enabled=True)
        rt.security.load_state()
    assert rt.verifier.verify(token).client_id == MOTCUA_H60


def test_key_rotation(setup: Setup) -> None:
    """After a rotation new tokens carry the new kid, old tokens stay valid, the JWKS lists both."""
    client, config, secrets = setup
    rt = runtime(client)
    old = basic_token(client, CLIENT, secrets[CLIENT])
    done = rotate(config.path(config.keys_dir), "EdDSA", keep_for=config.token.lifetime + 30)
    assert done.removed == []
    assert rt.security.reload_keys_now() or rt.security.keyring.keys.keys[-1].kid == done.new_kid
    new = basic_token(client, CLIENT, secrets[CLIENT])
    assert jwt.decode(new, rt.security.keyring.keys, algorithms=["EdDSA"]).header["kid"] == done.new_kid
    kids = [k["kid"] for k in client.get("/.well-known/jwks.json").json()["keys"]]
    assert done.new_kid in kids and len(kids) >= 2
    for token in (old, new):
        assert client.post(ECHO, json={}, headers={"Authorization": f"Bearer {token}"}).status_code == 200


def test_unknown_kid_triggers_a_key_reload() -> None:
    """A token signed with a key another worker just made is accepted after a reload, not refused."""
    import tempfile

    folder = Path(tempfile.mkdtemp())
    keys.ensure_keys(folder)
    config = Config(keys_dir=str(folder))
    from gateway.oauth.keyring import Keyring

    ring = Keyring(folder)
    verifier = TokenVerifier(ring.keys, config.token)

    def reload() -> bool:
        fresh = ring.poll()
        if fresh is not None:
            verifier.set_keys(fresh, on_unknown_key=reload)
        return fresh is not None

    verifier.set_keys(ring.keys, on_unknown_key=reload)
    keys.new_signing_key(folder, "EdDSA")
    token = forge(config, key=keys.load_signing_keys(folder))
    assert verifier.verify(token).client_id == MOTCUA_H41


def test_prune_keeps_keys_until_their_tokens_expire(tmp_path: Path) -> None:
    """Old keys are removed only when their successor has signed longer than a token lives."""
    first = keys.new_signing_key(tmp_path)
    second = keys.new_signing_key(tmp_path)
    assert prune(tmp_path, keep_for=330) == []
    assert prune(tmp_path, keep_for=330, now=time.time() + 331) == [first]
    assert [k.kid for k in keys.load_signing_keys(tmp_path).keys] == [second]


@pytest.mark.parametrize(("kwargs", "status", "error"), [
    ({"auth": (CLIENT, "wrong")}, 401, "invalid_client"),
    ({"auth": ("VN/GOV/000.00.00.H99/NOBODY", "x")}, 401, "invalid_client"),
    ({}, 401, "invalid_client"),
    ({"grant": "password"}, 400, "unsupported_grant_type"),
    ({"grant": None}, 400, "invalid_request"),
    ({"json": True}, 400, "invalid_request"),
])
def test_bad_token_requests(setup: Setup, kwargs: dict[str, object], status: int, error: str) -> None:
    """Bad token requests get the RFC 6749 5.2 error, never a token."""
    client, _, secrets = setup
    auth = kwargs.get("auth", (CLIENT, secrets[CLIENT]) if kwargs else None)
    grant = kwargs.get("grant", "client_credentials")
    data = {"grant_type": grant} if grant else {}
    if kwargs.get("json"):
        r = client.post("/oauth/token", json=data, auth=auth)  # type: ignore[arg-type,unused-ignore]
    else:
        r = client.post("/oauth/token", data=data, auth=auth)  # type: ignore[arg-type,unused-ignore]
    assert r.status_code == status, r.text
    assert r.json()["error"] == error
    assert "access_token" not in r.json()


@pytest.mark.parametrize(("header", "error"), [(None, None), ("Basic abc", None),
                                               ("Bearer", "invalid_request"),
                                               ("Bearer a b", "invalid_request")])
def test_malformed_authorization_headers(header: str | None, error: str | None) -> None:
    """Missing or malformed Authorization headers get the RFC 6750 answer."""
    with pytest.raises(Unauthenticated) as info:
        bearer_token(header)
    assert info.value.error == error
    challenge = info.value.headers["WWW-Authenticate"]
    assert challenge.startswith("Bearer realm=")
    assert ("error=" in challenge) == (error is not None)


def test_verified_tokens_are_cached(setup: Setup) -> None:
    """A token is verified once and then served from the cache until it expires."""
    _, config, _ = setup
    verifier = TokenVerifier(keys.load_signing_keys(config.path(config.keys_dir)), config.token)
    token = forge(config)
    first = verifier.verify(token)
    assert verifier.verify(token) is first


def test_cached_token_still_checked_for_revocation(setup: Setup) -> None:
    """The cache spares the signature check only: revocation and expiry are checked on every call."""
    _, config, _ = setup
    verifier = TokenVerifier(keys.load_signing_keys(config.path(config.keys_dir)), config.token)
    token = forge(config, jti="cached-1")
    verifier.verify(token)
    verifier.update(revoked=frozenset({"cached-1"}))
    with pytest.raises(Unauthenticated, match="revoked"):
        verifier.verify(token)
