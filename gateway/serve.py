"""Running the gateway under uvicorn (uvloop, httptools), with one or several worker processes."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from gateway.config import Config, load_config
from gateway.storage.db import upgrade

CONFIG_ENV = "LIENTHONG_CONFIG"


def app() -> Any:
    """Factory uvicorn's workers call: the config path comes through the environment."""
    from gateway.app import create_app

    return create_app(load_config(Path(os.environ[CONFIG_ENV])), freeze_heap=True)


def serve(config_path: Path, config: Config, *, workers: int = 1, host: str | None = None,
          port: int | None = None) -> None:
    import uvicorn

    upgrade(config.database_url)  # once, before the workers start
    os.environ[CONFIG_ENV] = str(config_path.resolve())
    uvicorn.run("gateway.serve:app", factory=True, host=host or config.listen.host,
                port=port if port is not None else config.listen.port, workers=workers,
                loop="uvloop", http="httptools", log_level="warning", access_log=False,
                lifespan="on", timeout_graceful_shutdown=10, proxy_headers=False,
                timeout_keep_alive=config.listen.keep_alive)
