"""The portal session a connector holds: logged in lazily, once at a time, renewed when it goes stale.

Concurrent calls share one session. When several find it missing or stale at once, only the first
logs in and the others wait for its result; a call that saw session S expire renews only if S is
still the current one, so a burst of "session expired" answers costs one login, not one each.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

__all__ = ["PortalSession"]


class PortalSession:
    def __init__(self, login: Callable[[], Awaitable[str]]) -> None:
        self._login = login
        self._current: str | None = None
        self._lock = asyncio.Lock()
        self.logins = 0

    async def current(self) -> str:
        """The session to use, logging in first if there is none."""
        session = self._current
        if session is not None:
            return session
        async with self._lock:
            if self._current is None:
                self._current = await self._fresh()
            return self._current

    async def renew(self, stale: str) -> str:
        """A session other than ``stale``, logging in unless another call already did."""
        async with self._lock:
            if self._current is None or self._current == stale:
                self._current = None
                self._current = await self._fresh()
            return self._current

    def forget(self) -> None:
        self._current = None

    async def _fresh(self) -> str:
        self.logins += 1
        return await self._login()
