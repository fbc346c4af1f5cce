"""Pushed document messages onto the store-and-forward delivery queue, in order.

A package and its status messages are stored first (gateway/documents/store.py: whole or not at all,
before the sender is answered); then each message for a pushing recipient becomes one delivery for
that recipient's receiving service. The delivery's idempotency key is the message's id, so storing
it twice (two processes, a retry after a crash) makes one delivery; its chain (``order_key``) is the
recipient organ and the DocumentId, so a document's later status messages to an organ leave only
after the package (or the earlier statuses) was delivered there, as dossiers' updates do.

Messages are handed over oldest first, one chain's one after another: a message is stored on the
queue only once every earlier message of its chain is, so the queue's order (its ``seq``) is the
order in which the messages were accepted, whichever process does it. Each sending exchange hands
its own messages over before it answers; a sweep in every process running the workers takes what a
crash left between the two commits.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
from collections.abc import Callable
from urllib.parse import urlencode

import structlog

from gateway.delivery.store import DeliveryStore, NewDelivery
from gateway.documents.store import DocumentStore, MessageRow
from gateway.ids import new_id
from gateway.policy import Kept

__all__ = ["Outbox", "new_delivery", "order_key"]

log = structlog.get_logger("lienthong.documents")

CONTENT_TYPE = "application/xml"


def order_key(organ: str, document_id: str) -> str:
    return f"edxml|{organ}|{document_id}"


def new_delivery(message: MessageRow) -> NewDelivery:
    """A pushed message's delivery. A large package's (``parted``) names the document, whose stored
    parts each attempt sends, rather than holding another copy of its bytes."""
    assert message.service is not None and (message.body is not None or message.parted)
    return NewDelivery(
        id=new_id(), idem_key=hashlib.sha256(f"edxml\x00{message.id}".encode()).hexdigest(),
        order_key=order_key(message.to_organ, message.document_id), dossier=message.document_id[:128],
        service=message.service, operation=f"edxml.{message.kind}", client=message.sender_client,
        rule=message.rule, exchange_id=message.exchange_id, user_id=None, purpose=None,
        represented_party=None, method="POST", path="", query=urlencode({"to": message.to_organ}),
        content_type=CONTENT_TYPE, body=message.body or b"", body_sha256=message.sha256, subjects=(),
        decided=Kept(None), body_document=message.document if message.parted else None)


class Outbox:
    def __init__(self, documents: DocumentStore, queue: DeliveryStore,
                 notify: Callable[[], None] | None = None, *, interval: float = 2.0) -> None:
        self.documents = documents
        self.queue = queue
        self._notify = notify
        self._interval = interval
        self._lock = asyncio.Lock()
        self._task: asyncio.Task[None] | None = None

    async def flush(self) -> dict[str, str]:
        """Hand every pushed message not yet on the queue over, oldest first; message id ->
        delivery id of those handed over now."""
        done: dict[str, str] = {}
        async with self._lock:
            while True:
                batch = await asyncio.to_thread(self.documents.unqueued)
                batch = [m for m in batch if m.id not in done]
                if not batch:
                    break
                chains: dict[str, list[MessageRow]] = {}
                for message in batch:
                    chains.setdefault(order_key(message.to_organ, message.document_id), []).append(message)
                results = await asyncio.gather(*(self._chain(c) for c in chains.values()))
                now = [pair for result in results for pair in result]
                await asyncio.to_thread(self.documents.queued, now)
                done.update(now)
        if done and self._notify is not None:
            self._notify()
        return done

    async def _chain(self, messages: list[MessageRow]) -> list[tuple[str, str]]:
        out = []
        for message in messages:  # one after another: the queue's order is the chain's
            accepted = await self.queue.accept(new_delivery(message))
            out.append((message.id, accepted.id))
        return out

    def start(self) -> None:
        """The sweep, in the event loop: what a crash left between storing and handing over."""
        if self._task is None:
            self._task = asyncio.create_task(self._sweep(), name="documents-outbox")

    async def _sweep(self) -> None:
        while True:
            try:
                await self.flush()
            except Exception as exc:  # the database or the queue is away: try again later
                log.warning("documents_outbox_failed", error=type(exc).__name__)
            await asyncio.sleep(self._interval)

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
