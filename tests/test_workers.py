"""``lienthong serve --workers N``: a socket per worker in one SO_REUSEPORT group (gateway/workers.py),
against real processes: each worker listens, a dead worker is replaced, SIGTERM ends them all, a
taken port is said at once, and a supervisor killed with SIGKILL leaves no worker serving."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from gateway import workers
from gateway.init import Ports, initialise
from gateway.simulation import free_port, listening, wait_listening

pytestmark = pytest.mark.skipif(not workers.supported(), reason="SO_REUSEPORT is not available here")


def children(pid: int) -> list[int]:
    with contextlib.suppress(OSError):
        return [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    return []


def serving_workers(pid: int) -> list[int]:
    return [c for c in children(pid)
            if b"spawn_main" in Path(f"/proc/{c}/cmdline").read_bytes()
            and b"resource_tracker" not in Path(f"/proc/{c}/cmdline").read_bytes()]


def until(check: Callable[[], bool], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.1)


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    return state != "Z"


@pytest.fixture()
def config(tmp_path: Path) -> tuple[Path, int]:
    port = free_port()
    init = initialise(tmp_path, ports=Ports(gateway=port, population=free_port(), dvcqg=free_port(),
                                            onestop=free_port(), rest=free_port()))
    return init.config_path, port


def serve(config_path: Path, log: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-m", "gateway", "serve", "--config", str(config_path),
                             "--workers", "2"], stdout=log.open("wb"), stderr=subprocess.STDOUT,
                            start_new_session=True)


def test_waiting_for_every_socket_on_a_port() -> None:
    """What the benches wait for before their load: ``/readyz`` answers once the first worker is up,
    and connections opened before the second listens would all stay with the first."""
    port = free_port()
    first = workers._socket("127.0.0.1", port)
    first.listen()
    second = workers._socket("127.0.0.1", port)
    try:
        assert wait_listening(port, 1, timeout=5)
        assert not wait_listening(port, 2, timeout=0.3)  # bound, not listening yet
        second.listen()
        assert wait_listening(port, 2, timeout=5)
    finally:
        first.close()
        second.close()


def test_each_worker_listens_a_dead_one_is_replaced_and_sigterm_ends_all(
        config: tuple[Path, int], tmp_path: Path) -> None:
    config_path, port = config
    gateway = serve(config_path, tmp_path / "gateway.log")
    try:
        until(lambda: listening(port) == 2 and len(serving_workers(gateway.pid)) == 2)
        assert httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=10).status_code == 200
        first, second = serving_workers(gateway.pid)

        os.kill(first, signal.SIGKILL)
        until(lambda: first not in serving_workers(gateway.pid)
              and len(serving_workers(gateway.pid)) == 2 and listening(port) == 2)
        assert second in serving_workers(gateway.pid)
        assert httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=10).status_code == 200

        running = serving_workers(gateway.pid)
        gateway.send_signal(signal.SIGTERM)
        assert gateway.wait(30) == 0
        until(lambda: not any(alive(pid) for pid in running), timeout=10)
        assert listening(port) == 0
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(gateway.pid, signal.SIGKILL)
        gateway.wait(10)


def test_a_supervisor_killed_leaves_no_worker_serving(config: tuple[Path, int], tmp_path: Path) -> None:
    config_path, port = config
    gateway = serve(config_path, tmp_path / "gateway.log")
    try:
        until(lambda: listening(port) == 2 and len(serving_workers(gateway.pid)) == 2)
        running = serving_workers(gateway.pid)
        gateway.send_signal(signal.SIGKILL)
        gateway.wait(10)
        until(lambda: not any(alive(pid) for pid in running), timeout=30)
        assert listening(port) == 0
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(gateway.pid, signal.SIGKILL)


def test_a_taken_port_is_said_at_once(config: tuple[Path, int], tmp_path: Path) -> None:
    config_path, port = config
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", port))
        taken.listen()
        done = subprocess.run([sys.executable, "-m", "gateway", "serve", "--config", str(config_path),
                               "--workers", "2"], capture_output=True, text=True, timeout=120)
    assert done.returncode != 0
    assert f"cannot listen on 127.0.0.1:{port}" in done.stderr
