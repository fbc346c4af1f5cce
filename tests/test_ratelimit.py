"""Rate limits and quotas: the token bucket and calendar quotas in process, the same in Redis shared
by several limiters (processes), and a limit that holds across two gateway worker processes."""

from __future__ import annotations

import asyncio
import os
import shutil
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from datetime import datetime, timedelta, timezone
from pathlib import Path

import httpx
import pytest

from gateway.errors import GatewayError
from gateway.ratelimit import LimiterUnavailable, LocalLimiter, Quota, Rate, RedisLimiter, period_window
from gateway.resources import policies_dir
from tests.conftest import start_stack, stop
from tests.oauth_helpers import ECHO, MOTCUA_H41

REDIS_URL = os.environ.get("LIENTHONG_TEST_REDIS_URL", "")
needs_redis = pytest.mark.skipif(not REDIS_URL, reason="no Redis: set LIENTHONG_TEST_REDIS_URL or run "
                                 "'make test', which starts one")


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_bucket_allows_a_burst_then_the_rate() -> None:
    """A full bucket admits `burst` calls at once, then one per 1/rate seconds; Retry-After says when."""
    clock = Clock()
    limiter = LocalLimiter(clock=clock)
    rate = Rate(per_second=2.0, burst=3)
    assert [limiter.admit_now("k", rate, None).allowed for _ in range(4)] == [True, True, True, False]
    refused = limiter.admit_now("k", rate, None)
    assert refused.exceeded == "rate" and refused.retry_after == pytest.approx(0.5)
    clock.now += 0.5
    assert limiter.admit_now("k", rate, None).allowed
    assert not limiter.admit_now("k", rate, None).allowed
    clock.now += 100
    assert [limiter.admit_now("k", rate, None).allowed for _ in range(4)] == [True, True, True, False]


def test_buckets_are_per_key() -> None:
    """Each client and service has its own bucket."""
    limiter = LocalLimiter(clock=Clock())
    rate = Rate(1.0, 1)
    assert limiter.admit_now("a", rate, None).allowed and limiter.admit_now("b", rate, None).allowed
    assert not limiter.admit_now("a", rate, None).allowed


def test_quota_counts_per_calendar_period() -> None:
    """A quota admits `limit` calls per period and starts again in the next one; refusals don't count."""
    wall = Clock()
    wall.now = datetime(2026, 11, 21, 23, 59, 0, tzinfo=timezone(timedelta(hours=7))).timestamp()
    limiter = LocalLimiter(clock=Clock(), wall=wall)
    quota = Quota(2, "day")
    assert [limiter.admit_now("k", None, quota).allowed for _ in range(3)] == [True, True, False]
    refused = limiter.admit_now("k", None, quota)
    assert refused.exceeded == "quota" and refused.retry_after == pytest.approx(60)
    wall.now += 61  # midnight in Hà Nội
    assert limiter.admit_now("k", None, quota).allowed


def test_rate_refusal_does_not_spend_quota() -> None:
    """A call the bucket refuses is not counted against the quota."""
    limiter = LocalLimiter(clock=Clock(), wall=Clock())
    rate, quota = Rate(0.001, 1), Quota(2, "day")
    assert limiter.admit_now("k", rate, quota).allowed
    assert not limiter.admit_now("k", rate, quota).allowed
    assert limiter.admit_now("k", None, quota).allowed  # the second of two


@pytest.mark.parametrize(("period", "local", "left"), [
    ("minute", datetime(2026, 1, 1, 10, 0, 30), 30),
    ("hour", datetime(2026, 1, 1, 10, 59, 0), 60),
    ("day", datetime(2026, 1, 1, 23, 0, 0), 3600),
    ("month", datetime(2026, 1, 31, 23, 0, 0), 3600),
    ("month", datetime(2026, 12, 31, 23, 59, 0), 60),
])
def test_period_windows_follow_vietnam_time(period: str, local: datetime, left: float) -> None:
    """Quota periods are calendar periods in Asia/Ho_Chi_Minh (UTC+7)."""
    now = local.replace(tzinfo=timezone(timedelta(hours=7))).timestamp()
    window, remaining = period_window(period, now)  # type: ignore[arg-type]
    assert remaining == pytest.approx(left)
    assert period_window(period, now + remaining + 1)[0] != window  # type: ignore[arg-type]


# -- Redis ------------------------------------------------------------------------------------------------

@pytest.fixture
async def redis_pair() -> AsyncIterator[tuple[RedisLimiter, RedisLimiter]]:
    """Two limiters with their own connections: as two worker processes would have."""
    if not REDIS_URL:
        pytest.skip("no Redis: set LIENTHONG_TEST_REDIS_URL or run 'make test', which starts one")
    a, b = RedisLimiter(REDIS_URL), RedisLimiter(REDIS_URL)
    yield a, b
    await a.aclose()
    await b.aclose()


async def test_redis_bucket_is_shared(redis_pair: tuple[RedisLimiter, RedisLimiter]) -> None:
    """Two limiters on one Redis share the bucket: together they admit the burst, not twice it."""
    a, b = redis_pair
    key, rate = f"test|{uuid.uuid4()}", Rate(per_second=0.01, burst=4)
    verdicts = [await (a if i % 2 else b).admit(key, rate, None) for i in range(8)]
    assert [v.allowed for v in verdicts] == [True] * 4 + [False] * 4
    assert verdicts[-1].exceeded == "rate" and 90 < verdicts[-1].retry_after <= 100


async def test_redis_bucket_refills(redis_pair: tuple[RedisLimiter, RedisLimiter]) -> None:
    """The Redis bucket refills at its rate (by Redis's own clock)."""
    a, _ = redis_pair
    key, rate = f"test|{uuid.uuid4()}", Rate(per_second=20.0, burst=1)
    assert (await a.admit(key, rate, None)).allowed
    assert not (await a.admit(key, rate, None)).allowed
    await asyncio.sleep(0.06)
    assert (await a.admit(key, rate, None)).allowed


async def test_redis_quota_is_shared(redis_pair: tuple[RedisLimiter, RedisLimiter]) -> None:
    """A quota counted in Redis holds across limiters; refusals name the quota."""
    a, b = redis_pair
    key, quota = f"test|{uuid.uuid4()}", Quota(3, "day")
    verdicts = [await (a if i % 2 else b).admit(key, None, quota) for i in range(5)]
    assert [v.allowed for v in verdicts] == [True, True, True, False, False]
    assert verdicts[-1].exceeded == "quota" and verdicts[-1].retry_after > 0


async def test_redis_under_concurrency(redis_pair: tuple[RedisLimiter, RedisLimiter]) -> None:
    """Concurrent calls from two limiters never admit more than the burst (the script is atomic)."""
    a, b = redis_pair
    key, rate = f"test|{uuid.uuid4()}", Rate(per_second=0.001, burst=25)
    verdicts = await asyncio.gather(*((a if i % 2 else b).admit(key, rate, None) for i in range(100)))
    assert sum(v.allowed for v in verdicts) == 25


async def test_unreachable_redis_fails_closed() -> None:
    """When Redis cannot be reached the call is refused (503), never let through unlimited."""
    limiter = RedisLimiter("redis://127.0.0.1:1/0")
    with pytest.raises(LimiterUnavailable) as info:
        await limiter.admit("k", Rate(1, 1), None)
    assert isinstance(info.value, GatewayError) and info.value.status == 503
    await limiter.aclose()


# -- two worker processes ----------------------------------------------------------------------------------

@pytest.mark.slow
@needs_redis
def test_limit_holds_across_two_workers_with_redis(tmp_path: Path) -> None:
    """With Redis configured, a rule's burst holds across two gateway worker processes: of 24 calls
    on fresh connections exactly the burst passes, the rest get 429 with Retry-After; and a revoked
    token is refused by both workers within token.refresh seconds."""
    rule = f"e2e-burst-{uuid.uuid4().hex[:8]}"
    folder = tmp_path / "policies"
    shutil.copytree(policies_dir(), folder)
    (folder / "00-e2e.yaml").write_text(
        f"rules:\n  - name: {rule}\n    services: [VN/GOV/000.00.00.H41/DANHMUC/echo]\n"
        f"    clients: ['{MOTCUA_H41}']\n    scopes: [exchange]\n"
        "    rate_limit: {rate: 1, per: minute, burst: 6}\n")
    stack, procs = start_stack(tmp_path / "gw", workers=2,
                               overrides={"redis": REDIS_URL, "policies_dir": str(folder)})
    try:
        token = stack.token(MOTCUA_H41)
        statuses, retry = Counter[int](), []
        for i in range(24):
            with httpx.Client(base_url=stack.base, timeout=30) as fresh:  # a new connection each time
                r = fresh.post(ECHO, json={"i": i}, headers={"Authorization": f"Bearer {token}"})
            statuses[r.status_code] += 1
            if r.status_code == 429:
                retry.append(int(r.headers["retry-after"]))
                assert r.json()["rule"] == rule
        assert statuses == {200: 6, 429: 18}, statuses
        assert all(1 <= s <= 60 for s in retry)

        other = stack.token(MOTCUA_H41)
        r = httpx.post(f"{stack.base}/oauth/revoke", data={"token": other},
                       auth=(MOTCUA_H41, stack.secrets[MOTCUA_H41]))
        assert r.status_code == 200
        time.sleep(2.5)  # token.refresh (1 s) plus a tick
        for _ in range(8):
            with httpx.Client(base_url=stack.base, timeout=30) as fresh:
                r = fresh.post("/r1/VN/GOV/000.00.00.H41/DANHMUC/items", json={},
                               headers={"Authorization": f"Bearer {other}"})
            assert r.status_code == 401 and "revoked" in r.json()["detail"]
    finally:
        stop(procs)
