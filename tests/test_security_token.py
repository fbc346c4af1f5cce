"""The token endpoint's client authentication seen from outside: an unknown client id answers exactly
as a known one with a wrong secret (status, body, headers) after the same argon2 work; Basic
credentials that are not UTF-8 get 401 invalid_client; wrong secrets in a row are throttled, so the
right one that follows does not get a token at once."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from pathlib import Path
from typing import Literal

import pytest
from argon2 import PasswordHasher
from fastapi.testclient import TestClient
from joserfc.jwk import ECKey

from gateway.app import create_app
from gateway.oauth import secrets as client_secrets
from gateway.oauth.assertion import client_assertion
from gateway.storage.db import upgrade
from gateway.throttle import ACCOUNT, Throttle
from tests.helpers import rest_only_config
from tests.oauth_helpers import MOTCUA_H41, MOTCUA_H60, PORTAL, runtime

NOBODY = "VN/GOV/000.00.00.H99/NOBODY"
KEY_ONLY = "VN/GOV/000.00.00.H98/KEYONLY"
FORM = {"grant_type": "client_credentials"}
Gateway = tuple[TestClient, dict[str, str]]
ENDPOINTS = ("/oauth/token", "/oauth/introspect", "/oauth/revoke")


class CountingHasher(PasswordHasher):
    """argon2 as usual, counting the verifications."""

    calls = 0

    def verify(self, hash: str | bytes, password: str | bytes) -> Literal[True]:
        CountingHasher.calls += 1
        return super().verify(hash, password)


class Frozen:
    def __call__(self) -> float:
        return 1_800_000_000.0


@pytest.fixture
def gw(tmp_path: Path) -> Iterator[Gateway]:
    config, secrets = rest_only_config(tmp_path)
    upgrade(config.database_url)
    with TestClient(create_app(config)) as client:
        rt = runtime(client)
        rt.security.throttle.close()
        # No delay runs out mid-test; nor would the first one for a try waiting its turn: a short wait.
        rt.security.throttle = Throttle(rt.engine, clock=Frozen(), queue_wait=0.3)
        portal = rt.clients.get(PORTAL)
        assert portal is not None and portal.jwks
        rt.clients.add(KEY_ONLY, jwks=portal.jwks)
        rt.clients.update(MOTCUA_H60, enabled=False)
        yield client, secrets


def _answer(client: TestClient, who: str, secret: str, path: str) -> tuple[int, bytes, dict[str, str]]:
    r = client.post(path, data=FORM if path.endswith("token") else {"token": "x"}, auth=(who, secret))
    headers = {k: v for k, v in r.headers.items() if k not in ("date", "content-length")}
    return r.status_code, r.content, headers


def test_unknown_disabled_and_key_only_clients_answer_as_a_wrong_secret(
        gw: Gateway, monkeypatch: pytest.MonkeyPatch) -> None:
    """Unknown id, disabled client, a client without a secret, and a wrong secret: the same status,
    body and headers, each after exactly one argon2 verification."""
    client, _ = gw
    monkeypatch.setattr(client_secrets, "_hasher", CountingHasher())
    for path in ENDPOINTS:
        answers = []
        for who in (MOTCUA_H41, NOBODY, MOTCUA_H60, KEY_ONLY):
            before = CountingHasher.calls
            answers.append(_answer(client, who, "not-the-secret", path))
            assert CountingHasher.calls - before == 1, (path, who)
        assert answers[0][0] == 401 and b"invalid_client" in answers[0][1]
        assert all(a == answers[0] for a in answers), (path, answers)


def test_assertions_for_unknown_and_key_less_clients_answer_as_a_wrong_signature(gw: Gateway) -> None:
    """private_key_jwt signed by a stranger's key: a client with keys, one with a secret only and an
    unknown id get the same answer."""
    client, _ = gw
    stranger = ECKey.generate_key("P-256", parameters={"alg": "ES256"}).as_dict(private=True)
    answers = []
    for who in (PORTAL, MOTCUA_H41, NOBODY, MOTCUA_H60):
        form = {**FORM, **client_assertion(stranger, who, runtime(client).config.token.issuer.rstrip("/")
                                           + "/oauth/token")}
        r = client.post("/oauth/token", data=form)
        answers.append((r.status_code, r.content))
    assert answers[0][0] == 400 and b"invalid_client" in answers[0][1]
    assert all(a == answers[0] for a in answers), answers


def test_the_right_secret_still_gets_a_token(gw: Gateway) -> None:
    """The stand-in for unknown clients changes nothing for a known one."""
    client, secrets = gw
    r = client.post("/oauth/token", data=FORM, auth=(MOTCUA_H41, secrets[MOTCUA_H41]))
    assert r.status_code == 200 and r.json()["access_token"]


@pytest.mark.parametrize("path", ENDPOINTS)
def test_basic_credentials_that_are_not_utf8_get_401(gw: Gateway, path: str) -> None:
    """Basic credentials that are valid base64 but not UTF-8: 401 invalid_client (RFC 6749 5.2), JSON."""
    client, _ = gw
    header = "Basic " + base64.b64encode(b"VN/GOV/\xff\xfe:secret\xc3").decode()
    r = client.post(path, data=FORM if path.endswith("token") else {"token": "x"},
                    headers={"Authorization": header})
    assert r.status_code == 401, r.text
    assert r.headers["content-type"] == "application/json" and r.json()["error"] == "invalid_client"
    assert "access_token" not in r.text


def test_wrong_secrets_in_a_row_then_the_right_one_is_throttled(gw: Gateway) -> None:
    """30 wrong secrets one after another: after the free tries each gets 429 with Retry-After, and
    the right secret that follows gets no token while the delay lasts."""
    client, secrets = gw
    statuses = [client.post("/oauth/token", data=FORM, auth=(MOTCUA_H41, f"wrong-{i}")).status_code
                for i in range(30)]
    assert statuses == [401] * ACCOUNT.free + [429] * (30 - ACCOUNT.free)
    r = client.post("/oauth/token", data=FORM, auth=(MOTCUA_H41, secrets[MOTCUA_H41]))
    assert r.status_code == 429 and int(r.headers["retry-after"]) >= 1
    assert r.json()["error"] == "slow_down" and "access_token" not in r.text
    other = client.post("/oauth/token", data=FORM, auth=(PORTAL, secrets[PORTAL]))
    assert other.status_code == 200  # another client from the same address is not held up


def test_an_outsider_cannot_slow_a_client_down_from_another_address(gw: Gateway) -> None:
    """Client ids are public: wrong secrets naming a client from one address hold up that address,
    not the client's own requests from its own address."""
    client, secrets = gw
    outsider = TestClient(client.app, client=("198.51.100.7", 40000))  # shares the running app
    statuses = [outsider.post("/oauth/token", data=FORM, auth=(MOTCUA_H41, f"wrong-{i}")).status_code
                for i in range(30)]
    assert statuses[-1] == 429
    assert outsider.post("/oauth/token", data=FORM, auth=(MOTCUA_H41, secrets[MOTCUA_H41])).status_code == 429
    r = client.post("/oauth/token", data=FORM, auth=(MOTCUA_H41, secrets[MOTCUA_H41]))
    assert r.status_code == 200 and "access_token" in r.json()
