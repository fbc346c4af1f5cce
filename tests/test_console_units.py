"""The console's parts without a server: the catalogue, session cookies, accounts, search filters,
charts, OpenID Connect role mapping, and scripts/chromium.sh."""

from __future__ import annotations

import os
import re
import string
import subprocess
import time
from pathlib import Path

import pytest
import sqlalchemy as sa

from gateway.console import charts
from gateway.console.catalogue import MESSAGES
from gateway.console.i18n import translator
from gateway.console.logquery import Filters, parse_local, spreadsheet_safe
from gateway.console.oidc import role_from_claims
from gateway.console.permissions import PAGES, allowed
from gateway.console.sessions import Session, SessionCodec, load_or_create_key
from gateway.console.users import UserError, UserStore
from gateway.signatures.verdict import REASONS
from gateway.storage.db import create_engine

ROOT = Path(__file__).resolve().parent.parent
TEMPLATES = ROOT / "gateway" / "console" / "templates"
DYNAMIC = {  # prefixes templates join with a value, and every value they can take
    "nav.": PAGES.keys() - {"deliveries.act", "account"},
    "outcome.": ("ok", "refused", "failed"), "role.": ("auditor", "operator", "admin"),
    "window.": ("24h", "7d", "30d"), "period.": ("month", "quarter", "year"),
    "health.": ("up", "degraded", "down", "idle"), "state.": ("dead", "pending", "delivered", "cancelled"),
    "deliveries.done_": ("retried", "replayed"), "signature.reason.": REASONS,
}


def _fields(text: str) -> set[str]:
    return {name for _, name, _, _ in string.Formatter().parse(text) if name}


def test_every_text_has_both_languages_with_the_same_fields() -> None:
    """Each catalogue key has Vietnamese and English, and both take the same named values."""
    for key, texts in MESSAGES.items():
        assert set(texts) == {"vi", "en"}, key
        assert texts["vi"].strip() and texts["en"].strip(), key
        assert _fields(texts["vi"]) == _fields(texts["en"]), key


def test_every_key_the_pages_use_is_in_the_catalogue() -> None:
    """Templates and Python name only keys that exist (and the joined ones for every value)."""
    sources = [p.read_text() for p in TEMPLATES.glob("*.html")]
    sources += [p.read_text() for p in (ROOT / "gateway" / "console").glob("*.py")]
    used = set()
    for text in sources:
        used |= set(re.findall(r"""_\(\s*["']([a-z_0-9]+\.[a-z_0-9.]+)["']""", text))
        used |= set(re.findall(r"""["']((?:error|login)\.[a-z_]+)["']""", text))
    used -= {"error.html", "login.html"}
    for prefix, values in DYNAMIC.items():
        used |= {prefix + v for v in values}
    missing = sorted(k for k in used if k not in MESSAGES and not k.endswith(("_", ".")))
    assert not missing


def test_translator_falls_back_and_formats() -> None:
    """Vietnamese by default; an unknown language is Vietnamese; values fill the fields."""
    assert translator("xx")("nav.log") == "Nhật ký trao đổi"
    assert translator("en")("entry.title", idx=7) == "Entry 7"
    assert translator("en")("no.such.key") == "no.such.key"


def test_session_cookie_round_trip_and_tamper() -> None:
    """A cookie reads back as written; a changed byte, a foreign key or an expired session reads as none."""
    codec = SessionCodec(b"k" * 32)
    session = Session(username="an", role="auditor", epoch=3, expires=int(time.time()) + 60)
    cookie = codec.dumps(session)
    assert codec.loads(cookie) == session
    assert codec.loads(cookie[:-2] + ("A" if cookie[-2] != "A" else "B") + cookie[-1]) is None
    assert SessionCodec(b"x" * 32).loads(cookie) is None
    assert codec.loads(cookie, now=time.time() + 120) is None
    assert codec.loads("garbage") is None and codec.loads(None) is None
    assert Session().csrf != Session().csrf


def test_session_key_is_made_once_with_mode_0600(tmp_path: Path) -> None:
    """The key file is created on first use, private, and read back the same."""
    key = load_or_create_key(tmp_path)
    assert len(key) == 32 and load_or_create_key(tmp_path) == key
    assert (tmp_path / "console-session.key").stat().st_mode & 0o777 == 0o600


@pytest.fixture
def users(tmp_path: Path) -> UserStore:
    from gateway.storage.db import upgrade

    url = f"sqlite:///{tmp_path / 'c.db'}"
    upgrade(url)
    return UserStore(create_engine(url))


def test_accounts_hash_passwords_and_end_sessions(users: UserStore) -> None:
    """argon2id hashes; a wrong password, an unknown or disabled account all fail alike; changes bump
    the session epoch."""
    users.add("An.Nguyen", "auditor", "mot-mat-khau-dai", "Nguyễn An")
    with users.engine.connect() as conn:
        stored = conn.execute(sa.text("SELECT password_hash FROM console_users")).scalar_one()
    assert stored.startswith("$argon2id$") and "mot-mat-khau" not in stored
    user = users.authenticate("an.nguyen", "mot-mat-khau-dai")
    assert user is not None and user.role == "auditor" and user.epoch == 1
    assert users.authenticate("an.nguyen", "sai") is None and users.authenticate("nobody", "x") is None
    users.set_password("an.nguyen", "mat-khau-moi-dai-hon")
    assert users.get("an.nguyen").epoch == 2  # type: ignore[union-attr]
    users.set_enabled("an.nguyen", False)
    assert users.authenticate("an.nguyen", "mat-khau-moi-dai-hon") is None
    with pytest.raises(UserError):
        users.add("an.nguyen", "auditor", "mot-mat-khau-dai")
    with pytest.raises(UserError):
        users.add("x", "superuser", "mot-mat-khau-dai")
    with pytest.raises(UserError):
        users.add("short", "auditor", "123")


def test_roles_table() -> None:
    """Operators act on deliveries and do not read the log; auditors the reverse; admins both."""
    assert allowed("operator", "deliveries.act") and not allowed("operator", "log")
    assert allowed("auditor", "log") and not allowed("auditor", "deliveries.act")
    assert all(allowed("admin", page) for page in PAGES)
    assert not allowed(None, "overview")


def test_filters_round_trip_and_hold_only_a_hash() -> None:
    """Filters read from a query write the same query back; a subject that is not a hash is dropped."""
    subject = "ab" * 32
    query = {"from": "2026-06-01T08:00", "client": "VN/GOV/000.00.00.H22/MOTCUA", "outcome": "refused",
             "subject": subject, "before": "42"}
    filters = Filters.from_query(query)
    assert filters.params() == query
    assert Filters.from_query({"subject": "001203004567"}).subject == ""
    assert Filters.from_query({"outcome": "maybe"}).outcome == ""
    assert "before" not in filters.describe()
    audit = filters.for_audit()
    assert audit.subject == subject and audit.since_us == parse_local("2026-06-01T08:00")
    assert parse_local("2026-06-01T00:00") == 1780246800 * 1_000_000  # midnight in Hà Nội is 17:00 UTC


def test_csv_cells_cannot_be_formulas() -> None:
    """A cell a spreadsheet would run gets an apostrophe."""
    assert spreadsheet_safe("=HYPERLINK(1)") == "'=HYPERLINK(1)" and spreadsheet_safe("ok") == "ok"


def test_charts_escape_labels() -> None:
    """Labels and titles are escaped into the SVG."""
    svg = charts.stacked_columns(["<b>"], [("x&y", "#000", [3])], "t<i>")
    assert "<b>" not in svg and "&lt;b&gt;" in svg and "x&amp;y" in svg
    assert charts.hbars([("a", None, "–")], "t", "#000").count("<rect") == 1


def test_oidc_roles_from_claims() -> None:
    """The most powerful mapped role wins; unmapped or absent claims grant nothing."""
    roles = {"lt-audit": "auditor", "lt-ops": "operator"}
    assert role_from_claims({"roles": ["x", "lt-audit", "lt-ops"]}, "roles", roles) == "operator"
    assert role_from_claims({"roles": "lt-audit"}, "roles", roles) == "auditor"
    assert role_from_claims({"roles": ["x"]}, "roles", roles) is None
    assert role_from_claims({}, "roles", roles) is None and role_from_claims({"r": 1}, None, roles) is None


def _script(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["bash", "scripts/chromium.sh", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=60, check=False, env={**os.environ, **(env or {})})


def test_chromium_script() -> None:
    """It parses, uses LIENTHONG_TEST_CHROMIUM as is, and refuses an unknown command."""
    assert subprocess.run(["bash", "-n", "scripts/chromium.sh"], cwd=ROOT, check=False).returncode == 0
    for command in ((), ("path",)):
        result = _script(*command, env={"LIENTHONG_TEST_CHROMIUM": "/opt/x/chromium"})
        assert result.returncode == 0 and result.stdout == "/opt/x/chromium\n"
    bad = _script("frobnicate")
    assert bad.returncode == 2 and "usage:" in bad.stderr


def test_overview_and_search_queries_on_each_database(database_url: str) -> None:
    """Traffic buckets, refusals, health and the newest-first search run on SQLite and PostgreSQL."""
    from gateway.audit.log import AuditLog
    from gateway.audit.record import AuditRecord
    from gateway.console import logquery, overview

    engine = create_engine(database_url)
    now = time.time_ns() // 1000
    service = "VN/GOV/000.00.00.G01/CSDLDC/XacThucThongTinCongDan"
    records = [AuditRecord(exchange_id=f"x{i}", ts_us=now - i * 60_000_000, protocol="rest",
                           outcome=("ok", "refused", "failed")[i % 3], status=(200, 403, 502)[i % 3],
                           client="VN/GOV/000.00.00.G22/DVCQG", service=service, total_us=1000 * (i + 1),
                           subjects=("ab" * 32,) if i % 2 else ())
               for i in range(9)]
    records.append(AuditRecord(exchange_id="c", ts_us=now, protocol="console", outcome="ok", status=200,
                               client="console", user_id="kiemtoan", operation="log.search"))
    # The operators' API and command-line actions are audited, but they are not traffic.
    records.append(AuditRecord(exchange_id="a", ts_us=now, protocol="api", outcome="ok", status=200,
                               client="VN/GOV/000.00.00.G22/KIEMTOAN", operation="audit.entries"))
    records.append(AuditRecord(exchange_id="l", ts_us=now, protocol="cli", outcome="ok", status=200,
                               client="cli", user_id="root@host", operation="clients.disable"))
    AuditLog(engine).append_many(records)
    traffic = overview.traffic(engine, "24h")
    assert sum(traffic.totals.values()) == 9 and traffic.totals["refused"] == 3
    assert traffic.p50_us == 5000 and traffic.p99_us == 9000
    refused, by_status = overview.refusals(engine, now - 3_600_000_000)
    assert len(refused) == 3 and by_status == {"403": 3}
    [health] = overview.health(engine, [service])
    assert health.calls == 9 and health.failed == 3 and health.state in ("degraded", "down")
    rows, more = logquery.search(engine, Filters(subject="ab" * 32), limit=2)
    assert [r.idx for r in rows] == [7, 5] and more == 5
    rows, _ = logquery.search(engine, Filters(console=True), limit=20)
    assert len(rows) == 12
    assert [e.index for e in logquery.export_rows(engine, Filters(outcome="failed"))] == [2, 5, 8]
    engine.dispose()


def test_demo_accounts_and_hint(tmp_path: Path) -> None:
    """The demo makes an auditor and an operator whose printed passwords work, again on a rerun."""
    from gateway.console.demo import console_hint, demo_accounts
    from gateway.storage.db import upgrade

    url = f"sqlite:///{tmp_path / 'demo.db'}"
    upgrade(url)
    first = demo_accounts(url)
    again = demo_accounts(url)
    assert set(first) == {"kiemtoan", "vanhanh"} and first != again
    store = UserStore(create_engine(url))
    assert store.authenticate("kiemtoan", again["kiemtoan"]) is not None
    assert store.authenticate("kiemtoan", first["kiemtoan"]) is None
    hint = console_hint("http://127.0.0.1:1", url, "001203004567")
    assert "http://127.0.0.1:1/console/" in hint and "001203004567" in hint and "vanhanh" in hint
