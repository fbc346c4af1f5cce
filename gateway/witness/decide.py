"""What a witness answers an add-checkpoint submission, as pure functions of the request and what
the witness holds (C2SP tlog-witness): no I/O, no clock, no key.

    open_checkpoint   the note: 400 malformed, 404 unknown origin, 403 no trusted signature
    decide            the checkpoint against the latest cosigned one: 400 old beyond the size,
                      409 another old size (or another root for the same size), 422 a proof that
                      does not verify, else accept (and whether the held checkpoint moves)
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from gateway.audit.checkpoint import (
    Checkpoint,
    CheckpointError,
    MalformedNoteError,
    NoteError,
    Verifier,
    open_note,
)
from gateway.audit.merkle import EMPTY_ROOT, ProofError, check_consistency
from gateway.witness.cosignature import note_body
from gateway.witness.protocol import Submission

__all__ = ["Accept", "Held", "Refuse", "decide", "open_checkpoint"]


@dataclass(frozen=True, slots=True)
class Held:
    """The latest checkpoint a witness cosigned for one log."""

    size: int
    root: bytes


@dataclass(frozen=True, slots=True)
class Refuse:
    """A refusal: the HTTP status, why, and for a 409 the size the witness holds. ``evidence``: the
    log signed something the witness cannot accept (worth keeping: it may be a fork)."""

    status: int
    reason: str
    size: int | None = None
    evidence: bool = False


@dataclass(frozen=True, slots=True)
class Accept:
    """Cosign ``checkpoint``; ``advance``: it is newer than the held one, which it replaces."""

    checkpoint: Checkpoint
    advance: bool


def open_checkpoint(note: bytes, keys_of: Callable[[str], Sequence[Verifier]]) -> Checkpoint | Refuse:
    """The checkpoint in ``note`` if a key the witness trusts for its origin signed it."""
    try:
        origin = Checkpoint.parse(note_body(note)).origin
    except CheckpointError as exc:
        return Refuse(400, f"not a checkpoint: {exc}")
    keys = keys_of(origin)
    if not keys:
        return Refuse(404, f"unknown log origin {origin!r}")
    try:
        return open_note(note, keys, origin=origin)
    except (MalformedNoteError, CheckpointError) as exc:
        return Refuse(400, f"malformed checkpoint note: {exc}")
    except NoteError as exc:  # no known signature, or a known key's signature that fails
        return Refuse(403, f"checkpoint not signed by a key trusted for {origin!r}: {exc}")


def decide(submission: Submission, checkpoint: Checkpoint, held: Held | None) -> Accept | Refuse:
    """Accept or refuse ``checkpoint`` (already opened) given the latest one cosigned, if any."""
    old, size = submission.old, checkpoint.size
    if old > size:
        return Refuse(400, f"old size {old} is beyond the checkpoint's size {size}")
    held_size = held.size if held is not None else 0
    if old != held_size:
        return Refuse(409, f"old size {old}, but the latest cosigned checkpoint has size {held_size}",
                      size=held_size)
    if held is None:  # first sight of this log: nothing to be consistent with, but the empty tree
        if size == 0 and checkpoint.root != EMPTY_ROOT:
            return Refuse(422, "a checkpoint of size 0 must have the empty tree's root", evidence=True)
        return Accept(checkpoint, advance=True)
    if size == held.size:
        if checkpoint.root != held.root:
            return Refuse(409, f"another root for size {size} than the one cosigned (a fork)",
                          size=held.size, evidence=True)
        if submission.proof:
            return Refuse(400, "the proof must be empty when the old size is the checkpoint's")
        return Accept(checkpoint, advance=False)
    if old == 0:  # a held empty tree: every tree extends it
        return Accept(checkpoint, advance=True)
    try:
        check_consistency(old, size, held.root, checkpoint.root, list(submission.proof))
    except ProofError as exc:
        return Refuse(422, f"the consistency proof from {old} to {size} does not verify: {exc}",
                      evidence=True)
    return Accept(checkpoint, advance=True)
