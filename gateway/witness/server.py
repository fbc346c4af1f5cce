"""The witness's HTTP face (C2SP tlog-witness), a Starlette app served by uvicorn.

    POST /add-checkpoint   200 cosignature line(s)         the checkpoint is cosigned and held
                           400 malformed request or note   (also: old size beyond the checkpoint)
                           403 no trusted signature        404 unknown log origin
                           409 text/x.tlog.size            another old size, or another root for it
                           413 body over MAX_BODY          422 the consistency proof does not verify
                           503 the state file cannot be written (nothing was cosigned)
    GET  /healthz          200 "ok" (for probes; not part of the spec)

Submissions are decided one at a time (a lock, and the state file's immediate transaction), and
the new state is on disk before the answer goes out.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import structlog
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from gateway.witness.cosignature import WitnessKey, note_body
from gateway.witness.decide import Accept, Refuse, decide, open_checkpoint
from gateway.witness.protocol import MAX_BODY, SIZE_TYPE, MalformedRequest, parse_request, size_body
from gateway.witness.state import WitnessStore

__all__ = ["Answer", "Witness", "build_app"]

log = structlog.get_logger("lienthong.witness")
_TEXT = "text/plain; charset=utf-8"


@dataclass(frozen=True, slots=True)
class Answer:
    status: int
    body: bytes
    content_type: str = _TEXT


def _refusal(refuse: Refuse) -> Answer:
    if refuse.status == 409 and refuse.size is not None:
        return Answer(409, size_body(refuse.size), SIZE_TYPE)
    return Answer(refuse.status, refuse.reason.encode() + b"\n")


class Witness:
    """Decides add-checkpoint requests against the state folder and cosigns with the witness key."""

    def __init__(self, key: WitnessKey, store: WitnessStore, clock: Callable[[], float] = time.time) -> None:
        self.key = key
        self.store = store
        self._clock = clock
        self._lock = threading.Lock()

    def add_checkpoint(self, body: bytes) -> Answer:
        """The answer to one request body (see the module docstring)."""
        try:
            submission = parse_request(body)
        except MalformedRequest as exc:
            return Answer(400, f"{exc}\n".encode())
        opened = open_checkpoint(submission.note, self.store.keys_of)
        if isinstance(opened, Refuse):
            log.warning("witness_refused", status=opened.status, reason=opened.reason)
            return _refusal(opened)
        with self._lock, self.store.transaction() as tx:
            outcome = decide(submission, opened, tx.held(opened.origin))
            now = int(self._clock())
            if isinstance(outcome, Accept):
                line = self.key.cosign(note_body(submission.note), now)
                if outcome.advance:
                    tx.hold(opened, submission.note, now)
            elif outcome.evidence:
                tx.keep_evidence(opened.origin, now, outcome.status, outcome.reason, body)
        if isinstance(outcome, Refuse):
            log.warning("witness_refused", origin=opened.origin, size=opened.size, status=outcome.status,
                        reason=outcome.reason)
            return _refusal(outcome)
        log.info("witness_cosigned", origin=opened.origin, size=opened.size, old=submission.old)
        return Answer(200, line)


async def _body(request: Request) -> bytes | None:
    """The request body, or None once it is over MAX_BODY (read no further)."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > MAX_BODY:
        return None
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_BODY:
            return None
        chunks.append(chunk)
    return b"".join(chunks)


def build_app(witness: Witness) -> Starlette:
    """The ASGI app serving ``witness``."""

    async def add_checkpoint(request: Request) -> Response:
        body = await _body(request)
        if body is None:
            return PlainTextResponse(f"request body over {MAX_BODY} bytes\n", 413)
        try:
            answer = await run_in_threadpool(witness.add_checkpoint, body)
        except (sqlite3.Error, OSError) as exc:  # the state cannot be kept: cosign nothing
            log.error("witness_state_failed", error=f"{type(exc).__name__}: {exc}")
            return PlainTextResponse("the witness cannot write its state; try again later\n", 503)
        # as given: Starlette would add a charset to text/x.tlog.size, which the spec names bare
        return Response(answer.body, answer.status, headers={"content-type": answer.content_type})

    async def healthz(request: Request) -> Response:
        return PlainTextResponse("ok\n")

    return Starlette(routes=[Route("/add-checkpoint", add_checkpoint, methods=["POST"]),
                             Route("/healthz", healthz, methods=["GET"])])
