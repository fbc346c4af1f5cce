"""Ids the gateway makes for exchanges and deliveries."""

from __future__ import annotations

import secrets
import time


def new_id() -> str:
    """32 hex digits: 12 of milliseconds since the epoch, then 80 random bits (like a UUIDv7).

    Unguessable, and time-ordered so that the indexes on them (the audit log's exchange ids, the
    delivery queue) grow at their right edge: random ids cost SQLite about half the audit log's
    append rate in B-tree page writes (bench/audit_bench.py --ids random|timed).
    """
    return f"{time.time_ns() // 1_000_000:012x}{secrets.token_hex(10)}"
