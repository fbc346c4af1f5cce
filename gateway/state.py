"""The gateway's state folder (``state_dir``): the one place it writes while it runs.

The configuration folder (config.yaml, keys/, policies/, flows/, the trust store) may be mounted
read-only, as a Kubernetes Secret or ConfigMap is; what the gateway writes at run time goes under
``state_dir`` instead (docs/operations.md#configuration-read-only):

- a SQLite database given by a relative path, and its ``-wal``, ``-shm`` and lock files beside it;
- the audit witness file (``audit.witness_file``, when relative);
- the console's session key, when keys_dir does not provide one.

By default ``state_dir`` is the configuration's folder, so a setup made before it existed keeps its
files where they were.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path
from typing import TYPE_CHECKING

from gateway.console.sessions import SESSION_KEY, load_or_create_key

if TYPE_CHECKING:
    from gateway.config import Config

__all__ = ["StateDirError", "console_session_key", "ensure_state_folder"]


class StateDirError(RuntimeError):
    """The state folder cannot be made or written; the message says what to do."""


def ensure_state_folder(config: Config) -> Path:
    """The state folder, made if missing and proved writable (a probe file written and removed), so
    that a read-only one stops the start with a message rather than the first checkpoint later."""
    folder = config.state_folder
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe = folder / f".lienthong-write-probe-{os.getpid()}-{secrets.token_hex(4)}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        where = "state_dir" if config.state_dir else "the configuration's folder (state_dir unset)"
        raise StateDirError(
            f"the gateway writes its state (database, audit witness, session key) under {where}, "
            f"{folder}, but cannot: {exc.strerror}. Point state_dir in the configuration at a "
            "writable folder (a volume), or make this one writable by the gateway's account") from None
    return folder


def console_session_key(config: Config) -> bytes:
    """The key of the console's session cookies: ``console-session.key`` from keys_dir when it is
    there (provision it there for several replicas, which must share it; ``lienthong init`` writes
    it), else from the state folder, made there on first use."""
    provided = config.path(config.keys_dir) / SESSION_KEY
    if provided.exists():
        key = provided.read_bytes()
        if len(key) < 32:
            raise ValueError(f"{provided} must hold at least 32 bytes")
        return key
    folder = config.state_folder
    folder.mkdir(parents=True, exist_ok=True)  # an app built without `lienthong serve` (tests, demo)
    return load_or_create_key(folder)
