"""RFC 9162 Merkle hashing, proofs and verifiers: published vectors, a naive reference, properties."""

from __future__ import annotations

import base64
import hashlib
import json
from functools import cache
from pathlib import Path
from typing import Any

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from gateway.audit import merkle
from gateway.audit.merkle import (
    EMPTY_ROOT,
    Frontier,
    NodeID,
    NodeRef,
    ProofError,
    RootMismatchError,
    check_consistency,
    check_inclusion,
    consistency_proof,
    consistency_proof_nodes,
    hash_range,
    inclusion_proof,
    inclusion_proof_nodes,
    leaf_hash,
    leaf_hashes,
    node_hash,
    nodes_to_fetch,
    proof_from_nodes,
    range_nodes,
    root_from_consistency_proof,
    root_from_inclusion_proof,
    root_from_leaves,
    verify_consistency,
    verify_inclusion,
)

FIXTURES = Path(__file__).resolve().parents[1].parent / "shared" / "fixtures"
VECTORS = FIXTURES / "rfc9162"
ABSENT = f"fixtures folder {VECTORS} (../shared/fixtures/rfc9162) is absent"


# ------------------------------------------------------------------------ naive RFC 9162 reference

def _split(n: int) -> int:
    k = 1
    while k * 2 < n:
        k *= 2
    return k


def ref_mth(entries: tuple[bytes, ...]) -> bytes:
    """MTH of RFC 9162 2.1.1, recursively over raw entries."""
    if not entries:
        return hashlib.sha256(b"").digest()
    if len(entries) == 1:
        return hashlib.sha256(b"\x00" + entries[0]).digest()
    k = _split(len(entries))
    return hashlib.sha256(b"\x01" + ref_mth(entries[:k]) + ref_mth(entries[k:])).digest()


def ref_path(m: int, entries: tuple[bytes, ...]) -> list[bytes]:
    """PATH(m, D[n]) of RFC 9162 2.1.3.1."""
    if len(entries) <= 1:
        return []
    k = _split(len(entries))
    if m < k:
        return [*ref_path(m, entries[:k]), ref_mth(entries[k:])]
    return [*ref_path(m - k, entries[k:]), ref_mth(entries[:k])]


def ref_subproof(m: int, entries: tuple[bytes, ...], whole: bool) -> list[bytes]:
    """SUBPROOF(m, D[n], b) of RFC 9162 2.1.4.1."""
    if m == len(entries):
        return [] if whole else [ref_mth(entries)]
    k = _split(len(entries))
    if m <= k:
        return [*ref_subproof(m, entries[:k], whole), ref_mth(entries[k:])]
    return [*ref_subproof(m - k, entries[k:], False), ref_mth(entries[:k])]


@cache
def entries_of(n: int) -> tuple[bytes, ...]:
    return tuple(f"entry {i} ".encode() * (i % 5) for i in range(n))


@cache
def hashes_of(n: int) -> tuple[bytes, ...]:
    return tuple(leaf_hash(e) for e in entries_of(n))


REF_SIZES = range(81)
NODE_SIZES = range(1, 71)


@cache
def node_store() -> dict[tuple[int, int], bytes]:
    """Every perfect node of the largest reference tree, as storage would hold them."""
    frontier = Frontier()
    return {(n.level, n.index): n.hash for n in frontier.extend(hashes_of(max(REF_SIZES)))}


def get_node(level: int, index: int) -> bytes:
    return node_store()[(level, index)]


# ------------------------------------------------------------------------------------ the vectors

def _vector_params(kind: str) -> list[Any]:
    folder = VECTORS / kind
    if not folder.is_dir():
        return [pytest.param(None, marks=pytest.mark.skip(reason=ABSENT), id="absent")]
    return [pytest.param(p, id=str(p.relative_to(folder))) for p in sorted(folder.rglob("*.json"))]


def _b64(text: str) -> bytes:
    return base64.b64decode(text, validate=True)


def _load(path: Path) -> dict[str, Any]:
    vector: dict[str, Any] = json.loads(path.read_text())
    vector["proof"] = [_b64(p) for p in vector["proof"] or []]
    return vector


def test_all_vectors_are_present() -> None:
    """The rfc9162 fixture folder holds the 196 published inclusion and consistency vectors."""
    if not VECTORS.is_dir():
        pytest.skip(ABSENT)
    inclusion = list((VECTORS / "inclusion").rglob("*.json"))
    consistency = list((VECTORS / "consistency").rglob("*.json"))
    assert len(inclusion) + len(consistency) == 196


@pytest.mark.parametrize("path", _vector_params("inclusion"))
def test_inclusion_vector(path: Path) -> None:
    """Each inclusion vector verifies exactly when it says it should, with both verifier forms."""
    v = _load(path)
    args = (v["leafIdx"], v["treeSize"], _b64(v["leafHash"]), v["proof"], _b64(v["root"]))
    assert verify_inclusion(*args) is not v["wantErr"]
    if v["wantErr"]:
        with pytest.raises(ProofError):
            check_inclusion(*args)
    else:
        check_inclusion(*args)


@pytest.mark.parametrize("path", _vector_params("consistency"))
def test_consistency_vector(path: Path) -> None:
    """Each consistency vector verifies exactly when it says it should, with both verifier forms."""
    v = _load(path)
    args = (v["size1"], v["size2"], _b64(v["root1"]), _b64(v["root2"]), v["proof"])
    assert verify_consistency(*args) is not v["wantErr"]
    if v["wantErr"]:
        with pytest.raises(ProofError):
            check_consistency(*args)
    else:
        check_consistency(*args)


STANDARD_LEAVES = tuple(bytes.fromhex(h) for h in (
    "", "00", "10", "2021", "3031", "40414243", "5051525354555657", "606162636465666768696a6b6c6d6e6f",
))
STANDARD_HASHES = [leaf_hash(e) for e in STANDARD_LEAVES]


def _happy_paths(kind: str) -> list[Any]:
    return [p for p in _vector_params(kind) if p.values[0] is None or "happy-path" in str(p.values[0])]


@pytest.mark.parametrize("path", _happy_paths("inclusion"))
def test_inclusion_happy_paths_are_what_we_build(path: Path) -> None:
    """The published happy-path inclusion proofs over the standard tree are exactly the ones we build."""
    v = _load(path)
    leaves = STANDARD_HASHES[: v["treeSize"]]
    assert inclusion_proof(v["leafIdx"], leaves) == v["proof"]
    assert root_from_leaves(leaves) == _b64(v["root"])


@pytest.mark.parametrize("path", _happy_paths("consistency"))
def test_consistency_happy_paths_are_what_we_build(path: Path) -> None:
    """The published happy-path consistency proofs over the standard tree are exactly the ones we build."""
    v = _load(path)
    assert consistency_proof(v["size1"], v["size2"], STANDARD_HASHES) == v["proof"]
    assert root_from_leaves(STANDARD_HASHES[: v["size2"]]) == _b64(v["root2"])


def test_additional_vector_rules() -> None:
    """The edge rules the vectors pin down: size1 = 0 is refused even against itself; equal sizes
    compare roots byte for byte (the vectors accept 12-byte roots there)."""
    some = b"don't care 2"
    assert not verify_consistency(0, 0, EMPTY_ROOT, EMPTY_ROOT, [])
    assert not verify_consistency(0, 1, EMPTY_ROOT, EMPTY_ROOT, [])
    assert verify_consistency(1, 1, some, some, [])
    assert not verify_consistency(1, 1, some, some, [EMPTY_ROOT])
    assert not verify_consistency(1, 2, some, some, [])


# ---------------------------------------------------------------------------------------- hashing

def test_standard_tree_roots() -> None:
    """The empty, one-leaf and eight-leaf roots of the standard tree match the published values."""
    assert root_from_leaves([]) == EMPTY_ROOT
    assert EMPTY_ROOT.hex() == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    assert root_from_leaves(STANDARD_HASHES[:1]).hex() == (
        "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d")
    assert root_from_leaves(STANDARD_HASHES).hex() == (
        "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328")


def test_hash_domain_separation() -> None:
    """Leaves and nodes are hashed with distinct 0x00 / 0x01 prefixes."""
    assert leaf_hash(b"x") == hashlib.sha256(b"\x00x").digest()
    assert node_hash(b"a", b"b") == hashlib.sha256(b"\x01ab").digest()
    assert leaf_hashes([b"x", b""]) == [leaf_hash(b"x"), leaf_hash(b"")]


def test_root_refuses_leaf_hashes_of_wrong_size() -> None:
    """root_from_leaves refuses leaf hashes that are not 32 bytes instead of hashing them anyway."""
    with pytest.raises(ValueError, match="32 bytes"):
        root_from_leaves([EMPTY_ROOT, b"short"])


@pytest.mark.parametrize("n", REF_SIZES)
def test_root_matches_reference(n: int) -> None:
    """root_from_leaves and the Frontier agree with the recursive RFC 9162 MTH for every size 0..80."""
    want = ref_mth(entries_of(n))
    assert root_from_leaves(hashes_of(n)) == want
    frontier = Frontier()
    frontier.extend(hashes_of(n))
    assert frontier.root() == want


# ----------------------------------------------------------------------------------------- proofs

@pytest.mark.parametrize("n", REF_SIZES[1:])
def test_inclusion_proofs_match_reference(n: int) -> None:
    """For every leaf of every size 1..80 the inclusion proof is the RFC PATH and it verifies."""
    entries, hashes, root = entries_of(n), hashes_of(n), ref_mth(entries_of(n))
    for index in range(n):
        proof = inclusion_proof(index, hashes)
        assert proof == ref_path(index, entries)
        assert root_from_inclusion_proof(index, n, hashes[index], proof) == root
        assert verify_inclusion(index, n, hashes[index], proof, root)


@pytest.mark.parametrize("n", REF_SIZES[1:])
def test_consistency_proofs_match_reference(n: int) -> None:
    """For every 0 < m <= n <= 80 the consistency proof is the RFC PROOF and it verifies."""
    entries, hashes, root = entries_of(n), hashes_of(n), ref_mth(entries_of(n))
    for m in range(1, n + 1):
        proof = consistency_proof(m, n, hashes)
        assert proof == ref_subproof(m, entries, True)
        old_root = ref_mth(entries[:m])
        assert root_from_consistency_proof(m, n, old_root, proof) == root
        assert verify_consistency(m, n, old_root, root, proof)


@pytest.mark.parametrize("n", NODE_SIZES)
def test_node_based_inclusion_proofs_equal_reference(n: int) -> None:
    """Inclusion proofs assembled from stored perfect nodes equal the reference proofs (sizes 1..70)."""
    for index in range(n):
        refs = inclusion_proof_nodes(index, n)
        assert proof_from_nodes(refs, get_node) == inclusion_proof(index, hashes_of(n))


@pytest.mark.parametrize("n", NODE_SIZES)
def test_node_based_consistency_proofs_equal_reference(n: int) -> None:
    """Consistency proofs assembled from stored perfect nodes equal the reference proofs (sizes 1..70)."""
    for m in range(1, n + 1):
        refs = consistency_proof_nodes(m, n)
        assert proof_from_nodes(refs, get_node) == consistency_proof(m, n, hashes_of(n))


def test_only_the_right_edge_element_is_compound() -> None:
    """At most one proof element needs several stored nodes, and only when the size is no power of two."""
    for n in NODE_SIZES:
        for refs in [inclusion_proof_nodes(i, n) for i in range(n)] + [
            consistency_proof_nodes(m, n) for m in range(1, n)
        ]:
            compound = [ref for ref in refs if not ref.is_perfect]
            assert len(compound) <= 1
            assert not compound or (compound[0].end == n and n & (n - 1))


def test_nodes_to_fetch_flattens_in_order() -> None:
    """nodes_to_fetch lists every perfect node of every element, in proof order."""
    refs = inclusion_proof_nodes(0, 7)
    assert refs == [NodeRef(1, 2), NodeRef(2, 4), NodeRef(4, 7)]
    assert nodes_to_fetch(refs) == [NodeID(0, 1), NodeID(1, 1), NodeID(1, 2), NodeID(0, 6)]


def test_proof_builders_refuse_impossible_coordinates() -> None:
    """Proof builders raise ValueError for an index outside the tree and for size1 = 0 or size1 > size2."""
    with pytest.raises(ValueError):
        inclusion_proof_nodes(3, 3)
    with pytest.raises(ValueError):
        consistency_proof_nodes(0, 3)
    with pytest.raises(ValueError):
        consistency_proof_nodes(4, 3)
    with pytest.raises(ValueError):
        consistency_proof(2, 9, hashes_of(8))
    assert consistency_proof_nodes(5, 5) == []


@given(st.integers(0, 2**70), st.integers(0, 2**20))
def test_range_nodes_tile_the_range(begin: int, length: int) -> None:
    """range_nodes splits [begin, end) into aligned perfect subtrees that tile it without gaps."""
    end = begin + length
    cursor = begin
    for node in range_nodes(begin, end):
        assert node.begin == cursor
        assert node.begin % (1 << node.level) == 0
        cursor = node.end
    assert cursor == end


def test_hash_range_folds_from_the_right() -> None:
    """hash_range of the perfect nodes of [0, n) is the root of the first n leaves."""
    for n in range(1, 40):
        hashes = [get_node(level, index) for level, index in range_nodes(0, n)]
        assert hash_range(hashes) == root_from_leaves(hashes_of(n))
    with pytest.raises(ValueError):
        hash_range([])


# --------------------------------------------------------------------------------------- frontier

def test_frontier_emits_every_perfect_node_once() -> None:
    """Appending leaves yields each perfect node exactly once, with the hash of the leaves it covers."""
    frontier, seen = Frontier(), set()
    hashes = hashes_of(80)
    for i, h in enumerate(hashes):
        completed = frontier.append(h)
        assert completed[0] == (0, i, h)
        for level, index, digest in completed:
            node = NodeID(level, index)
            assert node not in seen
            seen.add(node)
            assert node.end == i + 1
            assert digest == root_from_leaves(hashes[node.begin:node.end])
    assert len(seen) == 2 * 80 - bin(80).count("1")


def test_frontier_restarts_from_stored_nodes() -> None:
    """A Frontier rebuilt from stored nodes at any size has the same root and keeps growing the same."""
    hashes = hashes_of(80)
    for n in range(81):
        restarted = Frontier.from_nodes(n, get_node)
        assert restarted.size == n
        assert restarted.root() == root_from_leaves(hashes[:n])
        assert [node.hash for node in restarted.nodes()] == [get_node(*node) for node in range_nodes(0, n)]
        restarted.extend(hashes[n:])
        assert restarted.root() == root_from_leaves(hashes)


def test_frontier_refuses_bad_hashes() -> None:
    """A Frontier refuses a leaf hash, or a stored node, that is not 32 bytes."""
    with pytest.raises(ValueError):
        Frontier().append(b"short")
    with pytest.raises(ValueError):
        Frontier.from_nodes(3, lambda level, index: b"short")
    assert repr(Frontier()) == "Frontier(size=0)"


# ------------------------------------------------------------------------------- verifier errors

def test_root_mismatch_carries_the_evidence() -> None:
    """A wrong root raises RootMismatchError holding the expected and the computed roots."""
    hashes = hashes_of(10)
    proof = inclusion_proof(3, hashes)
    with pytest.raises(RootMismatchError) as caught:
        check_inclusion(3, 10, hashes[3], proof, EMPTY_ROOT)
    assert caught.value.expected == EMPTY_ROOT
    assert caught.value.computed == root_from_leaves(hashes)
    assert caught.value.rule == "root-mismatch"


@pytest.mark.parametrize(("args", "rule"), [
    ((5, 5, EMPTY_ROOT, []), "index-beyond-size"),
    ((-1, 5, EMPTY_ROOT, []), "bad-argument"),
    ((0, 1, b"short", []), "hash-size"),
    ((0, 2, EMPTY_ROOT, []), "proof-length"),
    ((0, 2, EMPTY_ROOT, [b"short"]), "hash-size"),
    ((0, 2, EMPTY_ROOT, b"x" * 32), "bad-argument"),
])
def test_inclusion_refusals_name_the_rule(args: tuple[Any, ...], rule: str) -> None:
    """Each malformed inclusion input is refused with ProofError naming the rule it broke."""
    with pytest.raises(ProofError) as caught:
        root_from_inclusion_proof(*args)
    assert caught.value.rule == rule


@pytest.mark.parametrize(("args", "rule"), [
    ((3, 2, EMPTY_ROOT, []), "size1-beyond-size2"),
    ((0, 0, EMPTY_ROOT, []), "size1-zero"),
    ((2, 2, EMPTY_ROOT, [EMPTY_ROOT]), "proof-not-empty"),
    ((2, 3, EMPTY_ROOT, []), "empty-proof"),
    ((2, 3, EMPTY_ROOT, [EMPTY_ROOT, EMPTY_ROOT]), "proof-length"),
    ((2, 3, b"short", [EMPTY_ROOT]), "hash-size"),
    ((3, 8, EMPTY_ROOT, consistency_proof(3, 8, hashes_of(8))), "root-mismatch"),
])
def test_consistency_refusals_name_the_rule(args: tuple[Any, ...], rule: str) -> None:
    """Each malformed consistency input is refused with ProofError naming the rule it broke."""
    with pytest.raises(ProofError) as caught:
        root_from_consistency_proof(*args)
    assert caught.value.rule == rule


# ------------------------------------------------------------------------------------- properties

def _flip(data: bytes, bit: int) -> bytes:
    flipped = bytearray(data)
    flipped[bit // 8] ^= 1 << (bit % 8)
    return bytes(flipped)


@st.composite
def tree_and_index(draw: st.DrawFn) -> tuple[int, int]:
    size = draw(st.integers(1, 1500))
    return size, draw(st.integers(0, size - 1))


@st.composite
def two_sizes(draw: st.DrawFn) -> tuple[int, int]:
    size2 = draw(st.integers(2, 1500))
    return draw(st.integers(1, size2 - 1)), size2


@cache
def big_tree() -> tuple[tuple[bytes, ...], dict[tuple[int, int], bytes]]:
    hashes = tuple(leaf_hash(i.to_bytes(4, "big")) for i in range(1500))
    store = {(n.level, n.index): n.hash for n in Frontier().extend(hashes)}
    return hashes, store


def _big_proof_inclusion(index: int, size: int) -> tuple[list[bytes], bytes]:
    hashes, store = big_tree()
    proof = proof_from_nodes(inclusion_proof_nodes(index, size), lambda lv, ix: store[(lv, ix)])
    return proof, root_from_leaves(hashes[:size])


@settings(max_examples=150, deadline=None)
@given(tree_and_index(), st.data())
def test_inclusion_proofs_verify_and_every_bit_flip_breaks_them(
    tree: tuple[int, int], data: st.DataObject,
) -> None:
    """A generated inclusion proof verifies, and flipping any bit of the proof, root or leaf breaks it."""
    size, index = tree
    hashes, _ = big_tree()
    proof, root = _big_proof_inclusion(index, size)
    leaf = hashes[index]
    assert verify_inclusion(index, size, leaf, proof, root)
    bit = data.draw(st.integers(0, 255), label="bit")
    assert not verify_inclusion(index, size, _flip(leaf, bit), proof, root)
    assert not verify_inclusion(index, size, leaf, proof, _flip(root, bit))
    if proof:
        at = data.draw(st.integers(0, len(proof) - 1), label="element")
        tampered = [*proof[:at], _flip(proof[at], bit), *proof[at + 1:]]
        assert not verify_inclusion(index, size, leaf, tampered, root)


@settings(max_examples=150, deadline=None)
@given(tree_and_index(), st.integers(1, 1500))
def test_inclusion_proofs_do_not_transfer_to_other_coordinates(tree: tuple[int, int], other: int) -> None:
    """An inclusion proof never verifies for another index of the same tree."""
    size, index = tree
    assume(other != index and other < size)
    hashes, _ = big_tree()
    proof, root = _big_proof_inclusion(index, size)
    assert not verify_inclusion(other, size, hashes[index], proof, root)


@settings(max_examples=150, deadline=None)
@given(two_sizes(), st.data())
def test_consistency_proofs_verify_and_every_bit_flip_breaks_them(
    sizes: tuple[int, int], data: st.DataObject,
) -> None:
    """A generated consistency proof verifies, and flipping any bit of the proof or a root breaks it."""
    size1, size2 = sizes
    hashes, store = big_tree()
    proof = proof_from_nodes(consistency_proof_nodes(size1, size2), lambda lv, ix: store[(lv, ix)])
    root1, root2 = root_from_leaves(hashes[:size1]), root_from_leaves(hashes[:size2])
    assert verify_consistency(size1, size2, root1, root2, proof)
    bit = data.draw(st.integers(0, 255), label="bit")
    assert not verify_consistency(size1, size2, _flip(root1, bit), root2, proof)
    assert not verify_consistency(size1, size2, root1, _flip(root2, bit), proof)
    at = data.draw(st.integers(0, len(proof) - 1), label="element")
    tampered = [*proof[:at], _flip(proof[at], bit), *proof[at + 1:]]
    assert not verify_consistency(size1, size2, root1, root2, tampered)
    assert not verify_consistency(size1, size2, root1, root2, proof[:-1])
    assert not verify_consistency(size1, size2, root1, root2, [*proof, root1])


HASHES = st.binary(min_size=32, max_size=32)
GARBAGE = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**70), 2**70),
    st.binary(max_size=40),
    st.binary(min_size=32, max_size=32),
    st.text(max_size=5),
    st.lists(st.one_of(st.binary(min_size=32, max_size=32), st.binary(max_size=40), st.none()), max_size=8),
)


@settings(max_examples=400)
@given(GARBAGE, GARBAGE, GARBAGE, GARBAGE, GARBAGE)
def test_bool_verifiers_never_raise_on_garbage(a: Any, b: Any, c: Any, d: Any, e: Any) -> None:
    """The bool verifiers answer False, never an exception, whatever they are handed."""
    assert verify_inclusion(a, b, c, d, e) in (True, False)
    assert verify_consistency(a, b, c, d, e) in (True, False)


@settings(max_examples=300)
@given(st.integers(0, 2**64), st.integers(0, 2**64), st.lists(HASHES, max_size=70), HASHES, HASHES)
def test_well_typed_random_proofs_do_not_verify(
    size1: int, size2: int, proof: list[bytes], root1: bytes, root2: bytes,
) -> None:
    """Random well-typed proofs over huge trees are refused cleanly (32-byte random hashes never verify)."""
    assert verify_inclusion(size1, size2, root1, proof, root2) is False
    assume(root1 != root2)
    assert verify_consistency(size1, size2, root1, root2, proof) is False


def test_public_surface() -> None:
    """The merkle module's public names are deliberate; changing them is a visible decision."""
    assert sorted(merkle.__all__) == [
        "EMPTY_ROOT", "Frontier", "HASH_SIZE", "Node", "NodeID", "NodeRef", "ProofError",
        "RootMismatchError", "check_consistency", "check_inclusion", "consistency_proof",
        "consistency_proof_nodes", "hash_range", "inclusion_proof", "inclusion_proof_nodes", "leaf_hash",
        "leaf_hashes", "node_hash", "nodes_to_fetch", "proof_from_nodes", "range_nodes",
        "root_from_consistency_proof", "root_from_inclusion_proof", "root_from_leaves",
        "verify_consistency", "verify_inclusion",
    ]
