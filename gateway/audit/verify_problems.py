"""What ``audit verify`` can find wrong, one type per kind, each carrying its evidence.

Every problem has ``index``, the first leaf it concerns (None when no leaf can be named: a refused
checkpoint, a fork), a stable machine name ``kind``, a human message ``what`` and ``str()`` (the
message prefixed with ``leaf N:``), and ``as_json()``: kind, index, message and the evidence fields,
hashes in hex. Grouped by what they concern::

    leaves       Gap, BeyondHead, UnreadableLeaf
    tree         LeafHashMismatch, LeafNotInTree, NodeMismatch, NodeMissing, HeadMismatch
    indexes      IndexColumnMismatch, SubjectRowMismatch
    bodies       BodyUnreadable, BodyMismatch
    checkpoints  CheckpointRefused, CheckpointRowMismatch, Fork, CheckpointPastGap, LeavesRemoved,
                 CheckpointRootMismatch, MoreCheckpointsFail, InconsistentCheckpoints
    witnesses    CosignatureInvalid, TooFewCosignatures (gateway/witness/cosigned.py)
"""

from __future__ import annotations

import abc
from dataclasses import Field, dataclass, field, fields
from typing import Any, ClassVar

__all__ = [
    "BeyondHead",
    "BodyMismatch",
    "BodyUnreadable",
    "CheckpointPastGap",
    "CheckpointRefused",
    "CheckpointRootMismatch",
    "CheckpointRowMismatch",
    "CosignatureInvalid",
    "Fork",
    "Gap",
    "HeadMismatch",
    "InconsistentCheckpoints",
    "IndexColumnMismatch",
    "LeafHashMismatch",
    "LeafNotInTree",
    "LeavesRemoved",
    "MoreCheckpointsFail",
    "NodeMismatch",
    "NodeMissing",
    "Problem",
    "SubjectRowMismatch",
    "TooFewCosignatures",
    "UnreadableLeaf",
]

Scalar = str | int | None  # an index column's value


class Problem(abc.ABC):
    """One thing found wrong. Subclasses are frozen dataclasses; their fields are the evidence."""

    __slots__ = ()
    __dataclass_fields__: ClassVar[dict[str, Field[Any]]]  # every subclass is a dataclass
    kind: ClassVar[str]
    index: int | None  # the first leaf it concerns, when one can be named

    @property
    @abc.abstractmethod
    def what(self) -> str:
        """The message, without the leaf it concerns."""

    def __str__(self) -> str:
        return f"leaf {self.index}: {self.what}" if self.index is not None else self.what

    def evidence(self) -> dict[str, Any]:
        """The fields beside ``index``, JSON-ready: camelCase names, bytes in hex, tuples as lists."""
        return {_camel(f.name): _plain(getattr(self, f.name)) for f in fields(self) if f.name != "index"}

    def as_json(self) -> dict[str, Any]:
        return {"kind": self.kind, "index": self.index, "what": self.what, **self.evidence()}


def _camel(name: str) -> str:
    first, *rest = name.split("_")
    return first + "".join(part.capitalize() for part in rest)


def _plain(value: object) -> object:
    if isinstance(value, bytes):
        return value.hex()
    if isinstance(value, tuple | list):
        return [_plain(v) for v in value]
    return value


def _short(digest: bytes) -> str:
    return digest.hex()[:16] + "…"


# ------------------------------------------------------------------------------------------ leaves

@dataclass(frozen=True, slots=True)
class Gap(Problem):
    """A leaf index with no leaf stored: every later leaf is off its place."""

    kind: ClassVar[str] = "gap"
    index: int
    next_index: int | None  # the next index stored; None: none, though the head counts more

    @property
    def what(self) -> str:
        if self.next_index is None:
            return "missing (the head says the log has more leaves)"
        return f"missing (the next stored leaf is {self.next_index})"


@dataclass(frozen=True, slots=True)
class BeyondHead(Problem):
    """A leaf stored at or past the head's size: written beside the sequencer."""

    kind: ClassVar[str] = "beyond-head"
    index: int

    @property
    def what(self) -> str:
        return "stored beyond the head's size: added outside the sequencer"


@dataclass(frozen=True, slots=True)
class UnreadableLeaf(Problem):
    """A stored leaf that is not a leaf document (its index columns cannot be checked)."""

    kind: ClassVar[str] = "unreadable-leaf"
    index: int
    reason: str

    @property
    def what(self) -> str:
        return f"is not a readable leaf document ({self.reason})"


# -------------------------------------------------------------------------------------------- tree

@dataclass(frozen=True, slots=True)
class LeafHashMismatch(Problem):
    """A leaf whose hash is not the tree's stored leaf node."""

    kind: ClassVar[str] = "leaf-hash-mismatch"
    index: int
    expected: bytes  # the stored leaf node
    computed: bytes  # the hash of the stored leaf

    @property
    def what(self) -> str:
        return ("does not hash to the tree's stored leaf hash: the leaf was changed, replaced or "
                "moved, or the stored node was")


@dataclass(frozen=True, slots=True)
class LeafNotInTree(Problem):
    """A leaf with no leaf node stored."""

    kind: ClassVar[str] = "leaf-not-in-tree"
    index: int
    computed: bytes

    @property
    def what(self) -> str:
        return "is not in the tree's storage"


@dataclass(frozen=True, slots=True)
class NodeMismatch(Problem):
    """A stored interior node that is not the one its leaves give (proofs are built from them)."""

    kind: ClassVar[str] = "node-mismatch"
    index: int  # the node's first leaf
    level: int
    node: int  # the node's index on its level
    expected: bytes  # stored
    computed: bytes  # from the leaves

    @property
    def what(self) -> str:
        return (f"stored tree node ({self.level}, {self.node}) over leaves [{self.index}, "
                f"{(self.node + 1) << self.level}) differs from the one the leaves give")


@dataclass(frozen=True, slots=True)
class NodeMissing(Problem):
    """A perfect interior node the tree must have, not stored."""

    kind: ClassVar[str] = "node-missing"
    index: int
    level: int
    node: int
    computed: bytes

    @property
    def what(self) -> str:
        return (f"stored tree node ({self.level}, {self.node}) over leaves [{self.index}, "
                f"{(self.node + 1) << self.level}) is missing")


@dataclass(frozen=True, slots=True)
class HeadMismatch(Problem):
    """The sequencer's root is not the root of the stored leaves (the size agreeing)."""

    kind: ClassVar[str] = "head-mismatch"
    size: int
    expected: bytes  # the head's root
    computed: bytes  # the root of the stored leaves
    index: None = field(default=None, init=False)

    @property
    def what(self) -> str:
        return (f"the head's root {self.expected.hex()} is not the root of the stored leaves "
                f"{self.computed.hex()}")


# ----------------------------------------------------------------------------------------- indexes

@dataclass(frozen=True, slots=True)
class IndexColumnMismatch(Problem):
    """An index column beside a leaf that is not the leaf's value (searches could be steered)."""

    kind: ClassVar[str] = "index-column-mismatch"
    index: int
    column: str
    expected: Scalar  # from the leaf (cut to the column's width; ts_us: the leaf's time)
    found: Scalar  # in the column

    @property
    def what(self) -> str:
        return (f"the index column {self.column} disagrees with the leaf (the leaf gives "
                f"{self.expected!r}, the column holds {self.found!r})")


@dataclass(frozen=True, slots=True)
class SubjectRowMismatch(Problem):
    """The data-subject rows of a leaf are not the subjects it names (a citizen's report could miss it)."""

    kind: ClassVar[str] = "subject-row-mismatch"
    index: int
    expected: tuple[str, ...]  # the leaf's subjects, sorted (empty if they are not a list of names)
    found: tuple[str, ...]  # the stored rows', sorted

    @property
    def what(self) -> str:
        return (f"the data-subject index disagrees with the leaf's subjects ({len(self.expected)} in "
                f"the leaf, {len(self.found)} stored)")


# ------------------------------------------------------------------------------------------ bodies

@dataclass(frozen=True, slots=True)
class BodyUnreadable(Problem):
    """Kept bodies that do not open under the body key."""

    kind: ClassVar[str] = "body-unreadable"
    index: int
    reason: str

    @property
    def what(self) -> str:
        return f"kept bodies: {self.reason}"


@dataclass(frozen=True, slots=True)
class BodyMismatch(Problem):
    """A kept body that opens but is not the one whose digest the leaf holds."""

    kind: ClassVar[str] = "body-mismatch"
    index: int
    part: str  # request, response, upstream_request, upstream_response
    expected: object  # the leaf's digest ({"sha256", "size"}), None if it names none
    computed: object  # the kept body's, None if none is kept

    @property
    def what(self) -> str:
        return f"the kept {self.part} does not match the digest in the leaf"


# ------------------------------------------------------------------------------------- checkpoints

@dataclass(frozen=True, slots=True)
class CheckpointRefused(Problem):
    """A note that is not a checkpoint of this log signed by a trusted key (bad signature, unknown
    key, other origin, malformed)."""

    kind: ClassVar[str] = "checkpoint-refused"
    source: str
    error: str  # the refusal's type, e.g. SignatureError
    reason: str
    index: None = field(default=None, init=False)

    @property
    def what(self) -> str:
        return f"{self.source}: refused: {self.reason}"


@dataclass(frozen=True, slots=True)
class CheckpointRowMismatch(Problem):
    """A stored checkpoint row whose size or root columns are not its signed note's."""

    kind: ClassVar[str] = "checkpoint-row-mismatch"
    source: str
    size: int
    root: bytes
    signed_size: int
    signed_root: bytes
    index: None = field(default=None, init=False)

    @property
    def what(self) -> str:
        return f"{self.source}: the row's size or root differs from its signed note"


@dataclass(frozen=True, slots=True)
class Fork(Problem):
    """Two signed checkpoints with different roots for one size."""

    kind: ClassVar[str] = "fork"
    size: int
    roots: tuple[tuple[str, bytes], ...]  # (where each came from, its root)
    index: None = field(default=None, init=False)

    @property
    def what(self) -> str:
        return (f"fork: signed checkpoints give different roots for size {self.size} ("
                + ", ".join(f"{source}: {_short(root)}" for source, root in self.roots) + ")")


@dataclass(frozen=True, slots=True)
class CheckpointPastGap(Problem):
    """A checkpoint beyond a gap in the leaves: it cannot be checked (the gap is the problem)."""

    kind: ClassVar[str] = "checkpoint-past-gap"
    index: int  # the gap
    source: str
    size: int

    @property
    def what(self) -> str:
        return f"{self.source} covers {self.size} leaves but only the first {self.index} are in place"


@dataclass(frozen=True, slots=True)
class LeavesRemoved(Problem):
    """A checkpoint larger than the log: leaves were removed in [begin, end), the later ones
    renumbered and the tree rebuilt, or cut from ``end`` on. The leaves cannot tell which."""

    kind: ClassVar[str] = "leaves-removed"
    index: int  # a located bad leaf in the range, else ``begin``
    source: str
    size: int  # the checkpoint's
    begin: int  # the last checkpoint that holds
    end: int  # the leaves the log has

    @property
    def what(self) -> str:
        return (f"{self.source} covers {self.size} leaves but the log has only {self.end}: leaves "
                f"were removed in [{self.begin}, {self.end}), after the last checkpoint that holds "
                f"({self.begin}), or from {self.end} on")


@dataclass(frozen=True, slots=True)
class CheckpointRootMismatch(Problem):
    """A signed checkpoint whose root the first ``size`` leaves no longer give: something changed in
    [begin, size), after the last checkpoint that holds."""

    kind: ClassVar[str] = "checkpoint-root-mismatch"
    index: int  # a located bad leaf in the range, else ``begin``
    source: str
    size: int
    begin: int
    expected: bytes  # signed
    computed: bytes  # from the leaves

    @property
    def what(self) -> str:
        return (f"{self.source}: the first {self.size} leaves no longer give its root (a leaf in "
                f"[{self.begin}, {self.size}) was changed, removed, reordered or added)")


@dataclass(frozen=True, slots=True)
class MoreCheckpointsFail(Problem):
    """Checkpoints after the first failing one that fail too (one problem, not one each)."""

    kind: ClassVar[str] = "more-checkpoints-fail"
    sizes: tuple[int, ...]
    index: None = field(default=None, init=False)

    @property
    def what(self) -> str:
        return f"{len(self.sizes)} later checkpoint(s) fail the same way"


@dataclass(frozen=True, slots=True)
class InconsistentCheckpoints(Problem):
    """Two checkpoints that hold but that the stored tree gives no consistency proof between."""

    kind: ClassVar[str] = "inconsistent-checkpoints"
    index: int  # size1: the first leaf the proof covers beyond the first checkpoint
    size2: int
    reason: str

    @property
    def what(self) -> str:
        return (f"the stored tree gives no valid consistency proof from checkpoint {self.index} to "
                f"{self.size2}: {self.reason}")


# --------------------------------------------------------------------------------------- witnesses

@dataclass(frozen=True, slots=True)
class CosignatureInvalid(Problem):
    """A kept cosignature that does not verify under its witness's configured key, or that is of a
    checkpoint the database does not hold."""

    kind: ClassVar[str] = "cosignature-invalid"
    size: int
    witness: str
    reason: str
    index: None = field(default=None, init=False)

    @property
    def what(self) -> str:
        return (f"the cosignature of checkpoint {self.size} by witness {self.witness} is refused: "
                f"{self.reason}")


@dataclass(frozen=True, slots=True)
class TooFewCosignatures(Problem):
    """The latest checkpoint holds fewer valid cosignatures from the configured witnesses than
    required."""

    kind: ClassVar[str] = "too-few-cosignatures"
    size: int  # the latest checkpoint's
    required: int
    witnesses: tuple[str, ...]  # the witnesses whose valid cosignature it holds
    witnessed: int | None  # the largest checkpoint size that holds enough, if any
    index: None = field(default=None, init=False)

    @property
    def what(self) -> str:
        held = ", ".join(self.witnesses) or "none"
        since = (f"the latest checkpoint that does is size {self.witnessed}" if self.witnessed is not None
                 else "no checkpoint does")
        return (f"the latest checkpoint (size {self.size}) holds {len(self.witnesses)} valid "
                f"cosignature(s) ({held}), {self.required} required; {since}")
