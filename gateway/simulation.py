"""What every upstream simulator shares: a record of what it received, and a way to serve them.

A simulator is a small real server (an ASGI app) found through the entry-point group
``lienthong.simulators`` as a factory ``create_app(seed: int = 2026) -> ASGI app``. Each keeps what it
received in a bounded ``Recorder`` and exposes it as ``GET /_sim/received`` (JSON list, oldest
first) and ``POST /_sim/reset``, so that tests and the demo can check what arrived upstream.
"""

from __future__ import annotations

import asyncio
import base64
import random
import socket
import time
from collections import deque
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route


class Recorder:
    """The requests a simulator received, newest last, at most ``limit`` of them."""

    def __init__(self, limit: int = 10_000) -> None:
        self._items: deque[dict[str, Any]] = deque(maxlen=limit)
        self.total = 0

    def add(self, kind: str, body: bytes, **facts: Any) -> None:
        self.total += 1
        try:
            text: str | None = body.decode("utf-8")
            raw = None
        except UnicodeDecodeError:
            text, raw = None, base64.b64encode(body).decode()
        self._items.append({"kind": kind, "at": time.time(), "body": text, "body_b64": raw, **facts})

    def items(self) -> list[dict[str, Any]]:
        return list(self._items)

    def clear(self) -> None:
        self._items.clear()
        self.total = 0

    def routes(self) -> list[Route]:
        async def received(request: Request) -> Response:
            return JSONResponse({"total": self.total, "items": self.items()})

        async def reset(request: Request) -> Response:
            self.clear()
            return JSONResponse({"ok": True})

        return [Route("/_sim/received", received, methods=["GET"]),
                Route("/_sim/reset", reset, methods=["POST"])]


# Idle client connections stay open this long (uvicorn's 5 s is as long as httpx keeps its own,
# so a client could send on a connection at the moment the simulator closes it).
KEEP_ALIVE = 75


def free_port() -> int:
    """A TCP port free on loopback now (for simulators, demos, benchmarks and tests).

    Taken below the kernel's ephemeral range: a port from ``bind(0)`` is an ephemeral one, which
    the kernel also hands to outgoing connections, so between this call and the server's own bind
    a busy machine (the gateway talking to its simulators) could take it: "address already in use"
    and a demo that does not start. A port this process handed out lately is not handed out again:
    the five ports of a stack are picked before any is bound, and a random draw repeats within a
    test suite's hundreds of stacks often enough to fail one now and then."""
    low = _ephemeral_low()
    for _ in range(64):
        port = random.randrange(_FIRST, low) if low > _FIRST + 1000 else 0  # noqa: S311 (not a secret)
        if port in _handed:
            continue
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            return _hand(int(sock.getsockname()[1]))
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return _hand(int(sock.getsockname()[1]))


_handed: deque[int] = deque(maxlen=4096)  # the ports free_port gave lately, oldest first


def _hand(port: int) -> int:
    _handed.append(port)
    return port


_FIRST = 20_000  # below: ports that well-known services on a developer's machine tend to use


def _ephemeral_low() -> int:
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as fh:
            return int(fh.read().split()[0])
    except (OSError, ValueError, IndexError):
        return 32_768  # Linux's default; elsewhere the range may differ, and bind(0) is the fallback


def listening(port: int) -> int:
    """How many sockets listen on ``port`` now (Linux: /proc/net/tcp and tcp6, state 0A; 0
    elsewhere). ``lienthong serve --workers N`` has N once every worker is up (gateway/workers.py)."""
    count = 0
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if fields[3] == "0A" and int(fields[1].rsplit(":", 1)[1], 16) == port:
                count += 1
    return count


def wait_listening(port: int, sockets: int, timeout: float = 30) -> bool:
    """Wait until ``sockets`` listen on ``port``: every worker of ``lienthong serve --workers N`` is
    up. Its ``/readyz`` answers once the first is: connections opened then would all stay with the
    first (each worker listens on a socket of its own, gateway/workers.py). True when they are."""
    deadline = time.monotonic() + timeout
    while listening(port) < sockets:
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.1)
    return True


async def serve(apps: Iterable[tuple[str, Any, str, int]]) -> None:
    """Serve several ASGI apps in this event loop, each on its own host and port, until SIGINT or
    SIGTERM (or cancellation) stops them all."""
    import signal

    import uvicorn

    servers = []
    for _name, app, host, port in apps:
        config = uvicorn.Config(app, host=host, port=port, log_level="warning", access_log=False,
                                lifespan="off", loop="none", http="httptools",
                                timeout_keep_alive=KEEP_ALIVE)
        servers.append(uvicorn.Server(config))
    tasks = [asyncio.create_task(server.serve()) for server in servers]

    def stop_all(*_args: Any) -> None:
        for server in servers:
            server.should_exit = True

    while not all(server.started for server in servers):
        if any(task.done() for task in tasks):  # a port was taken: stop the others and report
            stop_all()
            break
        await asyncio.sleep(0.02)
    # Each uvicorn server captured the signals for itself; one handler must stop them all.
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, stop_all)
    try:
        await asyncio.gather(*tasks)
    finally:
        stop_all()
