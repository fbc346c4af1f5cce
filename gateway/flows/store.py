"""The flows' durable state (gateway/flows/tables.py): filing a flow once per dossier, claiming the
flows that are due, and saving what a step became, each in one short transaction.

A flow is advanced by one process at a time: ``claim`` leases due flows (``next_us`` passed, as the
delivery workers lease deliveries) and ``save`` writes a flow's new state with the lease still
held, so a process that dies mid-step leaves a flow that another claims when the lease lapses.
Nothing a step sends is lost or doubled by that: a step's request is stored as a delivery under an
idempotency key made of the flow, the step and the send's number (gateway/flows/engine.py).
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson
import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import IntegrityError

from gateway.flows.tables import flow_steps, flows
from gateway.ids import new_id

__all__ = ["FlowRow", "FlowStore", "StepRow"]

ACTIVE = ("running", "waiting")
FINISHED = ("completed", "rejected", "failed")


@dataclass
class StepRow:
    step: str
    position: int
    service: str
    state: str = "pending"
    delivery_id: str | None = None
    sends: int = 0
    undo_delivery_id: str | None = None
    started_us: int | None = None
    finished_us: int | None = None
    deadline_us: int | None = None
    overdue: bool = False
    result: Any = None
    reason: Any = None
    due_us: int = 0  # not before: a send after an outage waits its backoff

    def view(self) -> dict[str, Any]:
        return {"step": self.step, "service": self.service, "state": self.state,
                "deliveryId": self.delivery_id, "undoDeliveryId": self.undo_delivery_id,
                "sends": self.sends, "started": _iso(self.started_us), "finished": _iso(self.finished_us),
                "deadline": _iso(self.deadline_us), "overdue": self.overdue, "result": self.result,
                "reason": self.reason}


@dataclass
class FlowRow:
    id: str
    name: str
    dossier_code: str
    client: str
    exchange_id: str
    state: str
    dossier: Any
    subjects: tuple[str, ...]
    started_us: int
    updated_us: int
    deadline_us: int
    finished_us: int | None = None
    overdue: bool = False
    reason: Any = None
    steps: list[StepRow] = field(default_factory=list)

    def view(self) -> dict[str, Any]:
        """A flow as ``GET /flows/{id}`` shows it (the joint dossier itself is not repeated)."""
        return {"id": self.id, "flow": self.name, "dossier": self.dossier_code, "client": self.client,
                "state": self.state, "started": _iso(self.started_us), "updated": _iso(self.updated_us),
                "finished": _iso(self.finished_us), "deadline": _iso(self.deadline_us),
                "overdue": self.overdue, "reason": self.reason, "exchangeId": self.exchange_id,
                "steps": [s.view() for s in self.steps]}


class FlowStore:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def file(self, flow: FlowRow, now: int) -> tuple[FlowRow, bool]:
        """Store a new flow with its steps, due now; a flow already filed for the same name and
        dossier code is returned instead (``True``: it is that one)."""
        try:
            with self.engine.begin() as conn:
                conn.execute(flows.insert().values(
                    id=flow.id, name=flow.name, dossier_code=flow.dossier_code, client=flow.client,
                    exchange_id=flow.exchange_id, state=flow.state, dossier=orjson.dumps(flow.dossier),
                    subjects=orjson.dumps(list(flow.subjects)).decode(), started_us=flow.started_us,
                    updated_us=now, finished_us=None, deadline_us=flow.deadline_us, overdue=False,
                    reason=None, next_us=now, lease=None))
                conn.execute(flow_steps.insert(), [_step_values(flow.id, s) for s in flow.steps])
            return flow, False
        except IntegrityError:
            found = self.by_dossier(flow.name, flow.dossier_code)
            if found is None:  # pragma: no cover - an id collision of 128 random bits
                raise
            return found, True

    def get(self, flow_id: str) -> FlowRow | None:
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(flows).where(flows.c.id == flow_id)).first()
            return _flow(conn, row) if row is not None else None

    def by_dossier(self, name: str, code: str) -> FlowRow | None:
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(flows).where(flows.c.name == name,
                                                      flows.c.dossier_code == code)).first()
            return _flow(conn, row) if row is not None else None

    def find(self, *, dossier: str | None = None, state: str | None = None,
             limit: int = 100) -> list[FlowRow]:
        query = sa.select(flows).order_by(flows.c.started_us, flows.c.id).limit(limit)
        if dossier is not None:
            query = query.where(flows.c.dossier_code == dossier)
        if state is not None:
            query = query.where(flows.c.state == state)
        with self.engine.connect() as conn:
            return [_flow(conn, row) for row in conn.execute(query).all()]

    def claim(self, limit: int, lease_us: int, now: int) -> list[tuple[FlowRow, str]]:
        """Flows that are due, leased to the caller until ``now + lease_us``."""
        with self.engine.begin() as conn:
            query = (sa.select(flows.c.id).where(flows.c.state.in_(ACTIVE), flows.c.next_us <= now)
                     .order_by(flows.c.next_us).limit(limit))
            if conn.dialect.name == "postgresql":
                query = query.with_for_update(skip_locked=True)
            ids = [r.id for r in conn.execute(query)]
            claimed: list[tuple[FlowRow, str]] = []
            for flow_id in ids:
                lease = secrets.token_hex(8)
                taken = conn.execute(flows.update().where(flows.c.id == flow_id, flows.c.next_us <= now)
                                     .values(lease=lease, next_us=now + lease_us)).rowcount
                if taken:
                    row = conn.execute(sa.select(flows).where(flows.c.id == flow_id)).one()
                    claimed.append((_flow(conn, row), lease))
            return claimed

    def save(self, flow: FlowRow, lease: str, next_us: int, now: int,
             steps: Sequence[StepRow] = ()) -> bool:
        """Write a leased flow's state and the steps that changed, and release it until ``next_us``;
        False when the lease was lost (another process took the flow over: this one's view is
        stale and nothing is written)."""
        with self.engine.begin() as conn:
            done = conn.execute(flows.update().where(flows.c.id == flow.id, flows.c.lease == lease).values(
                state=flow.state, updated_us=now, finished_us=flow.finished_us, overdue=flow.overdue,
                reason=_json(flow.reason), next_us=next_us, lease=None)).rowcount
            if not done:
                return False
            for step in steps:
                values = _step_values(flow.id, step)
                conn.execute(flow_steps.update().where(flow_steps.c.flow_id == flow.id,
                                                       flow_steps.c.step == step.step)
                             .values({k: v for k, v in values.items() if k not in ("flow_id", "step")}))
            return True

    def poke(self, flow_id: str, now: int) -> None:
        """Make a flow due now (its step's delivery has an outcome)."""
        with self.engine.begin() as conn:
            conn.execute(flows.update().where(flows.c.id == flow_id, flows.c.state.in_(ACTIVE),
                                              flows.c.lease.is_(None)).values(next_us=now))

    def counts(self) -> dict[str, dict[str, int]]:
        """Flows by name and state."""
        with self.engine.connect() as conn:
            out: dict[str, dict[str, int]] = {}
            for name, state, n in conn.execute(sa.select(flows.c.name, flows.c.state, sa.func.count())
                                               .group_by(flows.c.name, flows.c.state)):
                out.setdefault(name, {})[state] = int(n)
            return out


def new_flow_id() -> str:
    return new_id()


def _step_values(flow_id: str, step: StepRow) -> dict[str, Any]:
    return {"flow_id": flow_id, "step": step.step, "position": step.position, "service": step.service,
            "state": step.state, "delivery_id": step.delivery_id, "sends": step.sends,
            "undo_delivery_id": step.undo_delivery_id, "started_us": step.started_us,
            "finished_us": step.finished_us, "deadline_us": step.deadline_us, "overdue": step.overdue,
            "due_us": step.due_us, "result": None if step.result is None else orjson.dumps(step.result),
            "reason": _json(step.reason)}


def _json(value: Any) -> str | None:
    return None if value is None else orjson.dumps(value).decode()


def _flow(conn: Connection, row: Any) -> FlowRow:
    steps = [StepRow(step=s.step, position=s.position, service=s.service, state=s.state,
                     delivery_id=s.delivery_id, sends=s.sends, undo_delivery_id=s.undo_delivery_id,
                     started_us=s.started_us, finished_us=s.finished_us, deadline_us=s.deadline_us,
                     overdue=bool(s.overdue), due_us=s.due_us,
                     result=orjson.loads(s.result) if s.result is not None else None,
                     reason=orjson.loads(s.reason) if s.reason else None)
             for s in conn.execute(sa.select(flow_steps).where(flow_steps.c.flow_id == row.id)
                                   .order_by(flow_steps.c.position))]
    return FlowRow(id=row.id, name=row.name, dossier_code=row.dossier_code, client=row.client,
                   exchange_id=row.exchange_id, state=row.state, dossier=orjson.loads(row.dossier),
                   subjects=tuple(orjson.loads(row.subjects)), started_us=row.started_us,
                   updated_us=row.updated_us, deadline_us=row.deadline_us, finished_us=row.finished_us,
                   overdue=bool(row.overdue), reason=orjson.loads(row.reason) if row.reason else None,
                   steps=steps)


def _iso(us: int | None) -> str | None:
    if us is None:
        return None
    from datetime import UTC, datetime

    return datetime.fromtimestamp(us / 1e6, tz=UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
