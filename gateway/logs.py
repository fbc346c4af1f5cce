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


# How long an info line may wait in the output's buffer. A line written and flushed at once was a
# write(2) each, 7.4 KB of lines a flow in a drain of joint procedures and about 4 % of a worker's
# event loop, each handing the GIL to the database writer (docs/benchmarks.md, "Joint procedures").
FLUSH_EVERY_S = 0.25


class Lines:
    """structlog's logger for JSON lines on a binary stream: debug and info lines wait in the
    stream's buffer until it fills or the next ``flush`` (``configure_logging`` runs one every
    ``FLUSH_EVERY_S``); a warning or an error goes out at once, with whatever waited before it. A
    ``kill -9`` may lose the info lines of the last quarter of a second, never the audit log's."""

    def __init__(self, file: BinaryIO) -> None:
        self._file = file
        with _written_lock:
            _written.add(file)

    def msg(self, message: bytes) -> None:
        self._file.write(message + b"\n")  # one write: lines from several threads stay whole

    debug = info = msg

    def urgent(self, message: bytes) -> None:
        self._file.write(message + b"\n")
        self._file.flush()

    warn = warning = err = error = critical = exception = fatal = failure = urgent


_written: weakref.WeakSet[BinaryIO] = weakref.WeakSet()  # the streams ``Lines`` write to
_written_lock = threading.Lock()


def flush_logs() -> None:
    """What the log lines left in the buffers, out now (a worker's end)."""
    with _written_lock:
        files = list(_written)
    for file in files:
        with contextlib.suppress(OSError, ValueError):  # closed, or a reader gone
            file.flush()


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
