"""The web console in-process: sign-in, sessions, CSRF, roles, the log search with a hashed personal
id, one entry with its proof, exports, checkpoints, the data-subject report, deliveries, catalog,
and the audit record every action leaves.

The gateway runs in a TestClient with the demo catalog; the population database's and the portal's
connectors are plain functions.
"""

from __future__ import annotations

import asyncio
import csv
import io
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
import yaml
from fastapi.testclient import TestClient

from gateway.app import create_app
from gateway.audit import merkle
from gateway.config import load_config
from gateway.connector import Call, Reply
from gateway.console.users import UserStore
from gateway.delivery.tables import deliveries
from gateway.errors import UpstreamError
from gateway.init import initialise
from gateway.runtime import Runtime
from gateway.storage.db import upgrade
from gateway.storage.tables import audit_leaves
from tests.helpers import FunctionConnector

PORTAL = "VN/GOV/000.00.00.G22/DVCQG"
MOTCUA = "VN/GOV/000.00.00.H60/MOTCUA"  # Tuyên Quang's one-stop system
VERIFY = "VN/GOV/000.00.00.G01/CSDLDC/XacThucThongTinCongDan"
PUSH = "VN/GOV/000.00.00.G22/DVCQG/DongBoHoSoMC"
CITIZEN = "001203004567"
OTHER = "036198001122"
PASSWORD = "mat-khau-du-dai-1"


class Console:
    """A gateway in a TestClient, a browser-like session on its console, and what it needs."""

    def __init__(self, client: TestClient, secrets: dict[str, str]) -> None:
        self.client = client
        self.secrets = secrets
        self.upstream_fails = False

        async def population(call: Call) -> Reply:
            await asyncio.sleep(0)
            return Reply({"TonTai": True, "HoVaTen": "Nguyễn Văn An"})

        async def portal(call: Call) -> Reply:
            if self.upstream_fails:
                raise UpstreamError("[02] Dữ liệu không hợp lệ", extra={"error_code": "02"}, retryable=False)
            return Reply({"error_code": "00"})

        self.runtime.connectors[VERIFY] = FunctionConnector(population)
        self.runtime.connectors[PUSH] = FunctionConnector(portal)

    @property
    def runtime(self) -> Runtime:
        return self.client.app.api.state.runtime  # type: ignore[attr-defined,no-any-return]

    def token(self, client: str) -> str:
        r = self.client.post("/oauth/token", data={"grant_type": "client_credentials"},
                             auth=(client, self.secrets[client]))
        assert r.status_code == 200, r.text
        return str(r.json()["access_token"])

    def verify_citizen(self, personal_id: str, token: str, purpose: str = "G22.99-20260101-0000001") -> str:
        r = self.client.post(f"/r1/{VERIFY}", content=json.dumps({"SoDinhDanh": personal_id, "HoVaTen": "A"}),
                             headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json",
                                      "X-Road-UserId": "VN-canbo.tran", "X-Road-Issue": purpose})
        assert r.status_code == 200, r.text
        return r.headers["x-road-id"]

    def csrf(self, path: str) -> str:
        page = self.client.get(path)
        found = re.search(r'name="csrf" value="([^"]+)"', page.text)
        assert found, page.text[:500]
        return found.group(1)

    def sign_in(self, username: str, password: str = PASSWORD) -> Any:
        token = self.csrf("/console/login")
        return self.client.post("/console/login", data={"csrf": token, "username": username,
                                                         "password": password, "next": ""},
                                follow_redirects=False)

    def sign_out(self) -> None:
        token = self.csrf("/console/overview")
        self.client.post("/console/logout", data={"csrf": token})

    def console_records(self) -> list[dict[str, Any]]:
        with self.runtime.engine.connect() as conn:
            rows = conn.execute(sa.select(audit_leaves.c.leaf).where(audit_leaves.c.client == "console")
                                .order_by(audit_leaves.c.idx)).all()
        return [json.loads(bytes(r.leaf)) for r in rows]


@pytest.fixture
def console(tmp_path: Path) -> Iterator[Console]:
    init = initialise(tmp_path / "gw")
    cfg = yaml.safe_load(init.config_path.read_text())
    cfg["delivery"] = {"backoff_base": 0.05, "backoff_max": 0.1, "poll_interval": 0.05, "max_attempts": 1}
    init.config_path.write_text(yaml.safe_dump(cfg, allow_unicode=True, sort_keys=False))
    config = load_config(init.config_path)
    upgrade(config.database_url)
    store = UserStore(__import__("gateway.storage.db", fromlist=["create_engine"]).create_engine(
        config.database_url))
    store.add("kiemtoan", "auditor", PASSWORD, "Lê Thị Kiểm Toán")
    store.add("vanhanh", "operator", PASSWORD, "Phạm Văn Hành")
    store.engine.dispose()
    with TestClient(create_app(config), base_url="http://127.0.0.1") as client:
        yield Console(client, init.secrets)


def test_pages_need_a_sign_in(console: Console) -> None:
    """Every page sends a visitor to the sign-in page, remembering where they were going."""
    for path in ("/console/overview", "/console/log", "/console/log/0", "/console/checkpoints",
                 "/console/subjects", "/console/deliveries", "/console/catalog"):
        r = console.client.get(path, follow_redirects=False)
        assert r.status_code == 303, path
        assert r.headers["location"].startswith("/console/login?next=")


def test_sign_in_with_a_wrong_password_is_refused_and_audited(console: Console) -> None:
    """A wrong password gets 401 and the same words as an unknown name; both are audited."""
    bad = console.sign_in("kiemtoan", "not-the-password")
    unknown = console.sign_in("nobody", "not-the-password")
    assert bad.status_code == unknown.status_code == 401
    assert "login-error" in bad.text
    assert console.client.get("/console/overview", follow_redirects=False).status_code == 303
    records = console.console_records()
    assert [(r["operation"], r["outcome"], r["userId"]) for r in records] == [
        ("signin", "refused", "kiemtoan"), ("signin", "refused", "nobody")]
    assert all(r["protocol"] == "console" for r in records)


def test_sign_in_and_out(console: Console) -> None:
    """A signed-in auditor sees the overview; signing out ends the session; both are audited."""
    r = console.sign_in("kiemtoan")
    assert r.status_code == 303 and r.headers["location"] == "/console/overview"
    page = console.client.get("/console/overview")
    assert page.status_code == 200 and "Lê Thị Kiểm Toán" in page.text
    console.sign_out()
    assert console.client.get("/console/overview", follow_redirects=False).status_code == 303
    ops = [r["operation"] for r in console.console_records()]
    assert ops == ["signin", "overview", "overview", "signout"]


def test_the_next_page_must_be_inside_the_console(console: Console) -> None:
    """After sign-in only a console path is followed: no open redirect."""
    token = console.csrf("/console/login")
    r = console.client.post("/console/login", data={"csrf": token, "username": "kiemtoan",
                                                     "password": PASSWORD, "next": "//evil.example/x"},
                            follow_redirects=False)
    assert r.headers["location"] == "/console/overview"


def test_forms_without_the_csrf_token_are_refused(console: Console) -> None:
    """A POST without the session's token, or from another origin, is refused before any page runs."""
    console.csrf("/console/login")
    r = console.client.post("/console/login", data={"username": "kiemtoan", "password": PASSWORD})
    assert r.status_code == 403
    token = console.csrf("/console/login")
    r = console.client.post("/console/login", headers={"Origin": "http://evil.example"},
                            data={"csrf": token, "username": "kiemtoan", "password": PASSWORD})
    assert r.status_code == 403
    assert console.client.get("/console/overview", follow_redirects=False).status_code == 303


def test_a_tampered_session_cookie_is_ignored(console: Console) -> None:
    """Changing the cookie's role breaks its signature: the visitor is signed out."""
    console.sign_in("kiemtoan")
    cookie = console.client.cookies.get("lt_console")
    assert cookie
    body, mac = cookie.split(".")
    import base64

    data = json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
    data["role"] = "admin"
    forged = base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode() + "." + mac
    console.client.cookies.set("lt_console", forged, path="/console")
    assert console.client.get("/console/deliveries", follow_redirects=False).status_code == 303


def test_a_disabled_account_loses_its_session(console: Console) -> None:
    """Disabling an account ends the sessions it holds at the next request."""
    console.sign_in("kiemtoan")
    assert console.client.get("/console/overview").status_code == 200
    UserStore(console.runtime.engine).set_enabled("kiemtoan", False)
    assert console.client.get("/console/overview", follow_redirects=False).status_code == 303


def test_roles_decide_the_pages(console: Console) -> None:
    """An auditor may not open deliveries, an operator may not open the log; refusals are audited."""
    console.sign_in("kiemtoan")
    assert console.client.get("/console/deliveries").status_code == 403
    assert console.client.get("/console/log").status_code == 200
    console.sign_out()
    console.sign_in("vanhanh")
    assert console.client.get("/console/log").status_code == 403
    assert console.client.get("/console/subjects").status_code == 403
    assert console.client.get("/console/deliveries").status_code == 200
    refused = [(r["userId"], r["operation"], r["status"]) for r in console.console_records()
               if r["outcome"] == "refused"]
    assert refused == [("kiemtoan", "deliveries", 403), ("vanhanh", "log.search", 403),
                       ("vanhanh", "subjects", 403)]


def test_language_switch(console: Console) -> None:
    """Vietnamese by default; one click to English, remembered; back to Vietnamese."""
    console.sign_in("kiemtoan")
    assert "Nhật ký trao đổi" in console.client.get("/console/log").text
    r = console.client.get("/console/lang/en?next=/console/log")
    assert r.status_code == 200 and "Exchange log" in r.text and 'lang="en"' in r.text
    assert "Exchange log" in console.client.get("/console/overview").text
    console.client.get("/console/lang/vi?next=/console/log")
    assert "Nhật ký trao đổi" in console.client.get("/console/log").text


def test_log_search_hashes_the_personal_id_at_once(console: Console) -> None:
    """The personal id typed in becomes its keyed hash before the redirect: the URL, the search and the
    console's audit record hold only the hash, and the search finds exactly that citizen's exchanges."""
    token = console.token(PORTAL)
    mine = {console.verify_citizen(CITIZEN, token) for _ in range(2)}
    console.verify_citizen(OTHER, token)
    console.sign_in("kiemtoan")
    csrf = console.csrf("/console/log")
    r = console.client.post("/console/log", data={"csrf": csrf, "personal_id": CITIZEN, "service": VERIFY},
                            follow_redirects=False)
    assert r.status_code == 303
    location = r.headers["location"]
    subject = console.runtime.pipeline.ports.subjects(CITIZEN)
    assert CITIZEN not in location and f"subject={subject}" in location
    page = console.client.get(location)
    found = set(re.findall(r"<td class=\"id\">VN/GOV/000.00.00.G22/DVCQG</td>", page.text))
    assert found and page.text.count('class="entry-link"') == 2
    ids = {json.loads(bytes(r.leaf))["id"] for r in _leaves(console, subject)}
    assert ids == mine
    search = [r for r in console.console_records() if r["operation"] == "log.search"][-1]
    assert search["subjects"] == [subject] and CITIZEN not in json.dumps(console.console_records())


def test_entry_page_carries_a_proof_that_holds(console: Console) -> None:
    """One entry: its fields, and the proof data the browser checks, which does lead to the signed root."""
    token = console.token(PORTAL)
    console.verify_citizen(CITIZEN, token)
    console.verify_citizen(OTHER, token)
    console.sign_in("kiemtoan")
    page = console.client.get("/console/log/1")
    assert page.status_code == 200 and "xac-thuc-cong-dan" in page.text
    data = json.loads(re.search(r'<script type="application/json" id="proof-data">(.*?)</script>',
                                page.text, re.S).group(1))  # type: ignore[union-attr]
    import base64

    leaf = base64.b64decode(data["leaf"])
    note = data["note"]
    root = base64.b64decode(note.split("\n")[2])
    assert merkle.verify_inclusion(data["index"], data["size"], merkle.leaf_hash(leaf),
                                   [bytes.fromhex(h) for h in data["proof"]], root)
    # A verifier key is name+keyid+base64(key); the base64 part may itself hold '+'.
    name, key_id, _key = data["vkey"].split("+", 2)
    assert data["serverSignatureOk"] is True and name and len(key_id) == 8
    assert console.client.get("/console/log/999").status_code == 404


def test_export_csv_and_jsonl_follow_the_search(console: Console) -> None:
    """Exports hold the current search, in the /audit/export formats, and are audited."""
    token = console.token(PORTAL)
    console.verify_citizen(CITIZEN, token)
    console.verify_citizen(OTHER, token)
    console.sign_in("kiemtoan")
    subject = console.runtime.pipeline.ports.subjects(CITIZEN)
    r = console.client.get(f"/console/log/export.csv?subject={subject}")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(r.text)))
    assert len(rows) == 1 and rows[0]["service"] == VERIFY and subject in rows[0]["subjects"]
    r = console.client.get(f"/console/log/export.jsonl?service={VERIFY}")
    lines = [json.loads(line) for line in r.text.splitlines()]
    assert len(lines) == 2 and {"index", "leafHash", "record"} <= set(lines[0])
    ops = [r["operation"] for r in console.console_records()]
    assert "log.export.csv" in ops and "log.export.jsonl" in ops


def test_checkpoints_and_consistency(console: Console) -> None:
    """The history lists signed checkpoints; two of them are shown consistent."""
    token = console.token(PORTAL)
    audit = console.client.app.api.state.audit  # type: ignore[attr-defined]
    console.verify_citizen(CITIZEN, token)
    audit.checkpointer.make()
    console.verify_citizen(OTHER, token)
    audit.checkpointer.make()
    console.sign_in("vanhanh")
    sizes = [cp.size for cp in audit.checkpointer.all()]
    page = console.client.get(f"/console/checkpoints?first={sizes[0]}&second={sizes[-1]}")
    assert page.status_code == 200
    assert 'id="consistency-verdict" data-state="verified"' in page.text


def test_subject_report(console: Console) -> None:
    """Who accessed a person's data: the organisation, the purpose, the official withheld by policy."""
    token = console.token(PORTAL)
    console.verify_citizen(CITIZEN, token, purpose="H22.23-20260101-0000042")
    console.sign_in("kiemtoan")
    csrf = console.csrf("/console/subjects")
    r = console.client.post("/console/subjects", data={"csrf": csrf, "personal_id": CITIZEN},
                            follow_redirects=False)
    assert CITIZEN not in r.headers["location"]
    page = console.client.get(r.headers["location"])
    assert page.status_code == 200
    assert "H22.23-20260101-0000042" in page.text and "Cổng Dịch vụ công quốc gia" in page.text
    assert "VN-canbo.tran" not in page.text  # the rule does not disclose the official


def test_subject_report_shows_signature_verdicts(console: Console, tmp_path: Path) -> None:
    """A signed dossier's verdict in its owner's report, in the API and on the page: the signer, and
    valid or why not (issue 14, item 2). Signed with the demo CA `lienthong init` wrote."""
    from gateway.demo_pki import FOLDER, load_signer
    from gateway.demo_signed import SIGNED_PUSH, sign_detached

    owner = "079203000111"
    console.runtime.connectors[SIGNED_PUSH] = console.runtime.connectors[PUSH]
    signers = {label: load_signer(tmp_path / "gw" / FOLDER, label) for label in ("citizen", "revoked")}
    auth = {"Authorization": f"Bearer {console.token(MOTCUA)}", "Content-Type": "application/json"}
    for number, (label, status) in enumerate([("citizen", 202), ("revoked", 403)], start=101):
        body = json.dumps({"MaHoSo": f"H60.23-20260101-{number:07d}", "MaTTHC": "1.001193.000.00.00.H22",
                           "TenTTHC": "Khai sinh", "ChuHoSo": "Nguyễn Văn An", "LoaiDoiTuong": "1",
                           "MaDoiTuong": owner, "NgayTiepNhan": "20260101090000",
                           "NgayHenTra": "20260106170000", "TrangThaiHoSo": "2"}, ensure_ascii=False).encode()
        r = console.client.post(f"/r1/{SIGNED_PUSH}", content=body,
                                headers={**auth, "X-JWS-Signature": sign_detached(body, signers[label])})
        assert r.status_code == status, r.text
    console.verify_citizen(owner, console.token(PORTAL))  # asks for no signature: none shown

    auditor = "VN/GOV/000.00.00.G22/KIEMTOAN"
    r = console.client.post("/oauth/token", auth=(auditor, console.secrets[auditor]),
                            data={"grant_type": "client_credentials", "scope": "audit.subject"})
    report = console.client.post("/audit/subject-report", json={"subject": owner},
                                 headers={"Authorization": f"Bearer {r.json()['access_token']}"})
    accesses = report.json()["accesses"]
    assert [a["signature"] for a in accesses if "signature" in a] == [
        {"valid": True, "reason": "ok", "signer": signers["citizen"].subject},
        {"valid": False, "reason": "revoked", "signer": signers["revoked"].subject}]
    # the verification asked for none; nor does the delivery of the accepted dossier (checked at intake)
    assert any(a["service"]["id"] == VERIFY and "signature" not in a for a in accesses)

    console.sign_in("kiemtoan")
    csrf = console.csrf("/console/subjects")
    r = console.client.post("/console/subjects", data={"csrf": csrf, "personal_id": owner},
                            follow_redirects=False)
    page = console.client.get(r.headers["location"]).text
    # a cell a row: the accesses above, the API's report (an access too), maybe the delivery since
    assert "<th>Chữ ký số</th>" in page and page.count('<td class="signature">') > len(accesses)
    assert signers["citizen"].subject in page and signers["revoked"].subject in page
    assert "chứng thư đã bị thu hồi" in page  # the reason, in words
    console.client.cookies.set("lt_lang", "en")
    english = console.client.get(r.headers["location"]).text
    assert "certificate revoked" in english and "<th>Signature</th>" in english


def test_operator_retries_a_dead_delivery(console: Console) -> None:
    """A delivery the portal refused is dead; the operator retries it and it is delivered."""
    console.upstream_fails = True
    record = {"MaHoSo": "H60.23-20260101-0000007", "MaTTHC": "1.001193.000.00.00.H22", "TenTTHC": "Khai sinh",
              "ChuHoSo": "Nguyễn Văn An", "LoaiDoiTuong": "1", "NgayTiepNhan": "20260101090000",
              "NgayHenTra": "20260106170000", "TrangThaiHoSo": "2"}
    token = console.token(MOTCUA)
    r = console.client.post(f"/r1/{PUSH}", content=json.dumps(record),
                            headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"})
    assert r.status_code == 202, r.text
    delivery_id = r.json()["deliveryId"]
    _wait_state(console, delivery_id, "dead")
    console.sign_in("vanhanh")
    page = console.client.get("/console/deliveries?state=dead")
    assert delivery_id in page.text
    console.upstream_fails = False
    csrf = console.csrf("/console/deliveries?state=dead")
    r = console.client.post(f"/console/deliveries/{delivery_id}/retry", data={"csrf": csrf})
    assert r.status_code == 200 and 'id="done"' in r.text
    _wait_state(console, delivery_id, "delivered")
    assert any(r["operation"] == "deliveries.retry" and delivery_id in (r["purpose"] or "")
               for r in console.console_records())


def test_auditor_may_not_retry(console: Console) -> None:
    """A retry posted by an auditor is refused with 403."""
    console.sign_in("kiemtoan")
    csrf = console.csrf("/console/log")
    assert console.client.post("/console/deliveries/x/retry", data={"csrf": csrf}).status_code == 403


def test_overview_and_catalog(console: Console) -> None:
    """The overview draws its charts; the catalog lists services with the rules that apply."""
    token = console.token(PORTAL)
    console.verify_citizen(CITIZEN, token)
    console.sign_in("kiemtoan")
    page = console.client.get("/console/overview?window=7d&period=quarter")
    assert page.status_code == 200 and page.text.count("<svg") >= 2 and VERIFY in page.text
    one = console.client.get(f"/console/overview?service={VERIFY}")
    assert one.status_code == 200 and "G01 CSDLDC/XacThucThongTinCongDan" in one.text
    catalog = console.client.get("/console/catalog")
    assert "xac-thuc-cong-dan" in catalog.text and "Cơ sở dữ liệu quốc gia về dân cư" in catalog.text


def test_pages_carry_security_headers(console: Console) -> None:
    """No framing, no inline script, no caching of pages; the cookie is HttpOnly and SameSite."""
    r = console.client.get("/console/login")
    assert "script-src 'self'" in r.headers["content-security-policy"]
    assert r.headers["x-frame-options"] == "DENY" and r.headers["cache-control"] == "no-store"
    cookie = r.headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie and "Path=/console" in cookie


def _leaves(console: Console, subject: str) -> list[Any]:
    from gateway.storage.tables import audit_subjects

    with console.runtime.engine.connect() as conn:
        return list(conn.execute(sa.select(audit_leaves.c.leaf).join(
            audit_subjects, audit_subjects.c.idx == audit_leaves.c.idx).where(
            audit_subjects.c.subject == subject, audit_leaves.c.client != "console")).all())


def _wait_state(console: Console, delivery_id: str, state: str, timeout: float = 15) -> None:
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with console.runtime.engine.connect() as conn:
            got = conn.execute(sa.select(deliveries.c.state).where(deliveries.c.id == delivery_id)).scalar()
        if got == state:
            return
        time.sleep(0.05)
    raise AssertionError(f"delivery {delivery_id} is {got}, not {state}")


def test_entry_page_shows_the_path_and_query_the_client_sent(console: Console) -> None:
    token = console.token(PORTAL)
    body = json.dumps({"SoDinhDanh": CITIZEN, "HoVaTen": "A"})
    r = console.client.post(f"/r1/{VERIFY}?trace=on", content=body, headers={
        "Authorization": f"Bearer {token}", "Content-Type": "application/json",
        "X-Road-UserId": "VN-canbo.tran", "X-Road-Issue": "G22.99-20260101-0000001"})
    assert r.status_code == 200, r.text
    console.sign_in("kiemtoan")
    page = console.client.get("/console/log/0")
    found = re.search(r'id="entry-path">([^<]*)<', page.text)
    assert found and found.group(1) == "?trace=on"
