"""Running the gateway under uvicorn (uvloop, httptools), with one or several worker processes
(several: gateway/workers.py, a socket per worker)."""

from __future__ import annotations

import contextlib
import os
import shutil
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from gateway.config import Config, load_config

CONFIG_ENV = "LIENTHONG_CONFIG"
# How long a thread that wants the GIL waits before the holder is asked to drop it (CPython's
# default: 5 ms). A worker's event loop gives the GIL up at every system call it makes outside
# uvloop (a log line's write, a signature, random bytes) and its writer threads (audit, queue,
# flows) at every SQLite statement; whichever is then kept waiting by the other, busy in Python,
# waited up to the whole interval: the event loop, so an exchange's latency; a writer, while it
# holds the database's write lock, so every writer of every process. docs/benchmarks.md, "The GIL's
# hand-over".
SWITCH_INTERVAL_S = 0.0005


def app() -> Any:
    """Factory uvicorn's workers call: the config path comes through the environment."""
    from gateway.app import create_app

    sys.setswitchinterval(SWITCH_INTERVAL_S)
    return create_app(load_config(Path(os.environ[CONFIG_ENV])), freeze_heap=True)


def serve(config_path: Path, config: Config, *, workers: int = 1, host: str | None = None,
          port: int | None = None) -> None:
    import uvicorn

    # The caller (`lienthong serve`) has prepared the schema and the state folder, once, before the
    # workers start (gateway/storage/migrate_lock.py, gateway/state.py).
    os.environ[CONFIG_ENV] = str(config_path.resolve())
    with metrics_folder(workers):
        _run(uvicorn, config, workers, host, port)


@contextlib.contextmanager
def metrics_folder(workers: int) -> Iterator[None]:
    """Several workers count into files in a fresh folder that /metrics sums (prometheus-client's
    multiprocess mode; the workers, started after this, see it); removed when serving ends. An
    operator's own PROMETHEUS_MULTIPROC_DIR is used as it is."""
    from gateway.metrics import MULTIPROC_ENV

    if workers < 2 or os.environ.get(MULTIPROC_ENV):
        yield
        return
    folder = tempfile.mkdtemp(prefix="lienthong-metrics-")
    os.environ[MULTIPROC_ENV] = folder
    try:
        yield
    finally:
        os.environ.pop(MULTIPROC_ENV, None)
        shutil.rmtree(folder, ignore_errors=True)


GRACE_SECONDS = 10  # what a stopping worker gives the exchanges in flight


def _run(uvicorn: Any, config: Config, workers: int, host: str | None, port: int | None) -> None:
    settings: dict[str, Any] = dict(
        host=host or config.listen.host, port=port if port is not None else config.listen.port,
        loop="uvloop", http="httptools", log_level="warning", access_log=False, lifespan="on",
        timeout_graceful_shutdown=GRACE_SECONDS, proxy_headers=False,
        timeout_keep_alive=config.listen.keep_alive)
    from gateway import workers as several

    if workers > 1 and several.supported():
        # A socket per worker, so that the kernel spreads connections evenly (gateway/workers.py).
        status = several.run(uvicorn.Config("gateway.serve:app", factory=True, **settings), workers,
                             grace=GRACE_SECONDS)
        if status:
            raise SystemExit(status)
        return
    uvicorn.run("gateway.serve:app", factory=True, workers=workers, **settings)
