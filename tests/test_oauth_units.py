"""The OAuth pieces one by one: JWKS import, token verification by kid across rotations, outside
issuers' key fetching, the revocation list and replay caches, the client store, and the refresher
that keeps each worker current. No HTTP server: databases are SQLite files, upstreams are
function-backed transports."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from joserfc import jwt
from joserfc.jwk import ECKey, KeySet, OctKey, OKPKey, RSAKey
from sqlalchemy.engine import Engine

from gateway import keys
from gateway.config import Client, Config, TokenSettings, TrustedIssuer
from gateway.errors import Unauthenticated
from gateway.oauth import external
from gateway.oauth.clients import PRIVATE_KEY_JWT, SECRET_BASIC, ClientExists, ClientStore, UnknownClient
from gateway.oauth.external import ExternalIssuer
from gateway.oauth.jwks import public_jwks
from gateway.oauth.security import Job, Refresher, Security
from gateway.oauth.store import DatabaseReplayCache, RedisReplayCache, RevocationStore
from gateway.oauth.tables import oauth_assertions
from gateway.oauth.verifier import IssuerKeys, TokenVerifier
from gateway.ratelimit import RedisLimiter
from gateway.storage.db import create_engine, upgrade

H60 = "VN/GOV/000.00.00.H60/MOTCUA"
H41 = "VN/GOV/000.00.00.H41/MOTCUA"
ISSUER = "http://127.0.0.1:8080"
OUTSIDE = "https://vneid.example.gov.vn"


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[Engine]:
    url = f"sqlite:///{tmp_path / 'oauth.db'}"
    upgrade(url)
    made = create_engine(url)
    yield made
    made.dispose()


def ec_key(kid: str) -> ECKey:
    return ECKey.generate_key("P-256", parameters={"kid": kid, "alg": "ES256", "use": "sig"})


def public(*private: Any) -> dict[str, Any]:
    return dict(KeySet(list(private)).as_dict(private=False))


def token(signer: Any, *, alg: str = "ES256", kid: str | None = None, typ: str = "at+jwt",
          **changes: Any) -> str:
    now = int(time.time())
    claims: dict[str, Any] = {"iss": ISSUER, "aud": "lienthong", "sub": H60, "client_id": H60,
                              "scope": "exchange metrics", "jti": f"j-{time.time_ns()}", "iat": now,
                              "nbf": now, "exp": now + 300}
    for name, value in changes.items():
        if value is None:
            claims.pop(name, None)
        else:
            claims[name] = value
    header = {"alg": alg, "typ": typ, "kid": kid if kid is not None else signer.kid}
    return jwt.encode(header, claims, signer, algorithms=[alg])


# -- JWKS ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("data", "says"), [
    (None, "a JWKS must be a mapping with a non-empty list 'keys'"),
    ({"keys": []}, "a JWKS must be a mapping with a non-empty list 'keys'"),
    ({"keys": {"kty": "EC"}}, "a JWKS must be a mapping"),
    ({"keys": ["EC"]}, "keys[0] is not a JWK object"),
    ({"keys": [{"kty": "oct", "k": "c2VjcmV0"}]},
     "keys[0]: kty must be one of EC, OKP, RSA (public keys only)"),
    ({"keys": [{"kty": "EC", "crv": "P-256", "x": "AA", "y": "AA"}]}, "the JWKS cannot be read"),
    ({"keys": [{"kty": "OKP"}]}, "the JWKS cannot be read"),
])
def test_public_jwks_says_what_is_wrong(data: Any, says: str) -> None:
    with pytest.raises(ValueError) as caught:
        public_jwks(data)
    assert str(caught.value).startswith(says)


@pytest.mark.parametrize("make", [
    lambda: ec_key("ec"),
    lambda: OKPKey.generate_key("Ed25519", parameters={"kid": "ed"}),
    lambda: RSAKey.generate_key(2048, parameters={"kid": "rsa"}),
])
def test_private_material_of_any_kind_is_refused(make: Callable[[], Any]) -> None:
    """A JWKS holding a private key (d, p, q...) is refused; its public part is imported."""
    key = make()
    with pytest.raises(ValueError, match=r"keys\[0\] holds private key material"):
        public_jwks({"keys": [key.as_dict(private=True)]})
    imported = public_jwks(public(key))
    assert [k.kid for k in imported.keys] == [key.kid]


def test_a_symmetric_key_is_never_a_client_key() -> None:
    secret = OctKey.generate_key(256, parameters={"kid": "hmac"})
    with pytest.raises(ValueError, match="kty must be one of EC, OKP, RSA"):
        public_jwks({"keys": [secret.as_dict(private=False)]})


# -- verifying tokens: key chosen by kid, rotation, unknown keys -----------------------------------


def verifier_for(*signers: Any) -> TokenVerifier:
    return TokenVerifier(KeySet(list(signers)), TokenSettings(issuer=ISSUER))


def test_each_token_is_checked_with_the_key_its_kid_names() -> None:
    """After a rotation the old key still verifies its tokens; the new one signs; a token naming one
    kid but signed by the other is refused."""
    old = ec_key("2026-old")
    new = OKPKey.generate_key("Ed25519", parameters={"kid": "2026-new", "alg": "EdDSA"})
    verifier = verifier_for(old, new)
    assert verifier.verify(token(old)).client_id == H60
    info = verifier.verify(token(new, alg="EdDSA"))
    assert (info.issuer, info.scopes) == (ISSUER, frozenset({"exchange", "metrics"}))
    with pytest.raises(Unauthenticated, match="signature is not valid"):
        verifier.verify(token(ec_key("x"), kid="2026-old"))


def test_unknown_kid_asks_for_a_reload_once_and_uses_it() -> None:
    """A token naming a kid not yet known triggers on_unknown_key; when that reloads the keys the
    token is checked once more with them."""
    old, new = ec_key("old"), ec_key("new")
    verifier = verifier_for(old)
    asked: list[str] = []

    def reload() -> bool:
        asked.append("reload")
        verifier.set_keys(KeySet([old, new]))
        return True

    verifier.set_keys(KeySet([old]), on_unknown_key=reload)
    assert verifier.verify(token(new)).client_id == H60
    assert asked == ["reload"]


def test_unknown_kid_without_a_reload_is_refused() -> None:
    verifier = verifier_for(ec_key("old"))
    calls: list[int] = []

    def no_reload() -> bool:
        calls.append(1)
        return False

    verifier.set_keys(KeySet([ec_key("old")]), on_unknown_key=no_reload)
    with pytest.raises(Unauthenticated, match="signed with a key this gateway does not know"):
        verifier.verify(token(ec_key("stranger")))
    assert calls == [1]
    # set_keys without a callback keeps the one installed before
    verifier.set_keys(KeySet([ec_key("old")]))
    with pytest.raises(Unauthenticated):
        verifier.verify(token(ec_key("stranger2")))
    assert calls == [1, 1]


@pytest.mark.parametrize(("changes", "says"), [
    ({"aud": ["other", "lienthong"]}, None),
    ({"aud": ["other"]}, "meant for another audience"),
    ({"nbf": True}, "exp or nbf claim is missing or not a number"),
    ({"exp": "soon"}, "exp or nbf claim is missing or not a number"),
    ({"jti": ""}, "has no jti"),
    ({"client_id": None, "sub": None}, "names no client"),
    ({"client_id": "not an id"}, "not a member or subsystem id"),
    ({"client_id": None, "sub": H41}, None),
    ({"iss": "https://elsewhere"}, "an issuer this gateway does not trust"),
])
def test_claims_that_decide(changes: dict[str, Any], says: str | None) -> None:
    signer = ec_key("k")
    verifier = verifier_for(signer)
    text = token(signer, **changes)
    if says is None:
        assert verifier.verify(text).client_id in (H60, H41)
    else:
        with pytest.raises(Unauthenticated, match=says):
            verifier.verify(text)


def test_claims_of_a_payload_that_is_not_an_object() -> None:
    signer = ec_key("k")
    import base64
    head = base64.urlsafe_b64encode(b'{"alg":"ES256"}').rstrip(b"=").decode()
    body = base64.urlsafe_b64encode(b"[1,2]").rstrip(b"=").decode()
    with pytest.raises(Unauthenticated, match="payload is not a JSON object"):
        verifier_for(signer).verify(f"{head}.{body}.AAAA")


def test_revocation_and_disabled_clients_apply_to_cached_tokens() -> None:
    signer = ec_key("k")
    verifier = verifier_for(signer)
    text = token(signer, jti="j-1")
    assert verifier.verify(text).jti == "j-1"  # now cached
    verifier.update(disabled=frozenset({H60}))
    with pytest.raises(Unauthenticated, match="client is disabled"):
        verifier.verify(text)
    verifier.update(disabled=frozenset())
    verifier.revoke_locally("j-1")
    with pytest.raises(Unauthenticated, match="has been revoked"):
        verifier.verify(text)
    assert verifier.revoked == {"j-1"}


def test_an_outside_issuer_is_trusted_with_its_own_audience_and_claim() -> None:
    outside = ec_key("v1")
    verifier = verifier_for(ec_key("own"))
    verifier.trust(IssuerKeys(OUTSIDE, "vneid-aud", KeySet([outside]), ["ES256"], client_claim="azp"))
    keys_held = verifier.issuers()[OUTSIDE].keys
    assert [k.is_private for k in keys_held.keys] == [False]  # only the public part kept
    info = verifier.verify(token(outside, iss=OUTSIDE, aud="vneid-aud", azp=H41))
    assert (info.client_id, info.issuer) == (H41, OUTSIDE)
    verifier.trust(IssuerKeys(OUTSIDE, "vneid-aud", KeySet([]), ["ES256"]))  # no keys yet: kept empty
    assert verifier.issuers()[OUTSIDE].keys.keys == []


# -- outside issuers: fetching their keys ----------------------------------------------------------


def issuer_cfg(**changes: Any) -> TrustedIssuer:
    return TrustedIssuer(issuer=OUTSIDE, jwks_url="https://vneid.example.gov.vn/jwks", refresh=60,
                         **changes)


def answering(status: int, content: bytes, seen: list[str] | None = None) -> httpx.AsyncClient:
    def handle(request: httpx.Request) -> httpx.Response:
        if seen is not None:
            seen.append(str(request.url))
        return httpx.Response(status, content=content, headers={"content-type": "application/json"})

    return httpx.AsyncClient(transport=httpx.MockTransport(handle))


async def test_refresh_replaces_the_keys_from_the_jwks_url() -> None:
    issuer = ExternalIssuer(issuer_cfg(audience="aud-x"), default_audience="lienthong")
    assert (issuer.keys.audience, issuer.keys.keys.keys) == ("aud-x", [])
    seen: list[str] = []
    import json
    async with answering(200, json.dumps(public(ec_key("v1"), ec_key("v2"))).encode(), seen) as http:
        assert await issuer.refresh(http) is True
    assert [k.kid for k in issuer.keys.keys.keys] == ["v1", "v2"]
    assert seen == ["https://vneid.example.gov.vn/jwks"]
    assert ExternalIssuer(issuer_cfg(), "lienthong").keys.audience == "lienthong"


@pytest.mark.parametrize(("status", "content"), [
    (500, b"{}"),
    (404, b"not here"),
    (200, b"<html>"),
    (200, b'{"keys": []}'),
    (200, b'{"keys": [{"kty": "EC", "d": "x"}]}'),
    (200, b'{"keys": [' + b'{"kty": "EC"},' * 30_000 + b'{"kty": "EC"}]}'),
])
async def test_a_failed_refresh_keeps_the_keys_it_had(status: int, content: bytes) -> None:
    """An error answer, a body that is no JWKS, private keys or a JWKS over 256 KiB change nothing."""
    issuer = ExternalIssuer(issuer_cfg(), "lienthong")
    before = KeySet([ec_key("kept")])
    issuer.keys.keys = before
    async with answering(status, content) as http:
        assert await issuer.refresh(http) is False
    assert issuer.keys.keys is before
    assert issuer.fetched_at > 0


async def test_an_unreachable_jwks_url_is_a_failed_refresh() -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused", request=request)

    issuer = ExternalIssuer(issuer_cfg(), "lienthong")
    async with httpx.AsyncClient(transport=httpx.MockTransport(refuse)) as http:
        assert await issuer.refresh(http) is False


def test_due_after_refresh_seconds_or_when_asked_after_the_minimum(monkeypatch: pytest.MonkeyPatch) -> None:
    now = [1000.0]
    monkeypatch.setattr("gateway.oauth.external.time.monotonic", lambda: now[0])
    issuer = ExternalIssuer(issuer_cfg(), "lienthong")
    assert issuer.due(False)  # never fetched
    issuer.fetched_at = 1000.0
    now[0] = 1000.0 + external.MIN_REFETCH - 0.1
    assert (issuer.due(False), issuer.due(True)) == (False, False)
    now[0] = 1000.0 + external.MIN_REFETCH
    assert (issuer.due(False), issuer.due(True)) == (False, True)
    now[0] = 1060.0
    assert issuer.due(False)


# -- revocations and replay caches -----------------------------------------------------------------


def test_revocation_is_idempotent_and_expires(engine: Engine) -> None:
    store = RevocationStore(engine)
    now = int(time.time())
    store.revoke("j-live", H60, now + 300)
    store.revoke("j-live", H60, now + 300)  # again: no error
    store.revoke("j-old", H60, now - 1000)
    store.revoke("x" * 400, H60, now + 300)  # stored cut to 255 characters
    assert store.active(now) == {"j-live", "x" * 255}
    assert store.active(now - 800) == {"j-live", "j-old", "x" * 255}  # within 300 s of expiry
    assert store.purge(now + 3600) == 1  # only j-old expired over an hour before
    assert store.purge(now + 3600) == 0


def test_database_replay_cache_sees_each_assertion_once(engine: Engine) -> None:
    cache = DatabaseReplayCache(engine)
    now = int(time.time())
    assert cache.first_use(H60, "a-1", now + 60) is True
    assert cache.first_use(H60, "a-1", now + 60) is False
    assert cache.first_use(H41, "a-1", now + 60) is True  # another client's jti is another assertion
    assert cache.first_use(H60, "a-2", now - 10) is True
    assert cache.purge() == 1
    with engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(oauth_assertions)).scalar() == 2


class FakeRedis:
    """The one call the replay cache makes: SET key value NX EXAT at."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, bytes, bool, int]] = []
        self.held: set[str] = set()

    def set(self, key: str, value: bytes, *, nx: bool, exat: int) -> bool | None:
        self.calls.append((key, value, nx, exat))
        if key in self.held:
            return None
        self.held.add(key)
        return True


def test_redis_replay_cache_sets_once_until_expiry() -> None:
    fake = FakeRedis()
    cache = RedisReplayCache(fake)
    now = int(time.time())
    assert cache.first_use(H60, "a-1", now + 60) is True
    assert cache.first_use(H60, "a-1", now + 60) is False
    assert cache.first_use(H60, "a-2", now - 100) is True
    key, value, nx, exat = fake.calls[0]
    assert key.startswith("lienthong:assertion:") and len(key) == len("lienthong:assertion:") + 64
    assert (value, nx, exat) == (b"1", True, now + 60)
    assert fake.calls[2][3] >= now + 1  # an expired assertion is held a moment, never EXAT in the past
    assert cache.purge() == 0


# -- the client store ------------------------------------------------------------------------------


def test_add_normalises_the_id_and_describes_without_the_hash(engine: Engine) -> None:
    store = ClientStore(engine)
    key = ec_key("h60-key")
    record = store.add("VN:GOV:000.00.00.H60:MOTCUA", name="Một cửa", scopes=["exchange", "metrics"],
                       secret_hash="$argon2id$fake", jwks=public(key))
    assert record.id == H60
    assert record.auth_methods == (SECRET_BASIC, PRIVATE_KEY_JWT)
    described = record.describe()
    assert "secret_hash" not in described and "$argon2id$fake" not in str(described)
    assert described["key_ids"] == ["h60-key"]
    assert (described["scopes"], described["source"]) == (["exchange", "metrics"], "cli")
    assert described["created"].endswith("Z") and len(described["created"]) == 20


def test_add_refuses_no_credential_private_keys_and_duplicates(engine: Engine) -> None:
    store = ClientStore(engine)
    with pytest.raises(ValueError, match="needs a secret or public keys"):
        store.add(H60)
    with pytest.raises(ValueError, match="holds private key material"):
        store.add(H60, jwks={"keys": [ec_key("k").as_dict(private=True)]})
    assert store.get(H60) is None
    store.add(H60, secret_hash="h")
    with pytest.raises(ClientExists, match=f"client {H60} is registered already"):
        store.add(H60, secret_hash="other")


def test_update_changes_only_what_it_is_given(engine: Engine) -> None:
    store = ClientStore(engine)
    store.add(H60, secret_hash="h", scopes=["exchange"])
    key = ec_key("new")
    record = store.update(H60, jwks=public(key), scopes=["exchange", "introspect"])
    assert (record.secret_hash, record.scopes, record.auth_methods) == (
        "h", ("exchange", "introspect"), (SECRET_BASIC, PRIVATE_KEY_JWT))
    record = store.update(H60, secret_hash=None)
    assert record.auth_methods == (PRIVATE_KEY_JWT,)
    with pytest.raises(ValueError, match="would be left without any credential"):
        store.update(H60, jwks=None)
    with pytest.raises(ValueError, match="holds private key material"):
        store.update(H60, jwks={"keys": [key.as_dict(private=True)]})
    with pytest.raises(UnknownClient, match=f"no client {H41} is registered"):
        store.update(H41, enabled=False)
    store.update(H60, enabled=False)
    assert store.disabled() == {H60}


def test_seed_adds_what_is_missing_and_never_overwrites(engine: Engine) -> None:
    store = ClientStore(engine)
    configured = [Client(id=H60, secret_hash="from-config"), Client(id=H41, secret_hash="h41")]
    assert store.seed(configured) == [H60, H41]
    assert store.seed(configured) == []
    changed = [Client(id=H60, secret_hash="edited-in-yaml", scopes=["metrics"])]
    assert store.seed(changed) == []
    record = store.get(H60)
    assert record is not None
    assert (record.secret_hash, record.scopes, record.source) == ("from-config", ("exchange",), "config")
    assert [r.id for r in store.all()] == sorted([H60, H41])


# -- keeping each worker current -------------------------------------------------------------------


async def test_refresher_runs_due_jobs_and_survives_a_failing_one() -> None:
    ran: list[str] = []

    async def broken() -> None:
        ran.append("broken")
        raise RuntimeError("database gone")

    async def fine() -> None:
        ran.append("fine")

    async def rare() -> None:
        ran.append("rare")

    refresher = Refresher([Job("broken", 0.0, broken), Job("fine", 0.0, fine),
                           Job("rare", 3600.0, rare, wakeable=True)], tick=0.01)
    await refresher.run_once()
    assert ran == ["broken", "fine", "rare"]
    await refresher.run_once()
    assert ran[3:] == ["broken", "fine"]  # rare is not due for an hour
    await refresher.run_once(woken=True)
    assert ran[5:] == ["broken", "fine", "rare"]  # unless woken


async def test_wake_before_start_and_stop_without_start_do_nothing() -> None:
    refresher = Refresher([], tick=1.0)
    refresher.wake()
    await refresher.stop()


async def test_started_refresher_runs_wakeable_jobs_when_woken() -> None:
    import asyncio

    woken = asyncio.Event()

    async def job() -> None:
        woken.set()

    refresher = Refresher([Job("j", 3600.0, job, wakeable=True, last=time.monotonic())], tick=60.0)
    refresher.start()
    try:
        refresher.wake()
        await asyncio.wait_for(woken.wait(), timeout=10)
    finally:
        await refresher.stop()


def test_security_with_redis_uses_it_for_replays_and_limits(tmp_path: Path, engine: Engine) -> None:
    """With redis: configured, the replay cache and the limiter are Redis's (nothing connects yet)."""
    import asyncio

    keys.ensure_keys(tmp_path / "keys")
    (tmp_path / "policies").mkdir()
    security = Security.build(Config(redis="redis://127.0.0.1:9/0"), engine, tmp_path / "keys",
                              tmp_path / "policies")
    assert isinstance(security.replay, RedisReplayCache)
    assert isinstance(security.limiter, RedisLimiter)
    assert security.redis is not None
    asyncio.run(security.stop())


def test_reload_keys_now_reads_the_folder_at_most_once_a_second(tmp_path: Path, engine: Engine) -> None:
    folder = tmp_path / "keys"
    keys.ensure_keys(folder)
    (tmp_path / "policies").mkdir()
    security = Security.build(Config(), engine, folder, tmp_path / "policies")
    assert security.reload_keys_now() is False  # nothing changed
    new_kid = keys.new_signing_key(folder)
    assert security.reload_keys_now() is False  # too soon after the last look
    security._keys_checked -= 1.0
    assert security.reload_keys_now() is True
    assert [k["kid"] for k in security.jwks()][-1] == new_kid
    assert all("d" not in k for k in security.jwks())
