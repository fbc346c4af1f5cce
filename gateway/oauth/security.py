"""The security state of one gateway process, and how it stays current.

Built once per process from the configuration: the client store, the revocation list and replay
cache, the signing keys, the token verifier and the authorization server, the rate limiter, and the
outside issuers. A background task (``Refresher``) keeps each worker in step with the others, every
``token.refresh`` seconds (1 s by default):

- revoked token ids and disabled clients are read from the database, so a revocation or a
  ``lienthong clients disable`` reaches every worker and node within that bound;
- the keys folder is checked for a rotation (and at once when a token names an unknown ``kid``);
- the policies folder is checked for changes, and a valid new policy swapped in;
- outside issuers' JWKS are fetched when due;
- expired revocations, replay-cache rows and forgotten throttle rows are purged, once a minute.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import structlog
from joserfc.jwk import KeySet
from sqlalchemy.engine import Engine
from starlette.concurrency import run_in_threadpool

from gateway.agencies import member_of, today
from gateway.config import Config
from gateway.oauth.clients import ClientStore
from gateway.oauth.external import ExternalIssuer
from gateway.oauth.keyring import Keyring
from gateway.oauth.server import TokenServer
from gateway.oauth.store import DatabaseReplayCache, RedisReplayCache, ReplayCache, RevocationStore
from gateway.oauth.verifier import TokenVerifier
from gateway.policy import Policy, PolicyWatcher
from gateway.ratelimit import Limiter, LocalLimiter, RedisLimiter
from gateway.throttle import Throttle

log = structlog.get_logger("lienthong.security")
PURGE_EVERY = 60.0


@dataclass
class Job:
    name: str
    every: float
    run: Callable[[], Awaitable[None]]
    wakeable: bool = False
    last: float = field(default=float("-inf"))


class Refresher:
    """Runs jobs periodically in the event loop; ``wake()`` (thread-safe) runs the wakeable ones
    soon."""

    def __init__(self, jobs: list[Job], tick: float) -> None:
        self.jobs = jobs
        self.tick = tick
        self._task: asyncio.Task[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._event: asyncio.Event | None = None
        self._woken = False

    def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._event = asyncio.Event()
        self._task = self._loop.create_task(self._run(), name="lienthong-refresher")

    def wake(self) -> None:
        loop, event = self._loop, self._event
        if loop is None or event is None or loop.is_closed():
            return
        self._woken = True
        loop.call_soon_threadsafe(event.set)

    async def run_once(self, woken: bool = False) -> None:
        now = time.monotonic()
        for job in self.jobs:
            if now - job.last >= job.every or (woken and job.wakeable):
                job.last = now
                try:
                    await job.run()
                except Exception as exc:  # a failing job must not stop the others
                    log.warning("refresh_failed", job=job.name, error=f"{type(exc).__name__}: {exc}"[:300])

    async def _run(self) -> None:
        assert self._event is not None
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._event.wait(), timeout=self.tick)
            self._event.clear()
            woken, self._woken = self._woken, False
            await self.run_once(woken)
            if woken:
                await asyncio.sleep(0.2)  # unknown kids cannot make this spin

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None


@dataclass
class Security:
    config: Config
    clients: ClientStore
    revocations: RevocationStore
    replay: ReplayCache
    keyring: Keyring
    verifier: TokenVerifier
    token_server: TokenServer
    limiter: Limiter
    external: list[ExternalIssuer]
    policies: PolicyWatcher
    throttle: Throttle  # failed client authentications and console sign-ins, in the database
    redis: Any = None  # the synchronous Redis client of the replay cache, when configured
    refresher: Refresher | None = None
    _keys_checked: float = float("-inf")

    @classmethod
    def build(cls, config: Config, engine: Engine, keys_dir: Path, policies_dir: Path) -> Security:
        keyring = Keyring(keys_dir)
        clients = ClientStore(engine)
        revocations = RevocationStore(engine)
        redis_sync: Any = None
        replay: ReplayCache
        limiter: Limiter
        if config.redis:
            import redis

            redis_sync = redis.Redis.from_url(config.redis, socket_timeout=2, socket_connect_timeout=2)
            replay = RedisReplayCache(redis_sync)
            limiter = RedisLimiter(config.redis)
        else:
            replay = DatabaseReplayCache(engine)
            limiter = LocalLimiter()
        verifier = TokenVerifier(keyring.keys, config.token)
        external = [ExternalIssuer(t, config.token.audience) for t in config.token.trusted_issuers]
        for issuer in external:
            verifier.trust(issuer.keys)
        server = TokenServer(clients.get, keyring.keys, config.token, verifier=verifier, replay=replay,
                             revocations=revocations,
                             refuse_client=lambda client_id: _former(config, client_id))
        return cls(config=config, clients=clients, revocations=revocations, replay=replay,
                   keyring=keyring, verifier=verifier, token_server=server, limiter=limiter,
                   external=external, policies=PolicyWatcher(policies_dir), throttle=Throttle(engine),
                   redis=redis_sync)

    def jwks(self) -> list[dict[str, Any]]:
        return self.keyring.jwks()

    def apply_keys(self, fresh: KeySet) -> None:
        self.verifier.set_keys(fresh)
        self.token_server.signer.set_keys(fresh)
        log.info("signing_keys_reloaded", kids=[k.kid for k in fresh.keys])

    def reload_keys_now(self) -> bool:
        """A token names a kid this worker does not know: perhaps a key another worker has begun
        to sign with. Read the keys folder now (at most once a second); True if it changed."""
        now = time.monotonic()
        if now - self._keys_checked < 1.0:
            return False
        self._keys_checked = now
        fresh = self.keyring.poll()
        if fresh is None:
            return False
        self.apply_keys(fresh)
        return True

    def load_state(self) -> None:
        """Read revocations and disabled clients now (blocking)."""
        self.verifier.update(revoked=self.revocations.active(), disabled=self.clients.disabled())

    def start(self, *, http: httpx.AsyncClient, on_policy: Callable[[Policy], None]) -> None:
        """Seed the clients, load the state, and start refreshing it (inside the event loop)."""
        added = self.clients.seed(self.config.clients)
        if added:
            log.info("clients_seeded", clients=added)
        self.load_state()
        asked: set[str] = set()

        async def state() -> None:
            await run_in_threadpool(self.load_state)

        async def keys() -> None:
            fresh = await run_in_threadpool(self.keyring.poll)
            if fresh is not None:
                self.apply_keys(fresh)

        async def policies() -> None:
            outcome = await run_in_threadpool(self.policies.poll)
            if isinstance(outcome, Policy):
                on_policy(outcome)
                log.info("policies_reloaded", rules=len(outcome.rules))
            elif outcome:
                log.error("policies_invalid_kept_previous", problems=[str(p) for p in outcome])

        async def issuers() -> None:
            woken = set(asked)
            asked.clear()
            for issuer in self.external:
                if issuer.due(issuer.cfg.issuer in woken):
                    await issuer.refresh(http)

        async def purge() -> None:
            await run_in_threadpool(self.revocations.purge)
            await run_in_threadpool(self.replay.purge)
            await run_in_threadpool(self.throttle.purge)

        tick = self.config.token.refresh
        jobs = [Job("state", tick, state), Job("keys", tick, keys),
                Job("policies", tick, policies), Job("purge", PURGE_EVERY, purge)]
        if self.external:
            jobs.append(Job("issuers", 1.0, issuers, wakeable=True))
        self.refresher = Refresher(jobs, min(tick, 1.0))
        refresher = self.refresher

        def unknown_key(issuer: str) -> Callable[[], bool]:
            def ask() -> bool:
                asked.add(issuer)
                refresher.wake()
                return False
            return ask

        self.verifier.set_keys(self.keyring.keys, on_unknown_key=self.reload_keys_now)
        for ext in self.external:
            ext.keys.on_unknown_key = unknown_key(ext.cfg.issuer)
        refresher.start()
        refresher.wake()  # fetch outside issuers' keys now

    async def stop(self) -> None:
        if self.refresher is not None:
            await self.refresher.stop()
        await self.limiter.aclose()
        self.throttle.close()
        if self.redis is not None:
            self.redis.close()


def _former(config: Config, client_id: str) -> str | None:
    """Why a former agency's client gets no token after the agency's last day (the successor named)."""
    refusal = config.agencies.refusal(member_of(client_id), today(), names=False)
    return None if refusal is None else (f"client {client_id} gets no token: {refusal}; use a client "
                                         "of the agency current today")
