"""The exchange pipeline, in-process, with function-backed connectors."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from gateway.app import create_app
from gateway.config import Config
from gateway.connector import Call, Reply
from gateway.errors import UpstreamUnavailable
from gateway.rest import split_path
from gateway.runtime import Runtime
from gateway.storage.db import upgrade
from tests.helpers import FunctionConnector, rest_only_config

CLIENT = "VN/GOV/000.00.00.H41/MOTCUA"
SERVICE = "VN/GOV/000.00.00.H41/DANHMUC/echo"
ECHO = f"/r1/{SERVICE}"


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[TestClient, Config, str]]:
    config, secrets = rest_only_config(tmp_path_factory.mktemp("pipeline"),
                                       limits={"max_body_bytes": 4096})
    upgrade(config.database_url)
    with TestClient(create_app(config)) as client:
        r = client.post("/oauth/token", data={"grant_type": "client_credentials"},
                        auth=(CLIENT, secrets[CLIENT]))
        yield client, config, r.json()["access_token"]


def runtime(client: TestClient) -> Runtime:
    return client.app.api.state.runtime  # type: ignore[attr-defined,no-any-return]


def use(client: TestClient, fn: FunctionConnector) -> None:
    runtime(client).connectors[SERVICE] = fn


def last_leaf(client: TestClient) -> dict[str, object]:
    log = runtime(client).audit
    return dict(json.loads(log.read(log.size() - 1, 1)[0].leaf))


def test_path_splitting() -> None:
    """The service id is five path segments, six with a version; the rest is passed on."""
    assert split_path("/r1/VN/GOV/m/S/svc") == ("VN/GOV/m/S/svc", "")
    assert split_path("/r1/VN/GOV/m/S/svc/v2/items/7") == ("VN/GOV/m/S/svc/v2", "/items/7")
    assert split_path("/r1/VN/GOV/m/S/svc/items") == ("VN/GOV/m/S/svc", "/items")


def test_exchange_is_audited_before_the_answer(app: tuple[TestClient, Config, str]) -> None:
    """The answer comes back only after its leaf is stored, with the X-Road headers."""
    client, _, token = app
    seen: list[int] = []

    async def upstream(call: Call) -> Reply:
        seen.append(runtime(client).audit.size())
        return Reply({"echo": call.payload, "user": call.headers.get("X-Road-UserId")},
                     wire_request=b"req", wire_response=b"resp")

    use(client, FunctionConnector(upstream))
    r = client.post(ECHO, json={"a": 1}, headers={"Authorization": f"Bearer {token}",
                                                  "X-Road-Id": "demo-1", "X-Road-UserId": "canbo.a",
                                                  "X-Road-Issue": "H22.23-20261121-0000001"})
    assert r.status_code == 200 and r.json() == {"echo": {"a": 1}, "user": "canbo.a"}
    assert r.headers["x-road-id"] == "demo-1"
    leaf = last_leaf(client)
    assert leaf["id"] == "demo-1" and leaf["outcome"] == "ok" and leaf["status"] == 200
    assert leaf["userId"] == "canbo.a" and leaf["purpose"] == "H22.23-20261121-0000001"
    assert leaf["rule"] == "danh-muc-dung-chung" and leaf["client"] == CLIENT
    # The leaf keeps the body's SHA-256; X-Road-Request-Hash is X-Road's own (tests/test_xroad_errors.py)
    assert leaf["request"] == {"sha256": _sha(r.request.content), "size": len(r.request.content)}
    assert leaf["upstream"] == {"request": {"sha256": _sha(b"req"), "size": 3},
                                "response": {"sha256": _sha(b"resp"), "size": 4}}
    assert seen[0] == runtime(client).audit.size() - 1  # not yet stored while upstream answered


def _sha(data: bytes) -> str:
    import hashlib

    return hashlib.sha256(data).hexdigest()


@pytest.mark.parametrize(("kind", "status", "outcome"), [
    ("no-token", 401, "refused"), ("unknown", 404, "refused"), ("bad-json", 400, "refused"),
    ("too-large", 413, "refused"), ("short-path", 404, "refused"), ("upstream-down", 503, "failed"),
    ("crash", 500, "failed"),
])
def test_every_refusal_and_failure_is_answered_and_audited(
        app: tuple[TestClient, Config, str], kind: str, status: int, outcome: str) -> None:
    """Refusals and failures get a precise problem+json and an audit leaf of their own."""
    client, _, token = app

    async def down(call: Call) -> Reply:
        raise UpstreamUnavailable("connection refused")

    async def crash(call: Call) -> Reply:
        raise ZeroDivisionError

    use(client, FunctionConnector({"crash": crash}.get(kind, down)))
    auth = {} if kind == "no-token" else {"Authorization": f"Bearer {token}"}
    path = {"unknown": "/r1/VN/GOV/000.00.00.H41/DANHMUC/nothing", "short-path": "/r1/VN/GOV"}.get(kind, ECHO)
    body = {"bad-json": b"{oops", "too-large": b"{" + b" " * 5000 + b"}"}.get(kind, b"{}")
    before = runtime(client).audit.size()
    r = client.post(path, content=body, headers={**auth, "Content-Type": "application/json"})
    assert r.status_code == status, r.text
    assert r.headers["content-type"] == "application/problem+json"
    problem = r.json()
    assert problem["status"] == status and problem["exchangeId"] == r.headers["x-road-id"]
    assert runtime(client).audit.size() == before + 1
    leaf = last_leaf(client)
    assert leaf["outcome"] == outcome and leaf["status"] == status and leaf["id"] == problem["exchangeId"]
    assert leaf["error"] == problem["code"]


def test_audit_failure_fails_the_exchange(app: tuple[TestClient, Config, str],
                                          tmp_path_factory: pytest.TempPathFactory) -> None:
    """If the audit leaf cannot be stored, the client gets 503, not the upstream's answer."""
    client, _, token = app

    async def ok(call: Call) -> Reply:
        return Reply({"secret": "data"})

    use(client, FunctionConnector(ok))
    engine = runtime(client).engine
    with engine.begin() as conn:
        conn.execute(sa.text("ALTER TABLE audit_leaves RENAME TO audit_leaves_away"))
    try:
        r = client.post(ECHO, json={}, headers={"Authorization": f"Bearer {token}"})
    finally:
        with engine.begin() as conn:
            conn.execute(sa.text("ALTER TABLE audit_leaves_away RENAME TO audit_leaves"))
    assert r.status_code == 503 and "secret" not in r.text
    assert r.json()["code"] == "Server.AuditFailed"


def test_client_header_must_match_token(app: tuple[TestClient, Config, str]) -> None:
    """X-Road-Client naming another client than the token's is refused with 403."""
    client, _, token = app
    r = client.post(ECHO, json={}, headers={"Authorization": f"Bearer {token}",
                                            "X-Road-Client": "VN/GOV/000.00.00.H60/MOTCUA"})
    assert r.status_code == 403 and r.json()["code"] == "Client.AccessDenied"
    r = client.post(ECHO, json={}, headers={"Authorization": f"Bearer {token}",
                                            "X-Road-Client": "VN:GOV:000.00.00.H41:MOTCUA"})
    assert r.status_code != 403


def test_exchanges_get_one_leaf_each_in_order(app: tuple[TestClient, Config, str]) -> None:
    """Successive exchanges each get exactly one leaf, in the order they were answered."""
    client, _, token = app

    async def ok(call: Call) -> Reply:
        await asyncio.sleep(0.001)
        return Reply({"ok": True})

    use(client, FunctionConnector(ok))
    before = runtime(client).audit.size()
    ids = [f"c-{i}" for i in range(40)]
    for xid in ids:
        assert client.post(ECHO, json={}, headers={"Authorization": f"Bearer {token}",
                                                   "X-Road-Id": xid}).status_code == 200
    leaves = runtime(client).audit.read(before, 100)
    assert [leaf.exchange_id for leaf in leaves] == ids
