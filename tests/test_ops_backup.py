"""``lienthong backup`` and ``restore``: a round trip on SQLite and PostgreSQL keeps every row and an
audit log that verifies; a tampered backup, a non-empty target and a mismatched kind are refused."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import pytest
import sqlalchemy as sa
import yaml
from click.testing import CliRunner, Result

from gateway.audit.service import AuditService
from gateway.cli import main
from gateway.config import load_config
from gateway.delivery.store import DeliveryStore
from gateway.documents.store import DocumentStore
from gateway.storage.db import create_engine, is_sqlite, upgrade
from tests.audit_support import record
from tests.conftest import PG_URL, _fresh_pg_database
from tests.helpers import rest_only_config
from tests.test_delivery_writer_path import new
from tests.test_documents_units import document, message

TABLES = ("audit_leaves", "audit_nodes", "audit_checkpoints", "audit_subjects", "deliveries", "documents")
BIG = b"<edXML>" + b"x" * 100_000 + b"</edXML>"  # kept beside a SQLite database (documents/bodies.py)


def run(*args: str) -> Result:
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


def fill(url: str, tmp_path: Path) -> Path:
    """A gateway's configuration over ``url`` with 120 audit leaves, 3 checkpoints, 25 deliveries and
    a sent package of 100 KB."""
    config, _ = rest_only_config(tmp_path, database=url)
    upgrade(config.database_url)
    service = AuditService.open(config)
    for start in (0, 40, 80):
        service.log.append_many([record(i) for i in range(start, start + 40)])
        service.checkpointer.make()
    store = DeliveryStore(service.log.engine)
    store.accept_many([new() for _ in range(25)])
    doc = document(1, BIG)
    DocumentStore(service.log.engine).send(doc, [message(doc, "000.01.00.H60")])
    service.log.engine.dispose()
    assert config.base_dir is not None
    return config.base_dir / "config.yaml"


def counts(url: str) -> dict[str, int]:
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            return {t: int(conn.execute(sa.select(sa.func.count()).select_from(sa.table(t))).scalar_one())
                    for t in TABLES}
    finally:
        engine.dispose()


def fresh_like(url: str, tmp_path: Path) -> str:
    if is_sqlite(url):
        return f"sqlite:///{tmp_path / 'restored' / 'lienthong.db'}"
    return _fresh_pg_database()


def target_config(source: Path, url: str, folder: Path) -> Path:
    """The source's configuration moved to ``folder`` over ``url``: its keys folder there is empty."""
    doc = yaml.safe_load(source.read_text())
    doc["database"] = url
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "config.yaml"
    path.write_text(yaml.safe_dump(doc, allow_unicode=True))
    return path


def test_round_trip(database_url: str, tmp_path: Path) -> None:
    """Back up, restore into a fresh database with an empty keys folder: the restored log verifies,
    matches the manifest, and every table holds the same rows."""
    config = fill(database_url, tmp_path / "src")
    before = counts(database_url)
    result = run("backup", "--config", str(config), "--to", str(tmp_path / "bk"))
    assert result.exit_code == 0, result.output
    manifest = json.loads((tmp_path / "bk" / "manifest.json").read_text())
    assert manifest["audit"]["size"] == 120
    assert any(name.startswith("keys/") for name in manifest["files"])
    assert ("database.sqlite" if is_sqlite(database_url) else "database.pgdump") in manifest["files"]
    assert oct((tmp_path / "bk" / "keys" / "audit-checkpoint.key").stat().st_mode)[-3:] == "600"

    url = fresh_like(database_url, tmp_path)
    target = target_config(config, url, tmp_path / "dst")
    result = run("restore", "--config", str(target), "--from", str(tmp_path / "bk"))
    assert result.exit_code == 0, result.output
    assert "audit log OK, 120 leaves" in result.output
    after = counts(url)
    assert after["audit_leaves"] == before["audit_leaves"] + 1  # the restore itself, audited
    assert {k: v for k, v in after.items() if k not in ("audit_leaves", "audit_nodes")} == \
        {k: v for k, v in before.items() if k not in ("audit_leaves", "audit_nodes")}
    verified = run("audit", "verify", "--config", str(target))
    assert verified.exit_code == 0, verified.output

    again = run("restore", "--config", str(target), "--from", str(tmp_path / "bk"))
    assert again.exit_code == 1 and "not empty" in again.output and "--force" in again.output
    forced = run("restore", "--config", str(target), "--from", str(tmp_path / "bk"), "--force")
    assert forced.exit_code == 0, forced.output
    restored = DocumentStore(create_engine(url))
    (pushed,) = restored.unqueued()
    assert pushed.body == BIG  # the package's bytes came back too, beside SQLite or in its row
    assert ("document-bodies.sqlite" in manifest["files"]) == is_sqlite(database_url)


def test_a_tampered_backup_is_refused(database_url: str, tmp_path: Path) -> None:
    """A changed byte in any backed-up file: refused, naming the file, and nothing is written."""
    config = fill(database_url, tmp_path / "src")
    assert run("backup", "--config", str(config), "--to", str(tmp_path / "bk")).exit_code == 0
    name = "database.sqlite" if is_sqlite(database_url) else "database.pgdump"
    data = bytearray((tmp_path / "bk" / name).read_bytes())
    data[len(data) // 2] ^= 1
    (tmp_path / "bk" / name).write_bytes(bytes(data))
    url = fresh_like(database_url, tmp_path)
    target = target_config(config, url, tmp_path / "dst")
    result = run("restore", "--config", str(target), "--from", str(tmp_path / "bk"))
    assert result.exit_code == 1
    assert f"{name} was changed since the backup" in result.output
    assert not (tmp_path / "dst" / "keys").exists()


def test_refusals(tmp_path: Path) -> None:
    """A non-empty backup folder, a folder that is no backup, and a backup of the other kind."""
    config = fill(f"sqlite:///{tmp_path / 'src.db'}", tmp_path / "src")
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_text("x")
    result = run("backup", "--config", str(config), "--to", str(tmp_path / "full"))
    assert result.exit_code == 1 and "not an empty folder" in result.output
    result = run("restore", "--config", str(config), "--from", str(tmp_path / "full"))
    assert result.exit_code == 1 and "no manifest.json" in result.output
    if not PG_URL:
        return
    assert run("backup", "--config", str(config), "--to", str(tmp_path / "bk")).exit_code == 0
    target = target_config(config, _fresh_pg_database(), tmp_path / "dst")
    result = run("restore", "--config", str(target), "--from", str(tmp_path / "bk"))
    assert result.exit_code == 1 and "holds a sqlite database" in result.output


def test_a_backup_while_the_log_grows_is_consistent(database_url: str, tmp_path: Path) -> None:
    """Appends go on during the backup: the snapshot holds a whole prefix of the log, whose head
    the manifest names, and the restore verifies."""
    config = fill(database_url, tmp_path / "src")
    service = AuditService.open(load_config(config))
    stop = threading.Event()

    def grow() -> None:
        i = 1000
        while not stop.is_set():
            service.log.append_many([record(j) for j in range(i, i + 5)])
            i += 5

    writer = threading.Thread(target=grow)
    writer.start()
    try:
        result = run("backup", "--config", str(config), "--to", str(tmp_path / "bk"))
    finally:
        stop.set()
        writer.join()
        service.log.engine.dispose()
    assert result.exit_code == 0, result.output
    size = json.loads((tmp_path / "bk" / "manifest.json").read_text())["audit"]["size"]
    assert size >= 120
    target = target_config(config, fresh_like(database_url, tmp_path), tmp_path / "dst")
    restored = run("restore", "--config", str(target), "--from", str(tmp_path / "bk"))
    assert restored.exit_code == 0, restored.output
    assert f"audit log OK, {size:,} leaves" in restored.output


@pytest.mark.parametrize("command", ["backup", "restore"])
def test_help(command: str) -> None:
    result = run(command, "--help")
    assert result.exit_code == 0 and "--config" in result.output
