"""``audit verify``'s check of the kept cosignatures (audit_cosignatures) against the stored
checkpoints and the configured witnesses' keys.

Each kept cosignature by a configured witness must verify over its checkpoint's note body
(CosignatureInvalid otherwise); cosignatures of witnesses no longer configured are not counted.
With ``required`` above 0, the latest checkpoint must hold that many valid cosignatures from
distinct witnesses (TooFewCosignatures otherwise). Pure reading.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from gateway.audit.checkpointer import stored_checkpoints
from gateway.audit.verify_problems import CosignatureInvalid, Problem, TooFewCosignatures
from gateway.storage.tables import audit_cosignatures
from gateway.witness.cosignature import CosignatureError, CosignatureVerifier, note_body

__all__ = ["Cosignatures", "check_cosignatures"]


@dataclass(frozen=True, slots=True)
class Cosignatures:
    """What the check found: its problems, and the witnesses whose valid cosignature each size holds."""

    problems: list[Problem] = field(default_factory=list)
    by_size: dict[int, tuple[str, ...]] = field(default_factory=dict)
    latest: int | None = None  # the latest checkpoint's size

    def witnessed(self, required: int) -> int | None:
        """The largest checkpoint size holding at least ``required`` (at least 1) valid cosignatures."""
        sizes = [s for s, names in self.by_size.items() if len(names) >= max(required, 1)]
        return max(sizes) if sizes else None


def check_cosignatures(engine: Engine, verifiers: Sequence[CosignatureVerifier],
                       required: int) -> Cosignatures:
    """Check the kept cosignatures of the log in ``engine`` (see the module docstring)."""
    bodies = {cp.size: note_body(cp.note) for cp in stored_checkpoints(engine)}
    by_name = {v.name: v for v in verifiers}
    with engine.connect() as conn:
        rows = conn.execute(sa.select(audit_cosignatures.c.size, audit_cosignatures.c.witness,
                                      audit_cosignatures.c.line)
                            .order_by(audit_cosignatures.c.size, audit_cosignatures.c.witness)).all()
    problems: list[Problem] = []
    valid: dict[int, set[str]] = defaultdict(set)
    for size, witness, line in rows:
        verifier = by_name.get(witness)
        if verifier is None:
            continue
        body = bodies.get(int(size))
        if body is None:
            problems.append(CosignatureInvalid(int(size), witness, "no checkpoint of that size is stored"))
            continue
        try:
            verifier.verify(body, line.encode())
        except CosignatureError as exc:
            problems.append(CosignatureInvalid(int(size), witness, str(exc)))
            continue
        valid[int(size)].add(witness)
    found = Cosignatures(problems, {s: tuple(sorted(names)) for s, names in valid.items()},
                         max(bodies) if bodies else None)
    if required > 0 and found.latest is not None:
        holding = found.by_size.get(found.latest, ())
        if len(holding) < required:
            problems.append(TooFewCosignatures(found.latest, required, holding, found.witnessed(required)))
    return found
