"""The delivery queue's storage, composed of its parts: one job a module.

    model.py      the plain data: states, a new delivery, what intake answered, a claim, an outcome
    admission.py  the intake decision, pure: new, duplicate of, or refused
    queue.py      the writer: accept, complete, claim, and the operators' retry, cancel and replay,
                  every write to ``deliveries`` in its batches
    dossiers.py   each dossier's latest state, folded from delivered messages (the KPIs' facts)
    views.py      the operators' views: get, find, counts, the oldest pending delivery

``DeliveryStore`` keeps the one surface the intake, the workers, the API, the console and the CLI
use, and hands each call to the part whose job it is.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any

from sqlalchemy.engine import Engine

from gateway.delivery.model import (
    BLOCKING,
    CANCELLED,
    DEAD,
    DELIVERED,
    PENDING,
    STATES,
    Accepted,
    Claimed,
    NewDelivery,
    Outcome,
    QueueUnavailable,
    now_us,
    worker_name,
)
from gateway.delivery.queue import DeliveryQueue
from gateway.delivery.sql import reader_for
from gateway.delivery.views import DeliveryViews, describe
from gateway.errors import GatewayError
from gateway.storage.shared import SharedWriter

__all__ = ["BLOCKING", "CANCELLED", "DEAD", "DELIVERED", "PENDING", "STATES", "Accepted", "Claimed",
           "DeliveryStore", "NewDelivery", "Outcome", "QueueUnavailable", "describe", "now_us",
           "worker_name"]


class DeliveryStore:
    def __init__(self, engine: Engine, *, batch_max: int = 512, batch_wait_ms: float = 2.0,
                 shared: SharedWriter | None = None) -> None:
        self.engine = engine
        self.reader = reader_for(engine)
        self.queue = DeliveryQueue(engine, self.reader, batch_max=batch_max, batch_wait_ms=batch_wait_ms,
                                   shared=shared)
        self.views = DeliveryViews(self.reader)
        self.listeners: list[Callable[[Claimed, Outcome], None]] = []

    def listen(self, callback: Callable[[Claimed, Outcome], None]) -> None:
        """``callback`` is told, in the workers' event loop, of every attempt's outcome that this
        process's workers record (once committed): the flow engine waits for its steps' so."""
        self.listeners.append(callback)

    @property
    def batches(self) -> int:
        """Transactions the queue has committed."""
        return self.queue.batches

    def start(self) -> None:
        self.queue.start()

    def close(self) -> None:
        self.queue.close()
        if self.reader is not self.engine:
            self.reader.dispose()

    # -- the queue ---------------------------------------------------------------------------------

    async def accept(self, new: NewDelivery) -> Accepted:
        """Store ``new`` (or find the delivery its idempotency key already made); durable on return.
        InvalidBody (422) for an impossible status change when transitions are refused."""
        return await self.queue.accept(new)

    async def complete(self, outcome: Outcome) -> bool:
        """Record an attempt's outcome; False if the lease was lost (another worker has it now)."""
        return await self.queue.complete(outcome)

    async def claim(self, services: Sequence[str], limit: int, lease_seconds: float,
                    worker: str) -> list[Claimed]:
        """Take up to ``limit`` due deliveries that head their chain, oldest first, with a lease."""
        return await self.queue.claim(services, limit, lease_seconds, worker)

    def accept_many(self, batch: Sequence[NewDelivery]) -> list[Accepted | GatewayError]:
        """Store a batch synchronously, durable on return (tools and benchmarks)."""
        return self.queue.accept_many(batch)

    def due(self, services: Sequence[str]) -> bool:
        """Whether any of ``services`` has a delivery that may be due (a cheap look before a claim)."""
        return self.queue.due(services)

    # -- operators' changes: work for the queue's writer -------------------------------------------

    def retry(self, *, ids: Iterable[str] = (), state: str | None = DEAD, service: str | None = None,
              dossier: str | None = None) -> int:
        """Put dead (or cancelled) deliveries back in the queue with fresh attempts, due now; a
        pending one waiting for its backoff becomes due now."""
        return self.queue.retry(ids=ids, state=state, service=service, dossier=dossier)

    def cancel(self, *, ids: Iterable[str]) -> int:
        """Give up on pending or dead deliveries (the later ones of their chains may then go)."""
        return self.queue.cancel(ids=ids)

    def replay(self, *, ids: Iterable[str] = (), state: str | None = None, service: str | None = None,
               dossier: str | None = None) -> list[str]:
        """Send delivered (or dead) deliveries again as new deliveries, in their original order."""
        return self.queue.replay(ids=ids, state=state, service=service, dossier=dossier)

    # -- operators' views --------------------------------------------------------------------------

    def get(self, delivery_id: str) -> dict[str, Any] | None:
        return self.views.get(delivery_id)

    def outcome(self, delivery_id: str) -> dict[str, Any] | None:
        return self.views.outcome(delivery_id)

    def find(self, *, state: str | None = None, service: str | None = None, dossier: str | None = None,
             flagged: bool = False, after: int = 0, limit: int = 100) -> list[dict[str, Any]]:
        return self.views.find(state=state, service=service, dossier=dossier, flagged=flagged,
                               after=after, limit=limit)

    def by_keys(self, idem_keys: list[str]) -> dict[str, dict[str, Any]]:
        return self.views.by_keys(idem_keys)

    def counts(self) -> list[dict[str, Any]]:
        """Deliveries and attempts by service and state."""
        return self.views.counts()

    def oldest_pending_us(self) -> int | None:
        return self.views.oldest_pending_us()

    def subjects_of(self, dossier: str) -> tuple[str, ...]:
        return self.views.subjects_of(dossier)
