"""Browser tests of the console: headless Chromium from Debian's packages, driven by Playwright.

The Chromium is the one ``scripts/chromium.sh`` installs and prints (``make test`` exports it as
``LIENTHONG_TEST_CHROMIUM``), else the ``chromium`` on PATH; Playwright's own browser downloads are
not used. Without a Chromium or without Playwright every test here skips, saying why.

The gateway and its simulators run as processes (``start_stack``), with console accounts made by
``lienthong users add`` and traffic played through the real REST entry point (``scenario.py``).
Screenshots go to ``LIENTHONG_SCREENSHOTS`` (``docs/screenshots`` to refresh the README's), else to a
temporary folder.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.browser.scenario import Played, play
from tests.conftest import Stack, start_stack, stop

ROOT = Path(__file__).resolve().parents[2]
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
        "--disable-sync", "--no-first-run", "--disable-dev-shm-usage"]
PASSWORD = "mat-khau-kiem-thu-1"
USERS = {"kiemtoan": ("auditor", "Lê Thị Kiểm Toán"), "vanhanh": ("operator", "Phạm Văn Hành")}


def chromium_path() -> str:
    found = os.environ.get("LIENTHONG_TEST_CHROMIUM") or shutil.which("chromium") \
        or shutil.which("chromium-browser")
    if not found:
        pytest.skip("no Chromium: run 'bash scripts/chromium.sh' (installs Debian's chromium) or "
                    "set LIENTHONG_TEST_CHROMIUM; 'make test' does both")
    return found


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    executable = chromium_path()
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.skip("Playwright is not installed: pip install -e '.[test]'")
    with sync_playwright() as pw:
        try:
            launched = pw.chromium.launch(executable_path=executable, args=ARGS, headless=True)
        except Exception as exc:
            pytest.skip(f"Chromium at {executable} did not start under Playwright: {exc}")
        yield launched
        launched.close()


@pytest.fixture(scope="session")
def shots() -> Path:
    """Where screenshots go."""
    target = os.environ.get("LIENTHONG_SCREENSHOTS")
    folder = (ROOT / target) if target and not Path(target).is_absolute() else Path(target or "")
    if not target:
        import tempfile

        folder = Path(tempfile.mkdtemp(prefix="lienthong-screenshots-"))
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@pytest.fixture(scope="session")
def site(browser: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Stack, Played]]:
    """The demo catalog served by processes, two console accounts, and traffic to look at."""
    workdir = tmp_path_factory.mktemp("console-site")
    overrides = {"delivery": {"max_attempts": 2, "backoff_base": 0.2, "backoff_max": 0.5,
                              "poll_interval": 0.1},
                 "audit": {"checkpoint_interval": 1}}
    running, procs = start_stack(workdir, overrides=overrides)
    try:
        for username, (role, name) in USERS.items():
            subprocess.run([sys.executable, "-m", "gateway", "users", "add", "--config",
                            str(running.config_path), username, "--role", role, "--name", name,
                            "--password", PASSWORD], check=True, capture_output=True, timeout=60)
        played = play(running)
        yield running, played
    finally:
        stop(procs)
