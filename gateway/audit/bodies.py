"""Exchange bodies that a policy rule keeps: encrypted, stored apart from the leaves, purged after
their retention period.

Each part (the client's request and the response it got, and the messages exchanged with the
upstream) is sealed with AES-256-GCM under the key in the keys folder, with a fresh 12-byte nonce,
and bound to its exchange and part by the associated data, so a body cannot be moved to another
exchange unnoticed. The leaf keeps each body's SHA-256 and size: after a purge the tree still
verifies, and while a body is kept it can be checked against its leaf.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from sqlalchemy.engine import Engine

from gateway.storage.tables import audit_bodies

PARTS = ("request", "response", "upstream_request", "upstream_response")
_DAY_US = 86_400 * 1_000_000
_NONCE = 12
_PURGE_BATCH = 5_000


class BodyKeyError(ValueError):
    """A kept body cannot be opened: another key, or the stored bytes were changed."""


@dataclass(frozen=True, slots=True)
class Bodies:
    """The bodies of one exchange, in clear, and how long a rule wants them kept."""

    request: bytes
    response: bytes
    upstream_request: bytes | None = None
    upstream_response: bytes | None = None
    retention_days: int | None = None  # None: kept until purged by hand


class BodyVault:
    """Seals and opens kept bodies with one AES-256-GCM key."""

    def __init__(self, key: bytes) -> None:
        if len(key) != 32:
            raise ValueError("the body key must be 32 bytes (AES-256)")
        self._key = key
        self._aead = AESGCM(key)
        self.key_id = hashlib.sha256(b"lienthong-audit-body-key\x00" + key).hexdigest()[:16]

    def __reduce__(self) -> tuple[type[BodyVault], tuple[bytes]]:
        return BodyVault, (self._key,)  # to hand the vault to a verify worker process

    @staticmethod
    def _aad(exchange_id: str, part: str) -> bytes:
        return f"lienthong-audit-body\x00{exchange_id}\x00{part}".encode()

    def seal(self, exchange_id: str, bodies: Bodies, now_us: int) -> dict[str, Any]:
        """The row to store (without its index): every present part sealed."""
        row: dict[str, Any] = {
            "key_id": self.key_id,
            "expires_us": None if bodies.retention_days is None
            else now_us + bodies.retention_days * _DAY_US,
        }
        for part in PARTS:
            data = getattr(bodies, part)
            if data is None:
                row[part] = None
                continue
            nonce = os.urandom(_NONCE)
            row[part] = nonce + self._aead.encrypt(nonce, bytes(data), self._aad(exchange_id, part))
        return row

    def open(self, exchange_id: str, row: Any) -> Bodies:
        """The bodies of a stored row; BodyKeyError if the key or the bytes do not fit."""
        if row.key_id != self.key_id:
            raise BodyKeyError(f"body sealed under key {row.key_id}, this vault holds {self.key_id}")
        parts: dict[str, bytes | None] = {}
        for part in PARTS:
            sealed = getattr(row, part)
            if sealed is None:
                parts[part] = None
                continue
            sealed = bytes(sealed)
            try:
                parts[part] = self._aead.decrypt(sealed[:_NONCE], sealed[_NONCE:],
                                                 self._aad(exchange_id, part))
            except InvalidTag:
                raise BodyKeyError(f"the kept {part} of exchange {exchange_id} does not open: "
                                   "changed, moved or sealed under another key") from None
        return Bodies(request=parts["request"] or b"", response=parts["response"] or b"",
                      upstream_request=parts["upstream_request"],
                      upstream_response=parts["upstream_response"])


def purge_bodies(engine: Engine, now_us: int) -> int:
    """Remove the kept bodies whose retention ended; return how many. Small batches, so that a large
    purge never holds the write lock for long; leaves and tree are untouched."""
    removed = 0
    c = audit_bodies.c
    while True:
        with engine.begin() as conn:
            expired = sa.select(c.idx).where(c.expires_us <= now_us).limit(_PURGE_BATCH)
            count = conn.execute(sa.delete(audit_bodies).where(c.idx.in_(expired))).rowcount
        removed += count
        if count < _PURGE_BATCH:
            return removed
