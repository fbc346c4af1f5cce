"""The gateway as a process with its configuration folder read-only (as a mounted Kubernetes Secret
is) and its state elsewhere: it starts, serves an exchange, signs a checkpoint and opens a console
session, writing only under state_dir; its secrets come by reference (${ENV}, file:)."""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from gateway.init import Ports, initialise
from gateway.simulation import free_port
from tests.conftest import _wait, stop

MOTCUA = "VN/GOV/000.00.00.H60/MOTCUA"
ECHO = "VN/GOV/000.00.00.H41/DANHMUC/echo"


# As root, permission bits do not stop writes: the gateway then runs without the capabilities that
# override them (setpriv), so that the read-only bits bind it as they bind any other account.
UNPRIVILEGED = ["setpriv", "--bounding-set", "-dac_override,-dac_read_search,-fowner", "--"]


@pytest.fixture
def workdir(tmp_path: Path) -> Iterator[Path]:
    """tmp_path, made writable again afterwards so that it can be removed."""
    yield tmp_path
    for path in [tmp_path, *tmp_path.rglob("*")]:
        if path.is_dir() and not path.is_symlink():
            path.chmod(0o755)


def _snapshot(folder: Path) -> dict[str, tuple[int, int]]:
    return {str(p.relative_to(folder)): (p.stat().st_size, p.stat().st_mtime_ns)
            for p in folder.rglob("*")}


def _read_only(folder: Path) -> None:
    """Every folder r-x and every file r-- (for its owner only when it was so)."""
    for path in [*folder.rglob("*"), folder]:
        mode = path.stat().st_mode
        path.chmod(0o555 if stat.S_ISDIR(mode) else 0o444 if mode & 0o044 else 0o400)


def test_serves_with_the_configuration_read_only(workdir: Path) -> None:
    conf, state = workdir / "conf", workdir / "state"
    ports = Ports(gateway=free_port(), population=free_port(), dvcqg=free_port(),
                  onestop=free_port(), rest=free_port())
    init = initialise(conf, ports=ports)
    cfg: dict[str, Any] = yaml.safe_load(init.config_path.read_text())
    # Secrets by reference: the portal's password from the environment, a client's secret hash
    # from a file (as a mounted Secret provides it), the database URL from the environment.
    for service in cfg["services"]:
        if service.get("connector") == "dvcqg":
            service["options"] = {**service["options"], "password": "${LT_PORTAL_PASSWORD}"}
    client = next(c for c in cfg["clients"] if c["id"] == MOTCUA)
    (conf / "secrets").mkdir()
    (conf / "secrets" / "motcua-hash").write_text(client["secret_hash"] + "\n")
    client["secret_hash"] = "file:secrets/motcua-hash"
    cfg["database"] = "${LT_DATABASE}"
    cfg["state_dir"] = str(state)
    cfg["audit"] = {**cfg.get("audit", {}), "checkpoint_interval": 0.2}
    text = yaml.safe_dump(cfg, allow_unicode=True, sort_keys=False)
    assert "demo-portal" not in text  # no secret in the file
    init.config_path.write_text(text)
    (conf / "keys" / "console-session.key").unlink()  # so that the gateway makes one, in state_dir

    prefix: list[str] = []
    if os.getuid() == 0:
        if shutil.which("setpriv") is None:
            pytest.skip("running as root without setpriv: read-only permissions would not bind")
        prefix = UNPRIVILEGED
    _read_only(conf)
    before = _snapshot(conf)

    env = {**os.environ, "LT_PORTAL_PASSWORD": "demo-portal", "LT_DATABASE": "sqlite:///gateway.db"}
    cmd = [*prefix, sys.executable, "-m", "gateway"]
    logs = [workdir / "simulators.log", workdir / "gateway.log"]
    procs = [subprocess.Popen([*cmd, "simulators", "--config", str(init.config_path)], env=env,
                              stdout=logs[0].open("wb"), stderr=subprocess.STDOUT),
             subprocess.Popen([*cmd, "serve", "--config", str(init.config_path)], env=env,
                              stdout=logs[1].open("wb"), stderr=subprocess.STDOUT, cwd=workdir)]
    try:
        base = f"http://127.0.0.1:{ports.gateway}"
        _wait(f"http://127.0.0.1:{ports.rest}/_sim/received", procs, logs)
        _wait(f"{base}/readyz", procs, logs)
        token = httpx.post(f"{base}/oauth/token", data={"grant_type": "client_credentials"},
                           auth=(MOTCUA, init.secrets[MOTCUA]), timeout=30)
        assert token.status_code == 200, token.text  # the hash came from the file
        answer = httpx.post(f"{base}/r1/{ECHO}", content=json.dumps({"xin": "chào"}), timeout=30,
                            headers={"Authorization": f"Bearer {token.json()['access_token']}",
                                     "Content-Type": "application/json"})
        assert answer.status_code == 200, answer.text
        console = httpx.get(f"{base}/console/login", timeout=30)
        assert console.status_code == 200 and "set-cookie" in console.headers
        witness = state / "audit-witness.txt"
        deadline = time.monotonic() + 60  # a wait for the checkpoint thread, not a timing bound
        while not witness.exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        assert witness.exists(), logs[1].read_text(errors="replace")[-3000:]
    finally:
        stop(procs)
    assert _snapshot(conf) == before  # nothing written beside the configuration
    assert (state / "gateway.db").exists() and (state / "console-session.key").exists()
    assert "demo-portal" not in logs[1].read_text(errors="replace")
