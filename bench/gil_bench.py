"""What a call that gives up the GIL costs a thread when another thread is busy in Python.

    .venv/bin/python bench/gil_bench.py [--calls 2000]

A gateway worker's event loop gives the GIL up at each system call it makes itself (writing a log
line, ``os.urandom``, an ES256 signature in ``cryptography``) and its writer threads at each SQLite
statement. Whoever gives it up gets it back at once when nobody else wants it; when another thread
is busy in Python, it waits until that thread is asked to drop it, which CPython does after the
switch interval (``sys.setswitchinterval``, 5 ms by default; the gateway's workers set
``gateway.serve.SWITCH_INTERVAL_S``). Here, for each interval, each call is timed alone and beside
a thread spinning in Python (each interval in a process of its own: the interval is process-wide).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def _calls() -> dict[str, Callable[[], object]]:
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec, utils

    key = ec.generate_private_key(ec.SECP256R1())
    digest, ecdsa = b"\x01" * 32, ec.ECDSA(utils.Prehashed(hashes.SHA256()))
    null = os.open(os.devnull, os.O_WRONLY)
    line = b'{"event":"exchange","status":200}\n'
    return {"os.urandom(10)": lambda: os.urandom(10),
            "ES256 signature": lambda: key.sign(digest, ecdsa),
            "write(2) of a log line": lambda: os.write(null, line)}


def _timed(call: Callable[[], object], n: int) -> dict[str, float]:
    times = []
    for _ in range(n):
        start = time.perf_counter()
        call()
        times.append(time.perf_counter() - start)
    times.sort()
    return {"mean_us": statistics.fmean(times) * 1e6, "p99_us": times[int(0.99 * n)] * 1e6,
            "max_us": times[-1] * 1e6}


def measure(interval: float, n: int) -> dict[str, dict[str, dict[str, float]]]:
    sys.setswitchinterval(interval)
    calls = _calls()
    alone = {name: _timed(call, n) for name, call in calls.items()}
    stop = threading.Event()

    def spin() -> None:  # a thread busy in Python, as a writer building a batch is
        x = 0
        while not stop.is_set():
            for i in range(1000):
                x += i

    spinner = threading.Thread(target=spin, daemon=True)
    spinner.start()
    try:
        busy = {name: _timed(call, n) for name, call in calls.items()}
    finally:
        stop.set()
        spinner.join()
    return {"alone": alone, "beside a busy thread": busy}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--calls", type=int, default=2000, help="calls timed per case (2000)")
    parser.add_argument("--interval", type=float, help=argparse.SUPPRESS)  # one process's own run
    args = parser.parse_args()
    if args.interval is not None:
        print(json.dumps(measure(args.interval, args.calls)))
        return
    from gateway.serve import SWITCH_INTERVAL_S

    print(f"{'call':26} {'switch interval':>16} {'alone: mean / p99 µs':>22} {'beside a busy thread':>22}")
    for interval in sorted({0.005, 0.001, SWITCH_INTERVAL_S, 0.0002}, reverse=True):
        out = subprocess.run([sys.executable, __file__, "--interval", str(interval),
                              "--calls", str(args.calls)], check=True, capture_output=True, text=True).stdout
        found = json.loads(out)
        for name, alone in found["alone"].items():
            busy = found["beside a busy thread"][name]
            print(f"{name:26} {interval * 1000:>13.1f} ms {alone['mean_us']:>10.1f} / {alone['p99_us']:>8.1f}"
                  f" {busy['mean_us']:>12.1f} / {busy['p99_us']:>8.1f}")


if __name__ == "__main__":
    main()
