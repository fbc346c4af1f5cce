"""Ids the gateway makes for exchanges and deliveries."""

from __future__ import annotations

import os
import threading
import time

# Random bytes are taken from the kernel in blocks, not 10 at a time: os.urandom releases the GIL
# around its system call, so that every id handed the GIL to whichever thread wanted it (the audit,
# queue and flow writers) and the event loop then waited up to a switch interval (5 ms) to get it
# back: a few percent of a worker's main thread in py-spy's samples. The block is the kernel's
# CSPRNG output like any other; each byte is handed out once.
_BLOCK = 4096
_ID_BYTES = 10


class _RandomBlocks:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._block = b""
        self._at = 0

    def take(self, n: int) -> bytes:
        with self._lock:
            if self._at + n > len(self._block):
                self._block = os.urandom(_BLOCK)
                self._at = 0
            start = self._at
            self._at = start + n
            return self._block[start:start + n]

    def forget(self) -> None:
        """A forked child must not hand out the bytes its parent hands out too."""
        self._lock = threading.Lock()
        self._block = b""
        self._at = 0


_random = _RandomBlocks()
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_random.forget)


def random_hex(n: int) -> str:
    """``n`` random bytes (at most a block) as hexadecimal, from the kernel's CSPRNG."""
    return _random.take(n).hex()


def new_id() -> str:
    """32 hex digits: 12 of milliseconds since the epoch, then 80 random bits (like a UUIDv7).

    Unguessable, and time-ordered so that the indexes on them (the audit log's exchange ids, the
    delivery queue) grow at their right edge: random ids cost SQLite about half the audit log's
    append rate in B-tree page writes (bench/audit_bench.py --ids random|timed).
    """
    return f"{time.time_ns() // 1_000_000:012x}{_random.take(_ID_BYTES).hex()}"
