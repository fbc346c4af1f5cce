"""One spine for every authenticated action (gateway/spine.py): the operator's and the auditor's API
calls are authenticated by the pipeline's own token check, authorised by scope (deny by default) and
audited, refusals included, each answer naming its record in ``X-Road-Id``; served by real processes."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from gateway.audit.record import EMPTY_SHA256
from gateway.config import load_config
from gateway.init import HA_GIANG, PORTAL, TUYEN_QUANG
from tests.conftest import Stack, start_stack, stop
from tests.oauth_helpers import forge
from tests.test_e2e import leaves_of

OPERATOR = f"{PORTAL}/GIAMSAT"  # given the operator's scopes below
AUDITOR = f"{PORTAL}/KIEMTOAN"
MOTCUA = f"{TUYEN_QUANG}/MOTCUA"
PERSON = "001099000123"


def _operator_scopes(raw: dict[str, Any]) -> None:
    raw["clients"] = [{**c, "scopes": ["operator", "stats", "metrics"]} if c["id"] == OPERATOR else c
                      for c in raw["clients"]]


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    running, procs = start_stack(tmp_path_factory.mktemp("spine"), edit=_operator_scopes)
    yield running
    stop(procs)


def _one_leaf(stack: Stack, answer: httpx.Response) -> dict[str, Any]:
    [leaf] = leaves_of(stack, answer.headers["X-Road-Id"])
    return leaf


@pytest.mark.parametrize("action", ["retry", "cancel", "replay"])
def test_operator_actions_leave_one_record_each(stack: Stack, action: str) -> None:
    """Retry, cancel and replay through the API are audited as the console's are: who, what, on
    which delivery, with what status."""
    token = stack.token(OPERATOR)
    r = httpx.post(f"{stack.base}/deliveries/01nosuchdelivery/{action}",
                   headers={"Authorization": f"Bearer {token}"})
    assert r.status_code == 200, r.text
    leaf = _one_leaf(stack, r)
    assert (leaf["protocol"], leaf["client"], leaf["operation"], leaf["purpose"], leaf["status"],
            leaf["outcome"]) == ("api", OPERATOR, f"deliveries.{action}", "01nosuchdelivery", 200, "ok")


def test_reads_are_audited_too(stack: Stack) -> None:
    """Listing deliveries, the KPIs and a metrics scrape each leave their record."""
    token = stack.token(OPERATOR)
    for path, action in [("/deliveries?state=dead", "deliveries.list"),
                         ("/stats/dossiers?period=year", "stats.dossiers"), ("/metrics", "metrics")]:
        r = httpx.get(f"{stack.base}{path}", headers={"Authorization": f"Bearer {token}"})
        assert r.status_code == 200, r.text
        leaf = _one_leaf(stack, r)
        assert (leaf["operation"], leaf["client"]) == (action, OPERATOR)
    assert leaf_purpose(stack, "/deliveries?state=dead", token) == "state=dead"


def leaf_purpose(stack: Stack, path: str, token: str) -> str | None:
    r = httpx.get(f"{stack.base}{path}", headers={"Authorization": f"Bearer {token}"})
    return _one_leaf(stack, r)["purpose"]  # type: ignore[no-any-return]


@pytest.mark.parametrize(("who", "status", "error"), [
    (None, 401, "Client.Unauthorized"),
    (MOTCUA, 403, "Client.AccessDenied"),  # an exchange token: no operator scope
])
def test_refusals_are_audited(stack: Stack, who: str | None, status: int, error: str) -> None:
    headers = {"Authorization": f"Bearer {stack.token(who)}"} if who else {}
    r = httpx.post(f"{stack.base}/deliveries/01x/retry", headers=headers)
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    leaf = _one_leaf(stack, r)
    assert (leaf["client"], leaf["operation"], leaf["outcome"], leaf["error"]) == (
        who, "deliveries.retry", "refused", error)


def test_a_subject_report_is_in_the_persons_own_report(stack: Stack) -> None:
    """Asking who saw a person's data is itself an access to it: the record names the person by
    keyed hash only, and keeps no digest of the body (a bare SHA-256 of a 12-digit id is easily
    reversed); the next report shows the first."""
    token = stack.token(AUDITOR, "audit.subject")
    ask = {"subject": PERSON}
    first = httpx.post(f"{stack.base}/audit/subject-report", json=ask,
                       headers={"Authorization": f"Bearer {token}"})
    assert first.status_code == 200, first.text
    leaf = _one_leaf(stack, first)
    assert leaf["operation"] == "audit.subject-report" and len(leaf["subjects"]) == 1
    assert PERSON not in str(leaf) and leaf["request"]["sha256"] == EMPTY_SHA256
    again = httpx.post(f"{stack.base}/audit/subject-report", json=ask,
                       headers={"Authorization": f"Bearer {token}"}).json()["accesses"]
    assert [(a["operation"], a["system"]["id"]) for a in again] == [("audit.subject-report", AUDITOR)]


def test_an_audit_search_by_person_names_the_person_by_hash(stack: Stack) -> None:
    """The entries search takes a personal id in its query: the record keeps the rest of the query
    as purpose and the person as a keyed hash."""
    token = stack.token(AUDITOR, "audit.read")
    r = httpx.get(f"{stack.base}/audit/entries", params={"subject": PERSON, "outcome": "ok"},
                  headers={"Authorization": f"Bearer {token}"})
    assert r.status_code == 200, r.text
    leaf = _one_leaf(stack, r)
    assert (leaf["operation"], leaf["purpose"]) == ("audit.entries", "outcome=ok")
    assert len(leaf["subjects"]) == 1 and PERSON not in str(leaf)


def test_a_client_reads_its_own_delivery_and_no_other(stack: Stack) -> None:
    """GET /deliveries/{id}: any authenticated client, its own deliveries only (404 otherwise),
    audited either way."""
    r = httpx.get(f"{stack.base}/deliveries/01nosuchdelivery",
                  headers={"Authorization": f"Bearer {stack.token(MOTCUA)}"})
    assert r.status_code == 404, r.text
    leaf = _one_leaf(stack, r)
    assert (leaf["operation"], leaf["client"], leaf["status"]) == ("deliveries.show", MOTCUA, 404)


def test_the_api_refuses_a_former_agencys_token_as_the_pipeline_does(stack: Stack) -> None:
    """One token check: a token of former Hà Giang's system, operator scope and all, is refused
    after Hà Giang's last day, naming Tuyên Quang."""
    token = forge(load_config(stack.config_path), sub=f"{HA_GIANG}/MOTCUA", client_id=f"{HA_GIANG}/MOTCUA",
                  scope="operator")
    r = httpx.get(f"{stack.base}/deliveries", headers={"Authorization": f"Bearer {token}"})
    assert r.status_code == 403, r.text
    assert TUYEN_QUANG in r.json()["detail"]
    assert _one_leaf(stack, r)["error"] == "Server.ClientProxy.UnknownMember"
