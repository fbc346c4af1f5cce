"""Signed checkpoints: made only when the log grew, each size once even with several processes,
kept in the database and in the witness file, and made at an interval by the audit service."""

from __future__ import annotations

import multiprocessing
import threading
import time
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.audit.checkpoint import Checkpoint, Signer, open_note
from gateway.audit.checkpointer import Checkpointer, split_notes
from gateway.audit.log import AuditLog
from gateway.audit.merkle import EMPTY_ROOT
from gateway.storage.db import create_engine
from tests.audit_support import ORIGIN, SIGNER, filled, record

VERIFIER = SIGNER.verifier()


def test_checkpoint_names_the_head_and_verifies(database_url: str, tmp_path: Path) -> None:
    """A checkpoint's note carries the log's origin, size and root, under the log's key."""
    log = filled(database_url, tmp_path, size=25, every=25)
    cp = log.checkpointer.latest()
    assert cp is not None
    opened = open_note(cp.note, VERIFIER, origin=ORIGIN)
    assert (opened.size, opened.root) == (25, log.log.head().root) == (cp.size, cp.root)


def test_only_a_grown_log_gets_a_new_checkpoint(database_url: str, tmp_path: Path) -> None:
    """Asking again without new leaves returns the same checkpoint and writes nothing."""
    log = filled(database_url, tmp_path, size=10, every=10)
    before = log.witness.read_bytes()
    again = log.checkpointer.make()
    assert again.size == 10 and log.witness.read_bytes() == before
    log.log.append_many([record(10)])
    assert log.checkpointer.make().size == 11
    assert [c.size for c in log.checkpointer.all()] == [10, 11]


def test_an_empty_log_can_be_checkpointed(database_url: str, tmp_path: Path) -> None:
    """The first checkpoint of an empty log names size 0 and the empty root."""
    cp = Checkpointer(create_engine(database_url), SIGNER, ORIGIN, tmp_path / "w.txt").make()
    assert (cp.size, cp.root) == (0, EMPTY_ROOT)


def test_covering_makes_a_checkpoint_only_when_needed(database_url: str, tmp_path: Path) -> None:
    """An inclusion proof needs a checkpoint past the leaf: the latest if it is, else a new one."""
    log = filled(database_url, tmp_path, size=10, every=10)
    log.log.append_many([record(10), record(11)])
    assert log.checkpointer.covering(5).size == 10
    assert log.checkpointer.covering(11).size == 12


def test_witness_file_holds_every_checkpoint(database_url: str, tmp_path: Path) -> None:
    """The witness file is the concatenation of every checkpoint note the database holds."""
    log = filled(database_url, tmp_path, size=50, every=10)
    notes = list(split_notes(log.witness.read_bytes()))
    assert notes == [c.note for c in log.checkpointer.all()]
    assert [open_note(n, VERIFIER).size for n in notes] == [10, 20, 30, 40, 50]


@given(st.lists(st.tuples(st.integers(0, 2**40), st.binary(min_size=32, max_size=32),
                          st.lists(st.from_regex(r"[a-z0-9 ]{1,12}", fullmatch=True), max_size=2)),
                max_size=6))
def test_split_notes_reads_back_any_concatenation(items: list[tuple[int, bytes, list[str]]]) -> None:
    """Concatenated signed notes (with two signatures, extension lines) split back exactly."""
    other = Signer("witness.example", SIGNER._private_key)
    notes = []
    for size, root, extensions in items:
        cp = Checkpoint(ORIGIN, size, root, tuple(e.strip() or "x" for e in extensions))
        notes.append(SIGNER.sign(cp) + other.signature_line(cp.body()))
    assert list(split_notes(b"".join(notes))) == notes
    assert list(split_notes(b"\n\n".join(notes))) == notes  # blank lines between notes are fine


def _checkpoint_in_process(url: str, witness: str, rounds: int) -> None:
    log = AuditLog(create_engine(url))
    checkpointer = Checkpointer(log.engine, SIGNER, ORIGIN, Path(witness))
    for i in range(rounds):
        log.append_many([record(i)])
        checkpointer.make()


def test_several_processes_never_write_a_size_twice(database_url: str, tmp_path: Path) -> None:
    """Processes appending and checkpointing at once: every stored size is unique, every note in
    the witness file is one the database holds, and all of them verify against one tree."""
    witness = tmp_path / "w.txt"
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_checkpoint_in_process, args=(database_url, str(witness), 15))
             for _ in range(3)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
        assert p.exitcode == 0
    engine = create_engine(database_url)
    stored = Checkpointer(engine, SIGNER, ORIGIN).all()
    sizes = [c.size for c in stored]
    assert len(sizes) == len(set(sizes)) and sizes == sorted(sizes)
    assert list(split_notes(witness.read_bytes())) == [c.note for c in stored]
    from gateway.audit.verify import verify_log

    report = verify_log(engine, verifiers=[VERIFIER], origin=ORIGIN)
    assert report.ok and report.leaves == 45 and report.checkpoints == len(stored)


def test_threads_checkpointing_at_once(database_url: str, tmp_path: Path) -> None:
    """Within one process too: concurrent make() calls store each size once."""
    log = filled(database_url, tmp_path, size=5, every=5)
    log.log.append_many([record(5)])
    threads = [threading.Thread(target=log.checkpointer.make) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert [c.size for c in log.checkpointer.all()] == [5, 6]


def test_service_checkpoints_at_its_interval(tmp_path: Path) -> None:
    """The audit service's timer checkpoints a growing log, and stopping makes a last one."""
    from tests.helpers import rest_only_config

    config, _ = rest_only_config(tmp_path, audit={"checkpoint_interval": 0.05})
    from gateway.audit.service import AuditService
    from gateway.storage.db import upgrade

    upgrade(config.database_url)
    service = AuditService.open(config)
    service.start()
    try:
        service.log.append_many([record(0)])
        deadline = time.monotonic() + 10
        while (service.checkpointer.latest() is None or service.checkpointer.latest().size < 1) \
                and time.monotonic() < deadline:  # type: ignore[union-attr]
            time.sleep(0.02)
        assert service.checkpointer.latest().size == 1  # type: ignore[union-attr]
        service.log.append_many([record(1)])
    finally:
        service.stop()
    assert service.checkpointer.latest().size == 2  # type: ignore[union-attr]
    assert service.checkpointer.witness is not None
    assert len(list(split_notes(service.checkpointer.witness.read_bytes()))) >= 2
    assert service.verify(service.witness_notes()).ok


def test_missing_audit_keys_are_named(tmp_path: Path) -> None:
    """Without its keys the audit service says which file is missing and how to make it."""
    from gateway.audit.service import AuditKeysMissing, AuditService
    from tests.helpers import rest_only_config

    config, _ = rest_only_config(tmp_path)
    (config.path(config.keys_dir) / "audit-checkpoint.key").unlink()
    with pytest.raises(AuditKeysMissing, match=r"audit-checkpoint\.key"):
        AuditService.open(config)
