"""Reloading policies when their files change.

Each worker compares the folder's fingerprint (file names and content digests) every
``token.refresh`` seconds; on a change it reads the folder again and, if every file is valid,
swaps the new policy in. A broken edit is logged and the policy in force stays: a typo never opens
(or closes) the gateway.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from gateway import yamlfile
from gateway.policy.engine import Policy
from gateway.policy.rules import load_folder, policy_files

Fingerprint = tuple[tuple[str, str], ...]


def fingerprint(folder: Path) -> Fingerprint:
    """Names and content digests of the policy files (contents, not times: a file rewritten within
    the file system's clock tick still counts as changed)."""
    out = []
    for path in policy_files(folder):
        try:
            digest = hashlib.sha256(path.read_bytes()).hexdigest()
        except OSError:
            continue
        out.append((path.name, digest))
    return tuple(out)


class PolicyWatcher:
    def __init__(self, folder: Path, current: Fingerprint | None = None) -> None:
        self.folder = folder
        self._seen = current if current is not None else fingerprint(folder)

    def poll(self) -> Policy | list[yamlfile.FileError] | None:
        """A new policy when the files changed and are valid, their problems when they changed and
        are not, None when nothing changed."""
        now = fingerprint(self.folder)
        if now == self._seen:
            return None
        self._seen = now
        loaded = load_folder(self.folder)
        if loaded.problems:
            return loaded.problems
        return Policy(loaded.rules, loaded.groups)
