"""The auditor's API: signed checkpoints, filtered entries with inclusion proofs that verify on the
auditor's side, consistency proofs, streamed exports, citizens' access reports, and scopes."""

from __future__ import annotations

import base64
import csv
import io
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import orjson
import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from gateway.app import create_app
from gateway.audit.checkpoint import Verifier, open_note
from gateway.audit.merkle import verify_consistency, verify_inclusion
from gateway.audit.service import AuditService
from gateway.config import Config
from gateway.connector import Call, Reply
from gateway.runtime import Runtime
from gateway.storage.db import upgrade
from tests.helpers import FunctionConnector, rest_only_config

CLIENT = "VN/GOV/000.00.00.H41/MOTCUA"
AUDITOR = "VN/GOV/000.00.00.G22/KIEMTOAN"
ECHO = "VN/GOV/000.00.00.H41/DANHMUC/echo"
ITEMS = "VN/GOV/000.00.00.H41/DANHMUC/items"
CITIZEN = "001099000001"
OTHER = "001099000002"

POLICY = f"""
rules:
  - name: echo-giu-noi-dung
    services: [{ECHO}]
    clients: ["{CLIENT}"]
    scopes: [exchange]
    subjects: [SoDinhDanh]
    keep_bodies: true
    retention_days: 30
    disclose_official: true
  - name: items-an-danh-can-bo
    services: [{ITEMS}]
    clients: ["{CLIENT}"]
    scopes: [exchange]
    subjects: [SoDinhDanh]
"""


@dataclass
class Api:
    http: TestClient
    config: Config
    exchange_token: str
    auditor_token: str
    read_only_token: str

    @property
    def runtime(self) -> Runtime:
        return self.http.app.api.state.runtime  # type: ignore[attr-defined,no-any-return]

    @property
    def audit(self) -> AuditService:
        return self.http.app.api.state.audit  # type: ignore[attr-defined,no-any-return]

    def get(self, path: str, token: str | None = None, **params: Any) -> Any:
        r = self.http.get(path, params=params,
                          headers={"Authorization": f"Bearer {token or self.auditor_token}"})
        assert r.status_code == 200, r.text
        return r.json()

    def call(self, service: str, person: str, *, official: str = "VN-canbo.lan",
             purpose: str = "H41.23-20261121-0000001") -> str:
        r = self.http.post(f"/r1/{service}", content=orjson.dumps({"SoDinhDanh": person, "x": 1}),
                           headers={"Authorization": f"Bearer {self.exchange_token}",
                                    "Content-Type": "application/json", "X-Road-UserId": official,
                                    "X-Road-Issue": purpose})
        assert r.status_code == 200, r.text
        return r.headers["x-road-id"]


async def _echo(call: Call) -> Reply:
    return Reply({"echo": call.payload}, wire_request=call.body, wire_response=b'{"up":1}')


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Api]:
    config, secrets = rest_only_config(tmp_path_factory.mktemp("audit-api"),
                                       audit={"checkpoint_interval": 0})
    (config.path(config.policies_dir) / "00-audit.yaml").write_text(POLICY)
    upgrade(config.database_url)
    with TestClient(create_app(config)) as http:
        def token(client: str, scope: str | None = None) -> str:
            data = {"grant_type": "client_credentials", **({"scope": scope} if scope else {})}
            r = http.post("/oauth/token", data=data, auth=(client, secrets[client]))
            assert r.status_code == 200, r.text
            return str(r.json()["access_token"])

        made = Api(http, config, token(CLIENT), token(AUDITOR), token(AUDITOR, "audit.read"))
        made.runtime.connectors[ECHO] = FunctionConnector(_echo)
        made.runtime.connectors[ITEMS] = FunctionConnector(_echo)
        for i in range(5):
            made.call(ECHO, CITIZEN, purpose=f"H41.23-20261121-{i:07d}")
        for _ in range(3):
            made.call(ITEMS, CITIZEN, official="VN-canbo.binh")
        made.call(ECHO, OTHER)
        r = http.post(f"/r1/{ECHO}", content=b"{}", headers={"Content-Type": "application/json"})
        assert r.status_code == 401  # refused: audited too
        yield made


def b64(text: str) -> bytes:
    return base64.b64decode(text)


def test_latest_checkpoint_is_signed_by_the_published_key(api: Api) -> None:
    """The checkpoint note verifies under the verifier key the answer names, for the whole log."""
    doc = api.get("/audit/checkpoint")
    opened = open_note(doc["note"], Verifier.from_vkey(doc["verifierKey"]), origin=doc["origin"])
    assert opened.size == doc["size"] == 10
    assert api.runtime.audit.size() == 11  # the auditor's call is recorded too, after its answer
    assert opened.root == b64(doc["root"])
    r = api.http.get("/audit/checkpoint", headers={"Authorization": f"Bearer {api.auditor_token}",
                                                   "Accept": "text/plain"})
    assert r.text == doc["note"] and r.headers["content-type"].startswith("text/plain")


def test_entries_filter_on_every_field(api: Api) -> None:
    """Entries filter by client, service, operation, outcome, official, purpose, subject and time."""
    def indices(**params: Any) -> list[int]:
        return [e["index"] for e in api.get("/audit/entries", **params)["items"]]

    assert indices(service=ECHO) == [0, 1, 2, 3, 4, 8, 9]
    assert indices(service=ITEMS, client=CLIENT, operation="items") == [5, 6, 7]
    assert indices(outcome="refused") == [9]
    assert indices(official="VN-canbo.binh") == [5, 6, 7]
    assert indices(purpose="H41.23-20261121-0000003") == [3]
    assert indices(subject=CITIZEN) == [0, 1, 2, 3, 4, 5, 6, 7]
    assert indices(subject=OTHER) == [8]
    first = api.get("/audit/entries", limit=1)["items"][0]["record"]["time"]
    assert indices(until=first) == []
    assert indices(since=first)[:10] == list(range(10))  # then the auditor's own calls
    assert indices(since="2000-01-01T00:00:00+07:00", until="2001-01-01T00:00:00Z") == []


def test_entries_page_with_keyset_cursors(api: Api) -> None:
    """Pages follow each other through ``next`` with no leaf lost or repeated."""
    seen, after = [], None
    while True:
        page = api.get("/audit/entries", limit=3, **({"after": after} if after is not None else {}))
        seen += [e["index"] for e in page["items"]]
        if page["next"] is None:
            break
        after = page["next"]
    assert len(seen) >= 10 and seen == list(range(len(seen)))  # the auditor's calls are leaves too


def test_entries_hold_the_leaf_and_never_a_personal_id(api: Api) -> None:
    """An entry is the leaf's record and hash; the citizen's id appears only as a keyed hash."""
    entry = api.get("/audit/entries/0")
    assert CITIZEN not in orjson.dumps(entry).decode()
    assert entry["record"]["subjects"] == [api.audit.subjects(CITIZEN)]
    (stored,) = api.runtime.audit.read(0, 1)
    assert orjson.loads(stored.leaf) == entry["record"]


def test_inclusion_proofs_verify_against_the_signed_root(api: Api) -> None:
    """Each entry's proof, checked on the auditor's side, leads to the checkpoint's signed root."""
    for index in range(10):
        doc = api.get(f"/audit/entries/{index}")
        cp = doc["checkpoint"]
        root = open_note(cp["note"], Verifier.from_vkey(cp["verifierKey"])).root
        proof = [b64(h) for h in doc["inclusionProof"]["hashes"]]
        assert verify_inclusion(index, doc["inclusionProof"]["treeSize"], b64(doc["leafHash"]), proof, root)


def test_an_entry_newer_than_the_checkpoint_gets_a_new_one(api: Api) -> None:
    """Asking for a leaf the latest checkpoint does not include signs a new checkpoint."""
    api.call(ECHO, OTHER)
    newest = api.runtime.audit.size() - 1
    doc = api.get(f"/audit/entries/{newest}")
    assert doc["checkpoint"]["size"] == newest + 1 == doc["inclusionProof"]["treeSize"]
    older = api.get("/audit/entries/3", checkpoint=10)
    assert older["inclusionProof"]["treeSize"] == 10


def test_consistency_between_checkpoints_verifies(api: Api) -> None:
    """A consistency proof between two signed checkpoints convinces the auditor the log only grew."""
    before = api.get("/audit/checkpoint")
    api.call(ITEMS, OTHER)
    api.call(ITEMS, OTHER)
    r = api.http.post("/audit/checkpoint", headers={"Authorization": f"Bearer {api.auditor_token}"})
    after = r.json()
    # A new checkpoint of the whole log as it was: every leaf but the POST's own record, after it.
    assert before["size"] + 2 < after["size"] == api.runtime.audit.size() - 1
    doc = api.get("/audit/consistency", **{"from": before["size"], "to": after["size"]})
    assert doc["from"]["checkpoint"]["note"] == before["note"]
    assert verify_consistency(before["size"], after["size"], b64(before["root"]), b64(after["root"]),
                              [b64(h) for h in doc["hashes"]])
    default = api.get("/audit/consistency", **{"from": 3})
    assert default["to"]["size"] == after["size"]


def test_export_streams_jsonl_and_csv(api: Api) -> None:
    """Exports stream every matching leaf: JSON Lines as entries, CSV flattened and formula-safe."""
    headers = {"Authorization": f"Bearer {api.auditor_token}"}
    r = api.http.get("/audit/export", params={"format": "jsonl", "service": ECHO}, headers=headers)
    lines = [orjson.loads(x) for x in r.content.splitlines()]
    assert r.headers["content-type"].startswith("application/jsonl")
    listed = api.get("/audit/entries", service=ECHO)["items"]
    assert [x["index"] for x in lines] == [e["index"] for e in listed]
    r = api.http.get("/audit/export", params={"format": "csv"}, headers=headers)
    rows = list(csv.DictReader(io.StringIO(r.text)))
    assert len(rows) == api.runtime.audit.size()
    assert rows[9]["outcome"] == "refused" and rows[0]["leaf_hash"]
    assert rows[0]["subjects"] == api.audit.subjects(CITIZEN)


def test_subject_report_names_who_and_why_and_discloses_officials_by_rule(api: Api) -> None:
    """A citizen's report lists every access to their data with agency, system, service, purpose and
    outcome; the official only where the deciding rule says so."""
    r = api.http.post("/audit/subject-report", json={"subject": CITIZEN},
                      headers={"Authorization": f"Bearer {api.auditor_token}"})
    assert r.status_code == 200, r.text
    found = r.json()["accesses"]
    accesses = [a for a in found if a["service"]["id"]]
    assert [a["index"] for a in accesses] == list(range(8))
    # The auditor's own search by this person (test_entries_filter_on_every_field) is an access too.
    assert {(a["operation"], a["system"]["id"]) for a in found if not a["service"]["id"]} \
        == {("audit.entries", AUDITOR)}
    echo, items = accesses[0], accesses[5]
    assert echo["agency"] == {"id": "VN/GOV/000.00.00.H41", "name": "UBND tỉnh Nghệ An"}
    assert echo["system"]["id"] == CLIENT and echo["system"]["name"]
    assert echo["service"]["id"] == ECHO and echo["purpose"] == "H41.23-20261121-0000000"
    assert echo["outcome"] == "ok" and echo["official"] == "VN-canbo.lan"
    assert "official" not in items


def test_scopes_are_enforced(api: Api) -> None:
    """No token: 401; a token without audit.subject: 403 naming the scope; an exchange client: 403."""
    r = api.http.get("/audit/checkpoint")
    assert r.status_code == 401 and r.headers["content-type"] == "application/problem+json"
    r = api.http.post("/audit/subject-report", json={"subject": CITIZEN},
                      headers={"Authorization": f"Bearer {api.read_only_token}"})
    assert r.status_code == 403 and 'scope="audit.subject"' in r.headers["www-authenticate"]
    r = api.http.get("/audit/entries", headers={"Authorization": f"Bearer {api.exchange_token}"})
    assert r.status_code == 403
    assert api.get("/audit/entries", token=api.read_only_token, limit=1)["items"]


def test_unknown_things_are_problems(api: Api) -> None:
    """A missing leaf or checkpoint is 404, impossible sizes 400, all problem+json."""
    headers = {"Authorization": f"Bearer {api.auditor_token}"}
    assert api.http.get("/audit/entries/99999", headers=headers).status_code == 404
    assert api.http.get("/audit/entries/1", params={"checkpoint": 7}, headers=headers).status_code == 404
    r = api.http.get("/audit/consistency", params={"from": 5, "to": 99999}, headers=headers)
    assert r.status_code == 400 and r.json()["code"] == "Client.InvalidRequest"


def test_kept_bodies_are_sealed_and_match_their_leaves(api: Api) -> None:
    """The rule that keeps bodies stores them encrypted; they open to what was exchanged, match the
    leaf's digests, and a purge after their retention leaves the log verifiable."""
    from gateway.audit.bodies import purge_bodies

    bodies = api.runtime.audit.bodies(0)
    assert bodies is not None and orjson.loads(bodies.request)["SoDinhDanh"] == CITIZEN
    assert bodies.upstream_response == b'{"up":1}'
    assert api.runtime.audit.bodies(5) is None  # the items rule keeps none
    with api.runtime.engine.connect() as conn:
        sealed = conn.execute(sa.text("SELECT request FROM audit_bodies WHERE idx = 0")).scalar_one()
    assert CITIZEN.encode() not in bytes(sealed)
    report = api.audit.verify()
    assert report.ok and report.bodies >= 6, report.problems
    assert purge_bodies(api.runtime.engine, time.time_ns() // 1000) == 0  # not expired yet
    removed = purge_bodies(api.runtime.engine, time.time_ns() // 1000 + 31 * 86_400_000_000)
    assert removed >= 6 and api.runtime.audit.bodies(0) is None
    report = api.audit.verify()
    assert report.ok and report.bodies == 0
