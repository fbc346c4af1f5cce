"""Policies: deny by default, the first matching rule decides and is named."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.errors import Forbidden
from gateway.policy import DEFAULT_DENY, Policy, Request, subject_ids
from gateway.resources import policies_dir
from gateway.yamlfile import FileError

MOTCUA = "VN/GOV/000.00.00.H22/MOTCUA"
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
