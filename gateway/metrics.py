"""Prometheus metrics (docs/operations.md#metrics).

Counted where they happen, at the cost of a dictionary look-up and a few additions each:

- ``lienthong_exchanges_total{protocol, service, client, outcome}``: every exchange, once audited;
- ``lienthong_exchange_seconds{protocol, service}``: the whole exchange, from its arrival to its audit
  record's commit (so the rendering and the audit wait are in it);
- ``lienthong_upstream_seconds{service}``: the upstream call alone, for exchanges that made one;
- ``lienthong_audit_commit_leaves``: leaves per audit commit (its ``_count`` is the commits made);
- ``lienthong_db_write_lock_seconds{writer, phase}``: on SQLite, how long each writer waited for the
  database's one write lock (``phase="wait"``), held it (``"held"``), and computed while holding it
  (``"cpu"``, the holding thread's CPU time); the held sums of all writers over a span of time say
  how much of it the lock was busy, the cpu sums how much of that was work rather than waiting
  (for the disk, or for the GIL another thread of the process has).

Read from the database at scrape time, so that every process answers for the whole deployment:

- ``lienthong_audit_leaves``: the audit log's size;
- ``lienthong_audit_checkpoint_size``, ``lienthong_audit_checkpoint_age_seconds``: the latest signed
  checkpoint and how old it is (a growing age while the log grows: the checkpointer stopped);
- ``lienthong_flows{flow, state}``: joint-procedure flows by definition and state;
- the delivery queue's gauges (gateway/delivery/routes.py ``QueueCollector``).

Labels name services, clients and protocols: registered identifiers, never a personal id, body or a
caller's unverified claim (an unauthenticated caller counts as client ``-``, an unknown service as
``-``). Several worker processes (``lienthong serve --workers N``) share their counts through
prometheus-client's multiprocess mode: ``PROMETHEUS_MULTIPROC_DIR``, which ``lienthong serve`` sets to
a fresh folder when it starts more than one worker.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from gateway.storage.tables import audit_checkpoints, audit_head

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine

__all__ = ["AUDIT_COMMIT_LEAVES", "MULTIPROC_ENV", "REGISTRY", "StateCollector", "observe_exchange",
           "scrape", "write_lock_timers"]

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
NONE = "-"  # the label of an unknown service or an unauthenticated client
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

# This process's instruments: in their own registry (none of the library's process defaults), or,
# in multiprocess mode, in files the scrape sums over every worker.
REGISTRY = CollectorRegistry(auto_describe=True)

# Seconds: a verify call answers in milliseconds, a portal push may take seconds.
LATENCY = (0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)

EXCHANGES = Counter("lienthong_exchanges", "Exchanges by protocol, service, client and outcome",
                    ["protocol", "service", "client", "outcome"], registry=REGISTRY)
EXCHANGE_SECONDS = Histogram("lienthong_exchange_seconds", "Whole exchange: arrival to audit commit",
                             ["protocol", "service"], buckets=LATENCY, registry=REGISTRY)
UPSTREAM_SECONDS = Histogram("lienthong_upstream_seconds", "The upstream call of an exchange",
                             ["service"], buckets=LATENCY, registry=REGISTRY)
AUDIT_COMMIT_LEAVES = Histogram("lienthong_audit_commit_leaves", "Leaves per audit log commit",
                                buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024),
                                registry=REGISTRY)
WRITE_LOCK_SECONDS = Histogram("lienthong_db_write_lock_seconds",
                               "SQLite's write lock, by writer: waiting, holding, the holder's CPU",
                               ["writer", "phase"],
                               buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
                                        1.0, 2.5, 10.0),
                               registry=REGISTRY)


def write_lock_timers(writer: str) -> tuple[Any, Any, Any]:
    """The (wait, held, cpu) histograms of one writer of the SQLite write lock
    (gateway/storage/db.py)."""
    return (WRITE_LOCK_SECONDS.labels(writer, "wait"), WRITE_LOCK_SECONDS.labels(writer, "held"),
            WRITE_LOCK_SECONDS.labels(writer, "cpu"))


# The labelled children, by their labels: .labels() on every exchange costs a lock and a tuple more.
_children: dict[tuple[str, str, str, str], tuple[Any, Any, Any]] = {}


def observe_exchange(protocol: str, service: str | None, client: str | None, outcome: str,
                     seconds: float, upstream_us: int | None) -> None:
    """Count one exchange: ``service`` and ``client`` only when known (resolved, authenticated)."""
    key = (protocol, service or NONE, client or NONE, outcome)
    found = _children.get(key)
    if found is None:
        found = _children[key] = (EXCHANGES.labels(*key), EXCHANGE_SECONDS.labels(key[0], key[1]),
                                  UPSTREAM_SECONDS.labels(key[1]))
    found[0].inc()
    found[1].observe(seconds)
    if upstream_us is not None:
        found[2].observe(upstream_us / 1e6)


class StateCollector(Collector):
    """The audit log's size and latest checkpoint, and the flows by state, read when scraped."""

    def __init__(self, engine: Engine, flows: bool = True) -> None:
        self.engine = engine
        self.flows = flows

    def collect(self) -> Iterator[Metric]:
        leaves = GaugeMetricFamily("lienthong_audit_leaves", "Leaves in the audit log")
        size = GaugeMetricFamily("lienthong_audit_checkpoint_size",
                                 "Tree size of the latest signed checkpoint (0 when none)")
        age = GaugeMetricFamily("lienthong_audit_checkpoint_age_seconds",
                                "Age of the latest signed checkpoint (absent when none)")
        with self.engine.connect() as conn:
            head = conn.execute(sa.select(audit_head.c.size).where(audit_head.c.id == 1)).scalar()
            latest = conn.execute(sa.select(audit_checkpoints.c.size, audit_checkpoints.c.ts_us)
                                  .order_by(audit_checkpoints.c.size.desc()).limit(1)).first()
            flow_counts = self._flows(conn) if self.flows else []
        leaves.add_metric([], int(head or 0))
        size.add_metric([], int(latest.size) if latest is not None else 0)
        if latest is not None:
            age.add_metric([], max(0.0, time.time() - latest.ts_us / 1e6))
        yield from (leaves, size, age)
        if self.flows:
            gauge = GaugeMetricFamily("lienthong_flows", "Joint-procedure flows by definition and "
                                      "state", labels=["flow", "state"])
            for name, state, n in flow_counts:
                gauge.add_metric([name, state], n)
            yield gauge

    @staticmethod
    def _flows(conn: Any) -> list[tuple[str, str, int]]:
        from gateway.flows.tables import flows

        rows = conn.execute(sa.select(flows.c.name, flows.c.state, sa.func.count())
                            .group_by(flows.c.name, flows.c.state))
        return [(str(name), str(state), int(n)) for name, state, n in rows]


def scrape(*collectors: Collector) -> bytes:
    """The text exposition: this process's (or, in multiprocess mode, every worker's) instruments,
    then ``collectors`` read now."""
    registry = CollectorRegistry(auto_describe=False)
    path = os.environ.get(MULTIPROC_ENV)
    if path:
        from prometheus_client import multiprocess

        multiprocess.MultiProcessCollector(registry, path=path)  # type: ignore[no-untyped-call]
    else:
        registry.register(_Instruments())
    for collector in collectors:
        registry.register(collector)
    return generate_latest(registry)


class _Instruments(Collector):
    def collect(self) -> Iterator[Metric]:
        yield from REGISTRY.collect()
