"""The OS lock that queues SQLite writers across threads and processes."""

from __future__ import annotations

import fcntl
import os
import threading
from pathlib import Path

import pytest

from gateway.storage.db import WriteLock, create_engine


def _try_lock(path: str) -> bool:
    """Whether another open file (as another process would have) can take the lock now."""
    fd = os.open(path, os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    finally:
        os.close(fd)
    return True


def test_a_held_lock_excludes_every_other_writer_until_released(tmp_path: Path) -> None:
    engine = create_engine(f"sqlite:///{tmp_path / 'gw.db'}")
    lock_file = f"{tmp_path / 'gw.db'}-writer.lock"
    first, second = WriteLock(engine), WriteLock(engine)
    taken = threading.Event()
    with first:
        assert not _try_lock(lock_file)
        waiter = threading.Thread(target=lambda: (second.__enter__(), taken.set()))
        waiter.start()
        assert not taken.wait(0.2)  # the second writer waits while the first holds it
    waiter.join(10)
    assert taken.is_set()
    assert not _try_lock(lock_file)
    second.__exit__(None, None, None)
    assert _try_lock(lock_file)
    first.close()
    second.close()
    engine.dispose()


def test_one_instance_shared_by_threads_still_excludes(tmp_path: Path) -> None:
    engine = create_engine(f"sqlite:///{tmp_path / 'gw.db'}")
    lock = WriteLock(engine)
    inside = 0
    most = 0
    guard = threading.Lock()

    def work() -> None:
        nonlocal inside, most
        for _ in range(200):
            with lock:
                with guard:
                    inside += 1
                    most = max(most, inside)
                with guard:
                    inside -= 1

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert most == 1
    lock.close()
    engine.dispose()


@pytest.mark.parametrize("url", ["sqlite://", "sqlite:///:memory:"])
def test_no_file_no_lock(url: str) -> None:
    lock = WriteLock(create_engine(url))
    with lock:
        pass
    lock.close()


def test_each_writer_s_waits_and_holds_are_measured(tmp_path: Path) -> None:
    """lienthong_db_write_lock_seconds: a wait, a hold and the holder's CPU per use, by writer."""
    from gateway.metrics import REGISTRY

    def count(phase: str) -> float:
        labels = {"writer": "test-writer", "phase": phase}
        return REGISTRY.get_sample_value("lienthong_db_write_lock_seconds_count", labels) or 0.0

    def total(phase: str) -> float:
        labels = {"writer": "test-writer", "phase": phase}
        return REGISTRY.get_sample_value("lienthong_db_write_lock_seconds_sum", labels) or 0.0

    engine = create_engine(f"sqlite:///{tmp_path / 'gw.db'}")
    lock = WriteLock(engine, "test-writer")
    before = {phase: (count(phase), total(phase)) for phase in ("wait", "held", "cpu")}
    for _ in range(3):
        with lock:
            sum(range(20_000))  # some work while holding it
    for phase in ("wait", "held", "cpu"):
        assert count(phase) == before[phase][0] + 3
    assert total("held") > before["held"][1]
    assert total("held") - before["held"][1] >= total("cpu") - before["cpu"][1] - 0.01
    lock.close()
    engine.dispose()
