"""RFC 9162 Merkle tree hashing, proofs and proof verification, with no storage and no I/O.

Three layers, from the bottom up:

* hashing: :func:`leaf_hash`, :func:`node_hash`, :func:`root_from_leaves` (the MTH of RFC 9162 2.1.1);
* proofs: reference builders over a full list of leaf hashes (:func:`inclusion_proof`,
  :func:`consistency_proof`) and storage-friendly builders that only name the nodes to fetch
  (:func:`inclusion_proof_nodes`, :func:`consistency_proof_nodes`, then :func:`proof_from_nodes`);
  the log's right edge is kept by a :class:`Frontier`;
* verification: :func:`verify_inclusion` and :func:`verify_consistency` answer a plain bool and never
  raise; :func:`check_inclusion`, :func:`check_consistency` and the ``root_from_*`` functions raise::

      ProofError              the proof or the tree coordinates were refused; ``rule`` names the check
      └── RootMismatchError   the proof was well formed but led to another root (``expected``, ``computed``)

Storage model: a node ``(level, index)`` is the root of the *perfect* subtree over leaves
``[index * 2**level, (index + 1) * 2**level)``; level 0 nodes are the leaf hashes. A proof element is
either one such node or, on the right edge of a tree whose size is not a power of two, the RFC 9162
hash of a range that several perfect nodes make up (:class:`NodeRef`).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import NamedTuple

__all__ = [
    "EMPTY_ROOT",
    "HASH_SIZE",
    "Frontier",
    "Node",
    "NodeID",
    "NodeRef",
    "ProofError",
    "RootMismatchError",
    "check_consistency",
    "check_inclusion",
    "consistency_proof",
    "consistency_proof_nodes",
    "hash_range",
    "inclusion_proof",
    "inclusion_proof_nodes",
    "leaf_hash",
    "leaf_hashes",
    "node_hash",
    "nodes_to_fetch",
    "proof_from_nodes",
    "range_nodes",
    "root_from_consistency_proof",
    "root_from_inclusion_proof",
    "root_from_leaves",
    "verify_consistency",
    "verify_inclusion",
]

HASH_SIZE = 32
_sha256 = hashlib.sha256
_LEAF_PREFIX = b"\x00"
_NODE_PREFIX = b"\x01"

EMPTY_ROOT: bytes = _sha256(b"").digest()
"""MTH({}): the root of the empty tree."""


# --------------------------------------------------------------------------------------------- hashing

def leaf_hash(data: bytes) -> bytes:
    """SHA-256(0x00 || data): the hash of one log entry."""
    return _sha256(_LEAF_PREFIX + data).digest()


def leaf_hashes(entries: Iterable[bytes]) -> list[bytes]:
    """The leaf hash of every entry, in order (a batch form of :func:`leaf_hash`)."""
    sha256, prefix = _sha256, _LEAF_PREFIX
    return [sha256(prefix + data).digest() for data in entries]


def node_hash(left: bytes, right: bytes) -> bytes:
    """SHA-256(0x01 || left || right): the hash of an interior node."""
    return _sha256(_NODE_PREFIX + left + right).digest()


def root_from_leaves(leaf_hashes: Sequence[bytes]) -> bytes:
    """The RFC 9162 Merkle tree hash over already hashed leaves; EMPTY_ROOT for none.

    Hashes level by level: pairing neighbours and lifting an unpaired last node unchanged gives
    exactly the RFC's split at the largest power of two below the size.
    """
    if not leaf_hashes:
        return EMPTY_ROOT
    if any(len(h) != HASH_SIZE for h in leaf_hashes):
        raise ValueError(f"every leaf hash must be {HASH_SIZE} bytes")
    level = list(leaf_hashes)
    sha256, prefix = _sha256, _NODE_PREFIX
    while len(level) > 1:
        odd = level[-1] if len(level) & 1 else None
        it = iter(level)
        level = [sha256(prefix + left + right).digest() for left, right in zip(it, it, strict=False)]
        if odd is not None:
            level.append(odd)
    return level[0]


def hash_range(hashes: Sequence[bytes]) -> bytes:
    """Fold the hashes of a range's perfect nodes (left to right, as :func:`range_nodes` lists them)
    into the range's RFC 9162 hash, from the right: h = node_hash(h[i], h)."""
    if not hashes:
        raise ValueError("an empty range has no node hash")
    acc = hashes[-1]
    for left in reversed(hashes[:-1]):
        acc = node_hash(left, acc)
    return acc


# ------------------------------------------------------------------------------------ node addressing

class NodeID(NamedTuple):
    """The perfect subtree at ``level`` covering leaves [index * 2**level, (index + 1) * 2**level)."""

    level: int
    index: int  # type: ignore[assignment]  # shadows tuple.index on purpose: storage speaks (level, index)

    @property
    def begin(self) -> int:
        return self.index << self.level

    @property
    def end(self) -> int:
        return (self.index + 1) << self.level


class Node(NamedTuple):
    """A perfect node with its hash, as a :class:`Frontier` hands it to storage."""

    level: int
    index: int  # type: ignore[assignment]  # as in NodeID
    hash: bytes


def range_nodes(begin: int, end: int) -> list[NodeID]:
    """Split leaves [begin, end) into the fewest perfect subtrees, listed left to right."""
    if not 0 <= begin <= end:
        raise ValueError(f"bad range [{begin}, {end})")
    nodes: list[NodeID] = []
    while begin < end:
        size = begin & -begin if begin else 1 << (end.bit_length() - 1)
        while size > end - begin:
            size >>= 1
        level = size.bit_length() - 1
        nodes.append(NodeID(level, begin >> level))
        begin += size
    return nodes


@dataclass(frozen=True, slots=True)
class NodeRef:
    """One proof element: the RFC 9162 hash of the subtree over leaves [begin, end).

    ``nodes`` are the perfect nodes to fetch; one for a perfect subtree, several for the incomplete
    subtree on a tree's right edge, whose hash :func:`hash_range` folds from them.
    """

    begin: int
    end: int

    @property
    def nodes(self) -> list[NodeID]:
        return range_nodes(self.begin, self.end)

    @property
    def is_perfect(self) -> bool:
        return len(self.nodes) == 1


def _largest_power_of_two_below(n: int) -> int:
    """The k of RFC 9162: the largest power of two strictly smaller than n (n > 1)."""
    return 1 << ((n - 1).bit_length() - 1)


def _inclusion_ranges(index: int, size: int) -> list[NodeRef]:
    """PATH(index, D[0:size]) of RFC 9162 2.1.3.1 as leaf ranges, ordered from the leaf upwards."""
    if not 0 <= index < size:
        raise ValueError(f"index {index} is outside a tree of size {size}")
    top_down: list[NodeRef] = []
    begin, end = 0, size
    while end - begin > 1:
        split = begin + _largest_power_of_two_below(end - begin)
        if index < split:
            top_down.append(NodeRef(split, end))
            end = split
        else:
            top_down.append(NodeRef(begin, split))
            begin = split
    top_down.reverse()
    return top_down


def _consistency_ranges(size1: int, size2: int) -> list[NodeRef]:
    """PROOF(size1, D[0:size2]) of RFC 9162 2.1.4.1 as leaf ranges, in proof order."""
    if not 0 < size1 <= size2:
        raise ValueError(f"consistency proofs need 0 < size1 <= size2, got {size1}, {size2}")
    top_down: list[NodeRef] = []
    begin, end, whole_old_tree = 0, size2, True
    while size1 != end:
        split = begin + _largest_power_of_two_below(end - begin)
        if size1 <= split:
            top_down.append(NodeRef(split, end))
            end = split
        else:
            top_down.append(NodeRef(begin, split))
            begin, whole_old_tree = split, False
    if not whole_old_tree:  # SUBPROOF(m, D[m], false) = {MTH(D[m])}
        top_down.append(NodeRef(begin, end))
    top_down.reverse()
    return top_down


def inclusion_proof_nodes(index: int, size: int) -> list[NodeRef]:
    """Which subtrees make the inclusion proof of leaf ``index`` in a tree of ``size`` leaves."""
    return _inclusion_ranges(index, size)


def consistency_proof_nodes(size1: int, size2: int) -> list[NodeRef]:
    """Which subtrees make the consistency proof from ``size1`` to ``size2`` (0 < size1 <= size2)."""
    return _consistency_ranges(size1, size2)


def nodes_to_fetch(refs: Iterable[NodeRef]) -> list[NodeID]:
    """Every perfect node the proof elements need, in order, for one batched storage read."""
    return [node for ref in refs for node in ref.nodes]


def proof_from_nodes(refs: Iterable[NodeRef], get_node: Callable[[int, int], bytes]) -> list[bytes]:
    """Assemble a proof from stored perfect nodes; ``get_node(level, index)`` returns a node hash."""
    return [hash_range([get_node(level, index) for level, index in ref.nodes]) for ref in refs]


# ---------------------------------------------------------------------- reference proofs (full list)

def inclusion_proof(index: int, leaf_hashes: Sequence[bytes]) -> list[bytes]:
    """The RFC 9162 inclusion proof (PATH) of leaf ``index`` among all ``leaf_hashes``."""
    refs = _inclusion_ranges(index, len(leaf_hashes))
    return [root_from_leaves(leaf_hashes[ref.begin:ref.end]) for ref in refs]


def consistency_proof(size1: int, size2: int, leaf_hashes: Sequence[bytes]) -> list[bytes]:
    """The RFC 9162 consistency proof (PROOF) from the first ``size1`` to the first ``size2`` leaves."""
    if size2 > len(leaf_hashes):
        raise ValueError(f"size2 {size2} is beyond the {len(leaf_hashes)} leaves given")
    refs = _consistency_ranges(size1, size2)
    return [root_from_leaves(leaf_hashes[ref.begin:ref.end]) for ref in refs]


# ------------------------------------------------------------------------------------------ frontier

class Frontier:
    """The right edge of a growing tree: the roots of the perfect subtrees that make [0, size).

    Enough to compute the current root and to keep appending, and cheap to rebuild from stored
    nodes after a restart (:meth:`from_nodes`).
    """

    __slots__ = ("_hashes", "_size")

    def __init__(self) -> None:
        self._size = 0
        self._hashes: list[bytes] = []  # largest (leftmost) subtree first

    @classmethod
    def from_nodes(cls, size: int, get_node: Callable[[int, int], bytes]) -> Frontier:
        """Rebuild the frontier of a tree of ``size`` leaves from its stored perfect nodes."""
        frontier = cls()
        for level, index in range_nodes(0, size):
            node = get_node(level, index)
            if len(node) != HASH_SIZE:
                raise ValueError(f"stored node ({level}, {index}) is not {HASH_SIZE} bytes")
            frontier._hashes.append(node)
        frontier._size = size
        return frontier

    @property
    def size(self) -> int:
        return self._size

    def copy(self) -> Frontier:
        """An independent frontier at the same place."""
        other = Frontier()
        other._size, other._hashes = self._size, list(self._hashes)
        return other

    def nodes(self) -> list[Node]:
        """The perfect nodes of the right edge, left to right."""
        return [Node(level, index, h) for (level, index), h in zip(range_nodes(0, self._size), self._hashes,
                                                                    strict=True)]

    def append(self, leaf: bytes) -> list[Node]:
        """Add one leaf hash; return the perfect nodes it completed, the leaf itself (level 0) first."""
        if len(leaf) != HASH_SIZE:
            raise ValueError(f"a leaf hash must be {HASH_SIZE} bytes")
        index = self._size
        completed = [Node(0, index, leaf)]
        hashes, acc, level = self._hashes, leaf, 0
        while (index >> level) & 1:  # the new node is a right child: merge with its left sibling
            acc = _sha256(_NODE_PREFIX + hashes.pop() + acc).digest()
            level += 1
            completed.append(Node(level, index >> level, acc))
        hashes.append(acc)
        self._size = index + 1
        return completed

    def extend(self, leaves: Iterable[bytes]) -> list[Node]:
        """Append many leaf hashes; return every perfect node they completed, in creation order."""
        completed: list[Node] = []
        for leaf in leaves:
            completed.extend(self.append(leaf))
        return completed

    def extend_levels(self, leaves: Sequence[bytes]) -> list[tuple[int, int, list[bytes]]]:
        """Append many leaf hashes a level at a time (much faster than :meth:`extend` for a batch);
        return, from level 0 up, ``(level, first index, hashes)`` of the perfect nodes completed on
        that level, left to right: the same nodes :meth:`extend` returns, grouped by level."""
        nodes = list(leaves)
        if nodes and set(map(len, nodes)) != {HASH_SIZE}:
            raise ValueError(f"a leaf hash must be {HASH_SIZE} bytes")
        old, new = self._size, self._size + len(nodes)
        edge = dict(zip(_levels_of(old), self._hashes, strict=True))  # the right edge, by level
        sha256, prefix = _sha256, _NODE_PREFIX
        completed: list[tuple[int, int, list[bytes]]] = []
        level, first = 0, old
        while nodes:
            completed.append((level, first, nodes))
            if first & 1:  # the first new node is a right child: its left sibling is on the edge
                nodes = [edge.pop(level), *nodes]
                first -= 1
            if len(nodes) & 1:  # the last one waits on the edge for its right sibling
                edge[level] = nodes[-1]
            it = iter(nodes)
            nodes = [sha256(prefix + left + right).digest() for left, right in zip(it, it, strict=False)]
            level, first = level + 1, first >> 1
        self._hashes = [edge[lv] for lv in _levels_of(new)]
        self._size = new
        return completed

    def root(self) -> bytes:
        """The RFC 9162 root of the tree so far."""
        return hash_range(self._hashes) if self._hashes else EMPTY_ROOT

    def __repr__(self) -> str:
        return f"Frontier(size={self._size})"


def _levels_of(size: int) -> list[int]:
    """The levels of the perfect subtrees that make [0, size), largest first (its set bits)."""
    return [level for level in range(size.bit_length() - 1, -1, -1) if size >> level & 1]


# -------------------------------------------------------------------------------------- verification

class ProofError(ValueError):
    """A proof or its tree coordinates were refused; ``rule`` names the check that refused."""

    def __init__(self, rule: str, detail: str) -> None:
        super().__init__(f"{rule}: {detail}")
        self.rule = rule
        self.detail = detail


class RootMismatchError(ProofError):
    """The proof was well formed but leads to ``computed``, not to the ``expected`` root."""

    def __init__(self, expected: bytes, computed: bytes) -> None:
        super().__init__("root-mismatch", f"computed root {computed.hex()} != expected {expected.hex()}")
        self.expected = expected
        self.computed = computed


def _require_count(name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ProofError("bad-argument", f"{name} must be a non-negative integer, got {value!r}")
    return value


def _require_bytes(name: str, value: object) -> bytes:
    if not isinstance(value, bytes | bytearray):
        raise ProofError("bad-argument", f"{name} must be bytes, got {type(value).__name__}")
    return bytes(value)


def _require_hash(name: str, value: object) -> bytes:
    data = _require_bytes(name, value)
    if len(data) != HASH_SIZE:
        raise ProofError("hash-size", f"{name} is {len(data)} bytes, want {HASH_SIZE}")
    return data


def _require_proof(proof: object) -> list[bytes]:
    if isinstance(proof, bytes | bytearray | str) or not isinstance(proof, Sequence):
        raise ProofError("bad-argument", f"proof must be a sequence of hashes, got {type(proof).__name__}")
    return [_require_hash(f"proof[{i}]", element) for i, element in enumerate(proof)]


def _require_match(expected: bytes, computed: bytes) -> None:
    if computed != expected:
        raise RootMismatchError(expected, computed)


def _split_inclusion(index: int, size: int) -> tuple[int, int]:
    """How an inclusion proof for ``index`` in ``size`` divides: (inner, border) element counts.

    Inner elements sit below the point where the paths to ``index`` and to ``size - 1`` part, so
    the bit of ``index`` at their level says the side; border elements hang to the left of the right
    edge, one per set bit of ``index`` above that point.
    """
    inner = (index ^ (size - 1)).bit_length()
    border = (index >> inner).bit_count()
    return inner, border


def _chain_inner(seed: bytes, proof: Sequence[bytes], index: int) -> bytes:
    for level, sibling in enumerate(proof):
        seed = node_hash(sibling, seed) if (index >> level) & 1 else node_hash(seed, sibling)
    return seed


def _chain_inner_left_only(seed: bytes, proof: Sequence[bytes], index: int) -> bytes:
    """Like :func:`_chain_inner` but only through left siblings: the subtree as it was earlier."""
    for level, sibling in enumerate(proof):
        if (index >> level) & 1:
            seed = node_hash(sibling, seed)
    return seed


def _chain_border(seed: bytes, proof: Sequence[bytes]) -> bytes:
    for sibling in proof:
        seed = node_hash(sibling, seed)
    return seed


def root_from_inclusion_proof(index: int, size: int, leaf_hash: bytes, proof: Sequence[bytes]) -> bytes:
    """The root that ``proof`` implies for leaf ``index`` of a tree of ``size``; raises ProofError."""
    index = _require_count("index", index)
    size = _require_count("size", size)
    if index >= size:
        raise ProofError("index-beyond-size", f"index {index} >= size {size}")
    leaf = _require_hash("leaf hash", leaf_hash)
    path = _require_proof(proof)
    inner, border = _split_inclusion(index, size)
    if len(path) != inner + border:
        raise ProofError("proof-length", f"proof has {len(path)} elements, want {inner + border}")
    return _chain_border(_chain_inner(leaf, path[:inner], index), path[inner:])


def check_inclusion(index: int, size: int, leaf_hash: bytes, proof: Sequence[bytes], root: bytes) -> None:
    """Raise ProofError (RootMismatchError for a wrong root) unless leaf ``index`` is in the tree."""
    expected = _require_hash("root", root)
    _require_match(expected, root_from_inclusion_proof(index, size, leaf_hash, proof))


def verify_inclusion(index: int, size: int, leaf_hash: bytes, proof: Sequence[bytes], root: bytes) -> bool:
    """True when ``proof`` shows leaf ``index`` with ``leaf_hash`` in the tree of ``size`` and ``root``."""
    try:
        check_inclusion(index, size, leaf_hash, proof, root)
    except ProofError:
        return False
    return True


def root_from_consistency_proof(size1: int, size2: int, root1: bytes, proof: Sequence[bytes]) -> bytes:
    """Check ``proof`` against ``root1`` and return the root it implies for ``size2``; raises ProofError.

    Rules (as the transparency-dev/merkle vectors expect): size1 > size2 and size1 = 0 are refused,
    even with equal sizes; equal sizes need an empty proof and give back ``root1`` unchanged;
    otherwise the proof must be non-empty and exactly as long as RFC 9162 says.
    """
    size1 = _require_count("size1", size1)
    size2 = _require_count("size2", size2)
    if size1 > size2:
        raise ProofError("size1-beyond-size2", f"size1 {size1} > size2 {size2}")
    if size1 == 0:
        raise ProofError("size1-zero", "a consistency proof from the empty tree proves nothing")
    if size1 == size2:
        old_root = _require_bytes("root1", root1)
        if _require_proof(proof):
            raise ProofError("proof-not-empty", "size1 = size2 needs an empty proof")
        return old_root
    old_root = _require_hash("root1", root1)
    path = _require_proof(proof)
    if not path:
        raise ProofError("empty-proof", f"a proof from {size1} to {size2} cannot be empty")

    inner, border = _split_inclusion(size1 - 1, size2)
    shift = (size1 & -size1).bit_length() - 1  # size1's trailing zeros: the old tree's last perfect level
    inner -= shift
    # The proof starts with the hash of the old tree's last perfect subtree, unless the old tree is
    # itself perfect and that hash is root1.
    seeded_by_root1 = size1 == 1 << shift
    want = inner + border + (0 if seeded_by_root1 else 1)
    if len(path) != want:
        raise ProofError("proof-length", f"proof has {len(path)} elements, want {want}")
    seed, path = (old_root, path) if seeded_by_root1 else (path[0], path[1:])

    mask = (size1 - 1) >> shift
    computed1 = _chain_border(_chain_inner_left_only(seed, path[:inner], mask), path[inner:])
    _require_match(old_root, computed1)
    return _chain_border(_chain_inner(seed, path[:inner], mask), path[inner:])


def check_consistency(size1: int, size2: int, root1: bytes, root2: bytes, proof: Sequence[bytes]) -> None:
    """Raise ProofError (RootMismatchError for a wrong root) unless the trees are consistent."""
    computed = root_from_consistency_proof(size1, size2, root1, proof)
    expected = _require_bytes("root2", root2) if size1 == size2 else _require_hash("root2", root2)
    _require_match(expected, computed)


def verify_consistency(size1: int, size2: int, root1: bytes, root2: bytes, proof: Sequence[bytes]) -> bool:
    """True when ``proof`` shows the tree (size2, root2) extends the tree (size1, root1)."""
    try:
        check_consistency(size1, size2, root1, root2, proof)
    except ProofError:
        return False
    return True
