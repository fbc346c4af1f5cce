"""What the overview shows, computed from the audit log's index columns and leaves and from the
delivery queue: traffic per service and outcome over time, refusals, latency percentiles, upstream
health and the dossier KPIs (per recorded agency, or rolled up into the agencies current today:
gateway/delivery/stats.py). Pure reads; the console's own records (client ``console``) and the
operators' API and command-line actions (records without a service) are left out of the traffic
figures.
"""

from __future__ import annotations

import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import date
from typing import TYPE_CHECKING, Any

import orjson
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from gateway.audit.tree import as_bytes
from gateway.console.logquery import local_text
from gateway.storage.tables import audit_leaves

if TYPE_CHECKING:
    from gateway.agencies import Agencies

__all__ = ["CONSOLE_CLIENT", "WINDOWS", "Health", "Traffic", "health", "kpis", "percentile", "refusals",
           "traffic"]

CONSOLE_CLIENT = "console"
HOUR_US = 3_600_000_000
# window name -> (length, bucket), microseconds
WINDOWS = {"24h": (24 * HOUR_US, HOUR_US), "7d": (7 * 24 * HOUR_US, 6 * HOUR_US),
           "30d": (30 * 24 * HOUR_US, 24 * HOUR_US)}
LATENCY_SAMPLE = 20_000  # leaves read for the percentiles: the newest of the window


def now_us() -> int:
    return time.time_ns() // 1000


def percentile(values: list[int], q: float) -> int | None:
    """The nearest-rank percentile (q in 0..100) of ``values``; None for none."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, -(-len(ordered) * q // 100))
    return ordered[int(rank) - 1]


@dataclass
class Traffic:
    window: str
    start_us: int
    bucket_us: int
    buckets: list[int]  # bucket starts
    # service -> outcome -> counts per bucket
    series: dict[str, dict[str, list[int]]] = field(default_factory=dict)
    totals: Counter[str] = field(default_factory=Counter)  # outcome -> count
    p50_us: int | None = None
    p99_us: int | None = None
    latency: dict[str, tuple[int | None, int | None, int]] = field(default_factory=dict)  # service

    def bucket_labels(self) -> list[str]:
        seconds = self.bucket_us < 24 * HOUR_US
        return [local_text(b)[5:16] if seconds else local_text(b)[5:10] for b in self.buckets]

    def per_outcome(self) -> dict[str, list[int]]:
        out: dict[str, list[int]] = defaultdict(lambda: [0] * len(self.buckets))
        for by_outcome in self.series.values():
            for outcome, counts in by_outcome.items():
                out[outcome] = [a + b for a, b in zip(out[outcome], counts, strict=True)]
        return dict(out)

    def per_service(self) -> list[tuple[str, Counter[str]]]:
        rows = [(service, Counter({o: sum(c) for o, c in by.items()}))
                for service, by in self.series.items()]
        return sorted(rows, key=lambda r: -sum(r[1].values()))


def traffic(engine: Engine, window: str = "24h", now: int | None = None) -> Traffic:
    length, step = WINDOWS.get(window, WINDOWS["24h"])
    now = now_us() if now is None else now
    end = (now // step + 1) * step
    start = end - length
    t = audit_leaves
    bucket = (t.c.ts_us // step).label("b")
    # Exchanges only: the console's own records, and the operators' API and command-line actions
    # (gateway/spine.py, gateway/cli_spine.py: no service), are not traffic.
    outside_console = sa.and_(sa.or_(t.c.client.is_(None), t.c.client != CONSOLE_CLIENT),
                              t.c.service.is_not(None))
    query = (sa.select(bucket, t.c.service, t.c.outcome, sa.func.count().label("n"))
             .where(t.c.ts_us >= start, t.c.ts_us < end, outside_console)
             .group_by(bucket, t.c.service, t.c.outcome))
    buckets = list(range(start, end, step))
    result = Traffic(window=window if window in WINDOWS else "24h", start_us=start, bucket_us=step,
                     buckets=buckets)
    with engine.connect() as conn:
        for r in conn.execute(query):
            slot = int(r.b) - start // step
            if not 0 <= slot < len(buckets):
                continue
            service = r.service or "-"
            counts = result.series.setdefault(service, {}).setdefault(r.outcome, [0] * len(buckets))
            counts[slot] += int(r.n)
            result.totals[r.outcome] += int(r.n)
        sample = conn.execute(sa.select(t.c.service, t.c.leaf)
                              .where(t.c.ts_us >= start, t.c.ts_us < end, outside_console)
                              .order_by(t.c.idx.desc()).limit(LATENCY_SAMPLE)).all()
    every: list[int] = []
    by_service: dict[str, list[int]] = defaultdict(list)
    for service, leaf in sample:
        try:
            total = (orjson.loads(as_bytes(leaf)).get("timings") or {}).get("totalUs")
        except orjson.JSONDecodeError:
            continue
        if isinstance(total, int):
            every.append(total)
            by_service[service or "-"].append(total)
    result.p50_us, result.p99_us = percentile(every, 50), percentile(every, 99)
    result.latency = {s: (percentile(v, 50), percentile(v, 99), len(v)) for s, v in by_service.items()}
    return result


def refusals(engine: Engine, since_us: int, limit: int = 10) -> tuple[list[dict[str, Any]], Counter[str]]:
    """The latest refused calls and the count of refusals by error code since ``since_us``."""
    t = audit_leaves
    cond = sa.and_(t.c.outcome == "refused", t.c.ts_us >= since_us,
                   sa.or_(t.c.client.is_(None), t.c.client != CONSOLE_CLIENT))
    with engine.connect() as conn:
        latest = conn.execute(sa.select(t.c.idx, t.c.ts_us, t.c.client, t.c.service, t.c.status,
                                        t.c.rule, t.c.leaf)
                              .where(cond).order_by(t.c.idx.desc()).limit(limit)).all()
        codes = conn.execute(sa.select(t.c.status, sa.func.count()).where(cond).group_by(t.c.status)).all()
    rows = []
    for r in latest:
        error = orjson.loads(as_bytes(r.leaf)).get("error")
        rows.append({"idx": r.idx, "time": local_text(r.ts_us), "client": r.client, "service": r.service,
                     "status": r.status, "rule": r.rule, "error": error})
    return rows, Counter({str(status): int(n) for status, n in codes})


@dataclass(frozen=True)
class Health:
    service: str
    state: str  # "up", "degraded", "down", "idle"
    calls: int
    failed: int
    last_ok: str | None
    last_failure: str | None
    queued: int = 0
    dead: int = 0


def health(engine: Engine, services: list[str], queue: list[dict[str, Any]] | None = None,
           minutes: int = 15, now: int | None = None) -> list[Health]:
    """Each upstream's state over the last ``minutes``: calls that reached it or failed there
    (outcome ``failed``: 5xx, timeouts, refusals by the upstream) against the rest."""
    now = now_us() if now is None else now
    since = now - minutes * 60_000_000
    t = audit_leaves
    with engine.connect() as conn:
        counts = conn.execute(sa.select(t.c.service, t.c.outcome, sa.func.count(), sa.func.max(t.c.ts_us))
                              .where(t.c.ts_us >= since, t.c.service.in_(services))
                              .group_by(t.c.service, t.c.outcome)).all()
    seen: dict[str, dict[str, tuple[int, int]]] = defaultdict(dict)
    for service, outcome, n, last in counts:
        seen[service][outcome] = (int(n), int(last))
    waiting: Counter[str] = Counter()
    dead: Counter[str] = Counter()
    for row in queue or []:
        if row["state"] == "pending":
            waiting[row["service"]] += int(row["n"])
        elif row["state"] == "dead":
            dead[row["service"]] += int(row["n"])
    out = []
    for service in services:
        by = seen.get(service, {})
        ok_n, ok_last = by.get("ok", (0, 0))
        fail_n, fail_last = by.get("failed", (0, 0))
        calls = ok_n + fail_n + by.get("refused", (0, 0))[0]
        if ok_n + fail_n == 0:
            state = "idle"
        elif fail_n == 0:
            state = "up"
        elif ok_n == 0 or (fail_last > ok_last and fail_n >= ok_n):
            state = "down"
        else:
            state = "degraded"
        out.append(Health(service, state, calls, fail_n, local_text(ok_last) if ok_last else None,
                          local_text(fail_last) if fail_last else None, waiting[service], dead[service]))
    return out


def kpis(engine: Engine, agencies: Agencies | None, period: str, *, rollup: bool = False,
         day: date | None = None) -> list[dict[str, Any]]:
    """The dossier KPIs per agency and period (``stats.report``): per recorded agency, a former
    one's marked with its successor, or (``rollup``) summed into the agencies current on ``day``."""
    from gateway.delivery import stats

    return stats.report(engine, period=period, rollup=rollup, agencies=agencies, day=day)
