"""Response minimisation: only a rule's response fields leave the gateway, for every entry point."""

from __future__ import annotations

import copy
import hashlib
import json
import time
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.app import create_app
from gateway.connector import Call, Reply
from gateway.errors import UpstreamError, UpstreamFault
from gateway.exchange import Exchange, Rendered, Result
from gateway.policy import compile_fields, minimise
from gateway.storage.db import upgrade
from tests.helpers import FunctionConnector, rest_only_config
from tests.oauth_helpers import ECHO, MOTCUA_H41, basic_token, runtime, write_policies

CITIZEN = {
    "SoDinhDanh": "001060301193", "HoVaTen": {"Ho": "Nguyễn", "ChuDem": "Văn", "Ten": "An"},
    "GioiTinh": "1", "DanToc": "Kinh", "TonGiao": "Không",
    "NgayThangNamSinh": {"NgayThangNam": "19600301"},
    "ThuongTru": {"MaTinhThanh": "02", "ChiTiet": "Số 1, Hà Giang"},
    "Cha": {"SoDinhDanh": "001030000001", "HoVaTen": {"Ho": "Nguyễn", "Ten": "Bình"}},
    "ConCai": [{"SoDinhDanh": "001090000001", "HoVaTen": {"Ho": "Nguyễn", "Ten": "Cúc"}},
               {"SoDinhDanh": "001090000002", "HoVaTen": {"Ho": "Nguyễn", "Ten": "Dũng"}}],
}

VECTORS: list[tuple[str, list[str], Any, Any]] = [
    ("one field", ["TonTai"], {"TonTai": True, "x": 1}, {"TonTai": True}),
    ("nothing allowed", [], {"TonTai": True}, {}),
    ("whole subtree", ["HoVaTen"], CITIZEN, {"HoVaTen": CITIZEN["HoVaTen"]}),
    ("nested field", ["HoVaTen.Ten", "SoDinhDanh"], CITIZEN,
     {"SoDinhDanh": "001060301193", "HoVaTen": {"Ten": "An"}}),
    ("through lists", ["ConCai.HoVaTen.Ten"], CITIZEN,
     {"ConCai": [{"HoVaTen": {"Ten": "Cúc"}}, {"HoVaTen": {"Ten": "Dũng"}}]}),
    ("top-level list", ["a"], [{"a": 1, "b": 2}, {"b": 3}], [{"a": 1}, {}]),
    ("wildcard key", ["*.SoDinhDanh"], {"Cha": {"SoDinhDanh": "1", "X": 2}, "Me": {"SoDinhDanh": "2"}},
     {"Cha": {"SoDinhDanh": "1"}, "Me": {"SoDinhDanh": "2"}}),
    ("shorter path wins", ["HoVaTen", "HoVaTen.Ten"], CITIZEN, {"HoVaTen": CITIZEN["HoVaTen"]}),
    ("shorter path wins, other order", ["HoVaTen.Ten", "HoVaTen"], CITIZEN, {"HoVaTen": CITIZEN["HoVaTen"]}),
    ("scalar where an object was expected", ["a.b"], {"a": "secret"}, {}),
    ("scalars in a list where objects were expected", ["a.b"], {"a": [{"b": 1}, "x", 2]}, {"a": [{"b": 1}]}),
    ("a bare scalar reply has no fields", ["a"], True, True),
    ("missing fields stay missing", ["nope", "HoVaTen.nope"], CITIZEN, {"HoVaTen": {}}),
    ("null values kept when allowed", ["a"], {"a": None, "b": None}, {"a": None}),
    ("dollar prefix", ["$.TonTai"], {"TonTai": False, "x": 1}, {"TonTai": False}),
]


@pytest.mark.parametrize(("paths", "payload", "expected"), [v[1:] for v in VECTORS],
                         ids=[v[0] for v in VECTORS])
def test_minimise_vectors(paths: list[str], payload: Any, expected: Any) -> None:
    """Each vector: the allowed paths, the reply, and what may leave."""
    before = copy.deepcopy(payload)
    assert minimise(payload, compile_fields(paths)) == expected
    assert payload == before  # the upstream's reply is not changed in place


def naive(payload: Any, paths: list[str]) -> Any:
    """Reference: keep a leaf iff some allowed path is a prefix of its key path (lists transparent)."""
    split = [p.removeprefix("$.").split(".") for p in paths]

    def allowed(prefix: list[str]) -> tuple[bool, bool]:
        whole = any(len(p) <= len(prefix) and all(a in ("*", b) for a, b in zip(p, prefix, strict=False))
                    for p in split)
        partial = any(len(p) > len(prefix) and all(a in ("*", b) for a, b in zip(p, prefix, strict=False))
                      for p in split)
        return whole, partial

    drop = object()

    def walk(node: Any, prefix: list[str]) -> Any:
        whole, _ = allowed(prefix)
        if whole and prefix:
            return node
        if isinstance(node, list):
            return [x for x in (walk(i, prefix) for i in node) if x is not drop]
        if isinstance(node, dict):
            out = {}
            for k, v in node.items():
                kw, kp = allowed([*prefix, k])
                if kw or kp:
                    kept = walk(v, [*prefix, k])
                    if kept is not drop:
                        out[k] = kept
            return out
        return drop if prefix else node

    return walk(payload, [])


KEYS = st.sampled_from(["a", "b", "c", "SoDinhDanh"])
JSON = st.recursive(st.none() | st.booleans() | st.integers() | st.text(max_size=3),
                    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(KEYS, inner, max_size=4),
                    max_leaves=12)
PATHS = st.lists(st.lists(KEYS, min_size=1, max_size=3).map(".".join), max_size=4)


@settings(max_examples=400, deadline=None)
@given(payload=JSON, paths=PATHS)
def test_minimise_agrees_with_the_reference(payload: Any, paths: list[str]) -> None:
    """The compiled filter keeps exactly what the naive prefix rule keeps (explicit keys, no '*')."""
    # the naive model treats overlapping explicit and shorter paths the same way as the filter
    assert minimise(payload, compile_fields(paths)) == naive(payload, paths)


@settings(max_examples=200, deadline=None)
@given(payload=JSON, paths=PATHS)
def test_minimise_never_adds(payload: Any, paths: list[str]) -> None:
    """Whatever leaves is a part of the reply: minimising twice changes nothing more."""
    tree = compile_fields(paths)
    once = minimise(payload, tree)
    assert minimise(once, tree) == once


POLICY = """
rules:
  - name: echo-minimised
    services: ["VN/GOV/000.00.00.H41/DANHMUC/echo"]
    clients: ["*"]
    response_fields: [TonTai]
"""


def test_pipeline_minimises_before_any_render(tmp_path: Path) -> None:
    """The reply is minimised once, in the pipeline: whatever render an entry point brings (the SOAP
    face's included) receives only the allowed fields, and the audit hashes what left."""
    config, secrets = rest_only_config(tmp_path, policies_dir=str(write_policies(tmp_path / "p", POLICY)))
    upgrade(config.database_url)
    seen: list[Any] = []

    async def upstream(call: Call) -> Reply:
        return Reply({"TonTai": True, "HoVaTen": "Nguyễn Văn An", "SoDinhDanh": "001060301193"})

    def soap_like_render(result: Result) -> Rendered:
        assert result.reply is not None
        seen.append(result.reply.payload)
        return Rendered(200, [], b"<TonTai>true</TonTai>")

    with TestClient(create_app(config)) as client:
        rt = runtime(client)
        rt.connectors["VN/GOV/000.00.00.H41/DANHMUC/echo"] = FunctionConnector(upstream)
        token = basic_token(client, MOTCUA_H41, secrets[MOTCUA_H41])
        exchange = Exchange(id="m-1", protocol="soap", received_us=time.time_ns() // 1000, method="POST",
                            service_id="VN/GOV/000.00.00.H41/DANHMUC/echo", body=b"{}",
                            content_type="application/json", authorization=f"Bearer {token}")
        rendered = client.portal.call(rt.pipeline.run, exchange, soap_like_render)  # type: ignore[union-attr]
        assert rendered.status == 200 and seen == [{"TonTai": True}]
        r = client.post(ECHO, json={}, headers={"Authorization": f"Bearer {token}"})
        assert r.json() == {"TonTai": True}
        leaf = json.loads(rt.audit.read(rt.audit.size() - 1, 1)[0].leaf)
        assert leaf["response"]["sha256"] == hashlib.sha256(r.content).hexdigest()


def test_an_upstream_error_under_a_minimising_rule_says_no_more_than_its_code(tmp_path: Path) -> None:
    """What an upstream says in an error (a body, a fault string or detail) may name a citizen: under
    a rule with response_fields it is withheld too; the status and fault code stay, and so does
    whether the delivery queue may retry."""
    config, secrets = rest_only_config(tmp_path, policies_dir=str(write_policies(tmp_path / "p", POLICY)))
    upgrade(config.database_url)
    pid = "001060301193"

    async def faulting(call: Call) -> Reply:
        raise UpstreamFault(f"the population database refused: Server.NotFound {pid}",
                            faultcode="Server.NotFound", faultstring=f"no citizen {pid}",
                            faultdetail={"SoDinhDanh": pid})

    async def failing(call: Call) -> Reply:
        raise UpstreamError("HTTP 500", extra={"status": 500, "body": f"citizen {pid} broke us"},
                            retryable=False)

    with TestClient(create_app(config)) as client:
        rt = runtime(client)
        token = basic_token(client, MOTCUA_H41, secrets[MOTCUA_H41])
        for connector, code in ((faulting, "Server.NotFound"), (failing, None)):
            rt.connectors["VN/GOV/000.00.00.H41/DANHMUC/echo"] = FunctionConnector(connector)
            r = client.post(ECHO, json={}, headers={"Authorization": f"Bearer {token}"})
            assert r.status_code == 502 and pid not in r.text
            problem = r.json()
            assert problem["code"] == "Server.ServiceFailed" and problem.get("withheld") is True
            assert problem.get("faultcode") == code
            assert problem["status"] == 502  # RFC 9457: the status of this answer
            if code is None:
                assert problem["upstreamStatus"] == 500  # the upstream's own, beside it
