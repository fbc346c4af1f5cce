"""Rotating the key that signs the audit log's checkpoints, and the keys it retired.

``lienthong audit rotate-key`` lists the old key's verifier key as retired and puts a new Ed25519
seed in place of the old one (:func:`replace_checkpoint_key`); once the command's own audit record
is stored, it signs the tree head, which includes that record, with the old key and then the new one
in one note (``Checkpointer.hand_over``: the key transition, kept with the checkpoints and appended
to the witness file). The old seed is gone; its verifier key stays, so that every checkpoint it
signed keeps verifying.

``<keys>/audit-checkpoint.retired`` (public, mode 0644), one retired key a line, oldest first::

    # retired checkpoint verifier keys: <vkey> <retired at, RFC 3339 UTC>
    lienthong.gov.vn/VN/audit+1a2b3c4d+AQ… 2026-12-04T14:50:00Z

A crash part-way leaves the old key current and perhaps also listed as retired (harmless: rotate
again), or the new key current without the transition note (every checkpoint still verifies; only
the note linking the two keys is missing).
"""

from __future__ import annotations

import os
import secrets
import time
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from gateway import keys
from gateway.audit.checkpoint import KeyFormatError, Signer, Verifier

__all__ = ["RetiredKey", "RetiredKeysError", "load_retired", "replace_checkpoint_key", "retire"]

_HEADER = "# retired checkpoint verifier keys: <vkey> <retired at, RFC 3339 UTC>\n"
_TIME = "%Y-%m-%dT%H:%M:%SZ"


class RetiredKeysError(ValueError):
    """The retired keys file holds a line that is not a verifier key and a time (named)."""


@dataclass(frozen=True, slots=True)
class RetiredKey:
    """A checkpoint key that signs no more, but whose checkpoints still verify."""

    verifier: Verifier
    retired: str  # RFC 3339, UTC

    @property
    def vkey(self) -> str:
        return self.verifier.vkey()

    def as_json(self) -> dict[str, str]:
        return {"vkey": self.vkey, "retired": self.retired}


def retired_path(keys_dir: Path) -> Path:
    return keys_dir / keys.CHECKPOINT_RETIRED


def load_retired(keys_dir: Path) -> tuple[RetiredKey, ...]:
    """The retired keys, oldest first; none when the file does not exist."""
    path = retired_path(keys_dir)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return ()
    found: list[RetiredKey] = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip() or line.startswith("#"):
            continue
        try:
            vkey, when = line.split()
            time.strptime(when, _TIME)
            found.append(RetiredKey(Verifier.from_vkey(vkey), when))
        except (ValueError, KeyFormatError) as exc:
            raise RetiredKeysError(f"{path}:{number}: not '<vkey> <retired at>' ({exc}); restore the "
                                   "file from a backup: the checkpoints its keys signed need it") from None
    return tuple(found)


def _write_atomically(path: Path, data: bytes, mode: int) -> None:
    """Write ``data`` to a new file beside ``path``, make it durable, and put it in ``path``'s place."""
    staged = path.with_name(f".{path.name}.{secrets.token_hex(4)}")
    fd = os.open(staged, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(staged, mode)  # whatever the umask
        os.replace(staged, path)
    except BaseException:
        staged.unlink(missing_ok=True)
        raise


def retire(keys_dir: Path, verifier: Verifier, when: str) -> RetiredKey:
    """Add ``verifier`` to the retired keys (once)."""
    listed = load_retired(keys_dir)
    retired = RetiredKey(verifier, when)
    if any(r.vkey == retired.vkey for r in listed):
        return next(r for r in listed if r.vkey == retired.vkey)
    lines = [f"{r.vkey} {r.retired}\n" for r in (*listed, retired)]
    _write_atomically(retired_path(keys_dir), (_HEADER + "".join(lines)).encode(), 0o644)
    return retired


def replace_checkpoint_key(keys_dir: Path, old: Signer,
                           now: float | None = None) -> tuple[Signer, RetiredKey]:
    """Retire ``old`` and put a new seed (same key name) in the keys folder; return the new signer."""
    seed = secrets.token_bytes(32)
    new = Signer(old.name, Ed25519PrivateKey.from_private_bytes(seed))
    when = time.strftime(_TIME, time.gmtime(time.time() if now is None else now))
    retired = retire(keys_dir, old.verifier(), when)
    _write_atomically(keys_dir / keys.CHECKPOINT_KEY, seed, 0o600)
    return new, retired
