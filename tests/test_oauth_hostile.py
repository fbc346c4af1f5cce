"""The hostile set: every attack on tokens, client authentication and policy gets its own test and
the right answer (401/400 with the RFC 6750 or RFC 6749 error code, 403 naming the rule, 429 with
Retry-After), never the upstream, and every refused exchange its audit leaf."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient
from joserfc import jwt
from joserfc.jwk import ECKey, KeySet, OKPKey

from gateway import keys
from gateway.app import create_app
from gateway.config import Config
from gateway.connector import Call, Reply
from gateway.oauth.assertion import ASSERTION_TYPE, client_assertion
from gateway.storage.db import upgrade
from gateway.throttle import Rule, Throttle
from tests.helpers import FunctionConnector, rest_only_config
from tests.oauth_helpers import (
    ECHO,
    ITEMS,
    MOTCUA_H41,
    MOTCUA_H60,
    PORTAL,
    b64,
    basic_token,
    forge,
    jwt_token,
    portal_key,
    runtime,
    token_url,
    write_policies,
)

POLICIES = """
rules:
  - name: hostile-burst
    services: ["VN/GOV/000.00.00.H41/DANHMUC/items"]
    clients: ["VN/GOV/000.00.00.H60/MOTCUA"]
    scopes: [exchange]
    rate_limit: {rate: 1, per: minute, burst: 3}
  - name: hostile-scope
    services: ["VN/GOV/000.00.00.H41/DANHMUC/items"]
    clients: ["VN/GOV/000.00.00.G22/DVCQG"]
    scopes: [danhmuc.doc]
  - name: hostile-purpose
    services: ["VN/GOV/000.00.00.H41/DANHMUC/echo"]
    clients: ["VN/GOV/000.00.00.H41/MOTCUA"]
    scopes: [exchange]
    require_user_id: true
    require_issue: true
    response_fields: [echo.keep]
  - name: echo-for-others
    services: ["VN/GOV/000.00.00.H41/DANHMUC/echo"]
    clients: ["VN/GOV/000.00.00.H60/MOTCUA", "VN/GOV/000.00.00.G22/DVCQG"]
    scopes: [exchange]
"""
NOBODY = "VN/GOV/000.00.00.H99/NOBODY"
LENIENT = Rule(free=10_000, base=1.0, cap=1.0)
OFFICIAL = {"X-Road-UserId": "VN-canbo.a", "X-Road-Issue": "H41.23-20261121-0000001"}


class Gateway:
    def __init__(self, client: TestClient, config: Config, secrets: dict[str, str]) -> None:
        self.client, self.config, self.secrets = client, config, secrets
        self.upstream = FunctionConnector(self._answer)
        rt = runtime(client)
        for service in list(rt.connectors):
            rt.connectors[service] = self.upstream

    @staticmethod
    async def _answer(call: Call) -> Reply:
        return Reply({"echo": call.payload, "secret": "never leaves for hostile-purpose"})

    def token(self, who: str = MOTCUA_H41) -> str:
        return basic_token(self.client, who, self.secrets[who])

    def call(self, path: str, token: str | None, body: Any = None, **headers: str) -> Any:
        h = dict(headers)
        if token is not None:
            h["Authorization"] = f"Bearer {token}"
        return self.client.post(path, json=body if body is not None else {}, headers=h)

    def leaf(self, exchange_id: str) -> dict[str, Any]:
        log = runtime(self.client).audit
        (row,) = [r for r in log.read(max(0, log.size() - 50), 50) if r.exchange_id == exchange_id]
        return dict(json.loads(row.leaf))


@pytest.fixture(scope="module")
def gw(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    base = tmp_path_factory.mktemp("hostile")
    policies = write_policies(base / "policies", POLICIES)
    config, secrets = rest_only_config(base, policies_dir=str(policies))
    upgrade(config.database_url)
    with TestClient(create_app(config)) as client:
        # The hostile cases fail to authenticate on purpose, many times in a row from one address;
        # the throttle that would slow them has tests of its own (test_security_throttle.py).
        security = runtime(client).security
        security.throttle.close()
        security.throttle = Throttle(runtime(client).engine, account=LENIENT, address=LENIENT)
        yield Gateway(client, config, secrets)


def refused_401(gw: Gateway, token: str, why: str = "") -> None:
    before = gw.upstream.calls
    r = gw.call(ECHO, token)
    assert r.status_code == 401, r.text
    challenge = r.headers["www-authenticate"]
    assert challenge.startswith('Bearer realm="lienthong"') and 'error="invalid_token"' in challenge
    assert r.headers["content-type"] == "application/problem+json"
    assert why in r.json()["detail"]
    assert gw.upstream.calls == before, "a refused call reached the upstream"
    leaf = gw.leaf(r.headers["x-road-id"])
    assert leaf["outcome"] == "refused" and leaf["status"] == 401


# -- access tokens -----------------------------------------------------------------------------------

def test_alg_none(gw: Gateway) -> None:
    """An unsigned token (alg none) is refused."""
    now = int(time.time())
    claims = {"iss": gw.config.token.issuer, "aud": "lienthong", "client_id": MOTCUA_H41, "sub": MOTCUA_H41,
              "scope": "exchange", "jti": "n", "exp": now + 60}
    refused_401(gw, b64({"alg": "none", "typ": "at+jwt"}) + "." + b64(claims) + ".")


def test_hs256_signed_with_the_public_key(gw: Gateway) -> None:
    """A token MACed with the gateway's public key as an HMAC secret (key confusion) is refused."""
    signer = keys.load_signing_keys(gw.config.path(gw.config.keys_dir)).keys[-1]
    now = int(time.time())
    header = b64({"alg": "HS256", "typ": "at+jwt", "kid": signer.kid})
    claims = b64({"iss": gw.config.token.issuer, "aud": "lienthong", "client_id": MOTCUA_H41,
                  "sub": MOTCUA_H41, "scope": "exchange", "jti": "h", "iat": now, "nbf": now,
                  "exp": now + 60})
    assert isinstance(signer, ECKey | OKPKey)
    for secret in (signer.as_pem(private=False), json.dumps(signer.as_dict(private=False)).encode()):
        mac = hmac.new(secret, f"{header}.{claims}".encode(), hashlib.sha256).digest()
        refused_401(gw, f"{header}.{claims}.{b64(mac)}")


def test_expired(gw: Gateway) -> None:
    """A token past exp (beyond the leeway) is refused."""
    now = int(time.time())
    refused_401(gw, forge(gw.config, exp=now - 3600, iat=now - 4000, nbf=now - 4000), "expired")


def test_not_yet_valid(gw: Gateway) -> None:
    """A token whose nbf is in the future (beyond the leeway) is refused."""
    refused_401(gw, forge(gw.config, nbf=int(time.time()) + 3600), "not valid yet")


def test_within_leeway_accepted(gw: Gateway) -> None:
    """Small clock skew (inside token.leeway) is tolerated on exp and nbf."""
    now = int(time.time())
    assert gw.call(ECHO, forge(gw.config, exp=now - 5), **OFFICIAL).status_code == 200
    assert gw.call(ECHO, forge(gw.config, nbf=now + 5), **OFFICIAL).status_code == 200


def test_wrong_audience(gw: Gateway) -> None:
    """A token for another audience is refused."""
    refused_401(gw, forge(gw.config, aud="someone-else"), "audience")


def test_wrong_issuer(gw: Gateway) -> None:
    """A token of an issuer the gateway does not trust is refused, even if signed by a gateway key."""
    refused_401(gw, forge(gw.config, iss="https://evil.example"), "issuer")


def test_tampered_signature(gw: Gateway) -> None:
    """A token whose signature was altered is refused."""
    token = forge(gw.config)
    head, body, sig = token.split(".")
    refused_401(gw, f"{head}.{body}.{('A' if sig[0] != 'A' else 'B') + sig[1:]}")


def test_tampered_claims(gw: Gateway) -> None:
    """A token whose claims were changed after signing (a wider scope) is refused."""
    head, body, sig = forge(gw.config, scope="exchange").split(".")
    claims = json.loads(base64.urlsafe_b64decode(body + "=="))
    claims["scope"] = "exchange danhmuc.doc audit"
    refused_401(gw, f"{head}.{b64(claims)}.{sig}")


def test_unknown_kid(gw: Gateway) -> None:
    """A token naming a key the gateway does not have is refused (after looking for new keys)."""
    other = KeySet([ECKey.generate_key("P-256", parameters={"kid": "20990101T000000-unknown",
                                                             "alg": "ES256"})])
    refused_401(gw, forge(gw.config, key=other), "key")


def test_known_kid_other_key(gw: Gateway) -> None:
    """A token naming the gateway's kid but signed with another key is refused."""
    kid = keys.load_signing_keys(gw.config.path(gw.config.keys_dir)).keys[-1].kid
    other = KeySet([OKPKey.generate_key("Ed25519", parameters={"kid": str(kid), "alg": "EdDSA"})])
    refused_401(gw, forge(gw.config, key=other, header={"alg": "EdDSA"}))


def test_not_an_access_token(gw: Gateway) -> None:
    """A JWT without typ at+jwt (an ID token, a client assertion) is not accepted as access token."""
    refused_401(gw, forge(gw.config, header={"typ": "JWT"}), "typ")


def test_no_jti(gw: Gateway) -> None:
    """A token without jti (so it could never be revoked) is refused."""
    refused_401(gw, forge(gw.config, jti=None), "jti")


def test_garbage(gw: Gateway) -> None:
    """Something that is not a JWT is refused."""
    refused_401(gw, "not.a.jwt")


def test_revoked(gw: Gateway) -> None:
    """A revoked token is refused."""
    token = gw.token()
    assert gw.call(ECHO, token, **OFFICIAL).status_code == 200
    gw.client.post("/oauth/revoke", data={"token": token}, auth=(MOTCUA_H41, gw.secrets[MOTCUA_H41]))
    refused_401(gw, token, "revoked")


# -- the Authorization header --------------------------------------------------------------------------

@pytest.mark.parametrize(("header", "status", "error"), [
    (None, 401, None), ("Basic dXNlcjpwYXNz", 401, None), ("Bearer", 400, "invalid_request"),
    ("Bearer a b", 400, "invalid_request"), ("Bearer    ", 400, "invalid_request"), ("Token abc", 401, None),
])
def test_malformed_authorization_header(gw: Gateway, header: str | None, status: int,
                                        error: str | None) -> None:
    """A missing header is 401 without an error code; a malformed one 400 invalid_request (RFC 6750)."""
    r = gw.client.post(ECHO, json={}, headers={"Authorization": header} if header else {})
    assert r.status_code == status, r.text
    challenge = r.headers["www-authenticate"]
    assert challenge.startswith("Bearer realm=")
    assert (f'error="{error}"' in challenge) if error else ("error=" not in challenge)


# -- the client and the policy ---------------------------------------------------------------------------

def test_token_of_a_sent_with_client_b(gw: Gateway) -> None:
    """A token of client A sent with X-Road-Client B is refused with 403."""
    r = gw.call(ECHO, gw.token(MOTCUA_H41), **OFFICIAL, **{"X-Road-Client": MOTCUA_H60})
    assert r.status_code == 403 and r.json()["code"] == "Client.AccessDenied"
    assert "X-Road-Client" in r.json()["detail"]
    assert gw.leaf(r.headers["x-road-id"])["client"] == MOTCUA_H41


def test_valid_token_without_the_scope(gw: Gateway) -> None:
    """A valid token lacking the rule's scope gets 403 insufficient_scope naming the scope and rule."""
    r = gw.call(ITEMS, jwt_token(gw.client, gw.config))
    assert r.status_code == 403, r.text
    assert 'error="insufficient_scope"' in r.headers["www-authenticate"]
    assert 'scope="danhmuc.doc"' in r.headers["www-authenticate"]
    assert r.json()["rule"] == "hostile-scope"
    assert gw.leaf(r.headers["x-road-id"])["rule"] == "hostile-scope"


def test_service_no_rule_gives(gw: Gateway) -> None:
    """A valid client calling a service no rule gives it is refused by the default rule."""
    before = gw.upstream.calls
    r = gw.call(ITEMS, gw.token(MOTCUA_H41))
    assert r.status_code == 403 and r.json()["rule"] == "default-deny"
    assert gw.leaf(r.headers["x-road-id"])["rule"] == "default-deny"
    assert gw.upstream.calls == before


@pytest.mark.parametrize(("drop", "needs"), [("X-Road-Issue", "X-Road-Issue"),
                                             ("X-Road-UserId", "X-Road-UserId")])
def test_missing_purpose_or_official(gw: Gateway, drop: str, needs: str) -> None:
    """A rule requiring the purpose (or the official) refuses a call without it, naming itself."""
    headers = {k: v for k, v in OFFICIAL.items() if k != drop}
    r = gw.call(ECHO, gw.token(MOTCUA_H41), **headers)
    assert r.status_code == 403 and needs in r.json()["detail"] and r.json()["rule"] == "hostile-purpose"
    assert gw.leaf(r.headers["x-road-id"])["rule"] == "hostile-purpose"


def test_burst_beyond_the_limit(gw: Gateway) -> None:
    """Calls beyond the rule's burst get 429 with Retry-After, and the leaf names the rule."""
    token = gw.token(MOTCUA_H60)
    answers = [gw.call(ITEMS, token) for _ in range(5)]
    assert [a.status_code for a in answers] == [200, 200, 200, 429, 429]
    r = answers[-1]
    assert int(r.headers["retry-after"]) >= 1
    assert r.json()["code"] == "Client.RateLimited" and r.json()["rule"] == "hostile-burst"
    leaf = gw.leaf(r.headers["x-road-id"])
    assert leaf["rule"] == "hostile-burst" and leaf["status"] == 429 and leaf["outcome"] == "refused"


def test_reply_is_minimised(gw: Gateway) -> None:
    """Only the rule's response fields leave the gateway; the rest of the upstream's reply is removed."""
    r = gw.call(ECHO, gw.token(MOTCUA_H41), {"keep": 1, "drop": {"SoDinhDanh": "001060301193"}}, **OFFICIAL)
    assert r.status_code == 200 and r.json() == {"echo": {"keep": 1}}


# -- client authentication: private_key_jwt ----------------------------------------------------------------

def assertion(gw: Gateway, **claims: Any) -> dict[str, str]:
    return client_assertion(portal_key(gw.config), PORTAL, token_url(gw.config), **claims)


def token_request(gw: Gateway, form: dict[str, str], **kwargs: Any) -> Any:
    return gw.client.post("/oauth/token", data={"grant_type": "client_credentials", **form}, **kwargs)


def test_replayed_client_assertion(gw: Gateway) -> None:
    """A client assertion is accepted once: the same jti again is invalid_client."""
    form = assertion(gw)
    assert token_request(gw, form).status_code == 200
    r = token_request(gw, form)
    assert r.status_code == 400 and r.json()["error"] == "invalid_client"  # RFC 6749 5.2: no HTTP auth
    assert "access_token" not in r.json()


def _sign(gw: Gateway, header: dict[str, Any], claims: dict[str, Any], key: Any, alg: str) -> dict[str, str]:
    return {"client_assertion_type": ASSERTION_TYPE,
            "client_assertion": jwt.encode({"alg": alg, **header}, claims, key, algorithms=[alg])}


def _claims(gw: Gateway, **changes: Any) -> dict[str, Any]:
    now = int(time.time())
    claims: dict[str, Any] = {"iss": PORTAL, "sub": PORTAL, "aud": token_url(gw.config),
                              "jti": f"a-{time.time_ns()}", "iat": now, "exp": now + 60}
    for k, v in changes.items():
        if v is None:
            claims.pop(k, None)
        else:
            claims[k] = v
    return claims


def _assertion_cases() -> dict[str, Callable[[Gateway], dict[str, str]]]:
    def own(gw: Gateway, **changes: Any) -> dict[str, str]:
        key = KeySet.import_key_set({"keys": [portal_key(gw.config)]})
        return _sign(gw, {"kid": key.keys[0].kid}, _claims(gw, **changes), key, "EdDSA")

    def other_key(gw: Gateway) -> dict[str, str]:
        kid = portal_key(gw.config)["kid"]
        key = KeySet([OKPKey.generate_key("Ed25519", parameters={"kid": kid})])
        return _sign(gw, {"kid": kid}, _claims(gw), key, "EdDSA")

    def alg_none(gw: Gateway) -> dict[str, str]:
        return {"client_assertion_type": ASSERTION_TYPE,
                "client_assertion": b64({"alg": "none"}) + "." + b64(_claims(gw)) + "."}

    def hs256(gw: Gateway) -> dict[str, str]:
        public = {k: v for k, v in portal_key(gw.config).items() if k != "d"}
        head, body = b64({"alg": "HS256", "kid": public["kid"]}), b64(_claims(gw))
        mac = hmac.new(json.dumps(public).encode(), f"{head}.{body}".encode(), hashlib.sha256).digest()
        return {"client_assertion_type": ASSERTION_TYPE, "client_assertion": f"{head}.{body}.{b64(mac)}"}

    def secret_only_client(gw: Gateway) -> dict[str, str]:
        key = KeySet([OKPKey.generate_key("Ed25519")])
        return _sign(gw, {}, _claims(gw, iss=MOTCUA_H41, sub=MOTCUA_H41), key, "EdDSA")

    return {
        "wrong-aud": lambda gw: own(gw, aud="https://elsewhere.example/token"),
        "expired": lambda gw: own(gw, exp=int(time.time()) - 3600, iat=int(time.time()) - 3700),
        "no-exp": lambda gw: own(gw, exp=None),
        "no-jti": lambda gw: own(gw, jti=None),
        "too-long": lambda gw: own(gw, exp=int(time.time()) + 86400),
        "iss-not-sub": lambda gw: own(gw, iss=MOTCUA_H60),
        "unknown-client": lambda gw: own(gw, iss=NOBODY, sub=NOBODY),
        "other-key": other_key,
        "alg-none": alg_none,
        "hs256-public-key": hs256,
        "client-without-keys": secret_only_client,
        "wrong-type": lambda gw: {**own(gw), "client_assertion_type": "urn:example:other"},
        "empty": lambda gw: {"client_assertion_type": ASSERTION_TYPE, "client_assertion": ""},
        "garbage": lambda gw: {"client_assertion_type": ASSERTION_TYPE, "client_assertion": "a.b.c"},
    }


@pytest.mark.parametrize("case", list(_assertion_cases()))
def test_bad_client_assertion(gw: Gateway, case: str) -> None:
    """A forged, stale, misdirected or malformed client assertion is invalid_client, never a token."""
    r = token_request(gw, _assertion_cases()[case](gw))
    assert r.status_code in (400, 401), r.text
    assert r.json()["error"] == "invalid_client" and "access_token" not in r.json()


# -- malformed token requests -----------------------------------------------------------------------------

def test_both_methods_at_once(gw: Gateway) -> None:
    """Basic credentials together with a client assertion is invalid_request (one method only)."""
    r = token_request(gw, assertion(gw), auth=(PORTAL, gw.secrets[PORTAL]))
    assert r.status_code == 400 and r.json()["error"] == "invalid_request"


def test_client_id_differs_from_assertion(gw: Gateway) -> None:
    """A client_id parameter naming another client than the assertion's subject is refused."""
    r = token_request(gw, {**assertion(gw), "client_id": MOTCUA_H60})
    assert r.json()["error"] == "invalid_client"


@pytest.mark.parametrize(("case", "status", "error"), [
    ("wrong-grant", 400, "unsupported_grant_type"),
    ("no-grant", 400, "invalid_request"),
    ("no-credentials", 401, "invalid_client"),
    ("secret-in-body", 400, "invalid_request"),
    ("json-body", 400, "invalid_request"),
    ("no-content-type", 400, "invalid_request"),
    ("repeated-parameter", 400, "invalid_request"),
    ("not-utf8", 400, "invalid_request"),
    ("too-large", 400, "invalid_request"),
    ("bad-basic", 401, "invalid_client"),
    ("get", 405, None),
])
def test_malformed_token_request(gw: Gateway, case: str, status: int, error: str | None) -> None:
    """Malformed token requests get the RFC 6749 5.2 error and no token."""
    basic = (MOTCUA_H41, gw.secrets[MOTCUA_H41])
    form = "application/x-www-form-urlencoded"
    c = gw.client
    r = {
        "wrong-grant": lambda: c.post("/oauth/token", data={"grant_type": "password"}, auth=basic),
        "no-grant": lambda: c.post("/oauth/token", data={"scope": "exchange"}, auth=basic),
        "no-credentials": lambda: c.post("/oauth/token", data={"grant_type": "client_credentials"}),
        "secret-in-body": lambda: c.post("/oauth/token", auth=basic, data={
            "grant_type": "client_credentials", "client_secret": "x"}),
        "json-body": lambda: c.post("/oauth/token", json={"grant_type": "client_credentials"}, auth=basic),
        "no-content-type": lambda: c.post("/oauth/token", content=b"grant_type=client_credentials",
                                          auth=basic),
        "repeated-parameter": lambda: c.post("/oauth/token", auth=basic, headers={"Content-Type": form},
                                             content=b"grant_type=client_credentials&grant_type=password"),
        "not-utf8": lambda: c.post("/oauth/token", auth=basic, headers={"Content-Type": form},
                                   content=b"grant_type=\xff\xfe"),
        "too-large": lambda: c.post("/oauth/token", auth=basic, headers={"Content-Type": form},
                                    content=b"grant_type=client_credentials&x=" + b"a" * 70_000),
        "bad-basic": lambda: c.post("/oauth/token", data={"grant_type": "client_credentials"},
                                    headers={"Authorization": "Basic !!!not-base64"}),
        "get": lambda: c.get("/oauth/token"),
    }[case]()
    assert r.status_code == status, r.text
    if error:
        assert r.json()["error"] == error
    assert "access_token" not in r.text
