"""The witness's folder: its private key and a small SQLite file of what it holds.

    <state>/witness.key   PRIVATE+KEY+<name>+<key id>+<base64(0x04 || seed)>, mode 0600
    <state>/witness.db    logs (origin, verifier key): the logs it accepts, one or more keys each;
                          latest (origin, size, root, note, time): the latest checkpoint it cosigned;
                          evidence: signed submissions it refused as inconsistent (possible forks)

Every write is a transaction with ``synchronous = FULL``: committed means on disk, before the
witness answers. Reading the held checkpoint and replacing it happen in one ``BEGIN IMMEDIATE``
transaction, so two submissions can never both move it (the race the spec warns of).
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from gateway.audit.checkpoint import Checkpoint, KeyFormatError, Verifier
from gateway.witness.cosignature import WitnessKey
from gateway.witness.decide import Held

__all__ = ["KEY_FILE", "STATE_FILE", "StateError", "Transaction", "WitnessStore", "create_key", "load_key"]

KEY_FILE = "witness.key"
STATE_FILE = "witness.db"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS logs (
    origin TEXT NOT NULL,
    vkey TEXT NOT NULL,
    added INTEGER NOT NULL,
    PRIMARY KEY (origin, vkey)
);
CREATE TABLE IF NOT EXISTS latest (
    origin TEXT PRIMARY KEY,
    size INTEGER NOT NULL,
    root BLOB NOT NULL,
    note BLOB NOT NULL,
    cosigned INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS evidence (
    id INTEGER PRIMARY KEY,
    origin TEXT NOT NULL,
    received INTEGER NOT NULL,
    status INTEGER NOT NULL,
    reason TEXT NOT NULL,
    request BLOB NOT NULL
);
"""


class StateError(RuntimeError):
    """The state folder cannot be used as asked; the message says why and what to do."""


# ---------------------------------------------------------------------------------------------- key

def create_key(folder: Path, name: str) -> tuple[WitnessKey, bool]:
    """The folder's key, made (0600, in a 0700 folder) if there is none; and whether it was made.
    An existing key under another name is refused: a witness's name is part of its identity."""
    path = folder / KEY_FILE
    if path.exists():
        key = load_key(folder)
        if key.name != name:
            raise StateError(f"{path} already holds the key of witness {key.name!r}, not {name!r}")
        return key, False
    try:
        key = WitnessKey.generate(name)
    except KeyFormatError as exc:
        raise StateError(f"invalid witness name: {exc}") from None
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.write(fd, (key.skey() + "\n").encode())
        os.fsync(fd)
    finally:
        os.close(fd)
    return key, True


def load_key(folder: Path) -> WitnessKey:
    path = folder / KEY_FILE
    try:
        text = path.read_text(encoding="ascii")
    except FileNotFoundError:
        raise StateError(f"no witness key in {folder}: run 'lienthong witness init --state {folder} "
                         "--name NAME' first") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise StateError(f"cannot read {path}: {exc}") from None
    try:
        return WitnessKey.from_skey(text)
    except KeyFormatError as exc:
        raise StateError(f"{path}: {exc}") from None


# -------------------------------------------------------------------------------------------- store

class Transaction:
    """Reads and writes inside one immediate transaction (see :meth:`WitnessStore.transaction`)."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn

    def held(self, origin: str) -> Held | None:
        row = self._conn.execute("SELECT size, root FROM latest WHERE origin = ?", (origin,)).fetchone()
        return Held(int(row[0]), bytes(row[1])) if row is not None else None

    def hold(self, checkpoint: Checkpoint, note: bytes, now: int) -> None:
        """Make ``checkpoint`` the latest cosigned one of its log."""
        self._conn.execute(
            "INSERT INTO latest (origin, size, root, note, cosigned) VALUES (?, ?, ?, ?, ?) "
            "ON CONFLICT (origin) DO UPDATE SET size = excluded.size, root = excluded.root, "
            "note = excluded.note, cosigned = excluded.cosigned",
            (checkpoint.origin, checkpoint.size, checkpoint.root, note, now))

    def accept_log(self, origin: str, vkey: str, now: int) -> bool:
        cursor = self._conn.execute("INSERT OR IGNORE INTO logs (origin, vkey, added) VALUES (?, ?, ?)",
                                    (origin, vkey, now))
        return cursor.rowcount == 1

    def keep_evidence(self, origin: str, now: int, status: int, reason: str, request: bytes) -> None:
        self._conn.execute("INSERT INTO evidence (origin, received, status, reason, request) "
                           "VALUES (?, ?, ?, ?, ?)", (origin, now, status, reason, request))


class WitnessStore:
    """The witness's SQLite file: the logs it accepts and the latest checkpoint of each."""

    def __init__(self, folder: Path) -> None:
        self.path = folder / STATE_FILE
        if not folder.is_dir():
            raise StateError(f"no state folder {folder}: run 'lienthong witness init' first")
        with self._connect() as conn:
            conn.executescript(_SCHEMA)

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, isolation_level=None, timeout=30)
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("PRAGMA synchronous = FULL")  # a commit is on disk before the witness answers
        return conn

    @contextmanager
    def transaction(self) -> Iterator[Transaction]:
        """One ``BEGIN IMMEDIATE`` transaction (the write lock taken first), committed durably at the
        end, rolled back on an exception."""
        conn = self._connect()
        try:
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield Transaction(conn)
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")
        finally:
            conn.close()

    def add_log(self, origin: str, vkey: str, now: int) -> bool:
        """Accept checkpoints of ``origin`` signed by ``vkey``; False if it was accepted already."""
        with self.transaction() as tx:
            return tx.accept_log(origin, vkey, now)

    def logs(self) -> dict[str, list[str]]:
        """Every accepted origin and its verifier keys."""
        found: dict[str, list[str]] = {}
        with self._read() as conn:
            for origin, vkey in conn.execute("SELECT origin, vkey FROM logs ORDER BY origin, added"):
                found.setdefault(origin, []).append(vkey)
        return found

    def keys_of(self, origin: str) -> list[Verifier]:
        """The keys trusted for ``origin`` (none: an unknown log)."""
        with self._read() as conn:
            rows = conn.execute("SELECT vkey FROM logs WHERE origin = ?", (origin,)).fetchall()
        return [Verifier.from_vkey(vkey) for (vkey,) in rows]

    def latest(self, origin: str) -> tuple[int, bytes] | None:
        """The latest cosigned checkpoint of ``origin``: its size and note."""
        with self._read() as conn:
            row = conn.execute("SELECT size, note FROM latest WHERE origin = ?", (origin,)).fetchone()
        return (int(row[0]), bytes(row[1])) if row is not None else None

    def evidence(self, origin: str) -> list[tuple[int, str, bytes]]:
        """The refused signed submissions of ``origin``: status, reason, request body."""
        with self._read() as conn:
            rows = conn.execute("SELECT status, reason, request FROM evidence WHERE origin = ? "
                                "ORDER BY id", (origin,)).fetchall()
        return [(int(s), str(r), bytes(b)) for s, r, b in rows]

    @contextmanager
    def _read(self) -> Iterator[sqlite3.Connection]:
        conn = self._connect()
        try:
            yield conn
        finally:
            conn.close()
