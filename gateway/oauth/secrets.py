"""Client secrets: generated strong, stored only as argon2id hashes."""

from __future__ import annotations

import secrets

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

_hasher = PasswordHasher()

# Checked instead when there is no hash to check against (an unknown client or account, one without
# a secret): the refusal then costs the same argon2 work, so its timing does not tell who exists.
DUMMY_HASH = _hasher.hash("not the secret of anyone")


def new_secret() -> str:
    return secrets.token_urlsafe(32)


def hash_secret(secret: str) -> str:
    return _hasher.hash(secret)


def check_secret(secret_hash: str | None, secret: str) -> bool:
    """Whether the secret matches; always one argon2 verification, even without a hash (False)."""
    try:
        return _hasher.verify(secret_hash or DUMMY_HASH, secret) and bool(secret_hash)
    except (VerificationError, InvalidHashError):
        return False
