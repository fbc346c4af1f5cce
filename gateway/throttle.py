"""Slows password guessing: the console's sign-in and the token endpoint's client authentication.

Each attempt names the account it tries (a username, a client id) and the client's address; each
of the two has its own count of failures in the ``auth_throttle`` table, which every worker process
and node shares. ``admit`` reserves the attempt on the account's count *before* the password is
checked, under the rows' locks: concurrent attempts on one account are counted one after another, so
a burst sent at once gets no more checks than the rule allows and the rest are refused (429 with
``Retry-After``). The reservation counts as a failure until the caller says otherwise: ``succeeded``
clears the account's count and gives the address one try back (an office shares one address),
``failed`` adds the failure to the address's count, ``uncounted`` undoes the reservation (the
request never reached a credential check). The address counts settled failures only: a whole
office's right requests in flight must not add up to its address's delay.

Delays grow instead of locking out: the first ``free`` failures cost nothing, then each failure
doubles the wait before the next try (``base``, 2 x ``base``, ...) up to ``cap``. An outsider who
knows a username can therefore keep its owner waiting at most ``cap`` seconds after they stop, and a
guesser gets about one try per ``cap`` seconds. A refused try is not counted, so hammering does not
lengthen the wait. Failures are forgotten ``forget`` seconds after the latest one.
"""

from __future__ import annotations

import asyncio
import hashlib
import math
import time
from collections.abc import Callable
from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import Connection, Engine
from starlette.concurrency import run_in_threadpool

from gateway.ratelimit import ADMITTED, Verdict
from gateway.storage.db import WriteLock
from gateway.storage.tables import auth_throttle

__all__ = ["ACCOUNT", "ADDRESS", "Attempt", "Rule", "Throttle", "admit_in_turn", "retry_after"]


# Seconds a try may wait for its turn behind tries still being checked (admit_in_turn): long enough
# for a burst of right requests to drain on a busy machine with several workers.
QUEUE_WAIT = 15.0


@dataclass(frozen=True, slots=True)
class Rule:
    free: int  # failures allowed without any wait
    base: float  # seconds to wait after the first failure beyond ``free``
    cap: float  # the longest wait, seconds
    forget: float = 3600.0  # seconds after the latest failure when the count starts again

    def delay(self, failures: int) -> float:
        """Seconds to wait before the next try, after ``failures`` failures."""
        if failures < self.free:
            return 0.0
        return min(self.cap, self.base * 2.0 ** min(failures - self.free, 60))


ACCOUNT = Rule(free=5, base=1.0, cap=60.0)
ADDRESS = Rule(free=20, base=1.0, cap=300.0)  # four times the account's: a whole office may share one


@dataclass(frozen=True, slots=True)
class Attempt:
    """One try at a door (``console``, ``oauth``): the account it names and where it comes from.
    Either may be empty (a header naming no client, an unknown address): that count is skipped."""

    door: str
    account: str
    address: str


@dataclass(frozen=True, slots=True)
class _Key:
    digest: str
    rule: Rule
    is_account: bool


class Throttle:
    def __init__(self, engine: Engine, *, account: Rule = ACCOUNT, address: Rule = ADDRESS,
                 clock: Callable[[], float] = time.time, queue_wait: float = QUEUE_WAIT) -> None:
        self._engine = engine
        self.queue_wait = queue_wait  # see admit_in_turn
        # SQLite: queue on the file lock, not the busy handler's sleeps
        self._lock = WriteLock(engine, "throttle")
        self.account = account
        self.address = address
        self._clock = clock

    def admit(self, attempt: Attempt) -> Verdict:
        """Reserve this attempt (counted as a failure from now on), or refuse it with the seconds
        until the slowest of its counts allows another."""
        keys = self._keys(attempt)
        if not keys:
            return ADMITTED
        now = self._now_us()
        with self._lock, self._engine.begin() as conn:
            rows = self._locked(conn, keys, now)
            wait = max(row.next_us for row in rows.values()) - now
            if wait > 0:
                return Verdict(False, wait / 1_000_000, "rate")
            # Only the account's count is reserved: the address's grows when a try fails (failed),
            # else an office's right requests in flight would add up to its address's delay.
            for key in keys:
                if key.is_account:
                    self._store(conn, key, self._current(key, rows[key.digest], now) + 1, now)
        return ADMITTED

    def succeeded(self, attempt: Attempt) -> None:
        """The credentials were right: the account starts afresh, the address gets one try back."""
        self._settle(attempt, account=lambda f: 0, address=lambda f: max(0, f - 1))

    def failed(self, attempt: Attempt) -> None:
        """The credentials were wrong: the account's reservation stays, the address counts it."""
        self._settle(attempt, account=lambda f: f, address=lambda f: f + 1)

    def uncounted(self, attempt: Attempt) -> None:
        """No credential was checked (a malformed request): the reservation is undone."""
        self._settle(attempt, account=lambda f: max(0, f - 1), address=lambda f: f)

    def purge(self) -> int:
        """Forget rows whose failures are cleared or forgotten anyway; the number removed."""
        now = self._now_us()
        horizon = int(max(self.account.forget, self.address.forget, self.account.cap, self.address.cap)
                      * 1_000_000)
        forgotten = sa.and_(auth_throttle.c.last_us < now - horizon, auth_throttle.c.next_us < now)
        with self._engine.begin() as conn:
            result = conn.execute(sa.delete(auth_throttle).where(
                sa.or_(auth_throttle.c.failures == 0, forgotten)))
        return int(result.rowcount or 0)

    def close(self) -> None:
        self._lock.close()

    # -- inside ----------------------------------------------------------------------------------

    def _now_us(self) -> int:
        return int(self._clock() * 1_000_000)

    def _keys(self, attempt: Attempt) -> list[_Key]:
        keys = [_Key(_digest(attempt.door, "account", attempt.account), self.account, True)
                if attempt.account else None,
                _Key(_digest(attempt.door, "address", attempt.address), self.address, False)
                if attempt.address else None]
        return sorted((k for k in keys if k is not None), key=lambda k: k.digest)  # one lock order

    @staticmethod
    def _current(key: _Key, row: sa.Row, now: int) -> int:
        """The key's failures, or none once they are forgotten."""
        return int(row.failures) if now - row.last_us <= key.rule.forget * 1_000_000 else 0

    def _settle(self, attempt: Attempt, *, account: Callable[[int], int],
                address: Callable[[int], int]) -> None:
        keys = self._keys(attempt)
        if not keys:
            return
        now = self._now_us()
        with self._lock, self._engine.begin() as conn:
            rows = self._locked(conn, keys, now)
            for key in keys:
                row = rows[key.digest]
                before = self._current(key, row, now)
                after = (account if key.is_account else address)(before)
                if after != before:
                    self._store(conn, key, after, now if after > before else row.last_us)

    @staticmethod
    def _locked(conn: Connection, keys: list[_Key], now: int) -> dict[str, sa.Row]:
        """The keys' rows, created when missing, locked until the transaction ends."""
        insert = pg_insert if conn.dialect.name == "postgresql" else sqlite_insert
        query = (sa.select(auth_throttle).where(auth_throttle.c.key.in_([k.digest for k in keys]))
                 .order_by(auth_throttle.c.key).with_for_update())
        while True:
            values = [{"key": k.digest, "failures": 0, "last_us": now, "next_us": 0} for k in keys]
            conn.execute(insert(auth_throttle).values(values)
                         .on_conflict_do_nothing(index_elements=["key"]))
            rows = {row.key: row for row in conn.execute(query)}
            # PostgreSQL: a purge may delete a row between the insert (which found it) and the lock;
            # the locked select then skips it. Insert it again: the purge has committed by now.
            if len(rows) == len(keys):
                return rows

    @staticmethod
    def _store(conn: Connection, key: _Key, failures: int, last_us: int) -> None:
        # A cleared count stays as a row of zero (the purge removes it later): deleting it here
        # would pull the row from under tries waiting for its lock.
        conn.execute(sa.update(auth_throttle).where(auth_throttle.c.key == key.digest).values(
            failures=failures, last_us=last_us,
            next_us=last_us + int(key.rule.delay(failures) * 1_000_000)))


async def admit_in_turn(throttle: Throttle, attempt: Attempt) -> Verdict:
    """``admit``, waiting for its turn when the delay ends within ``throttle.queue_wait``.

    Tries still being checked count as failures until they settle, so a client that sends several
    right requests at once (a pool of workers starting up) would be refused for failures that never
    happened. Waiting in turn, each goes in as the tries ahead of it succeed and clear the count.
    Waiting buys a guesser nothing: the tries it gets are still one per delay, which doubles with
    each failure, and a delay longer than the wait left is refused at once. The wait is on the
    event loop, not in a worker thread, so waiting callers hold no thread."""
    waited = 0.0
    while True:
        verdict = await run_in_threadpool(throttle.admit, attempt)
        if verdict.allowed or verdict.retry_after > throttle.queue_wait - waited:
            return verdict
        await asyncio.sleep(0.05)
        waited += 0.05


def retry_after(verdict: Verdict) -> str:
    """The ``Retry-After`` header's value for a refusal: whole seconds, at least one."""
    return str(max(1, math.ceil(verdict.retry_after)))


def _digest(door: str, kind: str, value: str) -> str:
    return hashlib.sha256(f"{door}\n{kind}\n{value}".encode()).hexdigest()
