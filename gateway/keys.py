"""The gateway's keys, kept as files in the configured keys folder.

- ``oauth/<kid>.jwk``: token signing keys (private JWK, ES256 or EdDSA); the newest signs, all are
  published in the JWKS until removed, so tokens signed before a rotation stay verifiable.
- ``audit-subject.key``: 32 random bytes, the HMAC key that turns personal ids into audit subjects.
- ``audit-checkpoint.key``: 32 random bytes, the Ed25519 seed that signs audit checkpoints.
- ``audit-checkpoint.retired``: the verifier keys of former checkpoint keys, with when each was
  retired (``lienthong audit rotate-key``, gateway/audit/rotation.py); public, mode 0644.
- ``audit-body.key``: 32 random bytes, the AES-256-GCM key of the exchange bodies policies keep.

Files are written with mode 0600, but for the public list of retired checkpoint keys.
"""

from __future__ import annotations

import json
import os
import secrets
import time
from pathlib import Path
from typing import Any

from joserfc.errors import JoseError
from joserfc.jwk import ECKey, KeySet, OKPKey

SIGNING_DIR = "oauth"
SUBJECT_KEY = "audit-subject.key"
CHECKPOINT_KEY = "audit-checkpoint.key"
CHECKPOINT_RETIRED = "audit-checkpoint.retired"
BODY_KEY = "audit-body.key"


def _write_private(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)


def new_signing_key(keys_dir: Path, algorithm: str = "ES256") -> str:
    """Create a signing key; return its kid. Named by creation time so the newest sorts last."""
    now = time.time()
    micro = int(now * 1_000_000) % 1_000_000  # two keys made in one second still sort in order
    kid = f"{time.strftime('%Y%m%dT%H%M%S', time.gmtime(now))}.{micro:06d}-{secrets.token_hex(4)}"
    params: Any = {"kid": kid, "alg": algorithm, "use": "sig"}
    key = (OKPKey.generate_key("Ed25519", parameters=params) if algorithm == "EdDSA"
           else ECKey.generate_key("P-256", parameters=params))
    _write_private(keys_dir / SIGNING_DIR / f"{kid}.jwk",
                   json.dumps(key.as_dict(private=True)).encode())
    return kid


def load_signing_keys(keys_dir: Path) -> KeySet:
    """All signing keys, oldest first. The last one signs new tokens."""
    files = sorted((keys_dir / SIGNING_DIR).glob("*.jwk"))
    if not files:
        raise FileNotFoundError(f"no token signing key in {keys_dir / SIGNING_DIR}; "
                                "run 'lienthong init' or 'lienthong keys rotate'")
    found = []
    for file in files:  # one broken file and no key set is loaded, never a signer from the rest
        try:
            found.append(KeySet.import_key_set({"keys": [json.loads(file.read_text())]}).keys[0])
        except (ValueError, JoseError) as exc:  # JSONDecodeError is a ValueError
            raise KeyFileError(f"{file}: not a signing key ({type(exc).__name__}: {exc}); restore "
                               "it from a backup, or remove it and run 'lienthong keys rotate'") \
                from exc
    return KeySet(found)


class KeyFileError(ValueError):
    """A key file that cannot be read as a key, named."""


def new_subject_key(keys_dir: Path) -> None:
    _write_private(keys_dir / SUBJECT_KEY, secrets.token_bytes(32))


def load_subject_key(keys_dir: Path) -> bytes:
    path = keys_dir / SUBJECT_KEY
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise FileNotFoundError(f"no audit subject key at {path}; run 'lienthong init'") from None


def load_audit_key(keys_dir: Path, name: str) -> bytes:
    """The 32 bytes of CHECKPOINT_KEY or BODY_KEY."""
    path = keys_dir / name
    try:
        key = path.read_bytes()
    except FileNotFoundError:
        raise FileNotFoundError(f"no audit key at {path}; run 'lienthong init'") from None
    if len(key) != 32:
        raise ValueError(f"{path} must hold 32 bytes, it holds {len(key)}")
    return key


def ensure_keys(keys_dir: Path, algorithm: str = "ES256") -> None:
    """Create whatever key is missing (a fresh deployment or the demo)."""
    if not list((keys_dir / SIGNING_DIR).glob("*.jwk")):
        new_signing_key(keys_dir, algorithm)
    if not (keys_dir / SUBJECT_KEY).exists():
        new_subject_key(keys_dir)
    for name in (CHECKPOINT_KEY, BODY_KEY):
        if not (keys_dir / name).exists():
            _write_private(keys_dir / name, secrets.token_bytes(32))


def new_client_key(folder: Path, client_id: str, algorithm: str = "EdDSA") -> Path:
    """A key pair for a client's private_key_jwt authentication: the private JWK, written for the
    client (mode 0600); register its public part (``public_jwks_of``) with the gateway."""
    path = folder / (client_id.replace("/", "_").replace(":", "_") + ".jwk")
    if path.exists():
        path.unlink()
    params: Any = {"kid": f"{client_id.rsplit('/', 1)[-1].lower()}-{secrets.token_hex(4)}",
                   "alg": algorithm, "use": "sig"}
    key = (OKPKey.generate_key("Ed25519", parameters=params) if algorithm == "EdDSA"
           else ECKey.generate_key("P-256", parameters=params))
    _write_private(path, json.dumps(key.as_dict(private=True)).encode())
    return path


def public_jwks_of(private_jwk_file: Path) -> dict[str, Any]:
    """The public JWKS of a private JWK file."""
    key_set = KeySet.import_key_set({"keys": [json.loads(private_jwk_file.read_text())]})
    return dict(key_set.as_dict(private=False))
