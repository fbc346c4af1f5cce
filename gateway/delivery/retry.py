"""When to try a delivery again: exponential backoff with jitter, and a circuit breaker per upstream.

Pure: time and randomness come in as arguments, so every rule tests without sleeping.

Backoff after attempt ``n`` (1 for the first failure) is ``min(cap, base * 2**(n-1))`` scaled by a
random factor in [0.5, 1) ("equal jitter"): retries of many deliveries that failed together spread
out instead of returning in one wave, and the delay still grows with every failure.

The breaker counts consecutive *retryable* failures of one upstream (a permanent refusal, "invalid
data" say, proves the upstream alive). At ``threshold`` it opens: no delivery to that upstream is
attempted, so a backlog does not burn its attempts against a portal that is down. After
``cooldown`` seconds it lets one probe through (half-open); the probe's success closes it, its failure
opens it again for twice as long, up to ``cooldown_max``.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

from gateway.errors import GatewayError

__all__ = ["Breaker", "backoff", "is_retryable"]


def backoff(attempt: int, *, base: float, cap: float, rng: random.Random | None = None) -> float:
    """Seconds to wait after the ``attempt``-th failure."""
    ceiling = min(cap, base * float(2 ** min(max(attempt, 1) - 1, 62)))
    return ceiling * (0.5 + 0.5 * (rng or _RNG).random())


_RNG = random.Random()  # noqa: S311 - jitter needs spread, not secrecy


def is_retryable(error: GatewayError) -> bool:
    """Whether trying again later may succeed: the connector's verdict on the error it raised."""
    return bool(error.retryable)


@dataclass
class Breaker:
    threshold: int = 5
    cooldown: float = 10.0
    cooldown_max: float = 120.0
    failures: int = 0
    opened_until: float | None = None  # monotonic seconds; None while closed
    _current_cooldown: float = field(default=0.0, repr=False)
    _probing: bool = field(default=False, repr=False)

    def state(self, now: float) -> str:
        if self.opened_until is None:
            return "closed"
        return "open" if now < self.opened_until else "half-open"

    def capacity(self, now: float, free: int) -> int:
        """How many deliveries to claim now, given ``free`` slots. In half-open, one: the probe,
        reserved until it succeeds, fails or is ``released``."""
        state = self.state(now)
        if state == "closed":
            return free
        if state == "open" or self._probing or free <= 0:
            return 0
        self._probing = True
        return 1

    def succeeded(self) -> None:
        self.failures, self.opened_until, self._current_cooldown, self._probing = 0, None, 0.0, False

    def failed(self, now: float) -> None:
        """A retryable failure."""
        self.failures += 1
        if self._probing or (self.opened_until is None and self.failures >= self.threshold):
            self._current_cooldown = (min(self.cooldown_max, self._current_cooldown * 2)
                                      if self._probing and self._current_cooldown else self.cooldown)
            self.opened_until = now + self._current_cooldown
        self._probing = False

    def released(self) -> None:
        """A probe that was not attempted after all."""
        self._probing = False
