"""Structured logs: JSON lines through structlog, one line per exchange, on standard output (info
lines buffered up to a quarter of a second, warnings and errors at once: ``Lines``).

What may appear: ids of exchanges, clients and services, statuses, timings, rule names. What never
appears: tokens, secrets, bodies, personal ids (the pipeline logs none of them, and
``drop_sensitive`` removes such keys should a caller pass them by mistake).
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import sys
import threading
import time
import traceback
import weakref
from collections.abc import MutableMapping
from typing import Any, BinaryIO

import orjson
import structlog

SENSITIVE = frozenset({"token", "access_token", "authorization", "secret", "client_secret",
                       "password", "body", "payload", "so_dinh_danh", "SoDinhDanh"})


def drop_sensitive(_logger: Any, _name: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    for key in SENSITIVE.intersection(event):
        event[key] = "[removed]"
    return event


def stack(exc: BaseException, limit: int = 12) -> list[str]:
    """Where an unexpected exception came from, innermost frames last (``file:line in function``),
    without its message: the message may quote what a caller sent (a body, a personal id), the
    frames name only our code. Crash logs carry it as ``frames`` (structlog keeps ``stack`` for
    its own text)."""
    frames = traceback.extract_tb(exc.__traceback__)[-limit:]
    return [f"{f.filename.rsplit('/site-packages/', 1)[-1]}:{f.lineno} in {f.name}" for f in frames]


# How long an info line may wait before it is written. A line written and flushed at once was a
# write(2) each, 7.4 KB of lines a flow in a drain of joint procedures and about 4 % of a worker's
# event loop, each handing the GIL to the database writer (docs/benchmarks.md, "Joint procedures").
FLUSH_EVERY_S = 0.25
# The most a stream's waiting lines hold before they are written at once.
WAITING_MAX_BYTES = 64 * 1024


class Lines:
    """structlog's logger for JSON lines on a binary stream: debug and info lines wait in the
    stream's ``_Waiting`` lines until they reach ``WAITING_MAX_BYTES`` or the next ``flush_logs``
    (``configure_logging`` runs one every ``FLUSH_EVERY_S``); a warning or an error goes out at once,
    with whatever waited before it. A ``kill -9`` may lose the info lines of the last quarter of a
    second, never the audit log's.

    The lines wait here rather than in the stream's own buffer: with ``PYTHONUNBUFFERED`` set (as
    many container images do) standard output has none, and each line was a system call again."""

    def __init__(self, file: BinaryIO) -> None:
        self._waiting = _waiting_for(file)

    def msg(self, message: bytes) -> None:
        self._waiting.add(message + b"\n", urgent=False)

    debug = info = msg

    def urgent(self, message: bytes) -> None:
        self._waiting.add(message + b"\n", urgent=True)

    warn = warning = err = error = critical = exception = fatal = failure = urgent


class _Waiting:
    """The lines waiting for one stream, shared by every ``Lines`` on it so that they keep their
    order. Written under the lock, each whole: lines from several threads never interleave."""

    def __init__(self, file: BinaryIO) -> None:
        self._file = weakref.ref(file)
        self._lock = threading.Lock()
        self._lines: list[bytes] = []
        self._size = 0

    def add(self, line: bytes, *, urgent: bool) -> None:
        with self._lock:
            self._lines.append(line)
            self._size += len(line)
            if urgent or self._size >= WAITING_MAX_BYTES:
                self._write()

    def flush(self) -> None:
        with self._lock:
            if self._lines:
                self._write()

    def _write(self) -> None:
        data, self._lines, self._size = b"".join(self._lines), [], 0
        file = self._file()
        if file is None:
            return
        # a log line that cannot be written (a closed stream, a reader gone) must not fail the
        # exchange that logged it
        with contextlib.suppress(OSError, ValueError):
            view = memoryview(data)
            while view:  # a raw stream may take part of it (a signal), a buffered one takes all
                written = file.write(view)
                if not written:  # a non-blocking stream that is full: these lines are dropped
                    break
                view = view[written:]
            file.flush()


_streams: weakref.WeakKeyDictionary[BinaryIO, _Waiting] = weakref.WeakKeyDictionary()
_streams_lock = threading.Lock()


def _waiting_for(file: BinaryIO) -> _Waiting:
    with _streams_lock:
        waiting = _streams.get(file)
        if waiting is None:
            waiting = _streams[file] = _Waiting(file)
        return waiting


def flush_logs() -> None:
    """The info lines still waiting, out now (the flusher, the app's stop, a worker's end, the
    process's exit)."""
    with _streams_lock:
        waiting = list(_streams.values())
    for one in waiting:
        one.flush()


def _flush_every(period: float) -> None:
    while True:
        time.sleep(period)
        flush_logs()


_flusher: threading.Thread | None = None


def configure_logging(level: str = "INFO") -> None:
    global _flusher
    if _flusher is None or not _flusher.is_alive():  # once a process (a forked child: its own)
        _flusher = threading.Thread(target=_flush_every, args=(FLUSH_EVERY_S,), name="log-flush",
                                    daemon=True)
        _flusher.start()
        atexit.register(flush_logs)
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            drop_sensitive,
            structlog.processors.format_exc_info,
            structlog.processors.JSONRenderer(serializer=orjson.dumps),
        ],
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelName(level)),
        logger_factory=lambda *_: Lines(sys.stdout.buffer),
        cache_logger_on_first_use=True,
    )
