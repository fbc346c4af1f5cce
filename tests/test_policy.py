"""Policies: deny by default, the first matching rule decides and is named."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.errors import Forbidden
from gateway.policy import DEFAULT_DENY, Policy, PolicyWatcher, Request, check_folder, subject_ids
from gateway.resources import policies_dir
from gateway.yamlfile import FileError

MOTCUA = "VN/GOV/000.00.00.H60/MOTCUA"  # Tuyên Quang's one-stop system
PORTAL = "VN/GOV/000.00.00.G22/DVCQG"
VERIFY = "VN/GOV/000.00.00.G01/CSDLDC/XacThucThongTinCongDan"
LOOKUP = "VN/GOV/000.00.00.G01/CSDLDC/TraCuuThongTinCongDan"


@pytest.fixture
def policy() -> Policy:
    return Policy.load(policies_dir())


def req(client: str, service: str, *, scopes: tuple[str, ...] = ("exchange",), user: str | None = "u",
        issue: str | None = "p") -> Request:
    return Request(client=client, service=service, operation=service.rsplit("/", 1)[1],
                   scopes=frozenset(scopes), user_id=user, issue=issue)


def test_allowed_call_names_its_rule(policy: Policy) -> None:
    """An allowed call names the rule that allowed it."""
    decision = policy.decide(req(MOTCUA, "VN/GOV/000.00.00.G22/DVCQG/DongBoHoSoMC"))
    assert decision.rule_name == "motcua-day-ho-so-len-cong"


def test_default_deny(policy: Policy) -> None:
    """A call no rule covers is refused by the default rule."""
    with pytest.raises(Forbidden) as info:
        policy.decide(req(MOTCUA, LOOKUP))
    assert info.value.rule == DEFAULT_DENY


def test_missing_scope_refused_by_the_rule(policy: Policy) -> None:
    """A token without the rule's scope is refused, naming the rule and the scope."""
    with pytest.raises(Forbidden) as info:
        policy.decide(req(PORTAL, VERIFY, scopes=()))
    assert info.value.rule == "xac-thuc-cong-dan"
    assert "insufficient_scope" in info.value.headers["WWW-Authenticate"]


@pytest.mark.parametrize(("user", "issue", "needs"), [(None, "p", "X-Road-UserId"),
                                                      ("u", None, "X-Road-Issue")])
def test_official_and_purpose_required(policy: Policy, user: str | None, issue: str | None,
                                       needs: str) -> None:
    """Rules that require the acting official or the purpose refuse calls without them."""
    with pytest.raises(Forbidden) as info:
        policy.decide(req(PORTAL, VERIFY, user=user, issue=issue))
    assert needs in info.value.detail


def test_subject_ids_are_found_in_nested_payloads() -> None:
    """Data subject ids are found at dotted paths, through lists."""
    payload = {"SoDinhDanh": "001060301193", "Cha": {"SoDinhDanh": "001050000001"},
               "Con": [{"SoDinhDanh": "001020000002"}, {"x": 1}]}
    assert subject_ids(payload, ["SoDinhDanh", "Cha.SoDinhDanh", "$.Con.SoDinhDanh"]) == [
        "001060301193", "001050000001", "001020000002"]


def test_bad_policy_file_names_line(tmp_path: Path) -> None:
    """A malformed rule is reported with file and line."""
    (tmp_path / "p.yaml").write_text("rules:\n  - name: a\n    services: [x]\n    clients: [y]\n"
                                     "  - name: b\n    services: []\n    clients: [y]\n")
    with pytest.raises(FileError) as info:
        Policy.load(tmp_path)
    assert info.value.line == 6 and "'b'" in info.value.message


def test_duplicate_rule_names_refused(tmp_path: Path) -> None:
    """Two rules may not share a name: decisions must name one rule."""
    (tmp_path / "p.yaml").write_text("rules:\n  - {name: a, services: [x], clients: [y]}\n"
                                     "  - {name: a, services: [z], clients: [y]}\n")
    with pytest.raises(FileError, match="already used"):
        Policy.load(tmp_path)


# -- groups, limits, fields: what a rule may say ----------------------------------------------------------

GROUPED = """groups:
  tinh: ["VN/GOV/000.00.00.H*/MOTCUA"]
rules:
  - name: by-group
    services: ["VN/GOV/000.00.00.G22/DVCQG/*"]
    groups: [tinh]
    rate_limit: {rate: 6, per: minute}
    quota: {limit: 100, per: day}
    response_fields: [error_code, HoSo.MaHoSo]
"""


def test_groups_name_clients(tmp_path: Path) -> None:
    """A rule may name a group of clients defined under 'groups:'."""
    (tmp_path / "p.yaml").write_text(GROUPED)
    policy = Policy.load(tmp_path)
    decision = policy.decide(req(MOTCUA, "VN/GOV/000.00.00.G22/DVCQG/DongBoHoSoMC"))
    assert decision.rule_name == "by-group"
    with pytest.raises(Forbidden):
        policy.decide(req(PORTAL, "VN/GOV/000.00.00.G22/DVCQG/DongBoHoSoMC"))


def test_decision_carries_limits_and_fields(tmp_path: Path) -> None:
    """The deciding rule's bucket, quota and compiled response fields come with the decision."""
    (tmp_path / "p.yaml").write_text(GROUPED)
    decision = Policy.load(tmp_path).decide(req(MOTCUA, "VN/GOV/000.00.00.G22/DVCQG/TraCuuHoSo"))
    assert decision.rate is not None and decision.rate.per_second == pytest.approx(0.1)
    assert decision.rate.burst == 6
    assert decision.quota is not None and decision.quota.limit == 100 and decision.quota.period == "day"
    assert decision.fields == {"error_code": {}, "HoSo": {"MaHoSo": {}}}
    assert decision.limit_key(MOTCUA, "S") == f"by-group|{MOTCUA}|S"


@pytest.mark.parametrize(("text", "line", "words"), [
    ("rules:\n  - name: a\n    services: [x]\n    groups: [nope]\n", 4, "unknown group"),
    ("rules:\n  - name: a\n    services: [x]\n", 2, "clients or groups"),
    ("rules:\n  - name: a\n    services: [x]\n    clients: [y]\n    rate_limit: {rate: 0}\n", 5, "rate"),
    ("rules:\n  - name: a\n    services: [x]\n    clients: [y]\n    quota: {limit: 5, per: week}\n", 5,
     "per"),
    ("rules:\n  - name: a\n    services: [x]\n    clients: [y]\n    response_fields: ['a..b']\n", 5,
     "dotted path"),
    ("rules:\n  - name: a\n    services: [x]\n    clients: [y]\n    colour: blue\n", 5, "colour"),
    ("groups:\n  g: []\nrules: []\n", 2, "no members"),
    ("rules: [\n", 2, "not valid YAML"),
    ("- just\n- a list\n", 1, "mapping"),
])
def test_problems_are_located(tmp_path: Path, text: str, line: int, words: str) -> None:
    """Each kind of mistake in a policy file is reported with its file, line and what is wrong."""
    (tmp_path / "p.yaml").write_text(text)
    policy, problems = check_folder(tmp_path)
    assert policy is None and problems
    assert problems[0].line == line and problems[0].path.endswith("p.yaml"), problems[0]
    assert words in str(problems[0]), problems[0]


def test_check_reports_every_problem(tmp_path: Path) -> None:
    """`policy check` reports the problems of every file, not just the first."""
    (tmp_path / "a.yaml").write_text("rules:\n  - name: a\n    services: []\n    clients: [y]\n")
    (tmp_path / "b.yaml").write_text("rules:\n  - name: b\n    services: [x]\n    clients: [y]\n"
                                     "    require_issue: maybe\n")
    _, problems = check_folder(tmp_path)
    assert [(Path(p.path).name, p.line) for p in problems] == [("a.yaml", 3), ("b.yaml", 5)]


def test_decision_cache_agrees_with_rules(policy: Policy) -> None:
    """The cached look-up gives the same rule as walking the rules, call after call."""
    services = ["VN/GOV/000.00.00.G22/DVCQG/DongBoHoSoMC", VERIFY, LOOKUP, "VN/GOV/000.00.00.H41/DANHMUC/x",
                "VN/GOV/000.00.00.H60/MOTCUA/NhanHoSo", "VN/GOV/000.00.00.X/Y/Z"]
    clients = [MOTCUA, PORTAL, "VN/GOV/000.00.00.H41/MOTCUA", "VN/GOV/000.00.00.G01/CSDLDC"]
    for _ in range(2):
        for client in clients:
            for service in services:
                op = service.rsplit("/", 1)[1]
                naive = next((r for r in policy.rules if r.matches(service, op, client,
                                                                   policy.clients_of(r))), None)
                assert policy.find(client, service, op) is naive


def test_explain_names_the_deciding_rule(policy: Policy) -> None:
    """explain walks the rules in order and names the one that decides, and why."""
    out = policy.explain(req(PORTAL, VERIFY, issue=None))
    assert out.deciding is not None and out.deciding.name == "xac-thuc-cong-dan"
    assert not out.allowed and "X-Road-Issue" in out.reason
    text = "\n".join(out.lines())
    assert "skip  motcua-day-ho-so-len-cong" in text and "MATCH xac-thuc-cong-dan" in text
    assert "response fields that may leave: TonTai" in text
    denied = policy.explain(req(MOTCUA, LOOKUP))
    assert denied.deciding is None and "default-deny" in denied.lines()[-1]


def test_demo_policies_hold_for_the_demo(policy: Policy) -> None:
    """The demo's rules: one-stop systems push to the portal, the portal verifies and looks up citizens
    (minimised), one-stop systems may verify but never look up, everyone reads the shared catalogue."""
    push = "VN/GOV/000.00.00.G22/DVCQG/DongBoHoSoMC"
    assert policy.decide(req("VN/GOV/000.00.00.H41/MOTCUA", push)).rule_name == "motcua-day-ho-so-len-cong"
    assert policy.decide(req(MOTCUA, VERIFY)).fields == {"TonTai": {}}
    lookup = policy.decide(req(PORTAL, LOOKUP))
    assert lookup.fields is not None and "DanToc" not in lookup.fields and "TonGiao" not in lookup.fields
    assert lookup.rate is not None and lookup.quota is not None
    for client, service in [(MOTCUA, LOOKUP), (PORTAL, push), ("VN/GOV/000.00.00.G01/CSDLDC", VERIFY)]:
        with pytest.raises(Forbidden) as info:
            policy.decide(req(client, service))
        assert info.value.rule == DEFAULT_DENY
    assert policy.decide(req("VN/GOV/000.00.00.G01/CSDLDC", "VN/GOV/000.00.00.H41/DANHMUC/echo"))


def test_watcher_reloads_valid_changes_and_keeps_the_old_on_errors(tmp_path: Path) -> None:
    """A changed policy folder is reloaded when valid; a broken edit is reported and not applied."""
    path = tmp_path / "p.yaml"
    path.write_text("rules:\n  - {name: a, services: [x], clients: [y]}\n")
    watcher = PolicyWatcher(tmp_path)
    assert watcher.poll() is None
    path.write_text("rules:\n  - {name: b, services: [x], clients: [y]}\n")
    fresh = watcher.poll()
    assert isinstance(fresh, Policy) and fresh.rules[0].name == "b"
    path.write_text("rules:\n  - {name: c, services: [], clients: [y]}\n  # broken\n")
    problems = watcher.poll()
    assert isinstance(problems, list) and problems[0].line == 2
    assert watcher.poll() is None


def test_policy_check_command(tmp_path: Path) -> None:
    """`lienthong policy check` prints file:line: problem and fails; passes on the demo policies."""
    from click.testing import CliRunner

    from gateway.cli import main

    ok = CliRunner().invoke(main, ["policy", "check", "--dir", str(policies_dir())])
    assert ok.exit_code == 0 and "10 rules, 2 groups: OK" in ok.output
    (tmp_path / "p.yaml").write_text("rules:\n  - name: a\n    services: [x]\n    groups: [g]\n")
    bad = CliRunner().invoke(main, ["policy", "check", "--dir", str(tmp_path)])
    assert bad.exit_code == 1
    assert f"{tmp_path / 'p.yaml'}:4: rule 'a': unknown group(s) g" in bad.output


def test_policy_explain_command() -> None:
    """`lienthong policy explain` tells which rule decides and why."""
    from click.testing import CliRunner

    from gateway.cli import main

    out = CliRunner().invoke(main, ["policy", "explain", "--dir", str(policies_dir()), "--client",
                                    "VN:GOV:000.00.00.G22:DVCQG", "--service", LOOKUP, "--scope", "exchange",
                                    "--user-id", "u", "--issue", "p"])
    assert out.exit_code == 0, out.output
    assert "decided by tra-cuu-cong-dan-cong-quoc-gia" in out.output and "ALLOWED" in out.output
    assert "rate limit: 10 per second, burst 20" in out.output


def test_running_gateway_reloads_policies(tmp_path: Path) -> None:
    """A running gateway applies a policy edit within token.refresh seconds, and keeps its rules when
    an edit is broken."""
    import time

    from fastapi.testclient import TestClient

    from gateway.app import create_app
    from gateway.storage.db import upgrade
    from tests.helpers import rest_only_config
    from tests.oauth_helpers import runtime

    folder = tmp_path / "policies"
    folder.mkdir()
    path = folder / "p.yaml"
    path.write_text("rules:\n  - {name: first, services: [x], clients: [y]}\n")
    config, _ = rest_only_config(tmp_path, policies_dir=str(folder))
    upgrade(config.database_url)

    def names(client: TestClient) -> list[str]:
        return [r.name for r in runtime(client).pipeline.policy.rules]

    def eventually(client: TestClient, expected: list[str]) -> bool:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if names(client) == expected:
                return True
            time.sleep(0.05)
        return False

    with TestClient(create_app(config)) as client:
        assert names(client) == ["first"]
        path.write_text("rules:\n  - {name: second, services: [x], clients: [y]}\n")
        assert eventually(client, ["second"])
        path.write_text("rules:\n  - {name: third, services: [], clients: [y]}\n")
        time.sleep(2.5)
        assert names(client) == ["second"]
