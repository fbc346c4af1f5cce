"""Signed checkpoints of the audit log: C2SP tlog-checkpoint bodies inside C2SP signed notes.

A checkpoint note (https://c2sp.org/tlog-checkpoint, https://c2sp.org/signed-note)::

    <origin>\\n
    <tree size, decimal>\\n
    <base64 root hash>\\n
    [<extension line>\\n ...]
    \\n
    \u2014 <key name> <base64(4-byte key id || 64-byte Ed25519 signature)>\\n   (one or more)

The key id is SHA-256(key name || 0x0A || 0x01 || public key)[:4]; a verifier key ("vkey") is
``<name>+<hex key id>+<base64(0x01 || public key)>``. Pure functions over bytes: no I/O, no clock.

Refusals, all raised by :func:`open_note` and :func:`verify_note`::

    NoteError                     the note was refused
    ├── MalformedNoteError        not a signed note: encoding, control characters, layout, signature lines
    ├── UnverifiedNoteError       no signature from a known key (``signatures``: the (name, key id) seen)
    ├── SignatureError            a known key's signature does not verify (``name``, ``key_id``)
    └── CheckpointError           signed, but the text is no valid checkpoint (origin, size, root, extensions)
        └── OriginMismatchError   a valid checkpoint of another log (``expected``, ``found``)

    KeyFormatError                a verifier or signer key string that cannot be used (a ValueError)
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from collections.abc import Iterable
from dataclasses import dataclass

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

__all__ = [
    "MAX_NOTE_SIZE",
    "MAX_SIGNATURES",
    "Checkpoint",
    "CheckpointError",
    "KeyFormatError",
    "MalformedNoteError",
    "NoteError",
    "OriginMismatchError",
    "SignatureError",
    "Signer",
    "UnverifiedNoteError",
    "VerifiedNote",
    "Verifier",
    "key_id",
    "open_note",
    "open_signed",
    "sign_note",
    "verify_note",
]

ED25519 = 0x01
"""The signed-note signature type byte of Ed25519."""
MAX_SIGNATURES = 100
"""Signature lines accepted on one note (the spec asks for at least 16; Go's note package allows 100)."""
MAX_NOTE_SIZE = 1 << 20
"""Bytes accepted in one note; a checkpoint with a hundred signatures is far below it."""

_SIG_PREFIX = "\u2014 ".encode()  # em dash, space
_HASH_SIZE = 32
_MAX_TREE_SIZE = (1 << 64) - 1
_CONTROL = re.compile(rb"[\x00-\x09\x0b-\x1f]")
_DECIMAL = re.compile(r"0|[1-9][0-9]{0,19}")
_HEX_KEY_ID = re.compile(r"[0-9a-fA-F]{8}")


# ---------------------------------------------------------------------------------------- errors

class NoteError(ValueError):
    """A note was refused."""


class MalformedNoteError(NoteError):
    """The bytes are not a well-formed signed note."""


class UnverifiedNoteError(NoteError):
    """No signature on the note comes from a known key."""

    def __init__(self, signatures: tuple[tuple[str, bytes], ...]) -> None:
        seen = ", ".join(f"{name}+{kid.hex()}" for name, kid in signatures) or "none"
        super().__init__(f"no signature from a known key (signatures seen: {seen})")
        self.signatures = signatures


class SignatureError(NoteError):
    """A signature made under a known key's name and id does not verify."""

    def __init__(self, name: str, key_id: bytes) -> None:
        super().__init__(f"signature by {name}+{key_id.hex()} does not verify")
        self.name = name
        self.key_id = key_id


class CheckpointError(NoteError):
    """The note text is not a valid checkpoint."""


class OriginMismatchError(CheckpointError):
    """The checkpoint belongs to another log."""

    def __init__(self, expected: str, found: str) -> None:
        super().__init__(f"checkpoint origin {found!r}, expected {expected!r}")
        self.expected = expected
        self.found = found


class KeyFormatError(ValueError):
    """A key name, verifier key or signer key that cannot be used."""


# ------------------------------------------------------------------------------------- encodings

def _b64decode(text: str | bytes) -> bytes | None:
    """Strict standard base64: padded, alphabet only, and canonical (re-encodes to the same text)."""
    try:
        raw = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        return None
    canonical = base64.b64encode(raw)
    return raw if canonical == (text if isinstance(text, bytes) else text.encode()) else None


def _b64encode(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _valid_key_name(name: object) -> bool:
    """Non-empty, no Unicode space, no '+', no control character, encodable as UTF-8."""
    if not isinstance(name, str) or not name or "+" in name:
        return False
    if any(ch.isspace() or ch < " " for ch in name):
        return False
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _raw_public_key(public_key: Ed25519PublicKey) -> bytes:
    return public_key.public_bytes(Encoding.Raw, PublicFormat.Raw)


def key_id(name: str, public_key: bytes) -> bytes:
    """The 4-byte key id of an Ed25519 key: SHA-256(name || 0x0A || 0x01 || public key)[:4]."""
    return hashlib.sha256(name.encode("utf-8") + b"\n" + bytes([ED25519]) + public_key).digest()[:4]


# ------------------------------------------------------------------------------------------- keys

class Verifier:
    """A trusted Ed25519 key, by name: checks signature lines carrying its name and key id."""

    __slots__ = ("key_id", "name", "public_key")

    def __init__(self, name: str, public_key: Ed25519PublicKey) -> None:
        if not _valid_key_name(name):
            raise KeyFormatError(f"invalid key name {name!r}")
        self.name = name
        self.public_key = public_key
        self.key_id = key_id(name, _raw_public_key(public_key))

    @classmethod
    def from_vkey(cls, vkey: str) -> Verifier:
        """Parse ``<name>+<hex key id>+<base64(0x01 || public key)>``; the id must match the key."""
        parts = vkey.split("+", 2) if isinstance(vkey, str) else []
        if len(parts) != 3:
            raise KeyFormatError("a verifier key is <name>+<hex key id>+<base64 key>")
        name, hex_id, material = parts
        if not _HEX_KEY_ID.fullmatch(hex_id):
            raise KeyFormatError(f"key id {hex_id!r} is not 8 hex digits")
        raw = _b64decode(material)
        if raw is None or len(raw) != 1 + _HASH_SIZE or raw[0] != ED25519:
            raise KeyFormatError("key material is not base64(0x01 || 32-byte Ed25519 public key)")
        try:
            verifier = cls(name, Ed25519PublicKey.from_public_bytes(raw[1:]))
        except ValueError as exc:  # KeyFormatError for the name, or cryptography refusing the key
            raise KeyFormatError(f"unusable verifier key: {exc}") from exc
        if verifier.key_id != bytes.fromhex(hex_id):
            raise KeyFormatError(f"key id {hex_id} does not match the key (want {verifier.key_id.hex()})")
        return verifier

    def vkey(self) -> str:
        """This key in the note verifier key format."""
        material = _b64encode(bytes([ED25519]) + _raw_public_key(self.public_key))
        return f"{self.name}+{self.key_id.hex()}+{material}"

    def verify(self, text: bytes, signature: bytes) -> bool:
        """Whether ``signature`` (64 bytes, without the key id) is this key's signature of ``text``."""
        try:
            self.public_key.verify(signature, text)
        except InvalidSignature:
            return False
        return True

    def __repr__(self) -> str:
        return f"Verifier({self.vkey()!r})"


class Signer:
    """A named Ed25519 private key that signs checkpoints."""

    __slots__ = ("_private_key", "key_id", "name")

    def __init__(self, name: str, private_key: Ed25519PrivateKey) -> None:
        if not _valid_key_name(name):
            raise KeyFormatError(f"invalid key name {name!r}")
        self.name = name
        self._private_key = private_key
        self.key_id = key_id(name, _raw_public_key(private_key.public_key()))

    @classmethod
    def generate(cls, name: str) -> Signer:
        """A signer with a fresh random key."""
        return cls(name, Ed25519PrivateKey.generate())

    @classmethod
    def from_skey(cls, skey: str) -> Signer:
        """Parse Go's ``PRIVATE+KEY+<name>+<hex key id>+<base64(0x01 || 32-byte seed)>``."""
        prefix = "PRIVATE+KEY+"
        parts = skey[len(prefix):].split("+", 2) if isinstance(skey, str) and skey.startswith(prefix) else []
        if len(parts) != 3:
            raise KeyFormatError("a signer key is PRIVATE+KEY+<name>+<hex key id>+<base64 seed>")
        name, hex_id, material = parts
        raw = _b64decode(material)
        if not _HEX_KEY_ID.fullmatch(hex_id) or raw is None or len(raw) != 1 + 32 or raw[0] != ED25519:
            raise KeyFormatError("signer key id or material is malformed")
        signer = cls(name, Ed25519PrivateKey.from_private_bytes(raw[1:]))
        if signer.key_id != bytes.fromhex(hex_id):
            raise KeyFormatError(f"key id {hex_id} does not match the key (want {signer.key_id.hex()})")
        return signer

    def verifier(self) -> Verifier:
        """The verifier for this signer's public key."""
        return Verifier(self.name, self._private_key.public_key())

    def vkey(self) -> str:
        """The verifier key to hand to whoever checks this signer's checkpoints."""
        return self.verifier().vkey()

    def signature_line(self, text: bytes) -> bytes:
        """``— <name> <base64(key id || signature)>\\n`` over ``text``."""
        signature = self.key_id + self._private_key.sign(text)
        return _SIG_PREFIX + f"{self.name} {_b64encode(signature)}\n".encode()

    def sign(self, checkpoint: Checkpoint) -> bytes:
        """The complete signed note of ``checkpoint``."""
        return sign_note(checkpoint.body(), [self])

    def __repr__(self) -> str:
        return f"Signer(name={self.name!r}, key_id={self.key_id.hex()})"


# ------------------------------------------------------------------------------------------ notes

@dataclass(frozen=True, slots=True)
class VerifiedNote:
    """The signed text of a note and the known keys whose signatures on it verified."""

    text: bytes
    verified_by: tuple[Verifier, ...]


def _check_note_text(text: bytes) -> None:
    if not text.endswith(b"\n"):
        raise MalformedNoteError("note text must end with a newline")
    try:
        text.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise MalformedNoteError("note is not valid UTF-8") from exc
    if _CONTROL.search(text):
        raise MalformedNoteError("note holds a control character other than newline")


def sign_note(text: bytes, signers: Iterable[Signer]) -> bytes:
    """Sign note ``text`` (UTF-8, ending in a newline) with every signer, in order."""
    _check_note_text(text)
    lines = [signer.signature_line(text) for signer in signers]
    if not lines:
        raise ValueError("a signed note needs at least one signer")
    return text + b"\n" + b"".join(lines)


def _parse_signature_line(line: bytes) -> tuple[str, bytes, bytes]:
    if not line.startswith(_SIG_PREFIX):
        raise MalformedNoteError("signature line does not start with an em dash and a space")
    name_bytes, space, encoded = line[len(_SIG_PREFIX):].partition(b" ")
    name = name_bytes.decode("utf-8")  # the whole note was checked to be UTF-8
    if not space or not _valid_key_name(name):
        raise MalformedNoteError(f"signature line has an invalid key name {name!r}")
    signature = _b64decode(encoded)
    if signature is None or len(signature) < 5:
        raise MalformedNoteError(f"signature by {name} is not base64 of a key id and a signature")
    return name, signature[:4], signature[4:]


def verify_note(note: bytes | str, verifiers: Verifier | Iterable[Verifier]) -> VerifiedNote:
    """Check a signed note's layout and signatures; return its text and the keys that signed it.

    Signatures from unknown keys (name and id not both known) are ignored; a known key's signature
    that fails refuses the whole note; at least one known key must have signed.
    """
    if isinstance(note, str):
        note = note.encode("utf-8", "surrogatepass")
    if not isinstance(note, bytes | bytearray):
        raise MalformedNoteError(f"a note is bytes, not {type(note).__name__}")
    note = bytes(note)
    if len(note) > MAX_NOTE_SIZE:
        raise MalformedNoteError(f"note is over {MAX_NOTE_SIZE} bytes")
    _check_note_text(note)
    split = note.rfind(b"\n\n")
    if split < 0:
        raise MalformedNoteError("no blank line separates the text from the signatures")
    text, block = note[: split + 1], note[split + 2:]
    if not block:
        raise MalformedNoteError("note has no signature lines")
    lines = block[:-1].split(b"\n")
    if len(lines) > MAX_SIGNATURES:
        raise MalformedNoteError(f"note has over {MAX_SIGNATURES} signatures")
    signatures = [_parse_signature_line(line) for line in lines]

    known = {(v.name, v.key_id): v for v in ([verifiers] if isinstance(verifiers, Verifier) else verifiers)}
    verified: dict[tuple[str, bytes], Verifier] = {}
    for name, kid, signature in signatures:
        verifier = known.get((name, kid))
        if verifier is None:
            continue
        if not verifier.verify(text, signature):
            raise SignatureError(name, kid)
        verified[(name, kid)] = verifier
    if not verified:
        raise UnverifiedNoteError(tuple((name, kid) for name, kid, _ in signatures))
    return VerifiedNote(text, tuple(verified.values()))


# ------------------------------------------------------------------------------------ checkpoints

def _check_line(what: str, value: object) -> str:
    if not isinstance(value, str) or not value:
        raise CheckpointError(f"{what} must be a non-empty string")
    if any(ch < " " for ch in value):
        raise CheckpointError(f"{what} holds a control character or newline")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise CheckpointError(f"{what} is not encodable as UTF-8") from exc
    return value


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """A log's tree head: its origin, tree size and RFC 9162 root, with optional extension lines."""

    origin: str
    size: int
    root: bytes
    extensions: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        _check_line("origin", self.origin)
        size_ok = isinstance(self.size, int) and not isinstance(self.size, bool)
        if not size_ok or not 0 <= self.size <= _MAX_TREE_SIZE:
            raise CheckpointError(f"tree size must be an integer in [0, 2**64), got {self.size!r}")
        if not isinstance(self.root, bytes) or len(self.root) != _HASH_SIZE:
            raise CheckpointError(f"root hash must be {_HASH_SIZE} bytes")
        if isinstance(self.extensions, str | bytes):
            raise CheckpointError("extensions are a sequence of lines, not one string")
        object.__setattr__(self, "extensions", tuple(self.extensions))
        for line in self.extensions:
            _check_line("extension line", line)

    def body(self) -> bytes:
        """The checkpoint note text, every line ending in a newline."""
        lines = [self.origin, str(self.size), _b64encode(self.root), *self.extensions]
        return "".join(f"{line}\n" for line in lines).encode("utf-8")

    @classmethod
    def parse(cls, text: bytes) -> Checkpoint:
        """Read a checkpoint from note text (already verified), refusing anything off-format."""
        try:
            decoded = text.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise CheckpointError("checkpoint is not valid UTF-8") from exc
        if not decoded.endswith("\n"):
            raise CheckpointError("checkpoint text must end with a newline")
        lines = decoded[:-1].split("\n")
        if len(lines) < 3:
            raise CheckpointError("a checkpoint has at least three lines: origin, size, root hash")
        origin, size_line, root_line, *extensions = lines
        if not _DECIMAL.fullmatch(size_line):
            raise CheckpointError(f"tree size {size_line!r} is not a decimal without leading zeros")
        root = _b64decode(root_line)
        if root is None or len(root) != _HASH_SIZE:
            raise CheckpointError(f"root hash {root_line!r} is not canonical base64 of {_HASH_SIZE} bytes")
        return cls(origin, int(size_line), root, tuple(extensions))


def open_note(
    note: bytes | str, verifiers: Verifier | Iterable[Verifier], *, origin: str | None = None,
) -> Checkpoint:
    """Verify a checkpoint note and return its checkpoint; raises a NoteError subclass on refusal.

    With ``origin``, also refuse a checkpoint of any other log (OriginMismatchError).
    """
    return open_signed(note, verifiers, origin=origin)[0]


def open_signed(
    note: bytes | str, verifiers: Verifier | Iterable[Verifier], *, origin: str | None = None,
) -> tuple[Checkpoint, tuple[Verifier, ...]]:
    """:func:`open_note`, with the known keys whose signatures on the note verified."""
    verified = verify_note(note, verifiers)
    checkpoint = Checkpoint.parse(verified.text)
    if origin is not None and checkpoint.origin != origin:
        raise OriginMismatchError(origin, checkpoint.origin)
    return checkpoint, verified.verified_by
