"""Signing key rotation.

``lienthong keys rotate`` adds a new key (a new ``kid``); from then on the newest key signs, while
older keys stay in the JWKS and keep verifying the tokens they signed. A key is removed once its
successor has been signing for longer than a token lives (plus the clock-skew leeway), since no
token it signed can still be valid. Running workers notice the keys folder change within
``token.refresh`` seconds, and at once when a token names a ``kid`` they do not know yet.
"""

from __future__ import annotations

import calendar
import itertools
import time
from dataclasses import dataclass
from pathlib import Path

from joserfc.jwk import KeySet

from gateway import keys

Fingerprint = tuple[tuple[str, int], ...]


def key_created(kid: str, path: Path | None = None) -> float:
    """When a key was made: from its kid (``YYYYmmddTHHMMSS…``), else the file's time."""
    try:
        return float(calendar.timegm(time.strptime(kid[:15], "%Y%m%dT%H%M%S")))
    except ValueError:
        return path.stat().st_mtime if path is not None and path.exists() else 0.0


def _files(keys_dir: Path) -> list[Path]:
    return sorted((keys_dir / keys.SIGNING_DIR).glob("*.jwk"))


def fingerprint(keys_dir: Path) -> Fingerprint:
    return tuple((p.name, p.stat().st_mtime_ns) for p in _files(keys_dir))


@dataclass(frozen=True)
class Rotation:
    new_kid: str
    removed: list[str]
    kept: list[str]


def prune(keys_dir: Path, keep_for: float, now: float | None = None) -> list[str]:
    """Remove keys whose successor has signed for longer than ``keep_for`` seconds."""
    now = time.time() if now is None else now
    files = _files(keys_dir)
    removed = []
    for older, newer in itertools.pairwise(files):
        if now - key_created(newer.stem, newer) > keep_for:
            older.unlink()
            removed.append(older.stem)
    return removed


def rotate(keys_dir: Path, algorithm: str, keep_for: float) -> Rotation:
    """Make a new signing key and prune the keys no valid token can need any more."""
    kid = keys.new_signing_key(keys_dir, algorithm)
    removed = prune(keys_dir, keep_for)
    return Rotation(kid, removed, [p.stem for p in _files(keys_dir)])


class Keyring:
    """The signing keys of a keys folder, reloaded when the folder changes."""

    def __init__(self, keys_dir: Path) -> None:
        self.keys_dir = keys_dir
        self._seen = fingerprint(keys_dir)
        self.keys = keys.load_signing_keys(keys_dir)

    def poll(self) -> KeySet | None:
        """The new key set when the folder changed, else None."""
        now = fingerprint(self.keys_dir)
        if now == self._seen or not now:
            return None
        self._seen = now
        self.keys = keys.load_signing_keys(self.keys_dir)
        return self.keys

    def jwks(self) -> list[dict[str, object]]:
        return [dict(k.as_dict(private=False)) for k in self.keys.keys]
