"""``lienthong audit``: verify (exit status, the first bad index, given checkpoint files, trusted
keys), checkpoint and prove, all from the configuration alone."""

from __future__ import annotations

import base64
from pathlib import Path

import orjson
import pytest
import sqlalchemy as sa
from click.testing import CliRunner, Result

from gateway.audit.checkpoint import Signer, Verifier, open_note
from gateway.audit.merkle import leaf_hash, verify_inclusion
from gateway.audit.service import AuditService
from gateway.cli import main
from gateway.storage.db import upgrade
from tests.audit_support import drop_guards, record
from tests.helpers import rest_only_config


@pytest.fixture
def setup(tmp_path: Path) -> tuple[Path, AuditService]:
    config, _ = rest_only_config(tmp_path)
    upgrade(config.database_url)
    service = AuditService.open(config)
    for start in (0, 40, 80):
        service.log.append_many([record(i) for i in range(start, start + 40)])
        service.checkpointer.make()
    assert config.base_dir is not None
    return config.base_dir / "config.yaml", service


def run(*args: str) -> Result:
    return CliRunner().invoke(main, ["audit", *args], catch_exceptions=False)


def test_verify_passes_on_an_intact_log(setup: tuple[Path, AuditService]) -> None:
    """An intact log verifies, with the witness file and the stored checkpoints: exit 0."""
    config, _ = setup
    result = run("verify", "--config", str(config))
    assert result.exit_code == 0, result.output
    assert result.output.startswith("OK: 120 leaves") and "3 checkpoint(s) hold" in result.output


def test_verify_names_the_first_bad_index(setup: tuple[Path, AuditService]) -> None:
    """A changed leaf makes verify exit 1 naming its index, in text and in JSON."""
    config, service = setup
    drop_guards(service.log.engine)
    with service.log.engine.begin() as conn:
        conn.execute(sa.text("UPDATE audit_leaves SET leaf = :l WHERE idx = 57"),
                     {"l": record(57, status=204).leaf()})
    result = run("verify", "--config", str(config))
    assert result.exit_code == 1
    assert "first bad index: 57" in result.output
    doc = orjson.loads(run("verify", "--config", str(config), "--json").output)
    assert doc["ok"] is False and doc["firstBadIndex"] == 57 and doc["problems"][0]["index"] == 57
    first = doc["problems"][0]  # typed: its kind and evidence beside the message, hashes in hex
    assert first["kind"] == "leaf-hash-mismatch" and "leaf hash" in first["what"]
    assert first["computed"] == leaf_hash(record(57, status=204).leaf()).hex()
    assert first["expected"] == leaf_hash(record(57).leaf()).hex()
    column = next(p for p in doc["problems"] if p["kind"] == "index-column-mismatch")
    assert [column[k] for k in ("index", "column", "expected", "found")] == [57, "status", 204, 200]


def test_verify_holds_the_log_against_given_checkpoints(setup: tuple[Path, AuditService],
                                                        tmp_path: Path) -> None:
    """A checkpoint an auditor kept convicts a truncation the database and witness no longer show."""
    config, service = setup
    kept = tmp_path / "kept.note"
    kept.write_bytes(service.checkpointer.latest().note)  # type: ignore[union-attr]
    drop_guards(service.log.engine)
    from tests.audit_support import rebuild_tree

    with service.log.engine.begin() as conn:
        conn.execute(sa.text("DELETE FROM audit_leaves WHERE idx >= 100"))
        conn.execute(sa.text("DELETE FROM audit_subjects WHERE idx >= 100"))
        conn.execute(sa.text("DELETE FROM audit_checkpoints WHERE size > 100"))
    rebuild_tree(service.log.engine)
    assert service.checkpointer.witness is not None
    service.checkpointer.witness.unlink()
    assert run("verify", "--config", str(config)).exit_code == 0
    result = run("verify", "--config", str(config), "--checkpoint", str(kept))
    # The last checkpoint still stored below the cut is at 80: the removal lies after it, the cut at
    # 100 being one way (a removal inside, the rest renumbered, would read the same).
    assert result.exit_code == 1 and "first bad index: 80" in result.output
    assert "[80, 100)" in result.output and "from 100 on" in result.output


def test_verify_with_another_trusted_key_refuses_the_gateways_notes(setup: tuple[Path, AuditService]) -> None:
    """--vkey replaces the keys folder's key: checkpoints the auditor's key did not sign are refused."""
    config, _ = setup
    stranger = Signer.generate("lienthong.gov.vn/VN/audit").vkey()
    result = run("verify", "--config", str(config), "--vkey", stranger, "--quick")
    assert result.exit_code == 1 and "refused" in result.output
    assert run("verify", "--config", str(config), "--vkey", "nonsense").exit_code != 0


def test_checkpoint_prints_the_signed_note(setup: tuple[Path, AuditService]) -> None:
    """The printed note verifies with the printed verifier key."""
    config, service = setup
    service.log.append_many([record(120)])
    result = run("checkpoint", "--config", str(config), "--new", "--json")
    doc = orjson.loads(result.output)
    assert open_note(doc["note"], Verifier.from_vkey(doc["verifierKey"])).size == 121
    plain = CliRunner().invoke(main, ["audit", "checkpoint", "--config", str(config)])
    assert plain.stdout == doc["note"]


def test_prove_prints_a_proof_that_verifies(setup: tuple[Path, AuditService]) -> None:
    """The inclusion proof of a leaf verifies against the checkpoint it names."""
    config, service = setup
    doc = orjson.loads(run("prove", "17", "--config", str(config), "--json").output)
    root = open_note(doc["checkpoint"], service.verifier).root
    proof = [base64.b64decode(h) for h in doc["inclusionProof"]["hashes"]]
    assert verify_inclusion(17, 120, leaf_hash(record(17).leaf()), proof, root)
    assert "inclusion proof to tree size 40" in run("prove", "17", "--size", "40", "--config",
                                                    str(config)).output
    assert run("prove", "500", "--config", str(config)).exit_code != 0


def test_every_command_has_help() -> None:
    """Each audit command explains itself and takes --config."""
    for command in ("verify", "checkpoint", "prove", "purge"):
        result = run(command, "--help")
        assert result.exit_code == 0 and "--config" in result.output
