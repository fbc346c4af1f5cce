"""How fast this machine runs Python at the moment: a fixed workload's best round, in milliseconds.

    .venv/bin/python bench/machine.py [--rounds 7] [--every SECONDS]

The machines these benchmarks run on are shared, and their speed changes by half within minutes:
the same tree drained 10,000 joint procedures in 44.6 s and, ten minutes later, in 69.7 s, its
CPU a flow up from 6.67 to 10.65 ms (docs/benchmarks.md, "Joint procedures"). A figure taken with
this reading beside it can be told apart from the machine's mood, and compared with one taken at
another hour.

The workload is what a gateway's exchange is made of, on one core: a dossier-like object copied,
serialised and parsed (orjson), hashed (SHA-256), its text split and joined, its list walked.
Each round is timed by the CPU time it took (``time.thread_time``), not the clock: a round that
waited for a core, the machine busy with a benchmark, is not counted slower for the wait, only
for what sharing the cores does to the work itself (caches, the host's other tenants). The best
of ``rounds`` rounds is the reading: other work only makes a round slower. ``--every`` prints a
reading at that interval until stopped, one line each (``flow_bench.py`` samples its drain so).
"""

from __future__ import annotations

import argparse
import hashlib
import statistics
import subprocess
import sys
import time
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


def speed(rounds: int = 7) -> float:
    """The fastest of ``rounds`` rounds of the workload, in milliseconds (lower is faster)."""
    best = float("inf")
    for _ in range(max(1, rounds)):
        started = time.thread_time()
        _round()
        best = min(best, time.thread_time() - started)
    return round(best * 1000, 2)


class Sampler:
    """Readings taken every ``every`` seconds by a process of their own while a benchmark runs
    (three rounds each: about 1 % of a core), summed up by ``stop``."""

    def __init__(self, every: float = 2.0) -> None:
        self._proc = subprocess.Popen([sys.executable, str(Path(__file__).resolve()), "--every", str(every),
                                       "--rounds", "3"], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)

    def stop(self) -> dict[str, Any]:
        """The readings' lowest, median and highest (ms), and how many were taken."""
        self._proc.terminate()
        out, _ = self._proc.communicate(timeout=30)
        readings = [float(line) for line in out.decode().split() if line.strip()]
        if not readings:
            return {"readings": 0}
        return {"readings": len(readings), "min_ms": min(readings),
                "median_ms": round(statistics.median(readings), 2), "max_ms": max(readings)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--rounds", type=int, default=7, help="rounds; the fastest is the reading")
    parser.add_argument("--every", type=float, help="a reading every SECONDS until stopped (Ctrl+C, TERM)")
    args = parser.parse_args()
    if args.every is None:
        print(f"{speed(args.rounds)} ms")
        return
    try:
        while True:
            print(speed(args.rounds), flush=True)
            time.sleep(args.every)
    except (KeyboardInterrupt, BrokenPipeError):  # stopped, or the benchmark reading it is gone
        pass


if __name__ == "__main__":
    main()
