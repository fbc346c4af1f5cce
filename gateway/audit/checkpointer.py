"""Making signed checkpoints of the audit log, keeping them, and handing them to a witness file.

A checkpoint is made under the sequencer's write lock, so it names a tree head that appends cannot
move meanwhile, and only when the log grew since the last one: several worker processes may each
run the interval timer and still write each tree size at most once (the size is also the table's
key). Before signing, the head's root is recomputed from the stored nodes; a tree that does not
lead to it is never signed.

The note goes to the witness file (a second place, that the database's operators should not
control) before the database commits, so the file holds every checkpoint the database holds. The
file is a plain concatenation of signed notes; :func:`split_notes` reads it back.

``on_new``, when set, is called with each new checkpoint once it is committed (the witnesses'
client, gateway/witness/client.py): it must return at once, never waiting on the network.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from gateway.audit import tree
from gateway.audit.checkpoint import Checkpoint, Signer, sign_note
from gateway.audit.log import TreeCorruptedError
from gateway.audit.merkle import EMPTY_ROOT
from gateway.audit.tree import as_bytes
from gateway.storage.tables import audit_checkpoints, audit_head

_SIGNATURE_LINE = "\u2014 ".encode()


@dataclass(frozen=True, slots=True)
class StoredCheckpoint:
    size: int
    root: bytes
    note: bytes  # the complete signed note
    ts_us: int
    new: bool = field(default=False, compare=False)  # made by the call that returned it


class HandOverError(RuntimeError):
    """A key transition that cannot be signed now (the head is checkpointed already)."""


class Checkpointer:
    def __init__(self, engine: Engine, signer: Signer, origin: str,
                 witness: Path | None = None) -> None:
        self._engine = engine
        self._signer = signer
        self.origin = origin
        self.witness = witness
        self.on_new: Callable[[StoredCheckpoint], None] | None = None

    @property
    def vkey(self) -> str:
        """The verifier key that checks this log's checkpoints."""
        return self._signer.vkey()

    @property
    def signer(self) -> Signer:
        return self._signer

    def make(self) -> StoredCheckpoint:
        """Sign the current tree head if the log grew since the last checkpoint; return the latest
        checkpoint (new or not)."""
        with self._engine.begin() as conn:
            size, root, last = self._locked_head(conn)
            if last is not None and last.size >= size:
                return last
            note = self._signer.sign(Checkpoint(self.origin, size, root))
            if self.witness is not None:
                append_note(self.witness, note)
            ts_us = time.time_ns() // 1000
            conn.execute(sa.insert(audit_checkpoints).values(size=size, root=root,
                                                             note=note.decode(), ts_us=ts_us))
        made = StoredCheckpoint(size, root, note, ts_us, new=True)
        if self.on_new is not None:
            self.on_new(made)
        return made

    def hand_over(self, successor: Signer) -> StoredCheckpoint:
        """The key transition: sign the current tree head with this checkpointer's key and then with
        ``successor``'s, in one note, kept as the checkpoint of that size; from then on
        ``successor`` signs. Whoever trusts either key can check the note, and so learn that the old
        key vouches for the new one at this tree head. Refused (HandOverError) when a checkpoint of
        the head exists already: checkpoints are append-only, so the log must grow first."""
        with self._engine.begin() as conn:
            size, root, last = self._locked_head(conn)
            if last is not None and last.size >= size:
                raise HandOverError(f"a checkpoint of the head (size {size}) is stored already; the "
                                    "key transition needs a head that no checkpoint covers yet")
            note = sign_note(Checkpoint(self.origin, size, root).body(), [self._signer, successor])
            if self.witness is not None:
                append_note(self.witness, note)
            ts_us = time.time_ns() // 1000
            conn.execute(sa.insert(audit_checkpoints).values(size=size, root=root,
                                                             note=note.decode(), ts_us=ts_us))
        self._signer = successor
        made = StoredCheckpoint(size, root, note, ts_us, new=True)
        if self.on_new is not None:
            self.on_new(made)
        return made

    def _locked_head(self, conn: Connection) -> tuple[int, bytes, StoredCheckpoint | None]:
        """The head's size and root, locked against appends, checked against the stored tree; and
        the latest checkpoint."""
        head = conn.execute(sa.select(audit_head.c.size, audit_head.c.root)
                            .where(audit_head.c.id == 1).with_for_update()).one()
        last = self._latest(conn)
        size, root = int(head.size), as_bytes(head.root) if head.root is not None else EMPTY_ROOT
        if (last is None or last.size < size) and tree.root_at(conn, size) != root:
            raise TreeCorruptedError(f"the stored tree of {size} leaves does not give the head's "
                                     "root; no checkpoint was signed")
        return size, root, last

    def covering(self, index: int) -> StoredCheckpoint:
        """The latest checkpoint if it includes leaf ``index``, else a new one (if the log has it)."""
        latest = self.latest()
        if latest is not None and latest.size > index:
            return latest
        return self.make()

    def latest(self) -> StoredCheckpoint | None:
        with self._engine.connect() as conn:
            return self._latest(conn)

    def at(self, size: int) -> StoredCheckpoint | None:
        with self._engine.connect() as conn:
            row = conn.execute(sa.select(audit_checkpoints)
                               .where(audit_checkpoints.c.size == size)).first()
        return _stored(row) if row is not None else None

    def all(self) -> list[StoredCheckpoint]:
        return stored_checkpoints(self._engine)

    @staticmethod
    def _latest(conn: Connection) -> StoredCheckpoint | None:
        row = conn.execute(sa.select(audit_checkpoints)
                           .order_by(audit_checkpoints.c.size.desc()).limit(1)).first()
        return _stored(row) if row is not None else None


def stored_checkpoints(engine: Engine) -> list[StoredCheckpoint]:
    """Every checkpoint in the database, by size."""
    with engine.connect() as conn:
        rows = conn.execute(sa.select(audit_checkpoints).order_by(audit_checkpoints.c.size)).all()
    return [_stored(r) for r in rows]


def stored_latest(engine: Engine) -> StoredCheckpoint | None:
    """The latest checkpoint in the database, if any."""
    with engine.connect() as conn:
        return Checkpointer._latest(conn)


def _stored(row: sa.Row[tuple[int, bytes, str, int]]) -> StoredCheckpoint:
    return StoredCheckpoint(int(row.size), as_bytes(row.root), row.note.encode(), int(row.ts_us))


def append_note(path: Path, note: bytes) -> None:
    """Append a signed note to a witness file with one write, and make it durable."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, note)
        os.fsync(fd)
    finally:
        os.close(fd)


def split_notes(data: bytes) -> Iterator[bytes]:
    """The signed notes of a concatenation (a witness file): each note's text, a blank line, and its
    signature lines; a line after a signature line that is not one starts the next note."""
    note: list[bytes] = []
    in_signatures = False
    for line in data.splitlines(keepends=True):
        if in_signatures and not line.startswith(_SIGNATURE_LINE):
            yield b"".join(note)
            note, in_signatures = [], False
        if not note and not line.strip():
            continue  # blank lines between notes
        if line == b"\n":
            in_signatures = True
        note.append(line)
    if note:
        yield b"".join(note)
