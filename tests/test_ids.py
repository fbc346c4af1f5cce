"""Ids: their shape, their order in time, and random bytes handed out once (threads, forks)."""

from __future__ import annotations

import os
import re
import threading
import time

from gateway import ids


def test_an_id_is_32_hex_digits_led_by_its_millisecond() -> None:
    before = time.time_ns() // 1_000_000
    made = ids.new_id()
    after = time.time_ns() // 1_000_000
    assert re.fullmatch(r"[0-9a-f]{32}", made)
    assert before <= int(made[:12], 16) <= after


def test_ids_are_unique_across_many_blocks_and_threads() -> None:
    made: list[str] = []

    def work() -> None:
        made.extend(ids.new_id() for _ in range(2_000))

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(made) == 8_000
    assert len({m[12:] for m in made}) == 8_000  # the random part alone never repeats


def test_random_hex_has_the_length_asked() -> None:
    assert re.fullmatch(r"[0-9a-f]{16}", ids.random_hex(8))
    assert ids.random_hex(8) != ids.random_hex(8)


def test_a_forked_child_does_not_repeat_its_parents_bytes() -> None:
    ids.random_hex(1)  # a block is held now, most of it not yet handed out
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child
        os.close(read)
        os.write(write, ids.random_hex(16).encode())
        os._exit(0)
    os.close(write)
    child = os.read(read, 64).decode()
    os.close(read)
    os.waitpid(pid, 0)
    assert child != ids.random_hex(16)
