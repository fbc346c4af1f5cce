"""The developer scripts: syntax, and their use of a server handed in through the environment."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SCRIPTS = ["scripts/venv.sh", "scripts/postgres.sh", "scripts/redis.sh", ".ci/run"]


def run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        list(args), cwd=ROOT, env={**os.environ, **(env or {})},
        capture_output=True, text=True, timeout=60, check=False,
    )


@pytest.mark.parametrize("script", SCRIPTS)
def test_script_parses(script: str) -> None:
    result = run("bash", "-n", script)
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize(
    ("script", "variable", "url"),
    [
        ("scripts/postgres.sh", "LIENTHONG_TEST_PG_URL", "postgresql+psycopg://someone@db.invalid:5432/x"),
        ("scripts/redis.sh", "LIENTHONG_TEST_REDIS_URL", "redis://cache.invalid:6379/3"),
    ],
)
@pytest.mark.parametrize("command", ["start", "url"])
def test_url_from_environment_is_used_as_is(script: str, variable: str, url: str, command: str) -> None:
    result = run("bash", script, command, env={variable: url})
    assert result.returncode == 0, result.stderr
    assert result.stdout == url + "\n"


@pytest.mark.parametrize("script", ["scripts/postgres.sh", "scripts/redis.sh"])
def test_unknown_command_is_refused(script: str) -> None:
    result = run("bash", script, "frobnicate")
    assert result.returncode == 2
    assert "usage:" in result.stderr


def test_venv_refuses_unknown_extras() -> None:
    result = run("bash", "scripts/venv.sh", "no-such-extra")
    assert result.returncode == 1
    assert "unknown extras" in result.stderr
