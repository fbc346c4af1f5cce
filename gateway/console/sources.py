"""Where the console's data comes from: the audit log and its checkpoints, the delivery queue, the
dossier KPIs, the joint procedures and their KPIs, the official documents and theirs, the policy and
the catalog, read through their own modules (never over HTTP).

``ConsoleData`` is the one interface the pages use. It is built from the running gateway's
``Runtime`` and the gateway's ``AuditService`` (``app.state.audit``: checkpoint signer, verifier key,
subject hasher); without one, a service is opened here over the runtime's audit log, without its
interval timer. Either way a checkpoint is signed on demand when an entry newer than the latest
checkpoint is opened (``Checkpointer.covering``), as ``/audit/entries/{index}`` does.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from fnmatch import fnmatchcase
from typing import TYPE_CHECKING, Any

from sqlalchemy.engine import Engine

from gateway.audit import merkle
from gateway.audit.checkpoint import NoteError, Verifier, open_note
from gateway.audit.checkpointer import StoredCheckpoint
from gateway.audit.record import SubjectHasher
from gateway.audit.service import AuditService
from gateway.config import Config
from gateway.console import logquery
from gateway.console.logquery import Row, local_text
from gateway.policy import Rule

if TYPE_CHECKING:  # the runtime imports the delivery package; the console only reads both
    from gateway.delivery.store import DeliveryStore
    from gateway.documents.stats import DocumentFacts
    from gateway.flows.definition import Flow
    from gateway.flows.store import FlowRow
    from gateway.runtime import Runtime

__all__ = ["CheckpointView", "ConsistencyView", "ConsoleData", "ProofBundle"]


@dataclass(frozen=True)
class CheckpointView:
    size: int
    root_hex: str
    note: str
    time: str
    key_name: str
    key_id: str
    signature_ok: bool
    problem: str | None = None


@dataclass(frozen=True)
class ProofBundle:
    """What the browser needs to check one entry: the exact leaf bytes, the inclusion proof and the
    signed checkpoint it leads to, and the verifier key of the log's checkpoints."""

    index: int
    size: int
    leaf: bytes
    proof: list[bytes]
    note: str
    vkey: str
    origin: str
    server_inclusion_ok: bool
    server_signature_ok: bool

    def as_json(self) -> dict[str, Any]:
        return {"index": self.index, "size": self.size,
                "leaf": base64.b64encode(self.leaf).decode(),
                "proof": [h.hex() for h in self.proof], "note": self.note, "vkey": self.vkey,
                "origin": self.origin, "serverSignatureOk": self.server_signature_ok}


@dataclass(frozen=True)
class ConsistencyView:
    first: CheckpointView
    second: CheckpointView
    proof: list[str]
    ok: bool
    problem: str | None = None


def _key_of(note: str) -> tuple[str, str]:
    for line in note.splitlines():
        if line.startswith("\u2014 "):
            name, _, sig = line[2:].partition(" ")
            try:
                return name, base64.b64decode(sig)[:4].hex()
            except ValueError:
                return name, "?"
    return "?", "?"


class ConsoleData:
    def __init__(self, runtime: Runtime, audit: AuditService | None = None) -> None:
        self.runtime = runtime
        self.config: Config = runtime.config
        self.engine: Engine = runtime.engine
        self.audit: AuditService = audit if audit is not None else AuditService.open(
            runtime.config, runtime.audit)
        self.verifiers: list[Verifier] = self.audit.verifiers  # the current key and retired ones

    # -- audit -----------------------------------------------------------------------------------

    @property
    def subjects(self) -> SubjectHasher:
        return self.audit.subjects

    @property
    def vkey(self) -> str:
        return self.audit.checkpointer.vkey

    def checkpoint_view(self, cp: StoredCheckpoint) -> CheckpointView:
        note = cp.note.decode()
        name, kid = _key_of(note)
        problem = None
        try:
            checked = open_note(cp.note, self.verifiers, origin=self.audit.origin)
            ok = checked.size == cp.size and checked.root == cp.root
            if not ok:
                problem = "the note's size or root differs from the stored columns"
        except NoteError as exc:
            ok, problem = False, str(exc)
        return CheckpointView(size=cp.size, root_hex=cp.root.hex(), note=note, time=local_text(cp.ts_us),
                              key_name=name, key_id=kid, signature_ok=ok, problem=problem)

    def checkpoints(self) -> list[CheckpointView]:
        return [self.checkpoint_view(cp) for cp in reversed(self.audit.checkpointer.all())]

    def latest_checkpoint(self) -> CheckpointView | None:
        latest = self.audit.checkpointer.latest()
        return self.checkpoint_view(latest) if latest is not None else None

    def entry(self, idx: int) -> Row | None:
        return logquery.get(self.engine, idx)

    def proof(self, row: Row) -> ProofBundle:
        """The inclusion proof of ``row`` in the latest checkpoint that covers it (one is signed now
        if none does yet)."""
        cp = self.audit.checkpointer.covering(row.idx)
        proof = self.audit.log.inclusion_proof(row.idx, cp.size)
        view = self.checkpoint_view(cp)
        inclusion = merkle.verify_inclusion(row.idx, cp.size, merkle.leaf_hash(row.leaf), proof, cp.root)
        return ProofBundle(index=row.idx, size=cp.size, leaf=row.leaf, proof=proof, note=view.note,
                           vkey=self.vkey, origin=self.audit.origin, server_inclusion_ok=inclusion,
                           server_signature_ok=view.signature_ok)

    def consistency(self, size1: int, size2: int) -> ConsistencyView | None:
        """Whether the log at checkpoint ``size2`` extends the one at ``size1`` (RFC 9162 proof)."""
        first, second = self.audit.checkpointer.at(size1), self.audit.checkpointer.at(size2)
        if first is None or second is None:
            return None
        if first.size > second.size:
            first, second = second, first
        v1, v2 = self.checkpoint_view(first), self.checkpoint_view(second)
        proof = self.audit.log.consistency_proof(first.size, second.size) if first.size else []
        problem = None
        try:
            if first.size == 0:
                ok = True
            else:
                merkle.check_consistency(first.size, second.size, first.root, second.root, proof)
                ok = True
        except merkle.ProofError as exc:
            ok, problem = False, str(exc)
        ok = ok and v1.signature_ok and v2.signature_ok
        return ConsistencyView(v1, v2, [h.hex() for h in proof], ok, problem)

    # -- delivery --------------------------------------------------------------------------------

    @property
    def deliveries(self) -> DeliveryStore:
        return self.runtime.deliveries.store

    def poke_deliveries(self) -> None:
        """Wake this process's delivery workers: what an operator just queued leaves now."""
        self.runtime.deliveries.poke()

    def queue_counts(self) -> list[dict[str, Any]]:
        return list(self.deliveries.counts())

    # -- joint procedures ------------------------------------------------------------------------

    @property
    def flow_definitions(self) -> dict[str, Flow]:
        """The flows this gateway runs, by name (none when it runs no joint procedures)."""
        engine = self.runtime.flows
        return dict(engine.flows.flows) if engine is not None else {}

    def flow_list(self, *, name: str | None = None, state: str | None = None,
                  limit: int = 100) -> list[dict[str, Any]]:
        """Flows, newest first: their summary columns only, never the joint dossier (the list shows
        no personal data, so it does not read any)."""
        import sqlalchemy as sa

        from gateway.flows.tables import flows

        query = (sa.select(flows.c.id, flows.c.name, flows.c.dossier_code, flows.c.state, flows.c.started_us,
                           flows.c.finished_us, flows.c.deadline_us, flows.c.overdue)
                 .order_by(flows.c.started_us.desc(), flows.c.id).limit(limit))
        if name:
            query = query.where(flows.c.name == name)
        if state:
            query = query.where(flows.c.state == state)
        with self.engine.connect() as conn:
            return [dict(r._mapping) for r in conn.execute(query)]

    def flow(self, flow_id: str) -> FlowRow | None:
        from gateway.flows.store import FlowStore

        return FlowStore(self.engine).get(flow_id)

    def flow_notifications(self, flow: FlowRow) -> list[dict[str, Any]]:
        """What the flow told the portal and the filing system so far, with their deliveries."""
        engine = self.runtime.flows
        return engine.notifications(flow) if engine is not None else []

    def flow_kpis(self, period: str, now_us: int) -> dict[str, Any]:
        from gateway.flows import stats

        limits = {n: f.legal_limit for n, f in self.flow_definitions.items()}
        return stats.report(self.engine, period=period, limits=limits, now_us=now_us)

    # -- official documents (edXML) --------------------------------------------------------------

    def document_list(self, *, organ: str | None = None, outcome: str | None = None,
                      start: str | None = None, end: str | None = None,
                      limit: int = 100) -> list[DocumentFacts]:
        """Documents, newest first, accepted in the window (portal moments), sent or received by
        ``organ`` (an OrganId or a member id), whose fate is ``outcome``; their header facts and
        copies, never their attachments."""
        from gateway.documents import stats

        conds = stats.window(start, end)
        if organ:
            conds.append(stats.of_agency(organ))
        with self.engine.connect() as conn:
            found = stats.load(conn, *conds, limit=limit * 10 if outcome else limit, newest_first=True)
        return [d for d in found if outcome is None or d.outcome == outcome][:limit]

    def document_trace(self, document: str) -> dict[str, Any] | None:
        from gateway.documents import stats

        with self.engine.connect() as conn:
            return stats.trace(conn, document)

    def document_kpis(self, period: str, start: str | None, end: str | None, agency: str | None,
                      now_us: int) -> dict[str, Any]:
        from gateway.documents import stats

        return stats.report(self.engine, period=period, start=start, end=end, agency=agency, now_us=now_us)

    # -- catalog and policy ----------------------------------------------------------------------

    @property
    def rules(self) -> list[Rule]:
        return list(self.runtime.pipeline.policy.rules)

    def rule(self, name: str | None) -> Rule | None:
        return next((r for r in self.rules if r.name == name), None) if name else None

    def rules_for(self, service_id: str) -> list[Rule]:
        return [r for r in self.rules if any(fnmatchcase(service_id, p) for p in r.services)]

    def clients_of(self, rule: Rule) -> tuple[str, ...]:
        """The client patterns the rule admits, its groups expanded."""
        return self.runtime.pipeline.policy.clients_of(rule)
