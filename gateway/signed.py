"""Signed requests at intake: who asks for them, the trust store from the configuration, and the
check the ``verify_signature`` step (gateway/steps.py) is given.

A service (``signatures:`` in the catalog) or a policy rule may ask for ``required`` or
``optional`` signatures. When anything does, start-up reads the trust store of the configuration's
``signatures`` section once (``TrustStore.load``: anchors, revocation, intermediates); a missing or
empty anchors folder stops the gateway (and ``lienthong check``) naming it. When nothing does, the
signatures package and its libraries are not even imported.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from gateway import yamlfile
from gateway.config import Config
from gateway.policy import Policy
from gateway.steps import SignatureCheck
from gateway.yamlfile import FileError

if TYPE_CHECKING:
    from gateway.signatures import TrustStore, Verdict

__all__ = ["Asker", "askers", "check_of", "load_trust", "trust_check", "trust_problem"]

_DEFAULT_REVOCATION = "trust/revocation"
_DEFAULT_INTERMEDIATES = "trust/intermediates"


@dataclass(frozen=True, slots=True)
class Asker:
    """A service or rule that asks for signatures, and where a rule says so."""

    what: str  # "service VN/…" or "rule NAME"
    where: str  # a rule's "file:line"; "" for a service (its line is found in the configuration)


def askers(config: Config, policy: Policy) -> list[Asker]:
    """Every service and rule that asks for signatures, services first."""
    found = [Asker(f"service {s.id}", "") for s in config.services if s.signatures]
    found += [Asker(f"rule {r.name}", r.source) for r in policy.rules if r.signatures]
    return found


def load_trust(config: Config) -> TrustStore:
    """The configured trust store; ``TrustStoreError`` names the folder or file that is wrong."""
    from gateway.signatures import TrustStore

    settings = config.signatures
    return TrustStore.load(
        config.path(settings.anchors),
        revocation=_folder(config, settings.revocation, _DEFAULT_REVOCATION),
        intermediates=_folder(config, settings.intermediates, _DEFAULT_INTERMEDIATES),
        revocation_mode=settings.revocation_mode, claimed_time=settings.claimed_time)


def _folder(config: Config, configured: str | None, default: str) -> Path | None:
    """A configured folder (which must then exist), else the default one if it is there."""
    if configured is not None:
        return config.path(configured)
    path = config.path(default)
    return path if path.is_dir() else None


# A verification's cost follows the body (a PDF's byte ranges hashed, pyHanko's parser over it):
# from this size on it runs in a worker thread, so that the event loop keeps serving the other
# exchanges meanwhile; a smaller one costs less than the thread's hand-over and stays on the loop.
OFF_LOOP_BYTES = 64 * 1024


def check_of(trust: TrustStore) -> SignatureCheck:
    """The step's port: ``(body, content type, detached) -> Verdict`` against ``trust``."""
    import gateway.signatures as signatures

    async def check(body: bytes, content_type: str, detached: bytes | None) -> Verdict:
        if len(body) + len(detached or b"") < OFF_LOOP_BYTES:
            return await signatures.averify(body, content_type, trust=trust, detached=detached)
        return await asyncio.to_thread(signatures.verify, body, content_type, trust=trust, detached=detached)

    return check


def trust_check(config: Config, policy: Policy) -> SignatureCheck | None:
    """The check for the pipeline's ports when anything asks for signatures, else None;
    ``TrustStoreError`` (a ``ValueError``) when the trust store cannot be read."""
    if not askers(config, policy):
        return None
    return check_of(load_trust(config))


def trust_problem(config: Config, policy: Policy, config_file: Path) -> FileError | None:
    """Why the trust store would stop the gateway, located where it is set (``signatures.anchors``)
    or else where it is asked for; None when it loads (or nothing asks)."""
    asking = askers(config, policy)
    if not asking:
        return None
    from gateway.signatures import TrustStoreError

    try:
        load_trust(config)
    except TrustStoreError as exc:
        more = f" and {len(asking) - 1} more" if len(asking) > 1 else ""
        message = f"{exc} (the trust store of 'signatures'; {asking[0].what}{more} asks for signatures)"
        data, lines = yamlfile.load(config_file)
        services = [i for i, s in enumerate(config.services) if s.signatures]
        if isinstance(data, dict) and "signatures" in data:
            return FileError(config_file, yamlfile.line_of(lines, ("signatures", "anchors")), message)
        if services:
            return FileError(config_file, yamlfile.line_of(lines, ("services", services[0], "signatures")),
                             message)
        path, _, line = asking[0].where.rpartition(":")  # only rules ask: the rule's file and line
        return FileError(path or asking[0].where, int(line) if line.isdigit() else None, message)
    return None
