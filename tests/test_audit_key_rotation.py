"""``lienthong audit rotate-key``: a new checkpoint key, the old one's checkpoints still verifying
under its retired verifier key, the hand-over signed by both keys, and a stranger's key still refused."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import orjson
import sqlalchemy as sa
import yaml
from click.testing import CliRunner, Result

from gateway import keys
from gateway.audit.checkpoint import Checkpoint, Signer, Verifier, verify_note
from gateway.audit.checkpointer import split_notes
from gateway.audit.routes import _checkpoint_json
from gateway.audit.service import AuditService
from gateway.cli import main
from gateway.config import load_config
from gateway.storage.db import upgrade
from gateway.storage.tables import audit_checkpoints
from tests.audit_support import record
from tests.helpers import rest_only_config


def run(*args: str) -> Result:
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


def filled(tmp_path: Path, *, checkpoint_last: bool = True) -> tuple[Path, AuditService]:
    """A gateway's configuration on SQLite with 60 leaves and checkpoints (old key) at 20 and 40,
    and at 60 too with ``checkpoint_last``."""
    config, _ = rest_only_config(tmp_path)
    upgrade(config.database_url)
    service = AuditService.open(config)
    for start in (0, 20, 40):
        service.log.append_many([record(i) for i in range(start, start + 20)])
        if start < 40 or checkpoint_last:
            service.checkpointer.make()
    assert config.base_dir is not None
    return config.base_dir / "config.yaml", service


def keys_dir(config: Path) -> Path:
    return config.parent / "keys"


def rotate(config: Path) -> dict[str, Any]:
    result = run("audit", "rotate-key", "--config", str(config), "--json")
    assert result.exit_code == 0, result.output
    return orjson.loads(result.stdout)  # type: ignore[no-any-return]


def verified(config: Path) -> dict[str, Any]:
    result = run("audit", "verify", "--config", str(config), "--json")
    doc: dict[str, Any] = orjson.loads(result.stdout)
    assert result.exit_code == 0 and doc["ok"], result.output
    return doc


def test_rotation_keeps_old_checkpoints_verifying(tmp_path: Path) -> None:
    """Exchanges before and after a rotation: verify passes, and says which key signed which
    checkpoint; the transition is signed by both; the old seed is replaced, the old vkey retired."""
    config, service = filled(tmp_path)
    old = service.checkpointer.vkey
    old_seed = (keys_dir(config) / keys.CHECKPOINT_KEY).read_bytes()
    done = rotate(config)
    new = done["verifierKey"]
    assert new != old and done["retired"]["vkey"] == old
    assert done["transition"]["size"] == 61  # 60 leaves and the rotation's own record
    assert (keys_dir(config) / keys.CHECKPOINT_KEY).read_bytes() != old_seed
    both = verify_note(done["transition"]["note"], [Verifier.from_vkey(old), Verifier.from_vkey(new)])
    assert {v.vkey() for v in both.verified_by} == {old, new}

    after = AuditService.open(load_config(config))  # a restart: the new key signs
    assert after.checkpointer.vkey == new and [r.vkey for r in after.retired] == [old]
    after.log.append_many([record(i) for i in range(1000, 1010)])
    assert after.checkpointer.make().new

    doc = verified(config)
    assert doc["checkpoints"] >= 4
    by_status = {k["status"]: k for k in doc["keys"]}
    assert by_status["current"]["vkey"] == new and by_status["retired"]["vkey"] == old
    assert by_status["retired"]["retired"].endswith("Z")
    signers = {(c["source"], c["size"]): set(c["keys"]) for c in doc["checkpointKeys"]}
    assert signers[("database checkpoint 20", 20)] == {old}
    assert signers[("database checkpoint 60", 60)] == {old}
    assert signers[("database checkpoint 61", 61)] == {old, new}  # the transition
    assert signers[("database checkpoint 71", 71)] == {new}
    text = run("audit", "verify", "--config", str(config))
    assert text.exit_code == 0 and "checkpoint keys:" in text.output and "retired since" in text.output


def test_the_transition_covers_the_rotations_record(tmp_path: Path) -> None:
    """The transition checkpoint includes the rotation's own audit record, and is in the witness
    file too."""
    config, service = filled(tmp_path, checkpoint_last=False)
    done = rotate(config)
    assert done["transition"]["size"] == 61
    cfg = load_config(config)
    assert cfg.audit.witness_file is not None
    witness = cfg.state_path(cfg.audit.witness_file).read_bytes()
    assert done["transition"]["note"].encode() in list(split_notes(witness))
    leaf = orjson.loads(service.log.read(60, 61)[0].leaf)  # the rotation's record, in the transition
    assert (leaf["operation"], leaf["status"]) == ("audit.rotate-key", 200)
    verified(config)


def test_a_stranger_key_is_still_refused(tmp_path: Path) -> None:
    """A checkpoint signed by a key that is neither current nor retired fails verify, as before."""
    config, service = filled(tmp_path)
    rotate(config)
    forger = Signer.generate(service.origin)
    root = service.log.root_at(10)
    note = forger.sign(Checkpoint(service.origin, 10, root))
    with service.log.engine.begin() as conn:
        conn.execute(sa.insert(audit_checkpoints).values(size=10, root=root, note=note.decode(), ts_us=1))
    result = run("audit", "verify", "--config", str(config), "--json")
    doc = orjson.loads(result.stdout)
    assert result.exit_code == 1 and not doc["ok"]
    assert [p["kind"] for p in doc["problems"]] == ["checkpoint-refused"]
    assert "database checkpoint 10" in doc["problems"][0]["what"]


def test_retired_keys_survive_a_restart_and_are_published(tmp_path: Path) -> None:
    """The retired list is a file (0644; the key 0600) read at every start; two rotations keep both
    old keys, and the checkpoint answers (API and CLI) publish them beside the current one."""
    config, service = filled(tmp_path)
    first = service.checkpointer.vkey
    rotate(config)
    second = AuditService.open(load_config(config)).checkpointer.vkey
    said = run("audit", "rotate-key", "--config", str(config))
    assert said.exit_code == 0, said.output
    assert f"retired checkpoint key: {second}" in said.output
    assert f"lienthong witness add-log --state <its state folder> --origin {service.origin} --vkey " \
        in said.output and "restart the gateway" in said.output
    folder = keys_dir(config)
    assert oct((folder / keys.CHECKPOINT_RETIRED).stat().st_mode)[-3:] == "644"
    assert oct((folder / keys.CHECKPOINT_KEY).stat().st_mode)[-3:] == "600"
    reopened = AuditService.open(load_config(config))
    assert [r.vkey for r in reopened.retired] == [first, second]
    assert reopened.verify().ok
    latest = reopened.checkpointer.latest()
    assert latest is not None
    published = _checkpoint_json(latest, reopened)
    assert [r["vkey"] for r in published["retiredVerifierKeys"]] == [first, second]
    shown = orjson.loads(run("audit", "checkpoint", "--config", str(config), "--json").stdout)
    assert [r["vkey"] for r in shown["retiredVerifierKeys"]] == [first, second]
    assert shown["verifierKey"] == reopened.checkpointer.vkey


def test_a_broken_retired_list_is_named(tmp_path: Path) -> None:
    """A damaged retired keys file stops the audit commands with its line, never a silent drop."""
    config, _ = filled(tmp_path)
    (keys_dir(config) / keys.CHECKPOINT_RETIRED).write_text("not-a-key 2026-01-01T00:00:00Z\n")
    result = run("audit", "verify", "--config", str(config))
    assert result.exit_code == 1 and "audit-checkpoint.retired:1" in result.output


def test_help_and_a_refused_operator(tmp_path: Path) -> None:
    """--help explains the command; an account not in cli.operators is refused, nothing changes."""
    helped = run("audit", "rotate-key", "--help")
    assert helped.exit_code == 0 and "witness add-log" in helped.output
    config, service = filled(tmp_path)
    doc = yaml.safe_load(config.read_text())
    doc["cli"] = {"operators": ["someone-else"]}
    config.write_text(yaml.safe_dump(doc, allow_unicode=True))
    seed = (keys_dir(config) / keys.CHECKPOINT_KEY).read_bytes()
    result = run("audit", "rotate-key", "--config", str(config))
    assert result.exit_code == 1 and "cli.operators" in result.output
    assert (keys_dir(config) / keys.CHECKPOINT_KEY).read_bytes() == seed
    assert not (keys_dir(config) / keys.CHECKPOINT_RETIRED).exists()
    leaf = orjson.loads(service.log.read(service.log.size() - 1, service.log.size())[0].leaf)
    assert (leaf["operation"], leaf["status"]) == ("audit.rotate-key", 403)


def test_backup_and_restore_after_a_rotation(tmp_path: Path) -> None:
    """A backup taken after a rotation restores into an empty keys folder and verifies."""
    config, _ = filled(tmp_path / "src")
    rotate(config)
    after = AuditService.open(load_config(config))
    after.log.append_many([record(i) for i in range(2000, 2005)])
    after.checkpointer.make()
    assert run("backup", "--config", str(config), "--to", str(tmp_path / "bk")).exit_code == 0
    doc = yaml.safe_load(config.read_text())
    doc["database"] = f"sqlite:///{tmp_path / 'dst' / 'lienthong.db'}"
    target = tmp_path / "dst" / "config.yaml"
    target.parent.mkdir(parents=True)
    target.write_text(yaml.safe_dump(doc, allow_unicode=True))
    restored = run("restore", "--config", str(target), "--from", str(tmp_path / "bk"))
    assert restored.exit_code == 0, restored.output
    assert "audit log OK" in restored.output
    assert (tmp_path / "dst" / "keys" / keys.CHECKPOINT_RETIRED).is_file()
    assert os.stat(tmp_path / "dst" / "keys" / keys.CHECKPOINT_KEY).st_mode & 0o077 == 0
