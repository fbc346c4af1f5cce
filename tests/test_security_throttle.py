"""The throttle of failed authentications (gateway/throttle.py): progressive delays per account and
per address, counted in the database so that every worker shares them, and atomic under concurrency:
bursts sent at once to a served gateway, at the console's sign-in and at the token endpoint.

The served gateway's throttle gets a frozen clock, so that no delay runs out while a burst is
being answered on a slow machine: the counts below are then exact, whatever the timing.
"""

from __future__ import annotations

import asyncio
import re
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn

from gateway.app import create_app
from gateway.config import Config, load_config
from gateway.console.users import UserStore
from gateway.init import initialise
from gateway.public import client_address
from gateway.runtime import Runtime
from gateway.simulation import free_port
from gateway.storage.db import create_engine, upgrade
from gateway.throttle import ACCOUNT, ADDRESS, Attempt, Rule, Throttle

PASSWORD = "mat-khau-du-dai-1"
CLIENT = "VN/GOV/000.00.00.H60/MOTCUA"
FROZEN = 1_800_000_000.0


class Clock:
    """A clock the test moves by hand."""

    def __init__(self, now: float = FROZEN) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


# -- the throttle itself ----------------------------------------------------------------------------

def test_free_failures_then_doubling_delays_capped(database_url: str) -> None:
    """Five failures cost nothing; then each one doubles the wait, up to the cap; trying again while
    refused does not lengthen the wait; a success clears the account."""
    clock = Clock()
    throttle = Throttle(create_engine(database_url), clock=clock)
    attempt = Attempt("console", "an", "")
    for _ in range(ACCOUNT.free):
        assert throttle.admit(attempt).allowed
    waits = []
    for _ in range(8):
        refused = throttle.admit(attempt)
        assert not refused.allowed
        assert throttle.admit(attempt).retry_after == refused.retry_after
        waits.append(refused.retry_after)
        clock.now += refused.retry_after
        assert throttle.admit(attempt).allowed
    assert waits == [1, 2, 4, 8, 16, 32, 60, 60]
    throttle.succeeded(attempt)
    assert throttle.admit(attempt).allowed and throttle.admit(attempt).allowed


def test_the_address_counts_across_accounts_and_a_success_only_undoes_its_own_try(database_url: str) -> None:
    """Twenty failures from one address, each on another name, slow the next name too; a success
    from the address gives back one try, not the whole count; other addresses and doors are apart."""
    throttle = Throttle(create_engine(database_url), clock=Clock())
    for i in range(ADDRESS.free):
        assert throttle.admit(Attempt("console", f"user{i}", "10.0.0.9")).allowed
        throttle.failed(Attempt("console", f"user{i}", "10.0.0.9"))
    refused = throttle.admit(Attempt("console", "fresh", "10.0.0.9"))
    assert not refused.allowed and refused.retry_after == pytest.approx(ADDRESS.base)
    throttle.succeeded(Attempt("console", "user0", "10.0.0.9"))
    assert throttle.admit(Attempt("console", "fresh", "10.0.0.9")).allowed
    throttle.failed(Attempt("console", "fresh", "10.0.0.9"))  # the address counts settled failures
    assert not throttle.admit(Attempt("console", "other", "10.0.0.9")).allowed
    assert throttle.admit(Attempt("console", "other", "10.0.0.10")).allowed
    assert throttle.admit(Attempt("oauth", "other", "10.0.0.9")).allowed


def test_forgotten_after_a_quiet_hour_and_purged(database_url: str) -> None:
    """Failures an hour old no longer count, and the purge removes their rows."""
    clock = Clock()
    throttle = Throttle(create_engine(database_url), clock=clock)
    attempt = Attempt("oauth", CLIENT, "10.0.0.1")
    for _ in range(ACCOUNT.free):
        assert throttle.admit(attempt).allowed
    assert not throttle.admit(attempt).allowed
    clock.now += ACCOUNT.forget + 1
    assert throttle.purge() == 2
    for _ in range(ACCOUNT.free):
        assert throttle.admit(attempt).allowed


def test_every_worker_shares_the_count_under_concurrency(database_url: str) -> None:
    """Two throttles on their own engines (two worker processes) and 40 threads trying at once admit
    exactly the free tries, no more."""
    clock = Clock()
    workers = [Throttle(create_engine(database_url), clock=clock) for _ in range(2)]
    attempt = Attempt("console", "an", "")
    barrier = threading.Barrier(40)
    admitted: list[bool] = []

    def run(i: int) -> None:
        barrier.wait()
        admitted.append(workers[i % 2].admit(attempt).allowed)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(40)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert admitted.count(True) == ACCOUNT.free and len(admitted) == 40


def test_right_tries_settling_at_once_on_two_workers_never_fail(database_url: str) -> None:
    """Right credentials from two workers at once: each success clears the counts while other tries
    are locking the same rows. No try fails for a row cleared under it (a 503 at the token endpoint
    in a two-worker run on PostgreSQL)."""
    workers = [Throttle(create_engine(database_url)) for _ in range(2)]
    attempt = Attempt("oauth", CLIENT, "10.0.0.1")
    barrier = threading.Barrier(8)
    errors: list[BaseException] = []

    def run(i: int) -> None:
        barrier.wait()
        try:
            for _ in range(40):
                if workers[i % 2].admit(attempt).allowed:
                    workers[i % 2].succeeded(attempt)
        except BaseException as exc:  # collected for the assertion
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []


@pytest.mark.parametrize(("peer", "forwarded", "address"), [
    ("10.0.0.2", "198.51.100.4, 10.0.0.3", "198.51.100.4"),  # through two of our proxies
    ("10.0.0.2", "", "10.0.0.2"),
    ("192.0.2.9", "198.51.100.4", "192.0.2.9"),  # not a trusted proxy: its header is ignored
])
def test_the_address_counted_behind_a_trusted_proxy(peer: str, forwarded: str, address: str) -> None:
    """Behind one of public.trusted_proxies the counted address is the client's, from
    X-Forwarded-For; anyone else's header is ignored (a guesser cannot pick a new address)."""
    config = Config.model_validate({"public": {"trusted_proxies": ["10.0.0.0/8"]}})
    headers = [(b"x-forwarded-for", forwarded.encode())] if forwarded else []
    assert client_address({"client": (peer, 5000), "headers": headers}, config) == address


def test_delay_rule() -> None:
    """The delay after n failures: none below ``free``, then base doubling, capped."""
    rule = Rule(free=2, base=0.5, cap=3.0)
    assert [rule.delay(n) for n in range(7)] == [0.0, 0.0, 0.5, 1.0, 2.0, 3.0, 3.0]
    assert rule.delay(10_000) == 3.0


# -- bursts at a served gateway -----------------------------------------------------------------------

@contextmanager
def served(config: Config) -> Iterator[tuple[str, Runtime]]:
    """The gateway under uvicorn in a thread, its throttle on a frozen clock."""
    app = create_app(config)
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.02)
    assert server.started
    runtime: Runtime = app.api.state.runtime
    runtime.security.throttle.close()
    # A frozen clock never lets the first delay run out: waiting in turn would last its whole bound.
    runtime.security.throttle = Throttle(runtime.engine, clock=Clock(), queue_wait=0.3)
    try:
        yield f"http://127.0.0.1:{port}", runtime
    finally:
        server.should_exit = True
        thread.join(15)


@pytest.fixture
def gateway(tmp_path: Path) -> Iterator[tuple[str, Runtime, dict[str, str]]]:
    init = initialise(tmp_path / "gw")
    config = load_config(init.config_path)
    upgrade(config.database_url)
    engine = create_engine(config.database_url)
    UserStore(engine).add("kiemtoan", "auditor", PASSWORD)
    engine.dispose()
    with served(config) as (base, runtime):
        yield base, runtime, init.secrets


def _burst(base: str, requests: list[dict[str, Any]]) -> list[httpx.Response]:
    async def run() -> list[httpx.Response]:
        limits = httpx.Limits(max_connections=len(requests))
        async with httpx.AsyncClient(base_url=base, limits=limits, timeout=60) as client:
            return list(await asyncio.gather(*(client.request(**r) for r in requests)))
    return asyncio.run(run())


def _login_form(base: str) -> tuple[str, str]:
    page = httpx.get(f"{base}/console/login")
    token = re.search(r'name="csrf" value="([^"]+)"', page.text)
    assert token
    return page.cookies["lt_console"], token.group(1)


def _sign_ins(base: str, passwords: list[str]) -> list[httpx.Response]:
    cookie, csrf = _login_form(base)
    headers = {"cookie": f"lt_console={cookie}"}
    return _burst(base, [{"method": "POST", "url": "/console/login", "headers": headers,
                          "data": {"csrf": csrf, "username": "kiemtoan", "password": p, "next": ""}}
                         for p in passwords])


def test_a_burst_of_wrong_passwords_gets_429_beyond_the_free_tries(gateway: Any) -> None:
    """30 wrong passwords sent at once: five are checked (401), the other 25 refused with 429 and
    Retry-After."""
    base, _, _ = gateway
    answers = _sign_ins(base, [f"wrong-password-{i}" for i in range(30)])
    assert Counter(r.status_code for r in answers) == {401: ACCOUNT.free, 429: 30 - ACCOUNT.free}
    assert all(int(r.headers["retry-after"]) >= 1 for r in answers if r.status_code == 429)


def test_the_right_password_hidden_in_a_burst_gets_no_more_tries(gateway: Any) -> None:
    """29 wrong and 1 right at once: only five of the 30 are checked at all, and once the free
    tries are spent the right password is refused too (429) until the delay is over."""
    base, _, _ = gateway
    answers = _sign_ins(base, [f"wrong-password-{i}" for i in range(29)] + [PASSWORD])
    counts = Counter(r.status_code for r in answers)
    assert counts[429] == 30 - ACCOUNT.free and counts[401] + counts[303] == ACCOUNT.free
    if counts[303] == 0:  # the right one was not among the five checked: it is refused still
        assert _sign_ins(base, [PASSWORD])[0].status_code == 429


def test_a_burst_of_wrong_client_secrets_gets_429_beyond_the_free_tries(gateway: Any) -> None:
    """30 wrong secrets sent at once to the token endpoint: five are checked (401 invalid_client),
    the other 25 get 429 with Retry-After; the right secret then is refused too."""
    base, _, secrets = gateway
    form = {"grant_type": "client_credentials"}
    answers = _burst(base, [{"method": "POST", "url": "/oauth/token", "data": form,
                             "auth": (CLIENT, f"wrong-{i}")} for i in range(30)])
    assert Counter(r.status_code for r in answers) == {401: ACCOUNT.free, 429: 30 - ACCOUNT.free}
    assert {r.json()["error"] for r in answers if r.status_code == 401} == {"invalid_client"}
    assert all(int(r.headers["retry-after"]) >= 1 for r in answers if r.status_code == 429)
    right = httpx.post(f"{base}/oauth/token", data=form, auth=(CLIENT, secrets[CLIENT]))
    assert right.status_code == 429 and "access_token" not in right.text


def test_a_burst_of_right_client_secrets_all_get_tokens(gateway: Any) -> None:
    """A client whose 24 workers start at once asks for 24 tokens at once, all with the right
    secret: tries being checked count as failures until they settle, so the ones beyond the free
    tries wait their turn instead of being refused for failures that never happened."""
    base, runtime, secrets = gateway
    runtime.security.throttle.close()
    runtime.security.throttle = Throttle(runtime.engine)  # as served: real clock, the whole wait
    form = {"grant_type": "client_credentials"}
    answers = _burst(base, [{"method": "POST", "url": "/oauth/token", "data": form,
                             "auth": (CLIENT, secrets[CLIENT])} for _ in range(24)])
    assert [r.status_code for r in answers] == [200] * 24
