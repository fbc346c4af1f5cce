"""C2SP cosignature/v1 (https://c2sp.org/tlog-cosignature): timestamped Ed25519 note signatures.

A cosignature is a signed-note signature line on a checkpoint::

    \u2014 <witness name> <base64(key id (4) || timestamp (8, big-endian) || Ed25519 signature (64))>

over the message ``cosignature/v1\\ntime <timestamp>\\n`` followed by the checkpoint's note body (its
text up to and including the final newline, without signature lines). The key id is
SHA-256(name || 0x0A || 0x04 || public key)[:4]; a verifier key is
``<name>+<hex key id>+<base64(0x04 || public key)>``. Pure functions over bytes: no I/O, no clock.

Refusals::

    CosignatureError              a line that is no valid cosignature by the key at hand
    KeyFormatError                (gateway.audit.checkpoint) a key string that cannot be used
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
import struct

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from gateway.audit.checkpoint import KeyFormatError

__all__ = [
    "COSIGNATURE_V1",
    "CosignatureError",
    "CosignatureVerifier",
    "WitnessKey",
    "cosigned_message",
    "key_id",
    "note_body",
    "split_signature_line",
]

COSIGNATURE_V1 = 0x04
"""The signed-note signature type byte of an Ed25519 cosignature/v1."""
_SIG_PREFIX = "\u2014 ".encode()
_SEED_SIZE = _KEY_SIZE = 32
_SIGNATURE_SIZE = 4 + 8 + 64
_MAX_TIMESTAMP = (1 << 63) - 1
_HEX_KEY_ID = re.compile(r"[0-9a-fA-F]{8}")
_SKEY_PREFIX = "PRIVATE+KEY+"


class CosignatureError(ValueError):
    """A signature line that is not a valid cosignature by the key it was checked with."""


def _b64decode(text: str | bytes) -> bytes | None:
    """Strict, canonical standard base64 (re-encodes to the same text), or None."""
    raw_text = text.encode("ascii", "replace") if isinstance(text, str) else text
    try:
        raw = base64.b64decode(raw_text, validate=True)
    except (binascii.Error, ValueError):
        return None
    return raw if base64.b64encode(raw) == raw_text else None


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _check_name(name: object) -> str:
    """A note key name: non-empty, no '+', no space or control character."""
    if not isinstance(name, str) or not name or "+" in name or any(c.isspace() or c < " " for c in name):
        raise KeyFormatError(f"invalid key name {name!r}")
    return name


def _raw(public_key: Ed25519PublicKey) -> bytes:
    return public_key.public_bytes(Encoding.Raw, PublicFormat.Raw)


def key_id(name: str, public_key: bytes) -> bytes:
    """The cosignature/v1 key id: SHA-256(name || 0x0A || 0x04 || public key)[:4]."""
    return hashlib.sha256(name.encode("utf-8") + b"\n" + bytes([COSIGNATURE_V1]) + public_key).digest()[:4]


def cosigned_message(body: bytes, timestamp: int) -> bytes:
    """What a cosignature signs: the header line, the time line, then the checkpoint body."""
    return b"cosignature/v1\ntime %d\n" % timestamp + body


def note_body(note: bytes) -> bytes:
    """The text of a signed note: everything up to and including the newline before the blank line
    that starts its signatures (the whole input when it has none)."""
    split = note.rfind(b"\n\n")
    return note[: split + 1] if split >= 0 else note


def split_signature_line(line: bytes) -> tuple[str, bytes] | None:
    """A note signature line's key name and decoded signature (key id first), or None."""
    line = line.removesuffix(b"\n")
    if not line.startswith(_SIG_PREFIX):
        return None
    name_bytes, space, encoded = line[len(_SIG_PREFIX):].partition(b" ")
    try:
        name = name_bytes.decode("utf-8")
    except UnicodeDecodeError:
        return None
    signature = _b64decode(encoded)
    if not space or not name or signature is None or len(signature) < 4:
        return None
    return name, signature


class CosignatureVerifier:
    """A witness's public key, by name: checks its cosignatures on checkpoint bodies."""

    __slots__ = ("key_id", "name", "public_key")

    def __init__(self, name: str, public_key: Ed25519PublicKey) -> None:
        self.name = _check_name(name)
        self.public_key = public_key
        self.key_id = key_id(name, _raw(public_key))

    @classmethod
    def from_vkey(cls, vkey: str) -> CosignatureVerifier:
        """Parse ``<name>+<hex key id>+<base64(0x04 || public key)>``; the id must match the key."""
        parts = vkey.strip().split("+", 2) if isinstance(vkey, str) else []
        if len(parts) != 3:
            raise KeyFormatError("a witness verifier key is <name>+<hex key id>+<base64 key>")
        name, hex_id, material = parts
        raw = _b64decode(material)
        if not _HEX_KEY_ID.fullmatch(hex_id):
            raise KeyFormatError(f"key id {hex_id!r} is not 8 hex digits")
        if raw is None or len(raw) != 1 + _KEY_SIZE or raw[0] != COSIGNATURE_V1:
            raise KeyFormatError("key material is not base64(0x04 || 32-byte Ed25519 public key): "
                                 "is this a witness (cosignature/v1) key?")
        try:
            verifier = cls(name, Ed25519PublicKey.from_public_bytes(raw[1:]))
        except ValueError as exc:
            raise KeyFormatError(f"unusable witness key: {exc}") from exc
        if verifier.key_id != bytes.fromhex(hex_id):
            raise KeyFormatError(f"key id {hex_id} does not match the key (want {verifier.key_id.hex()})")
        return verifier

    def vkey(self) -> str:
        return f"{self.name}+{self.key_id.hex()}+{_b64(bytes([COSIGNATURE_V1]) + _raw(self.public_key))}"

    def owns(self, line: bytes) -> bool:
        """Whether a signature line carries this key's name and key id."""
        parsed = split_signature_line(line)
        return parsed is not None and parsed[0] == self.name and parsed[1][:4] == self.key_id

    def verify(self, body: bytes, line: bytes) -> int:
        """The timestamp of ``line``, a valid cosignature by this key of checkpoint ``body``; raises
        CosignatureError otherwise."""
        parsed = split_signature_line(line)
        if parsed is None:
            raise CosignatureError("not a note signature line")
        name, signature = parsed
        if name != self.name or signature[:4] != self.key_id:
            raise CosignatureError(f"signed by {name}+{signature[:4].hex()}, not by "
                                   f"{self.name}+{self.key_id.hex()}")
        if len(signature) != _SIGNATURE_SIZE:
            raise CosignatureError(f"a cosignature/v1 is {_SIGNATURE_SIZE} bytes, got {len(signature)}")
        (timestamp,) = struct.unpack(">Q", signature[4:12])
        if timestamp > _MAX_TIMESTAMP:
            raise CosignatureError("timestamp beyond 2**63 - 1")
        try:
            self.public_key.verify(signature[12:], cosigned_message(body, timestamp))
        except InvalidSignature:
            raise CosignatureError(f"cosignature by {self.name} does not verify") from None
        return int(timestamp)

    def __repr__(self) -> str:
        return f"CosignatureVerifier({self.vkey()!r})"


class WitnessKey:
    """A witness's named Ed25519 private key: makes cosignature/v1 lines."""

    __slots__ = ("_private_key", "key_id", "name")

    def __init__(self, name: str, private_key: Ed25519PrivateKey) -> None:
        self.name = _check_name(name)
        self._private_key = private_key
        self.key_id = key_id(name, _raw(private_key.public_key()))

    @classmethod
    def generate(cls, name: str) -> WitnessKey:
        return cls(name, Ed25519PrivateKey.generate())

    @classmethod
    def from_skey(cls, skey: str) -> WitnessKey:
        """Parse ``PRIVATE+KEY+<name>+<hex key id>+<base64(0x04 || 32-byte seed)>``."""
        text = skey.strip() if isinstance(skey, str) else ""
        parts = text[len(_SKEY_PREFIX):].split("+", 2) if text.startswith(_SKEY_PREFIX) else []
        if len(parts) != 3:
            raise KeyFormatError("a witness key is PRIVATE+KEY+<name>+<hex key id>+<base64 seed>")
        name, hex_id, material = parts
        raw = _b64decode(material)
        if not _HEX_KEY_ID.fullmatch(hex_id) or raw is None or len(raw) != 1 + _SEED_SIZE \
                or raw[0] != COSIGNATURE_V1:
            raise KeyFormatError("witness key id or material is malformed")
        key = cls(name, Ed25519PrivateKey.from_private_bytes(raw[1:]))
        if key.key_id != bytes.fromhex(hex_id):
            raise KeyFormatError(f"key id {hex_id} does not match the key (want {key.key_id.hex()})")
        return key

    def skey(self) -> str:
        seed = self._private_key.private_bytes_raw()
        return f"{_SKEY_PREFIX}{self.name}+{self.key_id.hex()}+{_b64(bytes([COSIGNATURE_V1]) + seed)}"

    def verifier(self) -> CosignatureVerifier:
        return CosignatureVerifier(self.name, self._private_key.public_key())

    def vkey(self) -> str:
        return self.verifier().vkey()

    def cosign(self, body: bytes, timestamp: int) -> bytes:
        """The cosignature line (ending in a newline) of checkpoint ``body`` at ``timestamp``."""
        if not 0 <= timestamp <= _MAX_TIMESTAMP:
            raise ValueError(f"timestamp {timestamp} out of range")
        signature = self._private_key.sign(cosigned_message(body, timestamp))
        payload = self.key_id + struct.pack(">Q", timestamp) + signature
        return _SIG_PREFIX + f"{self.name} {_b64(payload)}\n".encode()

    def __repr__(self) -> str:
        return f"WitnessKey(name={self.name!r}, key_id={self.key_id.hex()})"
