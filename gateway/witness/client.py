"""The gateway's side of witnessing: hand the latest checkpoint to each configured witness, with a
consistency proof from the size that witness last cosigned, and keep the cosignatures it answers.

Never on an exchange's path: :class:`Cosigner` runs the submissions in a thread of its own, woken
when the checkpointer stores a new checkpoint (and every ``retry_every`` seconds), each request
bounded by the configured timeout. A witness that fails is logged and tried again at the next wake:
the latest checkpoint then, not every one missed (a witness only needs the newest).

One submission, per witness (:meth:`WitnessClient.sync`)::

    latest checkpoint already cosigned by it        nothing to do
    old = the largest size it cosigned (0 at first), proof = consistency proof old -> latest
    200   keep each valid cosignature by its key (audit_cosignatures: size, witness, line)
    409   it holds another size (lost answer, reset witness): once more, from the size it names;
          a size beyond our latest checkpoint is reported (a rolled-back log, or another signer)
    else  logged with the witness's reason
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass

import httpx
import sqlalchemy as sa
import structlog
from sqlalchemy.engine import Engine

from gateway.audit import tree
from gateway.audit.checkpointer import StoredCheckpoint, stored_latest
from gateway.config import WitnessSettings
from gateway.storage.tables import audit_cosignatures
from gateway.witness.cosignature import CosignatureError, CosignatureVerifier, note_body
from gateway.witness.protocol import SIZE_TYPE, MalformedRequest, build_request, parse_size

__all__ = ["Cosigner", "Endpoint", "Result", "WitnessClient"]

log = structlog.get_logger("lienthong.audit")
RETRY_EVERY = 60.0  # seconds between rounds while no new checkpoint wakes the thread


@dataclass(frozen=True, slots=True)
class Endpoint:
    """A configured witness: its name, submission prefix and key."""

    name: str
    url: str
    verifier: CosignatureVerifier

    @classmethod
    def of(cls, settings: WitnessSettings) -> Endpoint:
        return cls(settings.name, settings.url.rstrip("/"), CosignatureVerifier.from_vkey(settings.vkey))


@dataclass(frozen=True, slots=True)
class Result:
    """What one round did for one witness: ``cosigned``, ``current`` (nothing to do) or ``failed``."""

    witness: str
    size: int
    outcome: str
    detail: str = ""


class _Refused(Exception):
    def __init__(self, detail: str, size: int | None = None) -> None:
        super().__init__(detail)
        self.size = size  # a 409's size


class WitnessClient:
    """Submits checkpoints of the log in ``engine`` to ``witnesses`` and stores their cosignatures."""

    def __init__(self, engine: Engine, witnesses: Sequence[Endpoint], *, timeout: float,
                 transport: httpx.BaseTransport | None = None) -> None:
        self._engine = engine
        self.witnesses = tuple(witnesses)
        self._http = httpx.Client(timeout=timeout, transport=transport,
                                  headers={"content-type": "text/plain; charset=utf-8"})

    def close(self) -> None:
        self._http.close()

    def sync(self) -> list[Result]:
        """One round: the latest checkpoint to every witness that has not cosigned it."""
        latest = stored_latest(self._engine)
        if latest is None:
            return []
        return [self._sync_one(witness, latest) for witness in self.witnesses]

    def _sync_one(self, witness: Endpoint, cp: StoredCheckpoint) -> Result:
        cosigned = self._last_cosigned(witness.name)
        if cosigned == cp.size:
            return Result(witness.name, cp.size, "current")
        last = cosigned or 0
        try:
            if last > cp.size:
                raise _Refused(f"it cosigned size {last}, beyond the latest checkpoint {cp.size}")
            try:
                self._submit(witness, cp, last)
            except _Refused as exc:
                if exc.size is None or exc.size == last:
                    raise
                if exc.size > cp.size:
                    raise _Refused(f"it holds size {exc.size} of this log, beyond the latest checkpoint "
                                   f"{cp.size}: was the log rolled back, or is another signer using "
                                   "its key?") from None
                self._submit(witness, cp, exc.size)
        except (_Refused, httpx.HTTPError, CosignatureError) as exc:
            detail = f"{type(exc).__name__}: {exc}" if not isinstance(exc, _Refused) else str(exc)
            log.error("audit_witness_failed", witness=witness.name, size=cp.size, error=detail)
            return Result(witness.name, cp.size, "failed", detail)
        log.info("audit_cosigned", witness=witness.name, size=cp.size)
        return Result(witness.name, cp.size, "cosigned")

    def _submit(self, witness: Endpoint, cp: StoredCheckpoint, old: int) -> None:
        proof = self._proof(old, cp.size)
        request = build_request(old, proof, cp.note)
        response = self._http.post(f"{witness.url}/add-checkpoint", content=request)
        if response.status_code == 409 and response.headers.get("content-type", "").startswith(SIZE_TYPE):
            try:
                size = parse_size(response.content)
            except MalformedRequest as exc:
                raise _Refused(f"409 with an unreadable size: {exc}") from None
            if size == old:
                raise _Refused(f"409: it holds another root for size {size} than the log's checkpoint "
                               "of that size: a fork?", size)
            raise _Refused(f"409: it holds size {size}, not {old}", size)
        if response.status_code != 200:
            reason = response.text.strip()[:300]
            raise _Refused(f"{response.status_code} from old size {old}: {reason}")
        body = note_body(cp.note)
        lines = [line for line in response.content.splitlines(keepends=True) if witness.verifier.owns(line)]
        if not lines:
            raise _Refused("200 without a cosignature by its key")
        for line in lines:
            self._keep(witness.name, cp.size, line, witness.verifier.verify(body, line))

    def _proof(self, old: int, size: int) -> list[bytes]:
        if old == 0 or old == size:
            return []
        with self._engine.connect() as conn:
            return tree.consistency_proof(conn, old, size)

    def _last_cosigned(self, witness: str) -> int | None:
        """The largest checkpoint size ``witness`` cosigned, None if it never did."""
        with self._engine.connect() as conn:
            found = conn.execute(sa.select(sa.func.max(audit_cosignatures.c.size))
                                 .where(audit_cosignatures.c.witness == witness)).scalar()
        return int(found) if found is not None else None

    def _keep(self, witness: str, size: int, line: bytes, ts: int) -> None:
        """Store a cosignature; the first one kept for a size and witness stays."""
        row = {"size": size, "witness": witness, "line": line.decode().rstrip("\n"), "ts": ts,
               "received_us": time.time_ns() // 1000}
        try:
            with self._engine.begin() as conn:
                conn.execute(sa.insert(audit_cosignatures).values(**row))
        except sa.exc.IntegrityError:
            pass  # kept already (two processes asked at once)


class Cosigner:
    """Runs :meth:`WitnessClient.sync` in a thread of its own: on :meth:`notify`, and every
    ``retry_every`` seconds."""

    def __init__(self, client: WitnessClient, retry_every: float = RETRY_EVERY) -> None:
        self.client = client
        self._retry_every = retry_every
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def notify(self, _checkpoint: StoredCheckpoint | None = None) -> None:
        """A new checkpoint is stored: submit it soon (never blocks)."""
        self._wake.set()

    def start(self) -> None:
        if self._thread is None:
            self._stop.clear()
            self._wake.set()  # a checkpoint the last run left uncosigned goes out first
            self._thread = threading.Thread(target=self._run, name="audit-witnesses", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        """Stop the thread, after one last round (the checkpoint a stopping gateway makes)."""
        if self._thread is not None:
            self._stop.set()
            self._wake.set()
            self._thread.join()
            self._thread = None
        self.round()
        self.client.close()

    def round(self) -> list[Result]:
        try:
            return self.client.sync()
        except Exception as exc:  # a database that cannot be read now: logged, tried next round
            log.error("audit_witness_round_failed", error=f"{type(exc).__name__}: {exc}")
            return []

    def _run(self) -> None:
        while True:
            self._wake.wait(self._retry_every)
            if self._stop.is_set():
                return
            self._wake.clear()
            self.round()
