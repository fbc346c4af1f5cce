"""The delivery queue's pure parts: backoff, breaker, transitions, message facts, schemas, retryability."""

from __future__ import annotations

import json
import random
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from connectors.dvcqg import codes, data
from gateway.delivery.messages import dossier_code, facts, idempotency_key, portal_time, records
from gateway.delivery.retry import Breaker, backoff
from gateway.delivery.schema import SchemaValidator, json_path
from gateway.delivery.transitions import FINAL, impossible
from gateway.errors import (
    Forbidden,
    InvalidBody,
    RateLimited,
    ServerError,
    UpstreamError,
    UpstreamTimeout,
    UpstreamUnavailable,
)
from gateway.resources import schemas_dir


def test_backoff_grows_exponentially_with_jitter_up_to_the_cap() -> None:
    """Attempt n waits between half and all of base·2^(n-1), never more than the cap."""
    rng = random.Random(7)
    for attempt in range(1, 30):
        ceiling = min(60.0, 0.5 * 2 ** (attempt - 1))
        waits = [backoff(attempt, base=0.5, cap=60.0, rng=rng) for _ in range(200)]
        assert all(ceiling / 2 <= w < ceiling for w in waits)
        assert max(waits) - min(waits) > ceiling / 10  # jitter spreads them


def test_breaker_opens_after_consecutive_failures_and_probes_once() -> None:
    """Closed until the threshold; open claims nothing; half-open lets one probe through."""
    breaker = Breaker(threshold=3, cooldown=10, cooldown_max=40)
    for _ in range(2):
        breaker.failed(now=0)
    assert breaker.state(1) == "closed" and breaker.capacity(1, 8) == 8
    breaker.failed(now=1)
    assert breaker.state(5) == "open" and breaker.capacity(5, 8) == 0
    assert breaker.state(11) == "half-open"
    assert breaker.capacity(11, 8) == 1 and breaker.capacity(11, 8) == 0  # one probe at a time
    breaker.failed(now=12)  # the probe failed: open twice as long
    assert breaker.state(31) == "open" and breaker.state(32) == "half-open"
    assert breaker.capacity(32, 8) == 1
    breaker.succeeded()
    assert breaker.state(33) == "closed" and breaker.capacity(33, 8) == 8


def test_breaker_releases_an_unused_probe() -> None:
    """A probe reserved when nothing was due is given back."""
    breaker = Breaker(threshold=1, cooldown=1)
    breaker.failed(now=0)
    assert breaker.capacity(2, 4) == 1
    breaker.released()
    assert breaker.capacity(2, 4) == 1


@pytest.mark.parametrize(("error", "retryable"), [
    (UpstreamUnavailable("refused"), True), (UpstreamTimeout("slow"), True),
    (UpstreamError("HTTP 500"), True), (ServerError("crash"), True), (RateLimited("x", retry_after=1), True),
    (UpstreamError("[02]", retryable=False), False), (InvalidBody("bad", status=422), False),
    (Forbidden("no"), False),
])
def test_errors_say_whether_a_retry_may_help(error: Any, retryable: bool) -> None:
    """Server-side failures are retryable by default, client errors never; a connector may say no."""
    assert error.retryable is retryable


def test_portal_codes_sorted_into_retryable_and_permanent() -> None:
    """Only the portal's own failure and session trouble are worth another try."""
    assert set(codes.RETRYABLE) == {"10", "11", "99"}
    permanent = {codes.INVALID_REQUEST, codes.INVALID_DATA, codes.UNKNOWN_SERVICE, codes.NOT_FOUND,
                 codes.ALREADY_EXISTS}
    assert not permanent & codes.RETRYABLE


def test_every_transition_of_the_ten_statuses() -> None:
    """The table of impossible status changes, checked against a plain restatement of the rules."""
    for before in range(1, 11):
        for after in range(1, 11):
            expected = before != after and (
                before in FINAL or (before == 9 and after != 10) or after == 1
                or (before >= 4 and after in (2, 3)))
            assert (impossible(before, after) is not None) is expected, (before, after)
    assert "cannot become 4" in (impossible(10, 4) or "")
    assert impossible(None, 4) is None and impossible(4, None) is None


def test_records_of_every_request_shape() -> None:
    """One record, a list, or the portal's envelope: the same records come out."""
    one = {"MaHoSo": "A"}
    assert records(one) == records([one]) == records({"data": [one], "isUpdating": True}) == [one]


def test_one_dossier_per_async_request() -> None:
    """The code of the one dossier concerned; 422 for none or for several."""
    assert dossier_code([{"MaHoSo": " A "}, {"MaHoSo": "A"}]) == "A"
    for bad in ({"x": 1}, [{"MaHoSo": "A"}, {"MaHoSo": "B"}], {"data": []}):
        with pytest.raises(InvalidBody) as caught:
            dossier_code(bad)
        assert caught.value.status == 422


def test_idempotency_key_is_the_content_or_the_header() -> None:
    """Same client, service and content: same key; key order does not matter; a header overrides."""
    a = idempotency_key("c", "s", None, "A", {"MaHoSo": "A", "x": 1}, b"")
    assert a == idempotency_key("c", "s", None, "A", {"x": 1, "MaHoSo": "A"}, b"")
    assert a != idempotency_key("c", "s", None, "A", {"MaHoSo": "A", "x": 2}, b"")
    assert a != idempotency_key("other", "s", None, "A", {"MaHoSo": "A", "x": 1}, b"")
    keyed = idempotency_key("c", "s", "k1", "A", {"x": 1}, b"")
    assert keyed == idempotency_key("c", "s", "k1", "B", {"x": 2}, b"")


def test_dossier_facts_for_the_kpis() -> None:
    """Reception, due date, online form and resolution come from a dossier; a step dates resolution."""
    record = {**data.dossier(1, 1), "HinhThuc": "1", "TrangThaiHoSo": "10", "NgayKetThucXuLy":
              "2026-06-03T10:00:00+07:00"}
    (fact,) = facts("dossier", record)
    assert fact.received_at == record["NgayTiepNhan"] and fact.due_at == record["NgayHenTra"]
    assert fact.online is True and fact.status == 10 and fact.resolved_at == "20260603100000"
    step = data.progress(record, 3)
    (fact,) = facts("progress", step)
    assert fact.status == 9 and fact.resolved_at == step["ThoiDiemXuLy"] and fact.received_at is None


@pytest.mark.parametrize(("text", "portal"), [
    ("20260609083000", "20260609083000"), ("2026-06-09T08:30:00+07:00", "20260609083000"),
    ("2026-06-09T01:30:00Z", "20260609083000"), ("2026-06-09", "20260609000000"),
    ("20261309083000", None), ("tomorrow", None), ("", None),
])
def test_portal_time(text: str, portal: str | None) -> None:
    """Portal dates kept, ISO 8601 converted to Vietnamese time, anything else refused."""
    assert portal_time(text) == portal


def test_json_path() -> None:
    """Error paths read like JSONPath."""
    assert json_path(["data", 0, "MaHoSo"]) == "$.data[0].MaHoSo" and json_path([]) == "$"


@pytest.fixture(scope="module")
def dossier_schema() -> SchemaValidator:
    return SchemaValidator.load(schemas_dir() / "dvcqg" / "dossier.json")


def test_synthetic_dossiers_and_progress_are_valid() -> None:
    """Everything the simulators and the demo generate passes the schemas."""
    dossiers = SchemaValidator.load(schemas_dir() / "dvcqg" / "dossier.json")
    progress = SchemaValidator.load(schemas_dir() / "dvcqg" / "progress.json")
    for i in range(50):
        record = data.dossier(3, i)
        dossiers.validate(record)
        dossiers.validate([record])
        dossiers.validate({"data": [record], "isUpdating": "False", "madonvi": "000.00.00.H22"})
        for step in range(5):
            progress.validate(data.progress(record, step))


_FIELDS = ["MaHoSo", "MaTTHC", "ChuHoSo", "NgayTiepNhan", "NgayHenTra", "TrangThaiHoSo", "HinhThuc",
           "LoaiDoiTuong", "NgayTra", "TaiLieuNop"]
_VALUES = st.one_of(st.none(), st.booleans(), st.integers(-2, 12), st.text(max_size=16),
                    st.sampled_from(["20260609083000", "2026-06-09", "", "10", "1", "0"]),
                    st.lists(st.integers(), max_size=2))


@given(st.dictionaries(st.sampled_from(_FIELDS), _VALUES), st.sampled_from(["record", "list", "envelope"]))
def test_fast_and_full_validators_agree(dossier_schema: SchemaValidator, changes: dict[str, Any],
                                        shape: str) -> None:
    """fastjsonschema's verdict is jsonschema's: a mutated dossier is refused iff errors are listed."""
    record = {**data.dossier(5, 0), **changes}
    record = {k: v for k, v in record.items() if v is not None}
    payload: Any = {"record": record, "list": [record], "envelope": {"data": [record]}}[shape]
    errors = dossier_schema.errors(payload)
    try:
        dossier_schema.validate(payload)
        refused = False
    except InvalidBody as exc:
        refused = True
        assert exc.status == 422 and exc.extra["errors"] == errors
    assert refused is bool(errors), json.dumps(errors, ensure_ascii=False)


def test_an_answered_probe_closes_the_circuit() -> None:
    """Success, or a permanent refusal (the upstream answered), closes a half-open circuit."""
    breaker = Breaker(threshold=1, cooldown=1)
    breaker.failed(now=0)
    assert breaker.capacity(2, 4) == 1
    breaker.succeeded()
    assert breaker.state(2) == "closed" and breaker.capacity(2, 4) == 4
