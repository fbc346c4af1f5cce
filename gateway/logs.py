"""Structured logs: JSON lines through structlog, one line per exchange.

What may appear: ids of exchanges, clients and services, statuses, timings, rule names. What never
appears: tokens, secrets, bodies, personal ids (the pipeline logs none of them, and
``drop_sensitive`` removes such keys should a caller pass them by mistake).
"""

from __future__ import annotations

import logging
import sys
import traceback
from collections.abc import MutableMapping
from typing import Any

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


def configure_logging(level: str = "INFO") -> None:
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
        logger_factory=structlog.BytesLoggerFactory(sys.stdout.buffer),
        cache_logger_on_first_use=True,
    )
