"""Migrations run once: several processes or threads migrating one fresh database at once all
succeed, one of them migrates; `migrations.at_start: wait` waits for the schema and says why not."""

from __future__ import annotations

import subprocess
import sys
import threading
from pathlib import Path

import pytest
import sqlalchemy as sa
from click.testing import CliRunner

from gateway.cli import main
from gateway.config import load_config
from gateway.storage.migrate_lock import (
    Migrated,
    SchemaError,
    head_revision,
    migrate,
    prepare_schema,
    wait_for_head,
)
from tests.conftest import PG_URL, _fresh_pg_database

RACERS = 4


def _config(folder: Path, database: str, extra: str = "") -> Path:
    """A configuration naming only the database: all that migrating needs."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "config.yaml"
    path.write_text(f"database: '{database}'\n{extra}")
    return path


def _versions(url: str) -> list[str]:
    engine = sa.create_engine(url, poolclass=sa.pool.NullPool)
    try:
        with engine.connect() as conn:
            return [row[0] for row in conn.execute(sa.text("SELECT version_num FROM alembic_version"))]
    finally:
        engine.dispose()


def _race_processes(config_path: Path) -> list[str]:
    """`lienthong migrate` started RACERS times at once; each one's output (all must succeed)."""
    procs = [subprocess.Popen([sys.executable, "-m", "gateway", "migrate", "--config", str(config_path)],
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
             for _ in range(RACERS)]
    outputs = [proc.communicate(timeout=300)[0] for proc in procs]
    for proc, output in zip(procs, outputs, strict=True):
        assert proc.returncode == 0, output
    return outputs


def _migrated_once(outputs: list[str]) -> None:
    head = head_revision()
    assert sum(f"migrated the database from empty to {head}" in o for o in outputs) == 1, outputs
    assert sum("already at the newest schema" in o for o in outputs) == RACERS - 1, outputs


@pytest.mark.postgres
def test_processes_migrating_one_postgresql_database_at_once(tmp_path: Path) -> None:
    """Replicas starting together: one migrates under the advisory lock, the others find head."""
    if not PG_URL:
        pytest.skip("no PostgreSQL: set LIENTHONG_TEST_PG_URL or run 'make test', which starts one")
    url = _fresh_pg_database()
    _migrated_once(_race_processes(_config(tmp_path, url)))
    assert _versions(url) == [head_revision()]


@pytest.mark.postgres
def test_threads_migrating_one_postgresql_database_at_once() -> None:
    """The lock is per connection (session), so threads of one process exclude each other too."""
    if not PG_URL:
        pytest.skip("no PostgreSQL: set LIENTHONG_TEST_PG_URL or run 'make test', which starts one")
    url = _fresh_pg_database()
    results: list[Migrated] = []
    errors: list[BaseException] = []
    start = threading.Barrier(RACERS)

    def run() -> None:
        start.wait()
        try:
            results.append(migrate(url))
        except BaseException as exc:  # reported below, with the others
            errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(RACERS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors, errors
    assert sum(r.changed for r in results) == 1 and all(r.after == head_revision() for r in results)
    assert _versions(url) == [head_revision()]


def test_processes_migrating_one_sqlite_database_at_once(tmp_path: Path) -> None:
    """SQLite: the file lock beside the database makes the same promise."""
    config_path = _config(tmp_path, "sqlite:///gw.db")
    _migrated_once(_race_processes(config_path))
    assert _versions(load_config(config_path).database_url) == [head_revision()]


def test_wait_gives_up_with_what_to_do_then_finds_head(tmp_path: Path) -> None:
    """A replica that may not migrate waits for `lienthong migrate`; on timeout it says so."""
    url = f"sqlite:///{tmp_path / 'gw.db'}"
    with pytest.raises(SchemaError) as info:
        wait_for_head(url, timeout=0)
    assert "empty" in str(info.value) and "lienthong migrate" in str(info.value)
    migrate(url)
    assert wait_for_head(url, timeout=0) == head_revision()


def test_wait_refuses_a_schema_newer_than_the_gateway(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'gw.db'}"
    migrate(url)
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        conn.execute(sa.text("UPDATE alembic_version SET version_num = '9999_future'"))
    engine.dispose()
    with pytest.raises(SchemaError, match="does not know"):
        wait_for_head(url, timeout=60)  # refused at once, not after the timeout


def test_at_start_settings(tmp_path: Path) -> None:
    """`auto` migrates; `wait` does not, and `lienthong serve` stops with the reason."""
    waiting = _config(tmp_path / "wait", "sqlite:///gw.db",
                      "migrations: {at_start: wait, wait_timeout: 0}\n")
    with pytest.raises(SchemaError):
        prepare_schema(load_config(waiting))
    result = CliRunner().invoke(main, ["serve", "--config", str(waiting)])
    assert result.exit_code == 1 and "lienthong migrate" in result.output, result.output
    auto = _config(tmp_path / "auto", "sqlite:///gw.db")
    assert prepare_schema(load_config(auto)) == head_revision()


def test_migrate_command_is_documented() -> None:
    result = CliRunner().invoke(main, ["migrate", "--help"])
    assert result.exit_code == 0 and "Kubernetes Job" in result.output and "--config" in result.output
