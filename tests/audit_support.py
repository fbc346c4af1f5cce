"""Helpers for the audit log's tests: a filled log with checkpoints, and hands that reach into the
database the way an operator with write access could (guard rails dropped first)."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy.engine import Engine

from gateway.audit.checkpoint import Signer
from gateway.audit.checkpointer import Checkpointer, split_notes
from gateway.audit.log import AuditLog
from gateway.audit.merkle import Frontier, leaf_hash
from gateway.audit.record import AuditRecord, BodyDigest, SubjectHasher
from gateway.audit.verify import Report, verify_log
from gateway.storage.db import create_engine, is_sqlite

ORIGIN = "lienthong.test/VN/audit"
SIGNER = Signer(ORIGIN, Ed25519PrivateKey.from_private_bytes(bytes(range(32))))
HASHER = SubjectHasher(b"s" * 32)
CLIENT = "VN/GOV/000.00.00.H60/MOTCUA"
SERVICE = "VN/GOV/000.00.00.G01/CSDLDC/XacThucThongTinCongDan"


def record(i: int, **kw: Any) -> AuditRecord:
    """A plausible leaf: every third one names a data subject, every other one an official."""
    base: dict[str, Any] = dict(
        exchange_id=f"x{i:06d}", ts_us=1_790_000_000_000_000 + i * 1000, protocol="rest",
        outcome="ok" if i % 7 else "refused", status=200 if i % 7 else 403, client=CLIENT,
        service=SERVICE, operation="XacThucThongTinCongDan", rule="xac-thuc-cong-dan",
        user_id=f"VN-canbo.{i % 5}" if i % 2 else None,
        purpose=f"H22.23-20261121-{i:07d}" if i % 2 else None,
        request=BodyDigest.of(b'{"i": %d}' % i), subjects=(HASHER(f"0010{i:08d}"),) if i % 3 == 0 else ())
    base.update(kw)
    return AuditRecord(**base)


@dataclass
class Filled:
    engine: Engine
    log: AuditLog
    checkpointer: Checkpointer
    witness: Path

    def verify(self, *, notes: bool = True, indexes: bool = True) -> Report:
        given = [(f"witness {i}", n) for i, n in enumerate(split_notes(self.witness.read_bytes()))] \
            if notes and self.witness.exists() else []
        return verify_log(self.engine, verifiers=[SIGNER.verifier()], origin=ORIGIN, notes=given,
                          indexes=indexes)


def filled(url: str, tmp: Path, size: int = 300, every: int = 100) -> Filled:
    """A log of ``size`` leaves with a checkpoint every ``every`` leaves (also in a witness file)."""
    engine = create_engine(url)
    log = AuditLog(engine)
    witness = tmp / "witness.txt"
    checkpointer = Checkpointer(engine, SIGNER, ORIGIN, witness)
    for start in range(0, size, every):
        log.append_many([record(i) for i in range(start, min(start + every, size))])
        checkpointer.make()
    return Filled(engine, log, checkpointer, witness)


def drop_guards(engine: Engine) -> None:
    """Remove the append-only triggers, as someone with the database's owner rights could."""
    with engine.begin() as conn:
        if is_sqlite(engine):
            names = conn.execute(sa.text("SELECT name FROM sqlite_master WHERE type = 'trigger' "
                                         "AND tbl_name LIKE 'audit_%'")).scalars().all()
            for name in names:
                conn.execute(sa.text(f'DROP TRIGGER "{name}"'))
        else:
            rows = conn.execute(sa.text(
                "SELECT t.tgname, c.relname FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid "
                "WHERE NOT t.tgisinternal AND c.relname LIKE 'audit_%'")).all()
            for name, table in rows:
                conn.execute(sa.text(f'DROP TRIGGER "{name}" ON "{table}"'))


def leaf_of(engine: Engine, idx: int) -> bytes:
    with engine.connect() as conn:
        value = conn.execute(sa.text("SELECT leaf FROM audit_leaves WHERE idx = :i"), {"i": idx}).scalar_one()
    return bytes(value)


def rebuild_tree(engine: Engine) -> None:
    """Recompute every stored node and the head from the leaves as they now are: what a careful
    tamperer without the signing key does to hide a change from everything but the checkpoints."""
    with engine.begin() as conn:
        leaves = [bytes(r[0]) for r in conn.execute(sa.text("SELECT leaf FROM audit_leaves ORDER BY idx"))]
        frontier = Frontier()
        nodes = frontier.extend(leaf_hash(leaf) for leaf in leaves)
        conn.execute(sa.text("DELETE FROM audit_nodes"))
        conn.execute(sa.text("INSERT INTO audit_nodes (level, idx, hash) VALUES (:l, :i, :h)"),
                     [{"l": n.level, "i": n.index, "h": n.hash} for n in nodes])
        conn.execute(sa.text("UPDATE audit_head SET size = :s, root = :r WHERE id = 1"),
                     {"s": frontier.size, "r": frontier.root()})


def now_us() -> int:
    return time.time_ns() // 1000
