"""Token ids that every worker must agree on: revoked access tokens and used client assertions.

Revocations (RFC 7009) are rows in the database, the durable truth; each worker holds the set of
revoked, unexpired ids in memory and reloads it every ``token.refresh`` seconds, so a revocation
reaches every worker and node within that bound (at once in the worker that took it).

Client assertions (RFC 7523) may be used once: the replay cache remembers each ``jti`` until the
assertion expires, in Redis when one is configured (``SET NX EXAT``), else in the database (a
primary key that a second insert violates). Both hold across processes and nodes.
"""

from __future__ import annotations

import hashlib
import time
from typing import Any, Protocol

import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError

from gateway.oauth.tables import oauth_assertions, oauth_revoked


class RevocationStore:
    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    def revoke(self, jti: str, client: str, expires_at: int) -> None:
        try:
            with self._engine.begin() as conn:
                conn.execute(oauth_revoked.insert().values(jti=jti[:255], client=client[:255],
                                                           expires_at=int(expires_at),
                                                           revoked_at=int(time.time())))
        except IntegrityError:
            pass  # revoked already: revocation is idempotent (RFC 7009 2.2)

    def active(self, now: float | None = None) -> frozenset[str]:
        """Ids of revoked tokens that have not expired yet."""
        cutoff = int(now if now is not None else time.time()) - 300  # beyond any leeway
        with self._engine.connect() as conn:
            rows = conn.execute(sa.select(oauth_revoked.c.jti).where(oauth_revoked.c.expires_at >= cutoff))
            return frozenset(r.jti for r in rows)

    def purge(self, now: float | None = None) -> int:
        cutoff = int(now if now is not None else time.time()) - 3600
        with self._engine.begin() as conn:
            return int(conn.execute(oauth_revoked.delete().where(oauth_revoked.c.expires_at < cutoff))
                       .rowcount or 0)


class ReplayCache(Protocol):
    def first_use(self, client: str, jti: str, expires_at: int) -> bool:
        """Remember the assertion; False when it was seen before (a replay)."""
        ...

    def purge(self) -> int: ...


def _key(client: str, jti: str) -> str:
    return hashlib.sha256(f"{client} {jti}".encode()).hexdigest()


class DatabaseReplayCache:
    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    def first_use(self, client: str, jti: str, expires_at: int) -> bool:
        try:
            with self._engine.begin() as conn:
                conn.execute(oauth_assertions.insert().values(key=_key(client, jti),
                                                              expires_at=int(expires_at)))
        except IntegrityError:
            return False
        return True

    def purge(self) -> int:
        with self._engine.begin() as conn:
            return int(conn.execute(oauth_assertions.delete().where(
                oauth_assertions.c.expires_at < int(time.time()))).rowcount or 0)


class RedisReplayCache:
    PREFIX = "lienthong:assertion:"

    def __init__(self, redis: Any) -> None:
        self._redis = redis  # a synchronous redis.Redis: the token endpoint runs in a thread

    def first_use(self, client: str, jti: str, expires_at: int) -> bool:
        at = max(int(expires_at), int(time.time()) + 1)
        return bool(self._redis.set(self.PREFIX + _key(client, jti), b"1", nx=True, exat=at))

    def purge(self) -> int:
        return 0  # Redis expires the keys itself
