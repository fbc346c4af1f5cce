"""The audit log's parts beside the writer, built from the configuration: the checkpoint signer and
its interval timer, the witnesses' client (in a thread of its own), the body key and the retention
purge, and what the auditor's view and the ``lienthong audit`` commands read through.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import structlog
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from gateway import keys
from gateway.audit.bodies import BodyVault, purge_bodies
from gateway.audit.checkpoint import Signer, Verifier
from gateway.audit.checkpointer import Checkpointer, split_notes
from gateway.audit.log import AuditLog
from gateway.audit.record import SubjectHasher
from gateway.audit.rotation import RetiredKey, RetiredKeysError, load_retired
from gateway.audit.verify import Progress, Report, verify_log
from gateway.config import Config
from gateway.storage.db import create_engine
from gateway.witness.client import Cosigner, Endpoint, WitnessClient
from gateway.witness.cosignature import CosignatureVerifier
from gateway.witness.cosigned import Cosignatures, check_cosignatures

log = structlog.get_logger("lienthong.audit")

PURGE_EVERY = 3600.0  # seconds between retention purges of kept bodies


class AuditKeysMissing(RuntimeError):
    """An audit key is missing or unusable; the message says which and how to make one."""


def origin_of(config: Config) -> str:
    return config.audit.origin or f"lienthong.gov.vn/{config.instance}/audit"


@dataclass
class AuditService:
    config: Config
    log: AuditLog
    checkpointer: Checkpointer
    subjects: SubjectHasher
    vault: BodyVault
    cosigner: Cosigner | None = None  # with audit.witnesses configured
    retired: tuple[RetiredKey, ...] = ()  # former checkpoint keys, oldest first (audit rotate-key)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    @classmethod
    def open(cls, config: Config, log: AuditLog | None = None) -> AuditService:
        """The service over ``log`` (a running gateway's), or over a new reader of the configured
        database (the command line); the body key is attached to the log."""
        keys_dir = config.path(config.keys_dir)
        try:
            seed = keys.load_audit_key(keys_dir, keys.CHECKPOINT_KEY)
            vault = BodyVault(keys.load_audit_key(keys_dir, keys.BODY_KEY))
            subjects = SubjectHasher(keys.load_subject_key(keys_dir))
            retired = load_retired(keys_dir)
        except (FileNotFoundError, RetiredKeysError, ValueError) as exc:
            raise AuditKeysMissing(str(exc)) from None
        if log is None:
            log = AuditLog(create_engine(config.database_url))
        log.attach_vault(vault)
        origin = origin_of(config)
        witness = config.state_path(config.audit.witness_file) if config.audit.witness_file else None
        signer = Signer(origin, Ed25519PrivateKey.from_private_bytes(seed))
        checkpointer = Checkpointer(log.engine, signer, origin, witness)
        cosigner = None
        if config.audit.witnesses:
            cosigner = Cosigner(WitnessClient(log.engine, [Endpoint.of(w) for w in config.audit.witnesses],
                                              timeout=config.audit.witness_timeout))
            checkpointer.on_new = cosigner.notify
        return cls(config=config, log=log, checkpointer=checkpointer, subjects=subjects, vault=vault,
                   cosigner=cosigner, retired=retired)

    @property
    def origin(self) -> str:
        return self.checkpointer.origin

    @property
    def verifier(self) -> Verifier:
        """The key that signs this log's checkpoints now."""
        return Verifier.from_vkey(self.checkpointer.vkey)

    @property
    def verifiers(self) -> list[Verifier]:
        """Every key whose checkpoints verify: the current one, then the retired ones."""
        current = self.verifier
        return [current, *(r.verifier for r in self.retired if r.vkey != current.vkey())]

    # -- the background timer -----------------------------------------------------------------------

    def start(self) -> None:
        """Sign checkpoints at the configured interval and purge expired bodies, in a thread."""
        if self._thread is None:
            self._stop.clear()
            self._thread = threading.Thread(target=self._run, name="audit-checkpoints", daemon=True)
            self._thread.start()
            if self.cosigner is not None:
                self.cosigner.start()

    def stop(self) -> None:
        """Stop the timer, with a last checkpoint of what this process appended (handed to the
        witnesses before their thread stops)."""
        if self._thread is not None:
            self._stop.set()
            self._thread.join()
            self._thread = None
            self._checkpoint()
            if self.cosigner is not None:
                self.cosigner.stop()

    def cosign_now(self) -> None:
        """Hand the latest checkpoint to the witnesses that lack it, here and now (the command line,
        which has no thread for it)."""
        if self.cosigner is not None:
            self.cosigner.round()

    def _run(self) -> None:
        interval = self.config.audit.checkpoint_interval
        next_purge = time.monotonic()
        while not self._stop.wait(interval or PURGE_EVERY):
            if interval:
                self._checkpoint()
            if time.monotonic() >= next_purge:
                next_purge = time.monotonic() + PURGE_EVERY
                try:
                    removed = purge_bodies(self.log.engine, time.time_ns() // 1000)
                except Exception as exc:  # the next round tries again; exchanges are not affected
                    log.error("audit_purge_failed", error=f"{type(exc).__name__}: {exc}")
                else:
                    if removed:
                        log.info("audit_bodies_purged", count=removed)

    def _checkpoint(self) -> None:
        try:
            cp = self.checkpointer.make()
        except Exception as exc:  # logged loudly; the next round tries again
            log.error("audit_checkpoint_failed", error=f"{type(exc).__name__}: {exc}")
        else:
            if cp.new:
                log.info("audit_checkpoint", size=cp.size, root=cp.root.hex())

    # -- verification -------------------------------------------------------------------------------

    def witness_notes(self) -> list[tuple[str, bytes]]:
        """The notes of the configured witness file, if there is one."""
        path = self.checkpointer.witness
        if path is None or not path.exists():
            return []
        return notes_of(path)

    def verify(self, notes: Iterable[tuple[str, bytes]] = (), *,
               verifiers: Sequence[Verifier] | None = None, indexes: bool = True,
               progress: Progress | None = None) -> Report:
        """Verify the log against its stored checkpoints and ``notes``, trusting ``verifiers`` (by
        default the key in the keys folder and the retired ones)."""
        return verify_log(self.log.engine, verifiers=verifiers or self.verifiers, origin=self.origin,
                          notes=notes, vault=self.vault, indexes=indexes, progress=progress)


    def cosignatures(self, required: int,
                     witnesses: Sequence[CosignatureVerifier] | None = None) -> Cosignatures:
        """The kept cosignatures checked against ``witnesses`` (by default the configured ones'
        keys), requiring ``required`` on the latest checkpoint."""
        if witnesses is None:
            witnesses = [CosignatureVerifier.from_vkey(w.vkey) for w in self.config.audit.witnesses]
        return check_cosignatures(self.log.engine, witnesses, required)


def notes_of(path: Path) -> list[tuple[str, bytes]]:
    """The signed notes in a file, each labelled with the file and its place in it."""
    return [(f"{path} note {i + 1}", note) for i, note in enumerate(split_notes(path.read_bytes()))]
