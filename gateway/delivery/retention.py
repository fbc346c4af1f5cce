"""Retention of delivered dossier bodies (``delivery.retention_days``).

A delivery's body is the dossier as its client pushed it, with the citizen's personal data, and its
``response`` the upstream's answer. Once a delivery is settled (delivered, cancelled or dead) more
than ``retention_days`` ago, both are blanked: the body becomes empty, the response null. The row
stays with its metadata and ``body_sha256``, so the delivery can still be listed, counted and matched
to the audit log, which never held the body. A blanked delivery cannot be retried or replayed (the
queue skips it).

The purge runs hourly in every gateway process that runs delivery workers (idempotent: another
process finds nothing left to blank), and as ``lienthong deliveries purge``. Each purge that blanks
anything is one audit record (operation ``deliveries.purge``, the count and the cut-off as purpose).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

import anyio
import sqlalchemy as sa
import structlog
from sqlalchemy.engine import Engine

from gateway.delivery.model import CANCELLED, DEAD, DELIVERED
from gateway.delivery.tables import deliveries
from gateway.ids import new_id
from gateway.storage.db import WriteLock

if TYPE_CHECKING:
    from gateway.audit.log import AuditLog

__all__ = ["EMPTY_SHA256", "PURGE_EVERY", "Purge", "RetentionTimer", "kept", "purge", "purgeable", "purged"]

log = structlog.get_logger("lienthong.delivery")

PURGE_EVERY = 3600.0  # seconds between purges in a running gateway
FIRST_AFTER = 60.0  # the first one, once start-up's work is done
CHUNK = 1000  # rows a transaction blanks: short transactions beside the queue's writer
DAY_US = 86_400_000_000
EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()
SYSTEM_CLIENT = "gateway"  # the client name of the gateway's own audited housekeeping


@dataclass(frozen=True)
class Purge:
    count: int  # deliveries blanked (or, in a dry run, that would be)
    cutoff_us: int  # settled before this moment
    dry_run: bool = False

    @property
    def purpose(self) -> str:
        cutoff = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(self.cutoff_us / 1e6))
        return f"bodies of {self.count} deliveries settled before {cutoff} blanked"


def purged() -> sa.ColumnElement[bool]:
    """Whether a delivery's body has been blanked: empty, though its digest is not that of nothing
    and it is not a document's stored bytes (``body_document``, never copied here)."""
    return sa.and_(sa.func.length(deliveries.c.body) == 0, deliveries.c.body_sha256 != EMPTY_SHA256,
                   deliveries.c.body_document.is_(None))


def kept() -> sa.ColumnElement[bool]:
    """Whether a delivery still has the body it was accepted with (the queue retries and replays
    only those)."""
    return sa.or_(sa.func.length(deliveries.c.body) > 0, deliveries.c.body_sha256 == EMPTY_SHA256,
                  deliveries.c.body_document.is_not(None))


def purgeable(cutoff_us: int) -> sa.ColumnElement[bool]:
    """Settled before ``cutoff_us`` and not blanked yet. Delivered ones by their delivery time;
    cancelled and dead ones by their last change (a retry would have made them pending again)."""
    d = deliveries.c
    return sa.and_(
        sa.or_(sa.and_(d.state == DELIVERED, d.delivered_us < cutoff_us),
               sa.and_(d.state.in_((CANCELLED, DEAD)), d.updated_us < cutoff_us)),
        d.lease.is_(None), sa.func.length(d.body) > 0)


def purge(engine: Engine, retention_days: float, *, now_us: int | None = None,
          dry_run: bool = False) -> Purge:
    """Blank the bodies and responses of deliveries settled more than ``retention_days`` ago, in
    chunks; a dry run only counts them."""
    now = time.time_ns() // 1000 if now_us is None else now_us
    cutoff = now - int(retention_days * DAY_US)
    where = purgeable(cutoff)
    if dry_run:
        with engine.connect() as conn:
            count = conn.execute(sa.select(sa.func.count()).select_from(deliveries).where(where))
            return Purge(int(count.scalar_one()), cutoff, dry_run=True)
    total = 0
    lock = WriteLock(engine, "retention")  # SQLite: in turn with the queue's and the audit's writers
    try:
        while True:
            with lock, engine.begin() as conn:
                seqs = conn.execute(sa.select(deliveries.c.seq).where(where)
                                    .order_by(deliveries.c.seq).limit(CHUNK)).scalars().all()
                if not seqs:
                    break
                # the condition again: a row an operator retried meanwhile is left alone
                done = conn.execute(sa.update(deliveries).where(deliveries.c.seq.in_(seqs), where)
                                    .values(body=b"", response=None))
                total += int(done.rowcount)
            if len(seqs) < CHUNK:
                break
    finally:
        lock.close()
    return Purge(total, cutoff)


class RetentionTimer:
    """The hourly purge of a running gateway, recorded in its audit log when it blanked anything."""

    def __init__(self, engine: Engine, audit: AuditLog, retention_days: float, *,
                 every: float = PURGE_EVERY, first_after: float = FIRST_AFTER) -> None:
        self.engine = engine
        self.audit = audit
        self.retention_days = retention_days
        self.every = every
        self.first_after = first_after
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Inside the event loop."""
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run(), name="delivery-retention")

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _run(self) -> None:
        await asyncio.sleep(self.first_after)
        while True:
            await self.run_once()
            await asyncio.sleep(self.every)

    async def run_once(self) -> Purge | None:
        """One purge, audited; None when it failed (logged; the next round tries again)."""
        started = time.perf_counter()
        received_us = time.time_ns() // 1000
        try:
            done = await anyio.to_thread.run_sync(
                lambda: purge(self.engine, self.retention_days, now_us=received_us))
        except Exception as exc:
            log.error("delivery_purge_failed", error=f"{type(exc).__name__}: {exc}")
            return None
        if done.count:
            from gateway.spine import action_record

            record = action_record(protocol="system", exchange_id=new_id(), received_us=received_us,
                                   started=started, name="deliveries.purge", client=SYSTEM_CLIENT,
                                   purpose=done.purpose, status=200, error=None)
            try:
                await self.audit.append(record)
            except Exception as exc:  # the bodies are gone: say so loudly, with the count
                log.error("delivery_purge_unaudited", count=done.count, error=type(exc).__name__)
            else:
                log.info("delivery_bodies_purged", count=done.count)
        return done
