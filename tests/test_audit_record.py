"""Leaves: the fast canonical JSON is byte for byte RFC 8785, and times are exact."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import orjson
import pytest
import rfc8785
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.audit.record import AuditRecord, BodyDigest, canonical_json, leaf_time

TEXT = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=40)
OPTIONAL = st.none() | TEXT
SIZE = st.integers(min_value=0, max_value=2**53 - 1)
DIGEST = st.builds(BodyDigest, st.from_regex(r"[0-9a-f]{64}", fullmatch=True), SIZE)


@settings(max_examples=300)
@given(st.builds(
    AuditRecord, exchange_id=TEXT, ts_us=st.integers(-(2**50), 2**52), protocol=TEXT,
    outcome=st.sampled_from(["ok", "refused", "failed"]), status=st.integers(100, 599),
    client=OPTIONAL, user_id=OPTIONAL, represented_party=OPTIONAL, purpose=OPTIONAL, service=OPTIONAL,
    operation=OPTIONAL, rule=OPTIONAL, error=OPTIONAL, total_us=SIZE, upstream_us=st.none() | SIZE,
    request=DIGEST, response=DIGEST, upstream_request=st.none() | DIGEST,
    upstream_response=st.none() | DIGEST, subjects=st.lists(TEXT, max_size=3).map(tuple)))
def test_leaf_is_exactly_rfc8785(record: AuditRecord) -> None:
    """Any record's leaf equals the reference JCS encoder's bytes for the same document."""
    leaf = record.leaf()
    assert leaf == rfc8785.dumps(orjson.loads(leaf))


def test_numbers_beyond_json_safety_are_refused() -> None:
    """An integer a JSON number cannot hold exactly goes to the reference encoder, which refuses."""
    with pytest.raises(rfc8785.IntegerDomainError):
        canonical_json({"n": 2**60}, [2**60])


@given(st.integers(-(2**55), 2**55))
def test_leaf_time_is_exact(ts_us: int) -> None:
    """The leaf's time is the microsecond given, in UTC, RFC 3339 with a Z."""
    expected = datetime(1970, 1, 1, tzinfo=UTC) + timedelta(microseconds=ts_us)
    text = leaf_time(ts_us)
    assert text.endswith("Z") and datetime.fromisoformat(text[:-1] + "+00:00") == expected
