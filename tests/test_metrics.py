"""/metrics: after a few exchanges the counters and histograms show them, by service, client and
outcome; the audit log's size, commits and latest checkpoint; the scope still guards it."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from gateway.app import create_app
from gateway.config import load_config
from gateway.metrics import MULTIPROC_ENV, observe_exchange, scrape
from gateway.storage.db import upgrade
from tests.test_delivery import MOTCUA, PUSH, Gateway, dossier, make_config

SCRAPER = "VN/GOV/000.00.00.G22/GIAMSAT"
Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


@pytest.fixture
def gateway(tmp_path: Path) -> Iterator[Gateway]:
    path, secrets = make_config(tmp_path)
    config = load_config(path)
    upgrade(config.database_url)
    with TestClient(create_app(config)) as client:
        yield Gateway(client, secrets, path)


def samples(text: str) -> Samples:
    """Every sample of a Prometheus text exposition, parsed by prometheus_client's own parser."""
    return {(s.name, frozenset(s.labels.items())): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def value(found: Samples, name: str, **labels: str) -> float:
    return found.get((name, frozenset(labels.items())), 0.0)


def scraped(gateway: Gateway) -> Samples:
    r = gateway.client.get("/metrics", headers={"Authorization": f"Bearer {gateway.token(SCRAPER)}"})
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("text/plain; version=0.0.4")
    return samples(r.text)


def test_exchanges_latency_and_audit_show_in_metrics(gateway: Gateway) -> None:
    before = scraped(gateway)
    ids = [gateway.push(PUSH, dossier(70 + i)).json()["deliveryId"] for i in range(3)]
    gateway.wait(ids)
    assert gateway.client.post(f"/r1/{PUSH}", content=b"{}").status_code == 401  # no token
    after = scraped(gateway)

    def grew(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    accepted = {"protocol": "rest", "service": PUSH, "client": MOTCUA, "outcome": "ok"}
    assert grew("lienthong_exchanges_total", **accepted) == 3
    delivered = {**accepted, "protocol": "delivery"}
    assert grew("lienthong_exchanges_total", **delivered) == 3
    refused = [k for k, v in after.items() if k[0] == "lienthong_exchanges_total"
               and ("client", "-") in k[1] and v > value(before, k[0], **dict(k[1]))]
    assert refused and all(("outcome", "ok") not in k[1] for k in refused)  # unauthenticated: "-"
    assert grew("lienthong_exchange_seconds_count", protocol="rest", service=PUSH) == 3
    assert grew("lienthong_exchange_seconds_bucket", protocol="rest", service=PUSH, le="+Inf") == 3
    assert grew("lienthong_exchange_seconds_sum", protocol="rest", service=PUSH) > 0
    assert grew("lienthong_upstream_seconds_count", service=PUSH) == 3
    assert grew("lienthong_audit_commit_leaves_count") >= 1
    assert grew("lienthong_audit_commit_leaves_sum") >= 6  # 3 accepted, 3 delivered, the refusal
    # SQLite: the process's one writer (gateway/storage/shared.py) took the write lock and said so
    for phase in ("wait", "held", "cpu"):
        assert grew("lienthong_db_write_lock_seconds_count", writer="shared", phase=phase) >= 1
    assert grew("lienthong_db_write_lock_seconds_sum", writer="shared", phase="held") > 0
    assert value(after, "lienthong_audit_leaves") >= value(before, "lienthong_audit_leaves") + 7
    assert ("lienthong_audit_checkpoint_size", frozenset()) in after
    assert value(after, "lienthong_deliveries", service=PUSH, state="delivered") == 3
    # no personal id, body or unverified claim in any label
    assert not any("MaHoSo" in v or "0010" in v for key in after for _, v in key[1])


def test_metrics_need_the_scope(gateway: Gateway) -> None:
    assert gateway.client.get("/metrics").status_code == 401
    r = gateway.client.get("/metrics", headers={"Authorization": f"Bearer {gateway.token(MOTCUA)}"})
    assert r.status_code == 403


def test_workers_are_summed_in_multiprocess_mode(tmp_path: Path) -> None:
    """With several workers every process counts into the shared folder and a scrape sums them; a
    process that counted in one (a fresh interpreter, as uvicorn's spawned workers are) shows."""
    import subprocess
    import sys

    env = {**os.environ, MULTIPROC_ENV: str(tmp_path)}
    code = ("from gateway.metrics import observe_exchange\n"
            "observe_exchange('rest', 'S', 'C', 'ok', 0.01, 2000)\n")
    for _ in range(2):
        subprocess.run([sys.executable, "-c", code], env=env, check=True)
    os.environ[MULTIPROC_ENV] = str(tmp_path)
    try:
        found = samples(scrape().decode())
    finally:
        del os.environ[MULTIPROC_ENV]
    labels = {"protocol": "rest", "service": "S", "client": "C", "outcome": "ok"}
    assert value(found, "lienthong_exchanges_total", **labels) == 2
    assert value(found, "lienthong_upstream_seconds_count", service="S") == 2
    observe_exchange("rest", "S", "C", "ok", 0.01, None)  # this process: not in multiprocess mode
    assert value(samples(scrape().decode()), "lienthong_exchanges_total", **labels) >= 1


def test_two_workers_answer_the_same_counts(tmp_path: Path) -> None:
    """``lienthong serve --workers 2``: whichever worker a scrape reaches, it sums both."""
    import httpx

    from tests.conftest import start_stack, stop

    stack, procs = start_stack(tmp_path, workers=2)
    try:
        for _ in range(6):
            assert httpx.post(f"{stack.base}/r1/{PUSH}", content=b"{}").status_code == 401
        token = stack.token(SCRAPER, "metrics")
        seen = set()
        for _ in range(4):
            r = httpx.get(f"{stack.base}/metrics", headers={"Authorization": f"Bearer {token}"})
            found = samples(r.text)
            seen.add(sum(v for (name, labels), v in found.items()
                          if name == "lienthong_exchanges_total" and ("client", "-") in labels))
        assert seen == {6}
    finally:
        stop(procs)


def test_state_gauges_read_the_database(database_url: str, tmp_path: Path) -> None:
    """The audit log's size and latest checkpoint, and the flows by state, on either database."""
    import sqlalchemy as sa

    from gateway.flows.tables import flows
    from gateway.metrics import StateCollector
    from tests.audit_support import filled

    log = filled(database_url, tmp_path, size=30, every=10)
    now = 1_790_000_000_000_000
    row = dict(client=MOTCUA, exchange_id="x", dossier=b"{}", subjects="[]", started_us=now,
               updated_us=now, deadline_us=now, overdue=False, next_us=now)
    with log.engine.begin() as conn:
        conn.execute(sa.insert(flows), [
            {**row, "id": "f1", "name": "khai-sinh", "dossier_code": "D1", "state": "running"},
            {**row, "id": "f2", "name": "khai-sinh", "dossier_code": "D2", "state": "running"},
            {**row, "id": "f3", "name": "khai-tu", "dossier_code": "D3", "state": "done"}])
    found = samples(scrape(StateCollector(log.engine)).decode())
    log.engine.dispose()
    assert value(found, "lienthong_audit_leaves") == 30
    assert value(found, "lienthong_audit_checkpoint_size") == 30
    assert value(found, "lienthong_audit_checkpoint_age_seconds") >= 0
    assert ("lienthong_audit_checkpoint_age_seconds", frozenset()) in found
    assert value(found, "lienthong_flows", flow="khai-sinh", state="running") == 2
    assert value(found, "lienthong_flows", flow="khai-tu", state="done") == 1
