"""Several uvicorn workers, each accepting on its own ``SO_REUSEPORT`` socket.

uvicorn's own supervisor hands every worker one shared listening socket. Whichever worker wakes
first accepts every connection waiting, so a burst of new connections (a client pool opening, a
load balancer reconnecting) can land mostly on one worker: measured under wrk, one run in five
split 100 connections so that one worker sat at a third of a core while the other was saturated,
halving the throughput and doubling the p99 (issue 17, docs/benchmarks.md). With a socket per
worker in one ``SO_REUSEPORT`` group the kernel spreads connections as they arrive, as nginx's
``reuseport`` does.

The supervisor starts the workers, restarts one that dies, and stops them all on SIGINT or SIGTERM
(each finishes its exchanges: uvicorn's graceful shutdown). A worker that fails its start-up (the
lifespan: configuration, database, keys) stops the whole server, as uvicorn's supervisor does.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import signal
import socket
import sys
import threading
from multiprocessing.process import BaseProcess
from typing import Any

import structlog

from gateway.logs import flush_logs

log = structlog.get_logger("lienthong.workers")

STARTUP_FAILURE = 3  # uvicorn's exit code for a worker whose lifespan start-up failed


def supported() -> bool:
    return hasattr(socket, "SO_REUSEPORT")


def _socket(host: str, port: int, *, reuse_port: bool = True) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if reuse_port:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind((host, port))
    except OSError:
        sock.close()
        raise
    sock.set_inheritable(True)
    return sock


def _worker(config: Any) -> None:
    """One worker (spawned): its own socket in the group, then uvicorn's server on it. The socket
    listens only once the lifespan has started (asyncio's create_server), so no connection is
    queued for a worker that is not ready."""
    import uvicorn

    _end_with_supervisor()
    config.configure_logging()  # a spawned process starts with none
    sock = _socket(config.host, config.port)
    try:
        uvicorn.Server(config).run(sockets=[sock])
    finally:
        flush_logs()  # the info lines still in the buffer (gateway/logs.py)


def _end_with_supervisor() -> None:
    """Linux: SIGTERM this worker when the supervisor dies (killed with SIGKILL, say), so that no
    worker keeps serving, unwatched and never restarted, on the port."""
    if not sys.platform.startswith("linux"):
        return
    with contextlib.suppress(OSError, AttributeError):
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def run(config: Any, workers: int, *, grace: float) -> int:
    """Serve with ``workers`` processes until told to stop; the exit status."""
    # First a plain bind: it fails when anything listens on the port, even another server in a
    # reuseport group of its own (a second gateway must not quietly share the port). Then the
    # holder, bound but never listening: it keeps the port for the group while a worker restarts
    # and gets no connections.
    try:
        _socket(config.host, config.port, reuse_port=False).close()
        holder = _socket(config.host, config.port)
    except OSError as exc:
        print(f"lienthong serve: cannot listen on {config.host}:{config.port}: {exc.strerror}",
              file=sys.stderr)
        return 1
    spawn = multiprocessing.get_context("spawn")
    stop = threading.Event()

    def start() -> BaseProcess:
        process = spawn.Process(target=_worker, args=(config,), name="lienthong-worker")
        process.start()
        return process

    previous = {sig: signal.signal(sig, lambda *_: stop.set()) for sig in (signal.SIGINT, signal.SIGTERM)}
    status = 0
    processes = [start() for _ in range(workers)]
    try:
        while not stop.wait(0.5):
            for index, process in enumerate(processes):
                if process.is_alive():
                    continue
                process.join()
                if process.exitcode == STARTUP_FAILURE:
                    log.error("worker_start_failed", pid=process.pid)
                    status = STARTUP_FAILURE
                    stop.set()
                    break
                log.warning("worker_died", pid=process.pid, exitcode=process.exitcode)
                processes[index] = start()
    finally:
        for process in processes:
            if process.is_alive():
                process.terminate()  # SIGTERM: uvicorn finishes what is in flight
        for process in processes:
            process.join(grace + 5)
            if process.is_alive():
                process.kill()
                process.join()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        with contextlib.suppress(OSError):
            holder.close()
    return status
