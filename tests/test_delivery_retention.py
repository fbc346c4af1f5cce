"""``delivery.retention_days``: settled deliveries older than the period lose their body and answer,
keep their metadata and digest, can no longer be retried or replayed; the purge is audited and the
log still verifies."""

from __future__ import annotations

import asyncio
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from click.testing import CliRunner, Result

from gateway.audit import query
from gateway.audit.log import AuditLog
from gateway.audit.service import AuditService
from gateway.cli import main
from gateway.delivery.retention import DAY_US, RetentionTimer, purge
from gateway.delivery.store import DeliveryStore
from gateway.delivery.tables import deliveries
from gateway.storage.db import create_engine, upgrade
from tests.audit_support import record
from tests.helpers import rest_only_config
from tests.test_delivery_writer_path import new

NOW = time.time_ns() // 1000
OLD = NOW - 40 * DAY_US
RECENT = NOW - 5 * DAY_US
# name: (state, delivered_us, updated_us); with 30 days' retention the *_old settled ones go
CASES = {"delivered_old": ("delivered", OLD, OLD), "delivered_recent": ("delivered", RECENT, RECENT),
         "dead_old": ("dead", None, OLD), "cancelled_old": ("cancelled", None, OLD),
         "pending_old": ("pending", None, OLD), "dead_recent": ("dead", None, RECENT)}
BLANKED = {"delivered_old", "dead_old", "cancelled_old"}


def run(*args: str) -> Result:
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


def setup_queue(url: str, tmp_path: Path) -> tuple[Path, DeliveryStore, dict[str, str]]:
    config, _ = rest_only_config(tmp_path, database=url, delivery={"retention_days": 30})
    upgrade(url)
    service = AuditService.open(config)
    service.log.append_many([record(i) for i in range(40)])
    service.checkpointer.make()
    store = DeliveryStore(create_engine(url))
    accepted = store.accept_many([new() for _ in CASES])
    ids = {name: a.id for name, a in zip(CASES, accepted, strict=True)}  # type: ignore[union-attr]
    with store.engine.begin() as conn:
        for name, (state, delivered_us, updated_us) in CASES.items():
            conn.execute(sa.update(deliveries).where(deliveries.c.id == ids[name]).values(
                state=state, delivered_us=delivered_us, updated_us=updated_us, created_us=OLD,
                response_status=200 if state == "delivered" else None,
                response=b'{"error_code": "00"}' if state == "delivered" else None))
    assert config.base_dir is not None
    return config.base_dir / "config.yaml", store, ids


def rows(store: DeliveryStore) -> dict[str, dict[str, Any]]:
    with store.engine.connect() as conn:
        return {r.id: dict(r._mapping) for r in conn.execute(sa.select(deliveries))}


def test_purge_blanks_settled_bodies_and_is_audited(database_url: str, tmp_path: Path) -> None:
    config, store, ids = setup_queue(database_url, tmp_path)
    before = rows(store)
    dry = run("deliveries", "purge", "--config", str(config), "--dry-run")
    assert dry.exit_code == 0 and "3 deliveries" in dry.output and "would be blanked" in dry.output
    assert rows(store) == before

    done = run("deliveries", "purge", "--config", str(config))
    assert done.exit_code == 0, done.output
    assert "3 deliveries settled more than 30 days ago blanked" in done.output
    after = rows(store)
    for name, delivery_id in ids.items():
        row, old = after[delivery_id], before[delivery_id]
        if name in BLANKED:
            assert row["body"] == b"" and row["response"] is None
            assert {k: v for k, v in row.items() if k not in ("body", "response")} == \
                {k: v for k, v in old.items() if k not in ("body", "response")}
        else:
            assert row == old, name
    shown = store.get(ids["delivered_old"])
    assert shown is not None and shown["bodyPurged"] is True and shown["response"] is None
    assert "bodyPurged" not in (store.get(ids["delivered_recent"]) or {})
    assert store.retry(ids=[ids["dead_old"]], state=None) == 0  # nothing left to send
    assert store.replay(ids=[ids["delivered_old"]]) == []
    assert store.retry(ids=[ids["dead_recent"]], state=None) == 1

    size = AuditLog(store.engine).size()
    last = query.entry(store.engine, size - 1)
    assert last is not None and b'"deliveries.purge"' in last.leaf and b"3 deliveries" in last.leaf
    verified = run("audit", "verify", "--config", str(config))
    assert verified.exit_code == 0, verified.output
    again = run("deliveries", "purge", "--config", str(config))
    assert again.exit_code == 0 and "0 deliveries" in again.output


def test_the_gateway_timer_purges_and_records(database_url: str, tmp_path: Path) -> None:
    _, store, ids = setup_queue(database_url, tmp_path)
    log = AuditLog(store.engine)
    log.start()
    try:
        size = log.size()
        done = asyncio.run(RetentionTimer(store.engine, log, 30).run_once())
        assert done is not None and done.count == 3
        assert log.size() == size + 1
        assert asyncio.run(RetentionTimer(store.engine, log, 30).run_once()).count == 0  # type: ignore[union-attr]
        assert log.size() == size + 1  # nothing blanked, nothing recorded
    finally:
        log.close()
    assert rows(store)[ids["delivered_recent"]]["body"] != b""


def test_without_a_period_nothing_is_purged(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'db.sqlite'}"
    config, _ = rest_only_config(tmp_path, database=url)
    assert config.delivery.retention_days is None
    result = run("deliveries", "purge", "--config", str(config.base_dir / "config.yaml"))
    assert result.exit_code == 2 and "delivery.retention_days" in result.output
    with pytest.raises(ValueError):
        rest_only_config(tmp_path / "bad", delivery={"retention_days": 0})


def test_purge_counts_in_chunks(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    url = f"sqlite:///{tmp_path / 'db.sqlite'}"
    _, store, _ = setup_queue(url, tmp_path)
    monkeypatch.setattr("gateway.delivery.retention.CHUNK", 2)
    assert purge(store.engine, 30).count == 3


def test_a_delivery_of_a_documents_parts_is_never_blanked_and_stays_retryable(database_url: str,
                                                                             tmp_path: Path) -> None:
    """A large edXML package's delivery holds no body (``body_document`` names the document's stored
    parts, gateway/documents/outbox.py): it is not taken for a blanked one, the purge leaves it, and
    it can be retried and replayed like any kept delivery."""
    config, store, _ = setup_queue(database_url, tmp_path)
    (accepted,) = store.accept_many([replace(new(), body=b"", body_sha256="ab" * 32,
                                             body_document="01a244a5e8419097a6c3f11a0565c1e9")])
    assert not isinstance(accepted, Exception)
    with store.engine.begin() as conn:
        conn.execute(sa.update(deliveries).where(deliveries.c.id == accepted.id).values(
            state="dead", updated_us=OLD))
    done = run("deliveries", "purge", "--config", str(config))
    assert done.exit_code == 0 and "3 deliveries" in done.output
    row = rows(store)[accepted.id]
    assert (row["body"], row["body_document"]) == (b"", "01a244a5e8419097a6c3f11a0565c1e9")
    assert "bodyPurged" not in (store.get(accepted.id) or {})
    assert store.retry(ids=[accepted.id], state=None) == 1
    with store.engine.begin() as conn:
        conn.execute(sa.update(deliveries).where(deliveries.c.id == accepted.id).values(state="delivered"))
    (replayed,) = store.replay(ids=[accepted.id])
    assert rows(store)[replayed]["body_document"] == "01a244a5e8419097a6c3f11a0565c1e9"
