"""How fast this machine runs Python at the moment: two fixed workloads' best rounds, in milliseconds.

    .venv/bin/python bench/machine.py [--rounds 7] [--every SECONDS]

The machines these benchmarks run on are shared, and their speed changes by half within minutes:
the same tree drained 10,000 joint procedures in 44.6 s and, nine minutes later, in 69.7 s, its
CPU a flow up from 6.67 to 10.65 ms (docs/benchmarks.md, "Joint procedures"). A figure taken with
these readings beside it can be told apart from the machine's mood, and compared with one taken at
another hour.

- ``cpu_ms``: what a gateway's exchange is made of, on one core: a dossier-like object copied,
  serialised and parsed (orjson), hashed (SHA-256), its text split and joined, its list walked.
- ``memory_ms``: reads at random places of 64 MiB, each a miss in every cache: the memory's
  latency, which the host's other tenants raise while the first reading, whose work fits in the
  caches, may not move.

Each round is timed by the CPU time it took (``time.thread_time``), not the clock: a round that
waited for a core, the machine busy with a benchmark, is not counted slower for the wait, only
for what sharing the machine does to the work itself. The best of ``rounds`` rounds is the reading:
other work only makes a round slower. ``--every`` prints a line of both readings at that interval
until stopped (``flow_bench.py`` samples its drain so).
"""

from __future__ import annotations

import argparse
import hashlib
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson

__all__ = ["Sampler", "speed"]

_DOSSIER: dict[str, Any] = {
    "MaHoSo": "000.00.01.H41-261206-0001",
    "NguoiYeuCau": {"HoTen": "Nguyễn Văn An", "SoDinhDanh": "040090001234", "NgaySinh": "1990-01-01"},
    "Tre": {"HoTen": "Nguyễn Thị Bình", "NgaySinh": "2026-11-01", "GioiTinh": "2"},
    "TaiLieu": [{"Ten": f"giay-{i}", "Ma": i} for i in range(8)]}


def _round(items: int = 2000) -> int:
    total = 0
    for i in range(items):
        dossier = dict(_DOSSIER, n=i)
        body = orjson.dumps(dossier)
        total += len(orjson.loads(body)["TaiLieu"])
        total += hashlib.sha256(body).digest()[0]
        total += len("".join(reversed(f"{dossier['MaHoSo']}:{i}".split(":"))))
        total += sum(item["Ma"] for item in dossier["TaiLieu"] if item["Ma"] % 2)
    return total


_SPREAD = 64 * 1024 * 1024  # bytes: well past the caches of the CPUs here
_spread: bytearray | None = None
_place = 12345  # where the reads go on from: each round reads places no round read before


def _memory_round(steps: int = 60_000) -> int:
    """Reads at random places of 64 MiB, each a miss in every cache, so that the round's time is
    the memory's latency (which other tenants of the host raise) more than the interpreter's. The
    places follow a full-period generator from where the last round stopped: a round that read the
    same places again would find them in the cache."""
    global _place
    spread, mask, place, total = _spread_ready(), _SPREAD - 1, _place, 0
    for _ in range(steps):
        place = (place * 1103515245 + 12345) & mask
        total += spread[place]
    _place = place
    return total


def _spread_ready() -> bytearray:
    """The 64 MiB, made once and written whole, so that every page is there before a round is
    timed (``speed`` makes it first: a single round would otherwise time the making)."""
    global _spread
    if _spread is None:
        _spread = bytearray(b"\x01") * _SPREAD
    return _spread


def _best(work: Callable[[], int], rounds: int) -> float:
    best = float("inf")
    for _ in range(max(1, rounds)):
        started = time.thread_time()
        work()
        best = min(best, time.thread_time() - started)
    return round(best * 1000, 2)


def speed(rounds: int = 7) -> dict[str, float]:
    """The fastest of ``rounds`` rounds of each workload, in milliseconds (lower is faster):
    ``cpu_ms`` the exchange-like work, ``memory_ms`` the reads spread over memory."""
    _spread_ready()
    return {"cpu_ms": _best(_round, rounds), "memory_ms": _best(_memory_round, rounds)}


class Sampler:
    """Readings taken every ``every`` seconds by a process of their own while a benchmark runs
    (three rounds of each workload: about 2 % of a core), summed up by ``stop``."""

    def __init__(self, every: float = 3.0) -> None:
        self._proc = subprocess.Popen([sys.executable, str(Path(__file__).resolve()), "--every", str(every),
                                       "--rounds", "3"], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)

    def stop(self) -> dict[str, Any]:
        """Each workload's lowest, median and highest reading (ms), and how many were taken."""
        self._proc.terminate()
        out, _ = self._proc.communicate(timeout=30)
        readings = [line.split() for line in out.decode().splitlines() if len(line.split()) == 2]
        summary: dict[str, Any] = {"readings": len(readings)}
        for place, name in enumerate(("cpu", "memory")):
            values = [float(reading[place]) for reading in readings]
            if values:
                summary[name] = {"min_ms": min(values), "median_ms": round(statistics.median(values), 2),
                                 "max_ms": max(values)}
        return summary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--rounds", type=int, default=7, help="rounds; the fastest is the reading")
    parser.add_argument("--every", type=float, help="a reading every SECONDS until stopped (Ctrl+C, TERM): "
                        "one line each, the CPU's and the memory's ms")
    args = parser.parse_args()
    if args.every is None:
        reading = speed(args.rounds)
        print(f"cpu {reading['cpu_ms']} ms, memory {reading['memory_ms']} ms")
        return
    try:
        while True:
            reading = speed(args.rounds)
            print(reading["cpu_ms"], reading["memory_ms"], flush=True)
            time.sleep(args.every)
    except (KeyboardInterrupt, BrokenPipeError):  # stopped, or the benchmark reading it is gone
        pass


if __name__ == "__main__":
    main()
