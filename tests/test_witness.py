"""The witness (gateway/witness/): cosignature/v1 lines, the add-checkpoint request, the witness's
decisions and its HTTP answers, its command line, the gateway's client keeping cosignatures, and
``audit verify``'s check of them. All in-process; tests/test_witness_e2e.py runs it for real."""

from __future__ import annotations

import base64
import hashlib
import struct
import threading
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa
from click.testing import CliRunner
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError
from starlette.testclient import TestClient

from gateway.audit.checkpoint import Checkpoint, KeyFormatError, Signer
from gateway.audit.merkle import EMPTY_ROOT, consistency_proof, leaf_hash, root_from_leaves
from gateway.audit.verify_problems import CosignatureInvalid, TooFewCosignatures
from gateway.cli import main
from gateway.config import AuditSettings
from gateway.storage.tables import audit_cosignatures
from gateway.witness.client import Cosigner, Endpoint, WitnessClient
from gateway.witness.cosignature import (
    CosignatureError,
    CosignatureVerifier,
    WitnessKey,
    cosigned_message,
    note_body,
)
from gateway.witness.cosigned import check_cosignatures
from gateway.witness.protocol import (
    MAX_BODY,
    MAX_PROOF,
    SIZE_TYPE,
    MalformedRequest,
    build_request,
    parse_request,
    parse_size,
)
from gateway.witness.server import Answer, Witness, build_app
from gateway.witness.state import KEY_FILE, StateError, WitnessStore, create_key, load_key
from tests.audit_support import ORIGIN, SIGNER, drop_guards, filled, record

NAME = "witness.test/w1"
LOG_KEY = Ed25519PrivateKey.from_private_bytes(bytes(range(32)))  # SIGNER's (tests/audit_support.py)
WITNESS_KEY = WitnessKey(NAME, Ed25519PrivateKey.from_private_bytes(bytes(range(32, 64))))
LEAVES = [leaf_hash(b"leaf %d" % i) for i in range(40)]
FORKED = [leaf_hash(b"forged"), *LEAVES[1:]]  # leaf 0 rewritten, the rest the same


def note(size: int, leaves: list[bytes] = LEAVES, signer: Signer = SIGNER, origin: str = ORIGIN) -> bytes:
    return signer.sign(Checkpoint(origin, size, root_from_leaves(leaves[:size])))


def request(old: int, size: int, leaves: list[bytes] = LEAVES, **kw: object) -> bytes:
    proof = consistency_proof(old, size, leaves) if 0 < old < size else []
    return build_request(old, proof, note(size, leaves, **kw))  # type: ignore[arg-type]


@pytest.fixture
def witness(tmp_path: Path) -> Witness:
    """A witness accepting ORIGIN under SIGNER's key, with a fixed clock."""
    state = tmp_path / "witness"
    state.mkdir()
    store = WitnessStore(state)
    store.add_log(ORIGIN, SIGNER.vkey(), 0)
    return Witness(WITNESS_KEY, store, clock=lambda: 1_790_000_000.5)


def cosigned(witness: Witness, body: bytes) -> Answer:
    answer = witness.add_checkpoint(body)
    assert answer.status == 200, answer.body
    return answer


# --------------------------------------------------------------------------------- cosignatures

def test_cosignature_is_the_c2sp_format() -> None:
    """The line is the name and base64(key id || 8-byte big-endian time || Ed25519 signature) over
    'cosignature/v1', the time line and the checkpoint body; the key id hashes type 0x04."""
    body = note_body(note(7))
    line = WITNESS_KEY.cosign(body, 1_679_315_147)
    prefix, name, encoded = line.decode().rstrip("\n").split(" ")
    assert prefix == "\u2014" and name == NAME
    raw = base64.b64decode(encoded)
    public = WITNESS_KEY.verifier().public_key
    listed_id = bytes.fromhex(WITNESS_KEY.vkey().split("+")[1])
    assert raw[:4] == listed_id == hashlib.sha256(
        NAME.encode() + b"\n\x04" + base64.b64decode(WITNESS_KEY.vkey().split("+")[2])[1:]).digest()[:4]
    assert struct.unpack(">Q", raw[4:12]) == (1_679_315_147,)
    public.verify(raw[12:], b"cosignature/v1\ntime 1679315147\n" + body)  # raises if not
    assert cosigned_message(body, 5) == b"cosignature/v1\ntime 5\n" + body
    assert WITNESS_KEY.verifier().verify(body, line) == 1_679_315_147


def test_tampered_cosignature_is_refused() -> None:
    """A flipped bit in the signature, the time or the body, and the cosignature no longer verifies."""
    body = note_body(note(7))
    line = WITNESS_KEY.cosign(body, 1000)
    prefix, encoded = line.rstrip(b"\n").rsplit(b" ", 1)
    raw = bytearray(base64.b64decode(encoded))
    verifier = WITNESS_KEY.verifier()
    for at in (10, 40):  # the timestamp, the signature
        bad = bytearray(raw)
        bad[at] ^= 1
        with pytest.raises(CosignatureError):
            verifier.verify(body, prefix + b" " + base64.b64encode(bytes(bad)))
    with pytest.raises(CosignatureError, match="does not verify"):
        verifier.verify(note_body(note(8)), line)


def test_cosignature_of_another_key_is_refused() -> None:
    """A key of the same name but other material has another key id: its line is not this key's."""
    other = WitnessKey.generate(NAME)
    body = note_body(note(3))
    line = other.cosign(body, 1)
    assert not WITNESS_KEY.verifier().owns(line)
    with pytest.raises(CosignatureError, match="not by"):
        WITNESS_KEY.verifier().verify(body, line)
    renamed = WitnessKey(NAME + "x", Ed25519PrivateKey.from_private_bytes(bytes(range(32, 64))))
    with pytest.raises(CosignatureError):
        WITNESS_KEY.verifier().verify(body, renamed.cosign(body, 1))


def test_witness_keys_round_trip_and_refuse_log_keys() -> None:
    """vkey and private key strings parse back; a log's (type 0x01) key is not a witness key."""
    assert CosignatureVerifier.from_vkey(WITNESS_KEY.vkey()).key_id == WITNESS_KEY.key_id
    assert WitnessKey.from_skey(WITNESS_KEY.skey()).vkey() == WITNESS_KEY.vkey()
    with pytest.raises(KeyFormatError, match="0x04"):
        CosignatureVerifier.from_vkey(SIGNER.vkey())
    name, _, material = WITNESS_KEY.vkey().split("+")
    with pytest.raises(KeyFormatError, match="does not match"):
        CosignatureVerifier.from_vkey(f"{name}+00000000+{material}")
    with pytest.raises(KeyFormatError):
        WitnessKey.from_skey("PRIVATE+KEY+x+00000000+AAAA")


# --------------------------------------------------------------------------------------- protocol

def test_request_round_trips() -> None:
    """A built request parses back to its old size, proof and note."""
    proof = consistency_proof(5, 9, LEAVES)
    parsed = parse_request(build_request(5, proof, note(9)))
    assert (parsed.old, list(parsed.proof), parsed.note) == (5, proof, note(9))
    assert parse_request(build_request(0, [], note(9))).proof == ()
    assert parse_size(b"42\n") == 42


HASH = base64.b64encode(b"h" * 32)


@pytest.mark.parametrize("body, says", [
    (b"", "old <size>"),
    (b"new 1\n\n" + b"x\n", "old <size>"),
    (b"old 01\n\nx\n", "leading zeros"),
    (b"old -1\n\nx\n", "leading zeros"),
    (b"old 1" + b"\n", "no empty line"),
    (b"old 1\n" + HASH + b"\n", "no empty line"),
    (b"old 1\nnot base64!\n\nx\n", "canonical base64"),
    (b"old 1\n" + base64.b64encode(b"short") + b"\n\nx\n", "32-byte"),
    (b"old 1\n" + (HASH + b"\n") * (MAX_PROOF + 1) + b"\nx\n", "more than 63"),
    (b"old 1\n\n", "no checkpoint"),
    (b"old 0\n" + HASH + b"\n\nx\n", "must be empty"),
    (b"old 99999999999999999999999\n\nx\n", "leading zeros"),
])
def test_malformed_requests_are_named(body: bytes, says: str) -> None:
    """Each way a body can be off-format is refused, saying what is wrong."""
    with pytest.raises(MalformedRequest, match=says):
        parse_request(body)


# ----------------------------------------------------------------------------- witness decisions

def test_first_checkpoint_then_a_consistent_one_are_cosigned(witness: Witness) -> None:
    """From old 0 the first checkpoint is taken as it is; the next needs a proof from it."""
    first = cosigned(witness, request(0, 10))
    assert WITNESS_KEY.verifier().verify(note_body(note(10)), first.body) == 1_790_000_000
    cosigned(witness, request(10, 25))
    assert witness.store.latest(ORIGIN) == (25, note(25))


def test_wrong_old_size_is_409_with_the_held_size(witness: Witness) -> None:
    """An old size other than the held one: 409, text/x.tlog.size, the held size and a newline."""
    cosigned(witness, request(0, 10))
    for old in (0, 5):
        answer = witness.add_checkpoint(request(old, 20))
        assert (answer.status, answer.content_type, answer.body) == (409, SIZE_TYPE, b"10\n")
    assert witness.store.latest(ORIGIN) == (10, note(10))


def test_bad_proof_is_422_and_nothing_moves(witness: Witness) -> None:
    """A proof that does not lead from the held root to the new one: 422, no cosignature, the held
    checkpoint stays, and the signed request is kept as evidence."""
    cosigned(witness, request(0, 10))
    proof = consistency_proof(10, 20, LEAVES)
    proof[0] = b"\0" * 32
    answer = witness.add_checkpoint(build_request(10, proof, note(20)))
    assert answer.status == 422 and b"\xe2\x80\x94" not in answer.body
    assert witness.store.latest(ORIGIN) == (10, note(10))
    assert [status for status, _, _ in witness.store.evidence(ORIGIN)] == [422]


def test_a_fork_is_never_cosigned(witness: Witness) -> None:
    """A later checkpoint of a tree that rewrote a leaf the held one covers, signed by the log's own
    key and with a proof that holds within the forged tree: 422."""
    cosigned(witness, request(0, 10))
    answer = witness.add_checkpoint(request(10, 30, FORKED))
    assert answer.status == 422, answer.body
    assert witness.store.latest(ORIGIN) == (10, note(10))


def test_same_size_again_is_cosigned_but_another_root_is_409(witness: Witness) -> None:
    """Resubmitting the held checkpoint gets a fresh cosignature; another root for its size is 409."""
    cosigned(witness, request(0, 10))
    cosigned(witness, request(10, 10))
    answer = witness.add_checkpoint(build_request(10, [], note(10, FORKED)))
    assert (answer.status, answer.body) == (409, b"10\n")
    assert witness.store.latest(ORIGIN) == (10, note(10))


@pytest.mark.parametrize("body, status", [
    (request(0, 5, origin="other.test/log", signer=Signer("other.test/log", LOG_KEY)), 404),
    (request(0, 5, signer=Signer(ORIGIN, Ed25519PrivateKey.generate())), 403),
    (request(0, 5, signer=Signer("someone.else", Ed25519PrivateKey.generate())), 403),
    (request(0, 5)[:-20] + b"AAAAAAAAAAAAAAAAAAA\n", 403),  # the log key's signature, broken
    (request(0, 5)[:-20] + b"!!!\n", 400),  # no signature line at all
    (build_request(9, [], note(5)), 400),
    (b"old 0\n\nnot a note\n", 400),
])
def test_refusals_before_any_state(witness: Witness, body: bytes, status: int) -> None:
    """Unknown origin 404, no trusted signature 403, malformed note or old beyond the size 400."""
    assert witness.add_checkpoint(body).status == status
    assert witness.store.latest(ORIGIN) is None


def test_a_tampered_log_signature_is_403(witness: Witness) -> None:
    """The log key's own signature line over other text: refused."""
    forged = note_body(note(5, FORKED)) + b"\n" + note(5).split(b"\n\n", 1)[1]
    assert witness.add_checkpoint(build_request(0, [], forged)).status == 403


def test_empty_log_needs_the_empty_root(witness: Witness) -> None:
    """A first checkpoint of size 0 must name the empty tree's root."""
    wrong = SIGNER.sign(Checkpoint(ORIGIN, 0, b"r" * 32))
    assert witness.add_checkpoint(build_request(0, [], wrong)).status == 422
    cosigned(witness, build_request(0, [], SIGNER.sign(Checkpoint(ORIGIN, 0, EMPTY_ROOT))))
    cosigned(witness, request(0, 4))


@given(st.binary(max_size=300) | st.builds(lambda a, b: a + b, st.sampled_from(
    [b"old 0\n\n", b"old 3\n" + HASH + b"\n\n", b"old 1\n\n"]), st.binary(max_size=300)))
def test_no_body_makes_a_server_error(tmp_path_factory: pytest.TempPathFactory, body: bytes) -> None:
    """Whatever the bytes, the answer is one of the protocol's refusals, never an error."""
    witness = _shared_witness(tmp_path_factory)
    assert witness.add_checkpoint(body).status in {400, 403, 404, 409, 422}


_WITNESSES: dict[str, Witness] = {}


def _shared_witness(factory: pytest.TempPathFactory) -> Witness:
    if "w" not in _WITNESSES:
        state = factory.mktemp("fuzz")
        store = WitnessStore(state)
        store.add_log(ORIGIN, SIGNER.vkey(), 0)
        _WITNESSES["w"] = Witness(WITNESS_KEY, store)
    return _WITNESSES["w"]


# ------------------------------------------------------------------------------------------ HTTP

def test_http_answers(witness: Witness) -> None:
    """POST /add-checkpoint answers with the protocol's statuses and types; bodies are capped."""
    http = TestClient(build_app(witness))
    r = http.post("/add-checkpoint", content=request(0, 10))
    assert r.status_code == 200 and r.content.startswith("\u2014 ".encode())
    r = http.post("/add-checkpoint", content=request(3, 12))
    assert (r.status_code, r.headers["content-type"], r.text) == (409, SIZE_TYPE, "10\n")
    assert http.post("/add-checkpoint", content=b"old x").status_code == 400
    assert http.post("/add-checkpoint", content=b"x" * (MAX_BODY + 1)).status_code == 413
    assert http.get("/add-checkpoint").status_code == 405
    assert http.get("/healthz").text == "ok\n"


# ------------------------------------------------------------------------------------ command line

def run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, list(args))
    return result.exit_code, result.output


def test_init_makes_a_private_key_once(tmp_path: Path) -> None:
    """init writes a 0600 key and prints its verifier key; again with the same name it only prints
    it; another name is refused."""
    state = tmp_path / "w"
    code, out = run("witness", "init", "--state", str(state), "--name", NAME)
    assert code == 0 and (state / KEY_FILE).stat().st_mode & 0o777 == 0o600
    vkey = out.strip()
    assert CosignatureVerifier.from_vkey(vkey).name == NAME
    assert run("witness", "init", "--state", str(state), "--name", NAME)[1].strip().endswith(vkey)
    assert run("witness", "vkey", "--state", str(state)) == (0, vkey + "\n")
    code, out = run("witness", "init", "--state", str(state), "--name", "other")
    assert code == 1 and "already holds the key of witness" in out
    assert run("witness", "init", "--state", str(tmp_path / "x"), "--name", "bad name")[0] == 1


def test_add_log_checks_the_key_and_is_idempotent(tmp_path: Path) -> None:
    """add-log refuses a key that is not a log's, and adding a log twice changes nothing."""
    state = tmp_path / "w"
    add = ("witness", "add-log", "--state", str(state), "--origin", ORIGIN, "--vkey")
    assert run(*add, SIGNER.vkey())[0] == 1
    run("witness", "init", "--state", str(state), "--name", NAME)
    code, out = run(*add, "x+1+2")
    assert code == 1 and "--vkey" in out
    for says in ("accepting", "already accepting"):
        code, out = run(*add, SIGNER.vkey())
        assert code == 0 and out.startswith(says)
    assert WitnessStore(state).logs() == {ORIGIN: [SIGNER.vkey()]}


def test_state_errors_say_what_to_do(tmp_path: Path) -> None:
    """A folder without a key names the init command."""
    with pytest.raises(StateError, match="witness init"):
        load_key(tmp_path)
    key, made = create_key(tmp_path / "k", NAME)
    assert made and load_key(tmp_path / "k").vkey() == key.vkey()
    (tmp_path / "k" / KEY_FILE).write_text("garbage")
    with pytest.raises(StateError, match=KEY_FILE):
        load_key(tmp_path / "k")


# ------------------------------------------------------------------------------- gateway's client

def transport(witness: Witness, down: list[bool] | None = None) -> httpx.MockTransport:
    """The witness behind a function-backed transport; ``down[0]`` true: connections fail."""
    def handle(request: httpx.Request) -> httpx.Response:
        if down and down[0]:
            raise httpx.ConnectError("connection refused", request=request)
        answer = witness.add_checkpoint(request.content)
        return httpx.Response(answer.status, content=answer.body,
                              headers={"content-type": answer.content_type})

    return httpx.MockTransport(handle)


def endpoint() -> Endpoint:
    return Endpoint(NAME, "http://witness.test", WITNESS_KEY.verifier())


def kept(engine: sa.Engine) -> list[tuple[int, str]]:
    with engine.connect() as conn:
        return [(r.size, r.witness) for r in conn.execute(sa.select(audit_cosignatures)
                                                          .order_by(audit_cosignatures.c.size))]


def test_client_keeps_cosignatures_and_proves_consistency(database_url: str, tmp_path: Path,
                                                          witness: Witness) -> None:
    """The latest checkpoint goes out from old 0, the next with a proof from the last cosigned
    size; each cosignature is kept once, and a round with nothing new does nothing."""
    log = filled(database_url, tmp_path, size=20, every=10)
    client = WitnessClient(log.engine, [endpoint()], timeout=5, transport=transport(witness))
    assert [r.outcome for r in client.sync()] == ["cosigned"]
    assert [r.outcome for r in client.sync()] == ["current"]
    log.log.append_many([record(i) for i in range(20, 33)])
    log.checkpointer.make()
    assert [(r.size, r.outcome) for r in client.sync()] == [(33, "cosigned")]
    assert kept(log.engine) == [(20, NAME), (33, NAME)]
    found = check_cosignatures(log.engine, [WITNESS_KEY.verifier()], 1)
    assert found.problems == [] and found.witnessed(1) == 33


def test_client_submits_an_empty_log(database_url: str, tmp_path: Path, witness: Witness) -> None:
    """The checkpoint of an empty log is witnessed too (size 0, the empty root)."""
    log = filled(database_url, tmp_path, size=0, every=10)
    log.checkpointer.make()
    client = WitnessClient(log.engine, [endpoint()], timeout=5, transport=transport(witness))
    assert [(r.size, r.outcome) for r in client.sync()] == [(0, "cosigned")]
    assert [(r.size, r.outcome) for r in client.sync()] == [(0, "current")]


def test_new_checkpoints_never_wait_for_a_witness(database_url: str, tmp_path: Path,
                                                  witness: Witness) -> None:
    """The checkpointer only wakes the witnesses' thread: a checkpoint is made while a submission
    hangs, and the cosignature arrives once the witness answers."""
    log = filled(database_url, tmp_path, size=5, every=5)
    answering, asked = threading.Event(), threading.Event()
    inner = transport(witness)

    def slow(request: httpx.Request) -> httpx.Response:
        asked.set()
        assert answering.wait(60)
        return inner.handle_request(request)

    cosigner = Cosigner(WitnessClient(log.engine, [endpoint()], timeout=60,
                                      transport=httpx.MockTransport(slow)), retry_every=3600)
    log.checkpointer.on_new = cosigner.notify
    cosigner.start()
    try:
        assert asked.wait(60)  # the thread is inside a submission of size 5, held there
        log.log.append_many([record(5)])
        assert log.checkpointer.make().size == 6  # made and returned meanwhile
        answering.set()
    finally:
        cosigner.stop()  # after one last round: size 6 too
    assert kept(log.engine) == [(5, NAME), (6, NAME)]


def test_client_follows_a_409_once(database_url: str, tmp_path: Path, witness: Witness) -> None:
    """A witness holding a size the gateway has no cosignature for (an answer lost): the client
    retries once from the size the 409 names."""
    log = filled(database_url, tmp_path, size=20, every=10)
    cp10 = log.checkpointer.at(10)
    assert cp10 is not None
    cosigned(witness, build_request(0, [], cp10.note))  # the gateway never saw this answer
    client = WitnessClient(log.engine, [endpoint()], timeout=5, transport=transport(witness))
    assert [r.outcome for r in client.sync()] == ["cosigned"]
    assert kept(log.engine) == [(20, NAME)]


def test_a_witness_that_is_down_is_tried_again(database_url: str, tmp_path: Path, witness: Witness) -> None:
    """A failing witness is reported and nothing kept; the next round cosigns."""
    log = filled(database_url, tmp_path, size=10, every=10)
    down = [True]
    client = WitnessClient(log.engine, [endpoint()], timeout=5, transport=transport(witness, down))
    result = client.sync()[0]
    assert result.outcome == "failed" and "ConnectError" in result.detail and kept(log.engine) == []
    down[0] = False
    assert [r.outcome for r in client.sync()] == ["cosigned"]


def test_a_witness_ahead_of_the_log_is_reported(database_url: str, tmp_path: Path,
                                                witness: Witness) -> None:
    """A witness that holds a larger size than the latest checkpoint (a log rolled back) fails the
    round, saying so."""
    log = filled(database_url, tmp_path, size=10, every=10)
    cosigned(witness, build_request(0, [], note(30, [leaf_hash(b"x")] * 30)))
    client = WitnessClient(log.engine, [endpoint()], timeout=5, transport=transport(witness))
    result = client.sync()[0]
    assert result.outcome == "failed" and "rolled back" in result.detail


# ----------------------------------------------------------------------------- audit verify's check

def test_verify_requires_cosignatures_and_refuses_tampered_ones(database_url: str, tmp_path: Path,
                                                                witness: Witness) -> None:
    """Required cosignatures are counted on the latest checkpoint; a changed cosignature row is
    refused; a witness no longer configured is not counted."""
    log = filled(database_url, tmp_path, size=10, every=10)
    verifier = WITNESS_KEY.verifier()
    found = check_cosignatures(log.engine, [verifier], 1)
    assert [type(p) for p in found.problems] == [TooFewCosignatures]
    assert "no checkpoint does" in found.problems[0].what
    WitnessClient(log.engine, [endpoint()], timeout=5, transport=transport(witness)).sync()
    assert check_cosignatures(log.engine, [verifier], 1).problems == []
    too_many = check_cosignatures(log.engine, [verifier], 2).problems
    assert [type(p) for p in too_many] == [TooFewCosignatures] and "size 10" in too_many[0].what
    assert check_cosignatures(log.engine, [WitnessKey.generate("someone").verifier()], 0).problems == []
    drop_guards(log.engine)
    with log.engine.begin() as conn:
        line = conn.execute(sa.select(audit_cosignatures.c.line)).scalar_one()
        conn.execute(sa.update(audit_cosignatures).values(line=line[:-6] + "AAAAA="))
    problems = check_cosignatures(log.engine, [verifier], 1).problems
    assert [type(p) for p in problems] == [CosignatureInvalid, TooFewCosignatures]


def test_cosignatures_are_append_only(database_url: str, tmp_path: Path, witness: Witness) -> None:
    """The guard rails of the other audit tables cover the cosignatures too."""
    log = filled(database_url, tmp_path, size=10, every=10)
    WitnessClient(log.engine, [endpoint()], timeout=5, transport=transport(witness)).sync()
    for statement in ("UPDATE audit_cosignatures SET line = 'x'", "DELETE FROM audit_cosignatures"):
        with pytest.raises(sa.exc.DatabaseError), log.engine.begin() as conn:
            conn.execute(sa.text(statement))


def test_no_witness_by_default() -> None:
    """Without audit.witnesses nothing changes: no client, nothing required."""
    settings = AuditSettings()
    assert settings.witnesses == [] and settings.require_cosignatures == 0


def test_configured_witness_must_match_its_key() -> None:
    """A witness entry whose vkey is not a witness key, or names another witness, is refused."""
    ok = {"name": NAME, "url": "http://127.0.0.1:9120", "vkey": WITNESS_KEY.vkey()}
    assert AuditSettings(witnesses=[ok]).witnesses[0].name == NAME
    for bad, says in (({**ok, "name": "other"}, "not of 'other'"), ({**ok, "vkey": SIGNER.vkey()}, "0x04"),
                      ({**ok, "url": "ftp://x"}, "pattern")):
        with pytest.raises(ValidationError, match=says):
            AuditSettings(witnesses=[bad])
    with pytest.raises(ValidationError, match="same name"):
        AuditSettings(witnesses=[ok, ok])
