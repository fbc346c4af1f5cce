"""The writer thread behind group commit: event loops hand it items, it takes them in batches and
hands each batch to one function (one transaction). The audit log, the delivery queue, the flows and
the documents use it (on SQLite all four through one shared thread: shared.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import queue
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

T = TypeVar("T")
W = TypeVar("W")
_STOP = object()


@dataclass(slots=True)
class Request(Generic[W]):
    """A piece of work for a writer thread and whoever waits for it: an event loop awaits its
    ``future``, or a thread waits for its ``done``."""

    work: W
    future: asyncio.Future[Any] | None = None
    done: threading.Event | None = None
    result: Any = None  # the value or the exception, once the batch is stored


def answer(batch: Sequence[Request[Any]]) -> None:
    """Wake each waiting thread, and each waiting event loop once per batch, not once per item."""
    by_loop: dict[asyncio.AbstractEventLoop, list[Request[Any]]] = {}
    for item in batch:
        if item.done is not None:
            item.done.set()
        elif item.future is not None:
            by_loop.setdefault(item.future.get_loop(), []).append(item)
    for loop, items in by_loop.items():
        with contextlib.suppress(RuntimeError):  # a closed loop: nobody waits any more
            loop.call_soon_threadsafe(_settle, items)


def _settle(items: list[Request[Any]]) -> None:
    for item in items:
        future = item.future
        if future is None or future.done():  # cancelled: the caller went away
            continue
        if isinstance(item.result, BaseException):
            future.set_exception(item.result)
        else:
            future.set_result(item.result)


class BatchWriter(Generic[T]):
    """One thread taking items in batches of at most ``batch_max``.

    A batch stays open while items keep coming: after what is queued is taken, the thread waits
    ``wait_ms`` and takes what came meanwhile, gap after gap, until a gap brings nothing or
    ``wait_max_ms`` have passed. Under load one commit (whose cost hardly depends on its size)
    serves many items; a lone item waits one gap. Sleeps and drains rather than
    ``get(timeout=…)``: CPython's SimpleQueue can wait forever when such a timeout runs out just as
    it wakes up with nothing to take.
    """

    def __init__(self, name: str, handle: Callable[[list[T]], None], *, batch_max: int,
                 wait_ms: float = 0.0, wait_max_ms: float | None = None) -> None:
        self._name = name
        self._handle = handle
        self._batch_max = batch_max
        self._wait = wait_ms / 1000
        self._wait_max = max(wait_ms, wait_max_ms or 0.0) / 1000
        self._queue: queue.SimpleQueue[object] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._stop_taken = False  # take_more met the stop marker: the thread ends after this batch

    @property
    def running(self) -> bool:
        return self._thread is not None

    def queued(self) -> int:
        return self._queue.qsize()

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name=self._name, daemon=True)
            self._thread.start()

    def put(self, item: T) -> None:
        self._queue.put(item)

    def close(self) -> None:
        """Handle what is queued, then stop the thread."""
        if self._thread is not None:
            self._queue.put(_STOP)
            self._thread.join()
            self._thread = None

    def take_more(self, batch: list[T]) -> None:
        """From the handler, on the writer thread: move into ``batch`` what was queued since it was
        handed over (a handler that waited for a lock takes what came meanwhile)."""
        if self._take(batch):
            self._stop_taken = True

    def _run(self) -> None:
        self._stop_taken = False
        stopping = False
        while not stopping:
            first = self._queue.get()
            if first is _STOP:
                return
            batch: list[T] = [first]  # type: ignore[list-item]
            stopping = self._take(batch)
            deadline = time.monotonic() + self._wait_max
            while not stopping and self._wait and len(batch) < self._batch_max:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                before = len(batch)
                time.sleep(min(self._wait, left))
                stopping = self._take(batch)
                if len(batch) == before:  # a quiet gap: nobody else is coming soon
                    break
            self._handle(batch)
            stopping = stopping or self._stop_taken

    def _take(self, batch: list[T]) -> bool:
        """Move what is queued into ``batch``, up to the batch size; True when told to stop."""
        while len(batch) < self._batch_max:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                return False
            if item is _STOP:
                return True
            batch.append(item)  # type: ignore[arg-type]
        return False
