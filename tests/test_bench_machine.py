"""bench/machine.py: the readings that say how fast the machine ran beside a benchmark's figures."""

from __future__ import annotations

import select

from bench import machine


def test_a_reading_is_each_workloads_best_round_in_ms() -> None:
    reading = machine.speed(rounds=2)
    assert set(reading) == {"cpu_ms", "memory_ms"}
    assert all(0 < value < 10_000 for value in reading.values())


def test_the_memory_rounds_go_on_where_the_last_stopped() -> None:
    """A round that read the places of the one before would find them in the cache."""
    machine._memory_round(steps=10)
    first = machine._place
    machine._memory_round(steps=10)
    assert machine._place != first


def test_the_sampler_sums_up_the_readings_its_process_took() -> None:
    sampler = machine.Sampler(every=0.05)
    # until its first line is there (a loaded machine may take a while to start it), unread
    ready, _, _ = select.select([sampler._proc.stdout], [], [], 120)
    assert ready, "the sampler printed nothing in 120 s"
    summary = sampler.stop()
    assert summary["readings"] >= 1
    for name in ("cpu", "memory"):
        low, middle, high = (summary[name][k] for k in ("min_ms", "median_ms", "max_ms"))
        assert 0 < low <= middle <= high
