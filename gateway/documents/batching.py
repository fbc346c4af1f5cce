"""Group commit for sent packages: the packages that arrive while one commit is under way are
stored together in the next one (``DocumentStore.send_many``), so a commit's cost (its fsync, the
database's write lock) is shared by many senders instead of paid by each (issue 16's 200 packages
a second). Each sender still gets its own answer, and only once its package is committed. On SQLite
the packages join the process's one writer (gateway/storage/shared.py): a package and the audit
records of its exchange share a transaction, and the writers of a process take the lock once.

A spooled package (gateway/spool.py) is stored on its own: copying its parts would hold up the
packages batched with it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError

from gateway.documents.store import DocumentRow, DocumentStore, MessageRow, Stored
from gateway.errors import GatewayError
from gateway.storage.shared import SharedWriter, Slot
from gateway.storage.writer import BatchWriter

__all__ = ["Batcher"]

_Item = tuple[DocumentRow, Sequence[MessageRow], asyncio.AbstractEventLoop, "asyncio.Future[Stored]"]


class Batcher:
    def __init__(self, store: DocumentStore, *, batch_max: int = 64,
                 shared: SharedWriter | None = None) -> None:
        self.store = store
        # No waiting for more: what queued while the last commit ran is the next batch.
        self._writer: BatchWriter[_Item] | Slot[_Item] = (
            shared.slot(_Part(store)) if shared is not None else
            BatchWriter("documents-writer", self._handle, batch_max=batch_max))

    async def send(self, doc: DocumentRow, messages: Sequence[MessageRow]) -> Stored:
        """``DocumentStore.send``, committed with whatever else is being sent."""
        if doc.spooled is not None:
            return await asyncio.to_thread(self.store.send, doc, messages)
        self._writer.start()  # the first send starts the thread (the event loop's thread only)
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Stored] = loop.create_future()
        self._writer.put((doc, messages, loop, future))
        return await future

    def close(self) -> None:
        self._writer.close()
        if self.store.bodies is not None:  # once what the writer held is stored
            self.store.bodies.close()

    def _handle(self, batch: list[_Item]) -> None:
        results: Sequence[Stored | BaseException]
        try:
            results = self.store.send_many(_sendings(batch))
        except Exception as exc:  # the database failed the whole batch: each sender is told
            results = [exc] * len(batch)
        _answer(batch, results)


class _Part:
    """The packages in the shared writer's transactions."""

    def __init__(self, store: DocumentStore) -> None:
        self.store = store

    def prepare(self, batch: list[_Item]) -> None:
        """Before the lock: the bytes that go to the bodies file (gateway/documents/bodies.py)."""
        self.store.put_bodies(_sendings(batch))

    def write(self, conn: Connection, batch: list[_Item]) -> list[Stored | GatewayError]:
        return self.store.insert(conn, _sendings(batch))

    def settle(self, batch: list[_Item], written: list[Stored | GatewayError]) -> None:
        _answer(batch, written)

    def fail(self, batch: list[_Item], exc: Exception) -> None:
        results: Sequence[Stored | BaseException] = [exc] * len(batch)
        if isinstance(exc, IntegrityError):  # stored meanwhile by another process: as send_many sorts it
            try:
                results = self.store.send_many(_sendings(batch))
            except Exception as again:
                results = [again] * len(batch)
        _answer(batch, results)


def _sendings(batch: list[_Item]) -> list[tuple[DocumentRow, Sequence[MessageRow]]]:
    return [(doc, messages) for doc, messages, _, _ in batch]


def _answer(batch: list[_Item], results: Sequence[Stored | BaseException]) -> None:
    for (_, _, loop, future), result in zip(batch, results, strict=True):
        loop.call_soon_threadsafe(_settle, future, result)


def _settle(future: asyncio.Future[Any], result: Any) -> None:
    if future.done():  # the sender went away (cancelled); its package is stored all the same
        return
    if isinstance(result, BaseException):
        future.set_exception(result)
    else:
        future.set_result(result)
