"""C2SP signed-note checkpoints: round trips, tampering, wrong keys, malformed notes, known answers."""

from __future__ import annotations

import base64
import contextlib
import hashlib

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.audit import checkpoint as cp
from gateway.audit.checkpoint import (
    MAX_SIGNATURES,
    Checkpoint,
    CheckpointError,
    KeyFormatError,
    MalformedNoteError,
    NoteError,
    OriginMismatchError,
    SignatureError,
    Signer,
    UnverifiedNoteError,
    Verifier,
    key_id,
    open_note,
    sign_note,
    verify_note,
)
from gateway.audit.merkle import EMPTY_ROOT, leaf_hash

ORIGIN = "lienthong.example.vn/audit"
SIGNER = Signer(ORIGIN, Ed25519PrivateKey.from_private_bytes(bytes(range(32))))
VERIFIER = SIGNER.verifier()
ROOT = leaf_hash(b"root")
CHECKPOINT = Checkpoint(ORIGIN, 1234, ROOT)
NOTE = SIGNER.sign(CHECKPOINT)
DASH = "\u2014 "

# golang.org/x/mod/sumdb/note, the package documentation's example (Ed25519 is deterministic, so the
# published signature must come out byte for byte).
GO_SKEY = "PRIVATE+KEY+PeterNeumann+c74f20a3+AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz"
GO_VKEY = "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW"
GO_TEXT = (
    b"If you think cryptography is the answer to your problem,\n"
    b"then you don't know what your problem is.\n"
)
GO_NOTE = GO_TEXT + (
    "\n\u2014 PeterNeumann "
    "x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=\n"
).encode()

# The Go checksum database's published log key, and real checkpoints it signed: the first is quoted
# in transparency-dev/formats' log tests, the second (with a witness cosignature from a key we do
# not know) in a witness README.
SUMDB_VKEY = "sum.golang.org+033de0ae+Ac4zctda0e5eza+HJyk9SxEdh+s3Ux18htTTAD8OuAn8"
SUMDB_NOTE = (
    "go.sum database tree\n6476701\nmb8QLQIs0Z0yP5Cstq6guj87oXWeC9gEM8oVikmm9Wk=\n\n"
    "\u2014 sum.golang.org "
    "Az3grsLX85Gz+s1SiTbgkuqxgItqFq7gsMUEyVnrsa9LM7Us9S+1xbFIGu95949rj4nPRYfvimWEPWL+o3GeoWwOoAw=\n"
).encode()
SUMDB_NOTE_WITNESSED = (
    "go.sum database tree\n15067302\ngJyioq6dwR9n+NjEWORfYmH+ubeYm3kH42BBQ0bTpYI=\n\n"
    "\u2014 sum.golang.org "
    "Az3grp1rvWOs5NKlr/xR4GLN/CDyzzakmt1o61uSxYKpK1SerqOP2ClbX/peKUZjYnyomH5Xz7GZG3TpB7OeKn4E2ww=\n"
    "\u2014 test.example.com "
    "qTGhC/xIPQ0AXKHK6Y+9ypRfuvMZWPjRXM8NiOg5M1WREn07VQXyuIXM3NRNav3ieVFLUqDRK77PWDmL6w8w84UqeAw=\n"
).encode()


def signed(text: str) -> bytes:
    """A note over arbitrary text, properly signed, to reach the checkpoint parser."""
    return sign_note(text.encode(), [SIGNER])


# ------------------------------------------------------------------------------------ round trips

def test_round_trip() -> None:
    """A signed checkpoint opens to the same checkpoint."""
    assert open_note(NOTE, VERIFIER) == CHECKPOINT
    assert open_note(NOTE, [VERIFIER], origin=ORIGIN) == CHECKPOINT


def test_round_trip_with_extensions_and_empty_tree() -> None:
    """Extension lines and the empty tree (size 0) survive the round trip."""
    empty, extended = Checkpoint(ORIGIN, 0, EMPTY_ROOT), Checkpoint(ORIGIN, 7, ROOT, ("ext one", "ext two"))
    for checkpoint in (empty, extended):
        assert open_note(SIGNER.sign(checkpoint), VERIFIER) == checkpoint


def test_note_layout_is_exact() -> None:
    """The note is body, blank line, em-dash line with base64(key id || Ed25519 signature)."""
    body = f"{ORIGIN}\n1234\n{base64.b64encode(ROOT).decode()}\n".encode()
    assert CHECKPOINT.body() == body
    head, line = NOTE[: len(body) + 1], NOTE[len(body) + 1:]
    assert head == body + b"\n"
    prefix = f"{DASH}{ORIGIN} ".encode()
    assert line.startswith(prefix) and line.endswith(b"\n")
    raw = base64.b64decode(line[len(prefix):-1], validate=True)
    assert raw[:4] == SIGNER.key_id and len(raw) == 68
    VERIFIER.public_key.verify(raw[4:], body)


def test_key_id_is_the_recommended_hash() -> None:
    """The key id is SHA-256(name || 0x0A || 0x01 || public key)[:4]."""
    public = VERIFIER.vkey().split("+", 2)[2]
    raw_key = base64.b64decode(public)[1:]
    assert SIGNER.key_id == hashlib.sha256(ORIGIN.encode() + b"\n\x01" + raw_key).digest()[:4]
    assert key_id(ORIGIN, raw_key) == SIGNER.key_id


def test_several_signers_and_unknown_signatures() -> None:
    """Every known signer is reported; signatures from unknown keys are ignored, not refused."""
    witness = Signer.generate("witness.example/w1")
    stranger = Signer.generate("stranger.example")
    note = sign_note(CHECKPOINT.body(), [SIGNER, stranger, witness])
    opened = verify_note(note, [VERIFIER, witness.verifier()])
    assert opened.text == CHECKPOINT.body()
    assert {v.name for v in opened.verified_by} == {ORIGIN, "witness.example/w1"}
    assert open_note(note, VERIFIER) == CHECKPOINT


LINE_CHARS = st.characters(codec="utf-8", min_codepoint=0x20)


@settings(max_examples=60)
@given(
    st.text(LINE_CHARS, min_size=1, max_size=40),
    st.integers(0, 2**64 - 1),
    st.binary(min_size=32, max_size=32),
    st.lists(st.text(LINE_CHARS, min_size=1, max_size=20), max_size=3),
)
def test_any_valid_checkpoint_round_trips(origin: str, size: int, root: bytes, extensions: list[str]) -> None:
    """Any checkpoint the constructor accepts signs and opens back to itself."""
    checkpoint = Checkpoint(origin, size, root, tuple(extensions))
    assert open_note(SIGNER.sign(checkpoint), VERIFIER, origin=origin) == checkpoint


# -------------------------------------------------------------------------------------- tampering

@pytest.mark.parametrize("line", range(len(NOTE.split(b"\n")) - 1))
def test_tampering_any_line_is_refused(line: int) -> None:
    """Changing any line of the note (text, blank line or signature) makes opening it fail."""
    lines = NOTE.split(b"\n")
    tampered_line = bytearray(lines[line] or b"x")
    tampered_line[-1] ^= 0x01
    lines[line] = bytes(tampered_line)
    with pytest.raises(NoteError):
        open_note(b"\n".join(lines), VERIFIER)


@settings(max_examples=300)
@given(st.integers(0, len(NOTE) - 1), st.integers(1, 255))
def test_changing_any_byte_is_refused(position: int, xor: int) -> None:
    """Changing any single byte of a signed note is refused with a NoteError."""
    tampered = bytearray(NOTE)
    tampered[position] ^= xor
    with pytest.raises(NoteError):
        open_note(bytes(tampered), VERIFIER)


def test_tampered_text_is_a_signature_error() -> None:
    """A changed size under a known key's signature line raises SignatureError naming the key."""
    tampered = NOTE.replace(b"\n1234\n", b"\n1235\n")
    with pytest.raises(SignatureError) as caught:
        open_note(tampered, VERIFIER)
    assert caught.value.name == ORIGIN and caught.value.key_id == SIGNER.key_id


def test_one_failing_known_signature_refuses_the_whole_note() -> None:
    """A valid signature does not rescue a note on which another known key's signature fails."""
    witness = Signer.generate("witness.example/w1")
    good = sign_note(CHECKPOINT.body(), [SIGNER])
    forged = witness.signature_line(b"some other text\n")
    with pytest.raises(SignatureError):
        open_note(good + forged, [VERIFIER, witness.verifier()])


# -------------------------------------------------------------------------------------- wrong keys

def test_wrong_key_with_same_name_is_unverified() -> None:
    """A verifier with the right name but another key does not accept the note."""
    impostor = Signer.generate(ORIGIN).verifier()
    with pytest.raises(UnverifiedNoteError) as caught:
        open_note(NOTE, impostor)
    assert caught.value.signatures == ((ORIGIN, SIGNER.key_id),)


def test_same_key_under_another_name_is_unverified() -> None:
    """The same public key under another name is another key: its id differs, so nothing verifies."""
    renamed = Verifier("other.example/log", VERIFIER.public_key)
    with pytest.raises(UnverifiedNoteError):
        open_note(NOTE, renamed)


def test_no_verifiers_is_unverified() -> None:
    """With no trusted keys, no note is accepted."""
    with pytest.raises(UnverifiedNoteError):
        open_note(NOTE, [])


def test_origin_mismatch() -> None:
    """A valid checkpoint of another log is refused when an origin is expected."""
    with pytest.raises(OriginMismatchError) as caught:
        open_note(NOTE, VERIFIER, origin="other.example/log")
    assert (caught.value.expected, caught.value.found) == ("other.example/log", ORIGIN)


# --------------------------------------------------------------------------------- malformed notes

SIG_LINE = NOTE[len(CHECKPOINT.body()) + 1:]
BODY = CHECKPOINT.body()


@pytest.mark.parametrize("note", [
    pytest.param(b"", id="empty"),
    pytest.param(BODY, id="no-signatures"),
    pytest.param(BODY + b"\n", id="blank-line-but-no-signatures"),
    pytest.param(BODY + SIG_LINE, id="no-blank-line"),
    pytest.param(NOTE[:-1], id="no-final-newline"),
    pytest.param(NOTE + b"\n", id="trailing-blank-line"),
    pytest.param(BODY + b"\n" + SIG_LINE.replace(DASH.encode(), b"-- "), id="ascii-dashes"),
    pytest.param(BODY + b"\n" + SIG_LINE.replace(DASH.encode(), "\u2013 ".encode()), id="en-dash"),
    pytest.param(BODY + b"\n" + SIG_LINE.replace(b" ", b"  ", 1), id="double-space-after-dash"),
    pytest.param(BODY + b"\n" + SIG_LINE.replace(ORIGIN.encode() + b" ", b"a+b "), id="plus-in-name"),
    pytest.param(BODY + b"\n" + SIG_LINE.replace(b"=\n", b"\n"), id="unpadded-base64"),
    pytest.param(BODY + b"\n" + SIG_LINE[:-10] + b"!" + SIG_LINE[-9:], id="not-base64"),
    pytest.param(BODY + b"\n" + f"{DASH}{ORIGIN} AAAA\n".encode(), id="signature-too-short"),
    pytest.param(BODY + b"\n" + f"{DASH}{ORIGIN}\n".encode(), id="no-signature"),
    pytest.param(NOTE.replace(b"\n", b"\r\n", 1), id="carriage-return"),
    pytest.param(NOTE.replace(b"/", b"\t", 1), id="tab"),
    pytest.param(b"\xff" + NOTE, id="not-utf8"),
    pytest.param(BODY + b"\n" + SIG_LINE * (MAX_SIGNATURES + 1), id="too-many-signatures"),
])
def test_malformed_notes(note: bytes) -> None:
    """Notes that break the signed-note layout are refused as MalformedNoteError."""
    with pytest.raises(MalformedNoteError):
        open_note(note, VERIFIER)


def test_many_signatures_up_to_the_limit_are_fine() -> None:
    """A note with as many signature lines as the limit allows is still read."""
    assert open_note(BODY + b"\n" + SIG_LINE * MAX_SIGNATURES, VERIFIER) == CHECKPOINT


ROOT64 = base64.b64encode(ROOT).decode()


@pytest.mark.parametrize("text", [
    pytest.param(f"{ORIGIN}\n1234\n", id="two-lines"),
    pytest.param(f"\n1234\n{ROOT64}\n", id="empty-origin"),
    pytest.param(f"{ORIGIN}\n01234\n{ROOT64}\n", id="leading-zero"),
    pytest.param(f"{ORIGIN}\n00\n{ROOT64}\n", id="double-zero"),
    pytest.param(f"{ORIGIN}\n+1234\n{ROOT64}\n", id="plus-sign"),
    pytest.param(f"{ORIGIN}\n-1\n{ROOT64}\n", id="negative"),
    pytest.param(f"{ORIGIN}\n1234 \n{ROOT64}\n", id="trailing-space-size"),
    pytest.param(f"{ORIGIN}\n 1234\n{ROOT64}\n", id="leading-space-size"),
    pytest.param(f"{ORIGIN}\n1_234\n{ROOT64}\n", id="underscore"),
    pytest.param(f"{ORIGIN}\n\u0661\u0662\n{ROOT64}\n", id="arabic-digits"),
    pytest.param(f"{ORIGIN}\n{2**64}\n{ROOT64}\n", id="size-over-64-bits"),
    pytest.param(f"{ORIGIN}\n1234\n{ROOT64} \n", id="trailing-space-root"),
    pytest.param(f"{ORIGIN}\n1234\n{ROOT64.rstrip('=')}\n", id="unpadded-root"),
    pytest.param(f"{ORIGIN}\n1234\n{base64.b64encode(ROOT[:31]).decode()}\n", id="short-root"),
    pytest.param(f"{ORIGIN}\n1234\n{base64.b64encode(ROOT + b'x').decode()}\n", id="long-root"),
    pytest.param(f"{ORIGIN}\n1234\n{ROOT64[:-2]}{chr(ord(ROOT64[-2]) + 1)}=\n", id="non-canonical-root"),
    pytest.param(f"{ORIGIN}\n1234\n{base64.b64encode(ROOT).hex()}\n", id="hex-root"),
    pytest.param(f"{ORIGIN}\n1234\n{ROOT64}\n\nextension\n", id="empty-extension-line"),
])
def test_bad_checkpoint_bodies(text: str) -> None:
    """Properly signed notes whose text is not a valid checkpoint raise CheckpointError."""
    with pytest.raises(CheckpointError):
        open_note(signed(text), VERIFIER)


def test_non_canonical_root_case_really_is_non_canonical() -> None:
    """The non-canonical root above decodes to the same 32 bytes, so only canonicity refuses it."""
    bent = f"{ROOT64[:-2]}{chr(ord(ROOT64[-2]) + 1)}="
    assert base64.b64decode(bent) == ROOT and bent != ROOT64


@pytest.mark.parametrize(("args", "match"), [
    ((" ", 1, ROOT), None),
    (("", 1, ROOT), "origin"),
    (("a\nb", 1, ROOT), "origin"),
    ((ORIGIN, -1, ROOT), "size"),
    ((ORIGIN, 2**64, ROOT), "size"),
    ((ORIGIN, True, ROOT), "size"),
    ((ORIGIN, 1, ROOT[:31]), "root"),
    ((ORIGIN, 1, ROOT, ("",)), "extension"),
    ((ORIGIN, 1, ROOT, ("a\nb",)), "extension"),
    ((ORIGIN, 1, ROOT, "abc"), "extensions"),
])
def test_checkpoint_constructor_validates(args: tuple[object, ...], match: str | None) -> None:
    """Checkpoint refuses values that could not be written as a valid checkpoint body."""
    if match is None:
        Checkpoint(*args)  # type: ignore[arg-type]  # an origin of one space is odd but allowed by the spec
        return
    with pytest.raises(CheckpointError, match=match):
        Checkpoint(*args)  # type: ignore[arg-type]  # deliberately wrong types


@settings(max_examples=500)
@given(st.binary(max_size=400))
def test_random_bytes_only_raise_note_errors(data: bytes) -> None:
    """open_note on random bytes raises a NoteError subclass and nothing else."""
    with pytest.raises(NoteError):
        open_note(data, VERIFIER)


NOTE_PIECES = st.sampled_from([
    b"\n", b"\n\n", DASH.encode(), ORIGIN.encode(), b" ", b"1234", ROOT64.encode(), b"=", b"+", b"\xe2\x80",
    SIG_LINE, BODY, b"\x00", b"\xff", b"A" * 8,
])


@settings(max_examples=500)
@given(st.lists(NOTE_PIECES, max_size=12))
def test_near_miss_notes_only_raise_note_errors(pieces: list[bytes]) -> None:
    """Notes stitched from plausible pieces are either the real checkpoint or refused with NoteError."""
    note = b"".join(pieces)
    with contextlib.suppress(NoteError):
        assert open_note(note, VERIFIER) == CHECKPOINT


def test_non_bytes_notes_are_malformed() -> None:
    """A note that is neither bytes nor text is refused as malformed, not with a TypeError."""
    with pytest.raises(MalformedNoteError):
        open_note(1234, VERIFIER)  # type: ignore[arg-type]  # deliberately wrong type
    assert open_note(NOTE.decode(), VERIFIER) == CHECKPOINT


# ------------------------------------------------------------------------------------------- keys

def test_vkey_round_trip() -> None:
    """A signer's vkey parses to a verifier with the same name, id and key, and prints back the same."""
    vkey = SIGNER.vkey()
    name, hex_id, material = vkey.split("+", 2)
    assert (name, hex_id) == (ORIGIN, SIGNER.key_id.hex())
    assert base64.b64decode(material)[0] == 0x01
    verifier = Verifier.from_vkey(vkey)
    assert verifier.vkey() == vkey and verifier.key_id == SIGNER.key_id
    assert open_note(NOTE, verifier) == CHECKPOINT
    assert Verifier.from_vkey(vkey.replace(hex_id, hex_id.upper())).vkey() == vkey


def test_mangled_vkeys_are_refused() -> None:
    """Every proper substring and every single-character change of a vkey is refused."""
    good = GO_VKEY
    for i in range(len(good) + 1):
        for j in range(i + 1, len(good) + 1):
            if (i, j) != (0, len(good)):
                with pytest.raises(KeyFormatError):
                    Verifier.from_vkey(good[i:j])
    for i, ch in enumerate(good):
        with pytest.raises(KeyFormatError):
            Verifier.from_vkey(good[:i] + chr(ord(ch) + 1) + good[i + 1:])


@pytest.mark.parametrize("vkey", [
    "", "name", "name+c74f20a3", "na me+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW",
    "PeterNeumann+c74f20a+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW",
    "PeterNeumann+c74f20a3+AhpjZAcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW",
    "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TWAA==",
])
def test_bad_vkeys(vkey: str) -> None:
    """Verifier keys with a bad name, id length, algorithm byte or key length are refused."""
    with pytest.raises(KeyFormatError):
        Verifier.from_vkey(vkey)


@pytest.mark.parametrize("name", ["", "a b", "a+b", "tab\there", "a\u00a0b", "line\n"])
def test_invalid_key_names(name: str) -> None:
    """Key names must be non-empty, without spaces, plus signs or control characters."""
    with pytest.raises(KeyFormatError):
        Signer.generate(name)


def test_bad_skeys() -> None:
    """Signer keys with a wrong prefix, id or material are refused."""
    for skey in (GO_SKEY[8:], GO_SKEY.replace("c74f20a3", "c74f20a4"), GO_SKEY[:-4], "PRIVATE+KEY+x"):
        with pytest.raises(KeyFormatError):
            Signer.from_skey(skey)


def test_sign_note_refuses_bad_text() -> None:
    """sign_note refuses text without a final newline, with control characters, or with no signer."""
    for text in (b"no newline", b"tab\there\n", b"\xff\n"):
        with pytest.raises(MalformedNoteError):
            sign_note(text, [SIGNER])
    with pytest.raises(ValueError, match="signer"):
        sign_note(b"text\n", [])


def test_reprs_do_not_leak_the_private_key() -> None:
    """Signer and Verifier print their name and id, never key material of the signer."""
    assert repr(SIGNER) == f"Signer(name={ORIGIN!r}, key_id={SIGNER.key_id.hex()})"
    assert repr(VERIFIER) == f"Verifier({VERIFIER.vkey()!r})"


# ----------------------------------------------------------------------------------- known answers

def test_go_note_example_signs_byte_for_byte() -> None:
    """The golang.org/x/mod/sumdb/note example key signs its example text to the published note."""
    signer = Signer.from_skey(GO_SKEY)
    assert signer.vkey() == GO_VKEY
    assert signer.key_id.hex() == "c74f20a3"
    assert sign_note(GO_TEXT, [signer]) == GO_NOTE


def test_go_note_example_verifies() -> None:
    """The published Go example note verifies under its vkey, and fails once its text changes."""
    verifier = Verifier.from_vkey(GO_VKEY)
    assert verify_note(GO_NOTE, verifier).text == GO_TEXT
    with pytest.raises(SignatureError):
        verify_note(GO_NOTE.replace(b"cryptography", b"cryptographY"), verifier)
    with pytest.raises(CheckpointError):  # a note, but no checkpoint
        open_note(GO_NOTE, verifier)


def test_real_sumdb_checkpoint_opens() -> None:
    """A checkpoint signed by sum.golang.org opens under the Go checksum database's published vkey."""
    checkpoint = open_note(SUMDB_NOTE, Verifier.from_vkey(SUMDB_VKEY), origin="go.sum database tree")
    assert checkpoint.size == 6476701
    assert base64.b64encode(checkpoint.root) == b"mb8QLQIs0Z0yP5Cstq6guj87oXWeC9gEM8oVikmm9Wk="
    assert checkpoint.body() + b"\n" == SUMDB_NOTE[: len(checkpoint.body()) + 1]


def test_real_witnessed_sumdb_checkpoint_ignores_the_unknown_cosigner() -> None:
    """A real sum.golang.org checkpoint with a cosignature from an unknown witness key still opens."""
    checkpoint = open_note(SUMDB_NOTE_WITNESSED, Verifier.from_vkey(SUMDB_VKEY))
    assert checkpoint.size == 15067302
    with pytest.raises(UnverifiedNoteError) as caught:
        open_note(SUMDB_NOTE_WITNESSED, VERIFIER)
    assert [name for name, _ in caught.value.signatures] == ["sum.golang.org", "test.example.com"]


def test_public_surface() -> None:
    """The checkpoint module's public names are deliberate; changing them is a visible decision."""
    assert sorted(cp.__all__) == [
        "Checkpoint", "CheckpointError", "KeyFormatError", "MAX_NOTE_SIZE", "MAX_SIGNATURES",
        "MalformedNoteError", "NoteError", "OriginMismatchError", "SignatureError", "Signer",
        "UnverifiedNoteError", "VerifiedNote", "Verifier", "key_id", "open_note", "open_signed", "sign_note",
        "verify_note",
    ]
