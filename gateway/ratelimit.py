"""Rate limits (token bucket) and quotas (calls per calendar period), per client and service.

A policy rule may carry a ``rate_limit`` (a bucket of ``burst`` calls refilled at ``rate`` calls per
second) and a ``quota`` (at most ``limit`` calls per minute, hour, day or month, counted in the
calendar of Asia/Ho_Chi_Minh). The pipeline asks a ``Limiter`` to admit each call under a key naming
the rule, the client and the service, and refuses with 429 and ``Retry-After`` when it may not.

Two limiters: ``LocalLimiter`` keeps the counters in the process (the default: a limit then holds
per worker process), ``RedisLimiter`` in Redis, updated by one Lua script per call (atomic, using
Redis's clock for the bucket), so that a limit holds across worker processes and nodes. A Redis
that cannot be reached fails the call closed with 503, never open.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any, Literal, Protocol

from gateway.errors import ServerError

Period = Literal["minute", "hour", "day", "month"]
_SECONDS: dict[str, int] = {"second": 1, "minute": 60, "hour": 3600, "day": 86400}
VN_OFFSET = 7 * 3600  # Asia/Ho_Chi_Minh is UTC+7 all year round
_VN = timezone(timedelta(hours=7))


class LimiterUnavailable(ServerError):
    status = 503
    title = "Rate limiter unavailable"
    code = "Server.LimiterUnavailable"
    type_slug = "limiter-unavailable"


@dataclass(frozen=True, slots=True)
class Rate:
    """A token bucket: ``burst`` calls at once, refilled at ``per_second`` calls per second."""

    per_second: float
    burst: int


@dataclass(frozen=True, slots=True)
class Quota:
    limit: int
    period: Period


@dataclass(frozen=True, slots=True)
class Verdict:
    allowed: bool
    retry_after: float = 0.0
    exceeded: Literal["rate", "quota"] | None = None


ADMITTED = Verdict(True)


def period_window(period: Period, now: float) -> tuple[str, float]:
    """The calendar period ``now`` falls in (an id for keys) and the seconds until it ends."""
    if period == "month":
        local = datetime.fromtimestamp(now, _VN)
        start_next = (local.replace(day=28) + timedelta(days=4)).replace(
            day=1, hour=0, minute=0, second=0, microsecond=0)
        return f"m{local:%Y%m}", start_next.timestamp() - now
    length = _SECONDS[period]
    index = math.floor((now + VN_OFFSET) / length)
    return f"{period[0]}{index}", (index + 1) * length - (now + VN_OFFSET)


class Limiter(Protocol):
    async def admit(self, key: str, rate: Rate | None, quota: Quota | None) -> Verdict: ...

    async def aclose(self) -> None: ...


class LocalLimiter:
    """Counters in this process: exact within it, per process across workers."""

    _MAX_KEYS = 100_000

    def __init__(self, clock: Any = time.monotonic, wall: Any = time.time) -> None:
        self._clock = clock
        self._wall = wall
        self._buckets: dict[str, list[float]] = {}  # key -> [tokens, last refill]
        self._counts: dict[str, tuple[str, int]] = {}  # key -> (period, calls in it)

    async def admit(self, key: str, rate: Rate | None, quota: Quota | None) -> Verdict:
        return self.admit_now(key, rate, quota)

    def admit_now(self, key: str, rate: Rate | None, quota: Quota | None) -> Verdict:
        window, used = "", 0
        if quota is not None:
            window, remaining = period_window(quota.period, self._wall())
            counted = self._counts.get(key)
            used = counted[1] if counted is not None and counted[0] == window else 0
            if used >= quota.limit:
                return Verdict(False, remaining, "quota")
        if rate is not None:
            now = self._clock()
            bucket = self._buckets.get(key)
            if bucket is None:
                if len(self._buckets) >= self._MAX_KEYS:  # idle buckets are full: forgetting is exact
                    self._buckets = {k: b for k, b in self._buckets.items() if now - b[1] < 3600}
                bucket = self._buckets[key] = [float(rate.burst), now]
            tokens = min(float(rate.burst), bucket[0] + (now - bucket[1]) * rate.per_second)
            bucket[1] = now
            if tokens < 1.0:
                bucket[0] = tokens
                return Verdict(False, (1.0 - tokens) / rate.per_second, "rate")
            bucket[0] = tokens - 1.0
        if window:
            self._counts[key] = (window, used + 1)
        return ADMITTED

    async def aclose(self) -> None:
        return None


# KEYS[1]: the bucket; KEYS[2]: the quota counter of the current period (may be unused).
# ARGV: refill rate per second (0: no bucket), burst, quota limit (0: no quota), quota key TTL.
# Returns {verdict, retry_after}: verdict 0 admitted, 1 rate exceeded, 2 quota exceeded.
_SCRIPT = """
local rate = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local qlimit = tonumber(ARGV[3])
if qlimit > 0 then
  local used = tonumber(redis.call('GET', KEYS[2]) or '0')
  if used >= qlimit then return {2, '0'} end
end
if rate > 0 then
  local t = redis.call('TIME')
  local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
  local state = redis.call('HMGET', KEYS[1], 'tokens', 'ts')
  local tokens = tonumber(state[1])
  local ts = tonumber(state[2])
  if tokens == nil or ts == nil then tokens = burst; ts = now end
  tokens = math.min(burst, tokens + math.max(0, now - ts) * rate)
  local ttl = math.ceil(burst / rate * 1000) + 1000
  if tokens < 1 then
    redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'ts', tostring(now))
    redis.call('PEXPIRE', KEYS[1], ttl)
    return {1, tostring((1 - tokens) / rate)}
  end
  redis.call('HSET', KEYS[1], 'tokens', tostring(tokens - 1), 'ts', tostring(now))
  redis.call('PEXPIRE', KEYS[1], ttl)
end
if qlimit > 0 then
  local n = redis.call('INCR', KEYS[2])
  if n == 1 then redis.call('EXPIRE', KEYS[2], tonumber(ARGV[4])) end
end
return {0, '0'}
"""


class RedisLimiter:
    """Counters in Redis: one limit across every worker process and node."""

    PREFIX = "lienthong:limit:"

    def __init__(self, url: str, *, client: Any = None) -> None:
        import redis.asyncio as aioredis

        self._redis = client if client is not None else aioredis.from_url(
            url, socket_timeout=2, socket_connect_timeout=2)
        self._script = self._redis.register_script(_SCRIPT)

    async def admit(self, key: str, rate: Rate | None, quota: Quota | None) -> Verdict:
        from redis.exceptions import RedisError

        qkey, ttl, remaining = "", 0, 0.0
        if quota is not None:
            window, remaining = period_window(quota.period, time.time())
            qkey, ttl = f"{self.PREFIX}q:{key}|{window}", int(remaining) + 60
        try:
            verdict, retry = await self._script(
                keys=[f"{self.PREFIX}b:{key}", qkey or f"{self.PREFIX}q:-"],
                args=[rate.per_second if rate else 0, rate.burst if rate else 0,
                      quota.limit if quota else 0, ttl])
        except (RedisError, OSError) as exc:
            raise LimiterUnavailable("the rate limiter (Redis) cannot be reached; the call is "
                                     "refused rather than let through unlimited") from exc
        if int(verdict) == 0:
            return ADMITTED
        if int(verdict) == 2:
            return Verdict(False, remaining, "quota")
        return Verdict(False, float(retry), "rate")

    async def aclose(self) -> None:
        await self._redis.aclose()
