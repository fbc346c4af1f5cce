"""Which console sessions are open: one ``console_sessions`` row per signed-in session.

The cookie carries a random session id; the table keeps only its SHA-256, so a copy of the table
opens no session. A session is open while its row exists and has not expired: signing out deletes
the row, and a new password, a new role or a disabled account deletes every row of the account
(``end_all``, in the transaction that changes the account). Every worker reads the same table, so a
session ends everywhere at once.
"""

from __future__ import annotations

import hashlib
import secrets
import time

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from gateway.console.tables import console_sessions

__all__ = ["SessionStore", "end_all"]


def _hash(session_id: str) -> str:
    return hashlib.sha256(session_id.encode()).hexdigest()


def _now_us() -> int:
    return time.time_ns() // 1000


def end_all(conn: Connection, username: str) -> None:
    """End every session of the account, inside the caller's transaction."""
    conn.execute(sa.delete(console_sessions).where(console_sessions.c.username == username))


class SessionStore:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def open(self, username: str, expires: int) -> str:
        """A new session for the account until ``expires`` (seconds since the epoch); its id.
        Sessions past their expiry are removed on the way."""
        session_id = secrets.token_urlsafe(32)
        now = _now_us()
        with self.engine.begin() as conn:
            conn.execute(sa.delete(console_sessions).where(console_sessions.c.expires_us < now))
            conn.execute(sa.insert(console_sessions).values(
                id_hash=_hash(session_id), username=username, created_us=now,
                expires_us=expires * 1_000_000))
        return session_id

    def is_open(self, session_id: str, username: str) -> bool:
        with self.engine.connect() as conn:
            expires = conn.execute(sa.select(console_sessions.c.expires_us).where(
                console_sessions.c.id_hash == _hash(session_id),
                console_sessions.c.username == username)).scalar()
        return expires is not None and int(expires) > _now_us()

    def close(self, session_id: str) -> None:
        with self.engine.begin() as conn:
            conn.execute(sa.delete(console_sessions).where(console_sessions.c.id_hash == _hash(session_id)))
