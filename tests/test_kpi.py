"""The dossier KPIs: periods, shares, on-time resolution, checked against a naive count."""

from __future__ import annotations

import random
from typing import Any

import pytest

from gateway.delivery.stats import bucket, compute


def row(agency: str, received: str | None, *, online: bool = False, status: int | None = 2,
        resolved: str | None = None, due: str | None = None) -> dict[str, Any]:
    return {"agency": agency, "received_at": received, "online": online, "status": status,
            "resolved_at": resolved, "due_at": due}


def test_buckets_by_month_quarter_year() -> None:
    """A moment falls in its month, quarter and year, in the portal's local time."""
    assert bucket("20260630235959", "month") == "2026-06"
    assert bucket("20260630235959", "quarter") == "2026-Q2"
    assert bucket("20261001000000", "quarter") == "2026-Q4"
    assert bucket("20260101000000", "year") == "2026" and bucket("20260101000000", "all") == "all"


def test_received_online_resolved_on_time() -> None:
    """Received counts by reception date, resolved by resolution date; shares are of each."""
    rows = [
        row("H22", "20260601080000", online=True, status=10, resolved="20260603090000",
            due="20260605170000"),
        row("H22", "20260602080000", status=9, resolved="20260710090000", due="20260705170000"),
        row("H22", "20260603080000", online=True, status=4),
        row("H41", "20260615080000", status=10, resolved="20260615090000", due="20260615090000"),
    ]
    got = {(k.agency, k.period): k.as_dict() for k in compute(rows, period="month")}
    june = got[("H22", "2026-06")]
    assert (june["received"], june["receivedOnline"], june["onlineShare"]) == (3, 2, 0.6667)
    assert (june["resolved"], june["resolvedOnTime"], june["onTimeShare"]) == (1, 1, 1.0)
    july = got[("H22", "2026-07")]
    assert (july["received"], july["onlineShare"], july["resolved"], july["onTimeShare"]) == (0, None, 1, 0.0)
    assert got[("H41", "2026-06")]["resolvedOnTime"] == 1  # on the due minute is on time


def test_window_and_unknown_period() -> None:
    """from is inclusive, to exclusive; an unknown period is refused."""
    rows = [row("H22", "20260601000000"), row("H22", "20260701000000")]
    (only,) = compute(rows, period="all", start="20260601000000", end="20260701000000")
    assert only.received == 1
    with pytest.raises(ValueError, match="period"):
        compute(rows, period="week")


def test_a_dossier_whose_status_went_back_is_not_resolved() -> None:
    """Only dossiers now at 9 or 10 count as resolved, whatever date they carry."""
    (k,) = compute([row("H22", "20260601000000", status=4, resolved="20260602000000")], period="all")
    assert k.resolved == 0


def test_compute_matches_a_naive_count() -> None:
    """Random dossiers: the per-month figures equal a count written the obvious way."""
    rng = random.Random(11)
    rows = []
    for _ in range(500):
        day = rng.randrange(1, 90)
        received = f"2026{1 + day // 30:02d}{1 + day % 28:02d}0800{rng.randrange(60):02d}"
        status = rng.choice([2, 4, 5, 9, 10])
        resolved = (f"2026{1 + (day + 3) // 30:02d}{1 + (day + 3) % 28:02d}1000{rng.randrange(60):02d}"
                    if status in (9, 10) else None)
        due = f"2026{1 + (day + 4) // 30:02d}{1 + (day + rng.choice([0, 4])) % 28:02d}170000"
        rows.append(row(rng.choice(["H22", "H41"]), received, online=rng.random() < 0.4, status=status,
                        resolved=resolved, due=due))
    got = {(k.agency, k.period): k for k in compute(rows, period="month")}
    for agency in ("H22", "H41"):
        for month in ("2026-01", "2026-02", "2026-03", "2026-04"):
            key = month.replace("-", "")
            mine = [r for r in rows if r["agency"] == agency]
            came = [r for r in mine if r["received_at"].startswith(key)]
            done = [r for r in mine if r["resolved_at"] and r["resolved_at"].startswith(key)]
            k = got.get((agency, month))
            if not came and not done:
                assert k is None
                continue
            assert k is not None
            assert k.received == len(came)
            assert k.received_online == sum(r["online"] for r in came)
            assert k.resolved == len(done)
            assert k.resolved_on_time == sum(r["resolved_at"] <= r["due_at"] for r in done)
