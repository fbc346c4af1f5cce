"""The flow engine's decisions, one look at a time: ``FlowEngine.advance`` on a FlowStore over a
temporary SQLite database, with a stand-in pipeline (what it was asked to store, and under which
idempotency key) and stand-in delivery views (what became of each delivery), no process or socket.

These cover the branches the end-to-end fault tests (tests/test_flows_faults.py) cannot reach on
purpose: an undo refused or still in flight, a definition removed or changed under a running flow,
an input that is not there, a refusal at intake, a delivery that vanished.
"""

from __future__ import annotations

import asyncio
import copy
from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace
from typing import Any
from zoneinfo import ZoneInfo

import orjson
import pytest
import sqlalchemy as sa
from hypothesis import given
from hypothesis import strategies as st

from gateway.config import Config
from gateway.connector import Reply
from gateway.context import Exchange, Render, Rendered, Result, evolve
from gateway.delivery.model import DEAD, DELIVERED, PENDING, Outcome, now_us
from gateway.errors import Forbidden, GatewayError
from gateway.flows import notify
from gateway.flows.definition import Flow
from gateway.flows.engine import BATCH, BATCH_BUSY, LEASE_US, FlowEngine
from gateway.flows.loading import Flows
from gateway.flows.store import FlowRow, FlowStore, StepRow, new_flow_id
from gateway.frontdoor import FrontDoor
from gateway.storage.db import create_engine, upgrade
from tests.helpers import rest_only_config
from tests.test_pipeline_units import Sink, logged, ports

A = "VN/GOV/000.00.00.G15/HOTICH/DangKyKhaiSinh"
B = "VN/GOV/000.00.00.G20/BHXH/CapTheBHYT"
UNDO = "VN/GOV/000.00.00.G01/CUTRU/HuyDangKyThuongTru"


def later(n: int = 1) -> int:
    """A time ``n`` thousand seconds from now: every flow is due by then, past any lease."""
    return now_us() + n * 1_000_000_000


def definition(**changes: Any) -> Flow:
    """Two steps: ``a`` (undone by UNDO with its own answer), then ``b``, which undoes ``a`` when
    refused; ``changes`` replace fields of step ``a`` or ``b`` (``a_when=…``, ``b_retry=…``)."""
    a: dict[str, Any] = {"id": "a", "service": A, "input": {"MaHoSo": "dossier.MaHoSo"}, "produces": ["So"],
                         "compensation": {"service": UNDO, "input": {"So": "steps.a.So"}}}
    b: dict[str, Any] = {"id": "b", "service": B, "produces": ["The"],
                         "input": {"MaHoSo": "dossier.MaHoSo", "So": "steps.a.So"},
                         "on_reject": {"compensate": ["a"]}}
    for key, value in changes.items():
        (a if key.startswith("a_") else b)[key[2:]] = value
    return Flow.model_validate({"name": "thu", "title": {"vi": "Thử", "en": "Test"},
                                "dossier_schema": "x.json", "deadline": "1d", "legal_limit": "7d",
                                "steps": [a, b]})


class Pipeline:
    """Stores every request it is given as delivery ``d:<key>`` (202), or answers ``refusal``."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, str, dict[str, Any]]] = []  # (key, service, request)
        self.refusal: tuple[int, dict[str, Any]] | None = None

    async def run(self, exchange: Exchange, render: Render) -> Rendered:
        if self.refusal is not None:
            return Rendered(self.refusal[0], [], orjson.dumps(self.refusal[1]))
        key = exchange.idempotency_key or ""
        self.sent.append((key, exchange.service_id, orjson.loads(exchange.body)))
        return Rendered(202, [], orjson.dumps({"deliveryId": f"d:{key}"}))


class Deliveries:
    """What became of each delivery, as the test says."""

    def __init__(self) -> None:
        self.views: dict[str, dict[str, Any]] = {}

    def outcome(self, delivery_id: str) -> dict[str, Any] | None:
        return self.views.get(delivery_id)

    def by_keys(self, idem_keys: list[str]) -> dict[str, dict[str, Any]]:
        return {}

    def answer(self, delivery_id: str, status: int, body: Any) -> None:
        self.views[delivery_id] = {"state": "delivered", "attempts": 1,
                                   "response": {"status": status, "body": body}}

    def dead(self, delivery_id: str, attempts: int, *, retryable: bool = True) -> None:
        self.views[delivery_id] = {"state": "dead", "attempts": attempts, "lastError": {
            "code": "Server.ServiceFailed", "status": 503, "detail": "HTTP 503", "retryable": retryable}}


@pytest.fixture(scope="module")
def config(tmp_path_factory: pytest.TempPathFactory) -> Config:
    return rest_only_config(tmp_path_factory.mktemp("units"))[0]


class World:
    def __init__(self, tmp_path: Path, config: Config, flow: Flow | None) -> None:
        url = f"sqlite:///{tmp_path / 'flows.db'}"
        upgrade(url)
        self.store = FlowStore(create_engine(url))
        self.pipeline, self.deliveries = Pipeline(), Deliveries()
        self.flow = flow
        self.config = config
        self.engine = self.engine_for(flow)

    def engine_for(self, flow: Flow | None) -> FlowEngine:
        flows = Flows(flows={flow.name: flow} if flow is not None else {})
        return FlowEngine(self.config, flows, self.store, self.deliveries, "VN/GOV/000.00.00.G22/LIENTHONG",
                          max_attempts=2, pipeline=self.pipeline)

    def file(self, dossier: dict[str, Any] | None = None, *, deadline_us: int | None = None,
             code: str = "H41-1") -> str:
        now = now_us()
        spec = self.flow or definition()
        row = FlowRow(id=new_flow_id(), name="thu", dossier_code=code, client="motcua", exchange_id="x",
                      state="running", dossier=dossier or {"MaHoSo": "H41-1"}, subjects=(), started_us=now,
                      updated_us=now, deadline_us=deadline_us or now + 86_400_000_000,
                      steps=rows(spec))
        self.store.file(row, now)
        return row.id

    async def look(self, flow_id: str) -> FlowRow:
        """One look at the flow by the engine (due or not), and the flow as stored after it."""
        claimed = [(f, lease) for f, lease in self.store.claim(64, LEASE_US, later()) if f.id == flow_id]
        assert claimed, "the flow is not active"
        await self.engine.advance(*claimed[0])
        found = self.store.get(flow_id)
        assert found is not None
        return found

    def keys(self) -> list[str]:
        return [key.rsplit(":", 2)[-2] + ":" + key.rsplit(":", 1)[-1] for key, _, _ in self.pipeline.sent]


def rows(spec: Flow) -> list[StepRow]:
    return [StepRow(step=s.id, position=i, service=s.service) for i, s in enumerate(spec.steps)]


def states(flow: FlowRow) -> dict[str, str]:
    return {s.step: s.state for s in flow.steps}


def step(flow: FlowRow, name: str) -> StepRow:
    return next(s for s in flow.steps if s.step == name)


@pytest.fixture
def world(tmp_path: Path, config: Config) -> World:
    return World(tmp_path, config, definition())


async def _done_a(world: World, flow_id: str) -> FlowRow:
    """Step ``a`` sent and answered; ``b`` sent."""
    await world.look(flow_id)
    world.deliveries.answer(f"d:flow:{flow_id}:a:1", 200, {"So": "7/2026"})
    return await world.look(flow_id)


async def test_a_step_still_on_its_way_is_looked_at_again_as_long_after_as_it_waited(world: World) -> None:
    """Its answer wakes the flow; the look again is a backstop: 5 s after the send, then as long
    again as the step has waited (an agency's queue in a backlog), a minute at most."""
    from gateway.flows.tables import flow_steps, flows

    def waited(seconds: float) -> None:
        """Step ``a`` as sent ``seconds`` ago."""
        with world.store.engine.begin() as conn:
            conn.execute(flow_steps.update().where(flow_steps.c.flow_id == flow_id, flow_steps.c.step == "a")
                         .values(started_us=now_us() - int(seconds * 1e6)))

    async def next_look() -> float:
        """A look at the flow, and how long until the next (s)."""
        before = now_us()
        flow = await world.look(flow_id)
        assert states(flow)["a"] == "sent" and flow.state == "running"
        with world.store.engine.connect() as conn:
            due = int(conn.execute(sa.select(flows.c.next_us).where(flows.c.id == flow_id)).scalar_one())
        return (due - before) / 1e6

    flow_id = world.file()
    await world.look(flow_id)  # a sent, its delivery queued
    world.deliveries.views[f"d:flow:{flow_id}:a:1"] = {"state": "pending", "attempts": 0}
    assert 4.9 < await next_look() <= 5.1
    waited(20)
    assert 19.9 < await next_look() <= 20.1
    waited(600)
    assert 59.9 < await next_look() <= 60.1


async def test_each_step_is_stored_under_its_key_and_reads_the_answers_before_it(world: World) -> None:
    """A step is sent as delivery ``flow:{id}:{step}:1``; its answer feeds the next; all done: completed."""
    flow_id = world.file()
    flow = await _done_a(world, flow_id)
    assert states(flow) == {"a": "done", "b": "sent"} and flow.state == "running"
    assert world.pipeline.sent[1] == (f"flow:{flow_id}:b:1", B, {"MaHoSo": "H41-1", "So": "7/2026"})
    world.deliveries.answer(f"d:flow:{flow_id}:b:1", 200, {"The": "TE1"})
    flow = await world.look(flow_id)
    assert flow.state == "completed" and step(flow, "b").result == {"The": "TE1"} and not flow.overdue


async def test_looking_again_after_a_crash_finds_the_same_delivery_key(world: World) -> None:
    """A look whose save was lost (the process killed before it) is made again from the state before
    it, and sends under the same key: the queue's idempotency finds the first delivery."""
    flow_id = world.file()
    (flow, lease), = world.store.claim(64, LEASE_US, later())
    before = copy.deepcopy(flow)
    await world.engine.advance(flow, lease)
    (_, newer), = world.store.claim(64, LEASE_US, later(2))  # the lease lapsed: another look
    await world.engine.advance(before, newer)
    assert [k for k, _, _ in world.pipeline.sent] == [f"flow:{flow_id}:a:1"] * 2


async def test_a_removed_definition_fails_the_flow_saying_so(world: World) -> None:
    flow_id = world.file()
    world.engine = world.engine_for(None)
    flow = await world.look(flow_id)
    assert flow.state == "failed" and flow.reason["code"] == "Server.FlowUnknown"
    assert world.pipeline.sent == []


async def test_a_missing_input_fails_the_step_and_sends_nothing(world: World) -> None:
    world.flow = definition(a_input={"Ten": "dossier.Tre.HoTen"})
    world.engine = world.engine_for(world.flow)
    flow = await world.look(world.file())
    assert flow.state == "failed" and states(flow)["a"] == "failed"
    reason = step(flow, "a").reason
    assert reason["code"] == "Server.FlowInput" and "Tre.HoTen" in reason["detail"]
    assert flow.reason["step"] == "a" and world.pipeline.sent == []


async def test_a_refused_step_undoes_the_earlier_one_with_its_own_answer(world: World) -> None:
    """The undo reads the answer of the step being undone (it is ``compensating`` by then)."""
    flow_id = world.file()
    await _done_a(world, flow_id)
    world.deliveries.answer(f"d:flow:{flow_id}:b:1", 422, {"MaLoi": "TU_CHOI"})
    flow = await world.look(flow_id)
    assert states(flow) == {"a": "compensating", "b": "rejected"} and flow.state == "running"
    flow = await world.look(flow_id)
    assert world.pipeline.sent[-1] == (f"flow:{flow_id}:a:undo", UNDO, {"So": "7/2026"})
    assert step(flow, "a").undo_delivery_id == f"d:flow:{flow_id}:a:undo"
    world.deliveries.answer(f"d:flow:{flow_id}:a:undo", 200, {"DaHuy": True})
    flow = await world.look(flow_id)
    assert states(flow) == {"a": "compensated", "b": "rejected"}
    assert flow.state == "rejected"
    assert flow.reason == {"step": "b", "status": 422, "answer": {"MaLoi": "TU_CHOI"}}


async def test_an_undo_in_flight_is_waited_for(world: World) -> None:
    flow_id = world.file()
    await _done_a(world, flow_id)
    world.deliveries.answer(f"d:flow:{flow_id}:b:1", 422, {"MaLoi": "TU_CHOI"})
    await world.look(flow_id)
    await world.look(flow_id)
    for state in ("pending", "in-flight"):
        world.deliveries.views[f"d:flow:{flow_id}:a:undo"] = {"state": state, "attempts": 1}
        flow = await world.look(flow_id)
        assert states(flow)["a"] == "compensating" and flow.state == "running"


async def test_an_undo_the_agency_refuses_leaves_the_step_done_saying_so(world: World) -> None:
    flow_id = world.file()
    await _done_a(world, flow_id)
    world.deliveries.answer(f"d:flow:{flow_id}:b:1", 422, {"MaLoi": "TU_CHOI"})
    await world.look(flow_id)
    await world.look(flow_id)
    world.deliveries.answer(f"d:flow:{flow_id}:a:undo", 422, {"MaLoi": "KHONG_TIM_THAY"})
    flow = await world.look(flow_id)
    assert flow.state == "rejected" and states(flow) == {"a": "done", "b": "rejected"}
    reason = step(flow, "a").reason
    assert reason["undo"] == "failed" and reason["status"] == 422
    assert reason["answer"]["MaLoi"] == "KHONG_TIM_THAY"
    assert step(flow, "a").result == {"So": "7/2026"}  # what it registered stands


async def test_an_undo_no_longer_declared_is_reported_not_crashed_on(world: World) -> None:
    flow_id = world.file()
    await _done_a(world, flow_id)
    world.deliveries.answer(f"d:flow:{flow_id}:b:1", 422, {"MaLoi": "TU_CHOI"})
    await world.look(flow_id)
    changed = definition(a_compensation=None, b_on_reject="stop")
    world.engine = world.engine_for(changed)
    flow = await world.look(flow_id)
    assert flow.state == "rejected" and step(flow, "a").reason["code"] == "Server.FlowUndoUnknown"


async def test_compensating_a_skipped_step_rejects_the_flow_at_once(world: World) -> None:
    """Nothing to undo: the flow is rejected there and then, not left running for ever."""
    world.flow = definition(a_when={"path": "dossier.CoBuocA", "present": True},
                            b_input={"MaHoSo": "dossier.MaHoSo"})
    world.engine = world.engine_for(world.flow)
    flow_id = world.file()
    flow = await world.look(flow_id)
    assert states(flow) == {"a": "skipped", "b": "sent"}
    world.deliveries.answer(f"d:flow:{flow_id}:b:1", 422, {"MaLoi": "TU_CHOI"})
    flow = await world.look(flow_id)
    assert flow.state == "rejected" and flow.reason["step"] == "b"
    assert [key for key, _, _ in world.pipeline.sent] == [f"flow:{flow_id}:b:1"]


@pytest.mark.parametrize("answer", [{"Khac": 1}, "<html>OK</html>", None, ["So"]])
async def test_a_2xx_answer_that_is_not_the_steps_object_fails_the_step(world: World, answer: Any) -> None:
    flow_id = world.file()
    await world.look(flow_id)
    world.deliveries.answer(f"d:flow:{flow_id}:a:1", 200, answer)
    flow = await world.look(flow_id)
    a = step(flow, "a")
    assert flow.state == "failed" and a.state == "failed" and a.result is None
    assert a.reason["code"] == "Server.FlowAnswer" and a.reason["answer"] == answer
    assert states(flow)["b"] == "pending"


async def test_a_dead_delivery_is_sent_again_then_fails_once_the_attempts_are_spent(world: World) -> None:
    """retry.attempts 3, the queue's 2 a delivery: a second delivery after the backoff, then failed."""
    world.flow = definition(a_retry={"attempts": 3, "backoff": "0.01s", "max_backoff": "0.01s"})
    world.engine = world.engine_for(world.flow)
    flow_id = world.file()
    await world.look(flow_id)
    world.deliveries.dead(f"d:flow:{flow_id}:a:1", attempts=2)
    flow = await world.look(flow_id)
    assert flow.state == "waiting" and states(flow)["a"] == "pending" and step(flow, "a").sends == 1
    await asyncio.sleep(0.02)
    flow = await world.look(flow_id)
    assert step(flow, "a").delivery_id == f"d:flow:{flow_id}:a:2" and step(flow, "a").sends == 2
    world.deliveries.dead(f"d:flow:{flow_id}:a:2", attempts=2)
    flow = await world.look(flow_id)
    assert flow.state == "failed" and step(flow, "a").reason["code"] == "Server.ServiceFailed"
    assert flow.reason["step"] == "a" and world.keys() == ["a:1", "a:2"]


async def test_a_permanent_failure_is_not_sent_again(world: World) -> None:
    flow_id = world.file()
    await world.look(flow_id)
    world.deliveries.dead(f"d:flow:{flow_id}:a:1", attempts=1, retryable=False)
    flow = await world.look(flow_id)
    assert flow.state == "failed" and step(flow, "a").sends == 1


async def test_a_delivery_that_vanished_fails_the_step(world: World) -> None:
    flow_id = world.file()
    flow = await world.look(flow_id)
    assert step(flow, "a").state == "sent"
    flow = await world.look(flow_id)  # no view for it
    assert flow.state == "failed" and step(flow, "a").reason["code"] == "Server.FlowLost"


async def test_a_passing_refusal_at_intake_waits_and_a_lasting_one_fails(world: World) -> None:
    """503 (the audit log busy) or 429: the step waits, no send counted; 403 (a policy): failed."""
    for status in (503, 429):
        world.pipeline.refusal = (status, {"code": "Server.AuditFailed", "detail": "busy"})
        flow = await world.look(world.file(code=f"H41-{status}"))
        a = step(flow, "a")
        assert flow.state == "waiting" and a.state == "pending" and a.sends == 0
        assert a.due_us > now_us() and a.reason["status"] == status
    world.pipeline.refusal = (403, {"code": "Server.ServerProxy.AccessDenied", "detail": "no rule"})
    flow = await world.look(world.file(code="H41-403"))
    assert flow.state == "failed" and step(flow, "a").reason["status"] == 403


async def test_the_engines_hand_overs_are_audited_only_when_refused(
        world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    """Through the gateway's pipeline: an accepted hand-over to the queue makes no leaf and no log
    line (each attempt of its delivery does, docs/flows.md); a refused one is a leaf and a line of
    its own, protocol ``flow``, the flow in its purpose."""
    sink = Sink()
    lines = logged(monkeypatch)
    refusals: list[GatewayError] = []

    async def intake(ctx: Result) -> Result:
        if refusals:
            raise refusals[0]
        delivery = f"d:{ctx.exchange.idempotency_key}"
        return evolve(ctx, reply=Reply(payload={"deliveryId": delivery}, status=202))

    world.engine.attach(ports(sink=sink), (), intake)
    flow = await world.look(world.file(code="H41-ok"))
    assert step(flow, "a").delivery_id == f"d:flow:{flow.id}:a:1" and sink.records == [] and lines == []
    refusals.append(Forbidden("no rule allows it"))
    flow = await world.look(world.file(code="H41-no"))
    assert flow.state == "failed" and step(flow, "a").reason["status"] == 403
    assert [(r.protocol, r.outcome, r.purpose) for r in sink.records] == [
        ("flow", "refused", f"H41-no flow/{flow.id}")]
    assert lines == [403]


async def test_a_flow_that_finishes_after_its_deadline_is_overdue(world: World) -> None:
    world.flow = definition(a_deadline="0.01s")
    world.engine = world.engine_for(world.flow)
    flow_id = world.file(deadline_us=now_us() + 10_000)
    await world.look(flow_id)
    await asyncio.sleep(0.02)
    world.deliveries.answer(f"d:flow:{flow_id}:a:1", 200, {"So": "7/2026"})
    flow = await world.look(flow_id)
    assert step(flow, "a").overdue and flow.overdue
    world.deliveries.answer(f"d:flow:{flow_id}:b:1", 200, {"The": "TE1"})
    flow = await world.look(flow_id)
    assert flow.state == "completed" and flow.overdue and not step(flow, "b").overdue


async def test_a_flow_finished_on_its_first_late_look_is_overdue(world: World) -> None:
    """The look that completes a flow already past its deadline marks it, though it is no longer running."""
    flow_id = world.file()
    await _done_a(world, flow_id)
    world.deliveries.answer(f"d:flow:{flow_id}:b:1", 200, {"The": "TE1"})
    world.store.engine.dispose()
    with world.store.engine.begin() as conn:
        from gateway.flows.tables import flows

        conn.execute(flows.update().where(flows.c.id == flow_id).values(deadline_us=now_us() - 1))
    flow = await world.look(flow_id)
    assert flow.state == "completed" and flow.overdue


def test_a_save_without_the_lease_writes_nothing(world: World) -> None:
    """A process whose lease lapsed (another took the flow over) cannot overwrite the newer state."""
    flow_id = world.file()
    (first, lease), = world.store.claim(64, LEASE_US, later())
    (_, newer), = world.store.claim(64, LEASE_US, later(2))
    first.state = "failed"
    assert world.store.save(first, lease, now_us(), now_us()) is False
    assert world.store.save(first, newer, now_us(), now_us()) is True
    found = world.store.get(flow_id)
    assert found is not None and found.state == "failed"


def test_filing_the_same_dossier_twice_finds_the_first_flow(world: World) -> None:
    first = world.file()
    spec = definition()
    now = now_us()
    again = FlowRow(id=new_flow_id(), name="thu", dossier_code="H41-1", client="motcua", exchange_id="y",
                    state="running", dossier={}, subjects=(), started_us=now, updated_us=now, deadline_us=now,
                    steps=rows(spec))
    found, duplicate = world.store.file(again, now)
    assert duplicate and found.id == first


# -- what this process recorded, and claims ---------------------------------------------------------

class Counted(Deliveries):
    """The test's views, and how many times the engine read one."""

    def __init__(self) -> None:
        super().__init__()
        self.reads = 0

    def outcome(self, delivery_id: str) -> dict[str, Any] | None:
        self.reads += 1
        return super().outcome(delivery_id)


def recorded(world: World, flow_id: str, outcome: Outcome, attempts: int = 1) -> None:
    """The dispatcher of this process telling the engine it recorded a step's attempt."""
    item = SimpleNamespace(id=outcome.id, client=world.engine.client, attempts=attempts,
                           purpose=f"H41-1 flow/{flow_id}", service=A)
    world.engine._recorded(item, outcome)


async def test_an_answer_recorded_here_is_read_without_the_database(world: World) -> None:
    """The dispatcher's outcome of a step (delivered, with the agency's answer) is what the flow's
    next look reads; the views are not asked (they know nothing here: asked, the step would fail)."""
    world.deliveries = Counted()
    world.engine = world.engine_for(world.flow)
    flow_id = world.file()
    await world.look(flow_id)
    recorded(world, flow_id, Outcome(f"d:flow:{flow_id}:a:1", "lease", DELIVERED, response_status=200,
                                     response=orjson.dumps({"So": "7/2026"})))
    flow = await world.look(flow_id)
    assert states(flow) == {"a": "done", "b": "sent"} and step(flow, "a").result == {"So": "7/2026"}
    assert world.deliveries.reads == 0
    assert world.pipeline.sent[-1][2] == {"MaHoSo": "H41-1", "So": "7/2026"}


async def test_a_dead_delivery_recorded_here_counts_its_attempts(world: World) -> None:
    world.deliveries = Counted()
    world.engine = world.engine_for(world.flow)
    flow_id = world.file()
    await world.look(flow_id)
    error = {"code": "Server.Refused", "status": 400, "detail": "no", "retryable": False}
    recorded(world, flow_id, Outcome(f"d:flow:{flow_id}:a:1", "lease", DEAD, error=error), attempts=2)
    flow = await world.look(flow_id)
    assert flow.state == "failed" and step(flow, "a").reason["code"] == "Server.Refused"
    assert world.deliveries.reads == 0


async def test_an_attempt_to_be_retried_is_read_from_the_views(world: World) -> None:
    """Recorded as pending (the queue tries again): the look asks the views, as after a restart."""
    world.deliveries = Counted()
    world.engine = world.engine_for(world.flow)
    flow_id = world.file()
    await world.look(flow_id)
    recorded(world, flow_id, Outcome(f"d:flow:{flow_id}:a:1", "lease", PENDING, next_us=later()))
    world.deliveries.answer(f"d:flow:{flow_id}:a:1", 200, {"So": "8/2026"})
    flow = await world.look(flow_id)
    assert world.deliveries.reads == 1 and step(flow, "a").result == {"So": "8/2026"}


async def test_a_large_answer_is_read_from_the_views(world: World) -> None:
    """What the process keeps is bounded in bytes too: an answer over 4 KiB is read back."""
    world.deliveries = Counted()
    world.engine = world.engine_for(world.flow)
    flow_id = world.file()
    await world.look(flow_id)
    big = {"So": "7/2026", "GhiChu": "x" * 5000}
    recorded(world, flow_id, Outcome(f"d:flow:{flow_id}:a:1", "lease", DELIVERED, response_status=200,
                                     response=orjson.dumps(big)))
    world.deliveries.answer(f"d:flow:{flow_id}:a:1", 200, big)
    flow = await world.look(flow_id)
    assert world.deliveries.reads == 1 and step(flow, "a").result == big


def test_the_flows_named_first_are_claimed_before_those_due_earlier(world: World) -> None:
    """A claim takes the poked flows first (this process holds their news), then the longest due;
    a finished flow or one not due yet among them is not taken."""
    early, late, done, asleep = (world.file(code=f"H41-{n}") for n in range(4))
    settings = {early: ("running", 1), late: ("running", 2), done: ("completed", 0),
                asleep: ("waiting", later(5))}
    for flow, lease in world.store.claim(64, LEASE_US, later()):
        flow.state, next_us = settings[flow.id]
        assert world.store.save(flow, lease, next_us, now_us())
    (taken, _), = world.store.claim(1, LEASE_US, later(2), first=[late, done, asleep])
    assert taken.id == late
    taken_ids = [f.id for f, _ in world.store.claim(64, LEASE_US, later(2), first=[done, asleep])]
    assert taken_ids == [early]


def test_the_claim_and_the_poke_look_flows_up_by_key(world: World) -> None:
    """On SQLite (no statistics), given ``state IN`` the planner walked the due index, every active
    flow, for a hundred keys, and sorted every due flow for a claim: both by key and in index order."""
    plans: list[tuple[str, str]] = []

    def explain(_conn: Any, cursor: Any, statement: str, parameters: Any, *_: Any) -> None:
        if statement.lstrip().upper().startswith(("SELECT", "UPDATE")) and "flows" in statement:
            found = cursor.connection.execute(f"EXPLAIN QUERY PLAN {statement}", parameters).fetchall()
            plans.append((statement, " | ".join(row[-1] for row in found)))

    engine = world.store.engine
    sa.event.listen(engine, "before_cursor_execute", explain)
    try:
        ids = [world.file(code=f"H41-{n}") for n in range(3)]
        world.store.poke_many(ids, now_us())
        world.store.claim(2, LEASE_US, later(), first=ids[:1])
    finally:
        sa.event.remove(engine, "before_cursor_execute", explain)
    keyed = [plan for statement, plan in plans if "flows.id IN" in statement]
    assert keyed and all("USING INDEX sqlite_autoindex_flows_1 (id=?)" in plan for plan in keyed), plans
    assert not any("TEMP B-TREE" in plan for statement, plan in plans if "FROM flows" in statement), plans



async def test_the_rounds_are_smaller_while_exchanges_from_outside_are_in_flight(
        world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    """Large rounds make fuller commits, but took the cores from one-stop systems filing meanwhile:
    while the front door has an exchange in flight the engine claims ``BATCH_BUSY`` flows at once."""
    door = FrontDoor()
    engine = FlowEngine(world.config, Flows(flows={}), world.store, world.deliveries,
                        "VN/GOV/000.00.00.G22/LIENTHONG", pipeline=world.pipeline, busy=door.busy)
    sizes: list[int] = []
    claim = world.store.claim_async

    async def counted(limit: int, *args: Any, **kwargs: Any) -> Any:
        sizes.append(limit)
        return await claim(limit, *args, **kwargs)

    async def next_round() -> int:
        seen = len(sizes)
        engine.poke()
        for _ in range(500):
            if len(sizes) > seen:
                return sizes[-1]
            await asyncio.sleep(0.01)
        raise AssertionError("the engine took no round")

    monkeypatch.setattr(world.store, "claim_async", counted)
    engine.start()
    try:
        assert await next_round() == BATCH
        door.in_flight = 3
        assert await next_round() == BATCH_BUSY
        door.in_flight = 0
        assert await next_round() == BATCH
    finally:
        await engine.stop()
    assert BATCH_BUSY < BATCH

# -- notifications ---------------------------------------------------------------------------------

PORTAL = "VN/GOV/000.00.00.G22/DVCQG/CapNhatTienDoHoSoMC"
NOTIFY = [
    {"id": "dong_bo", "at": "start", "service": PORTAL,
     "input": {"MaHoSo": "dossier.MaHoSo", "Luc": "flow.started", "Luong": "flow.id"}},
    {"id": "tien_do", "at": "step", "service": PORTAL,
     "input": {"MaHoSo": "dossier.MaHoSo", "Buoc": "event.step", "Co": "event.agency",
               "TrangThai": {"from": "event.state", "map": {"done": "4", "rejected": "8"}},
               "LyDo": {"from": "event.reason", "optional": True}}},
    {"id": "ket_qua", "at": "end", "client_service": "NhanKetQua",
     "input": {"MaHoSo": "dossier.MaHoSo", "TrangThai": "flow.state",
               "So": {"from": "steps.a.So", "optional": True}}},
]


def notifying(notices: list[dict[str, Any]] = NOTIFY) -> Flow:
    raw = definition().model_dump(exclude={"source"})
    raw["steps"] = [s.model_dump() for s in definition().steps]
    for step_raw, spec in zip(raw["steps"], definition().steps, strict=True):
        step_raw["input"] = {"MaHoSo": "dossier.MaHoSo", **({"So": "steps.a.So"} if spec.id == "b" else {})}
        step_raw["when"] = None
        if spec.compensation is not None:
            step_raw["compensation"] = {"service": UNDO, "input": {"So": "steps.a.So"}}
    return Flow.model_validate({**raw, "notify": notices})


@pytest.fixture
def told(tmp_path: Path, config: Config) -> World:
    return World(tmp_path, config, notifying())


async def test_notifications_go_at_start_at_each_step_and_at_the_end(told: World) -> None:
    """The start with the first step, each step's end, the flow's end (to the filing subsystem's
    service), each under its own key, in that order; a step's answer read where the step ran."""
    flow_id = told.file()
    await _done_a(told, flow_id)
    told.deliveries.answer(f"d:flow:{flow_id}:b:1", 200, {"The": "TE1"})
    flow = await told.look(flow_id)
    assert flow.state == "completed"
    sent = [(k.removeprefix(f"flow:{flow_id}:"), service, body) for k, service, body in told.pipeline.sent]
    # a look stores its steps' requests first, then what its events call for
    assert [k for k, _, _ in sent] == ["a:1", "notify:dong_bo", "b:1", "notify:tien_do:a:done",
                                       "notify:tien_do:b:done", "notify:ket_qua"]
    start = sent[1][2]
    assert start["Luong"] == flow_id and len(start["Luc"]) == 14 and start["Luc"].startswith("20")
    assert sent[3][2] == {"MaHoSo": "H41-1", "Buoc": "a", "Co": "VN/GOV/000.00.00.G15", "TrangThai": "4"}
    assert sent[5][1] == "motcua/NhanKetQua"  # the flow's client + the code
    assert sent[5][2] == {"MaHoSo": "H41-1", "TrangThai": "completed", "So": "7/2026"}


async def test_a_rejection_is_told_with_the_agencys_reason(told: World) -> None:
    flow_id = told.file()
    told.deliveries.answer(f"d:flow:{flow_id}:a:1", 200, {"So": "7/2026"})
    await told.look(flow_id)
    await told.look(flow_id)
    told.deliveries.answer(f"d:flow:{flow_id}:b:1", 422, {"MaLoi": "TU_CHOI", "LyDo": "Sai tên"})
    await told.look(flow_id)  # b rejected: a is undone first
    await told.look(flow_id)  # the undo sent
    told.deliveries.answer(f"d:flow:{flow_id}:a:undo", 200, {})
    flow = await told.look(flow_id)
    assert flow.state == "rejected"
    by_key = {k.removeprefix(f"flow:{flow_id}:"): body for k, _, body in told.pipeline.sent}
    assert by_key["notify:tien_do:b:rejected"]["TrangThai"] == "8"
    assert by_key["notify:tien_do:b:rejected"]["LyDo"] == "Sai tên"
    assert by_key["notify:ket_qua"] == {"MaHoSo": "H41-1", "TrangThai": "rejected", "So": "7/2026"}


async def test_a_notifications_outcome_wakes_no_flow(told: World) -> None:
    """Nothing waits for a notification's answer: its outcome neither makes its flow due (a look
    that would find the step still on its way) nor takes a place among the steps' answers kept for
    their flows' looks. A step's outcome does both."""
    flow_id = told.file()
    await told.look(flow_id)
    item = SimpleNamespace(id="d-dong-bo", client=told.engine.client, attempts=1,
                           purpose=f"H41-1 flow/{flow_id}", service=PORTAL)
    told.engine._recorded(item, Outcome("d-dong-bo", "lease", DELIVERED, response_status=200, response=b"{}"))
    assert not told.engine._poked and told.engine._settled.get("d-dong-bo") is None
    recorded(told, flow_id, Outcome(f"d:flow:{flow_id}:a:1", "lease", DELIVERED, response_status=200,
                                    response=orjson.dumps({"So": "7/2026"})))
    assert told.engine._poked == {flow_id} and told.engine._settled.get(f"d:flow:{flow_id}:a:1") is not None


async def test_a_notification_refused_by_a_passing_trouble_saves_nothing_of_the_look(told: World) -> None:
    """The step's delivery is stored, the notification is not (503): the flow is left as it was and
    the next look stores both under the same keys."""
    flow_id = told.file()
    pipeline = told.pipeline

    class Busy(Pipeline):
        async def run(self, exchange: Exchange, render: Render) -> Rendered:
            if (exchange.idempotency_key or "").endswith("notify:dong_bo"):
                return Rendered(503, [], orjson.dumps({"code": "Server.Busy", "status": 503}))
            return await pipeline.run(exchange, render)

    told.engine = FlowEngine(told.config, Flows(flows={"thu": notifying()}), told.store, told.deliveries,
                             "VN/GOV/000.00.00.G22/LIENTHONG", max_attempts=2, pipeline=Busy())
    flow = await told.look(flow_id)  # the look gave the flow back unchanged, for another look
    assert states(flow) == {"a": "pending", "b": "pending"} and step(flow, "a").sends == 0
    told.engine = told.engine_for(notifying())
    flow = await told.look(flow_id)
    assert states(flow)["a"] == "sent"
    keys = [k.removeprefix(f"flow:{flow_id}:") for k, _, _ in pipeline.sent]
    assert keys == ["a:1", "a:1", "notify:dong_bo"]


async def test_a_notification_refused_for_good_does_not_hold_the_flow(told: World) -> None:
    flow_id = told.file()

    class Denied(Pipeline):
        async def run(self, exchange: Exchange, render: Render) -> Rendered:
            if "notify:" in (exchange.idempotency_key or ""):
                return Rendered(403, [], orjson.dumps({"code": "Client.Forbidden", "status": 403}))
            return await Pipeline.run(self, exchange, render)

    told.engine = FlowEngine(told.config, Flows(flows={"thu": notifying()}), told.store, told.deliveries,
                             "VN/GOV/000.00.00.G22/LIENTHONG", max_attempts=2, pipeline=Denied())
    flow = await told.look(flow_id)
    assert states(flow)["a"] == "sent"


def test_the_view_lists_what_the_events_called_for(told: World) -> None:
    flow = FlowRow(id="f", name="thu", dossier_code="H41-1", client="motcua", exchange_id="x",
                   state="rejected", dossier={}, subjects=(), started_us=1, updated_us=1, deadline_us=2,
                   steps=[StepRow("a", 0, A, state="compensated", sends=1),
                          StepRow("b", 1, B, state="rejected")])
    listed = notify.sent_so_far(notifying(), flow)
    assert [(n["notify"], n["step"], n["key"]) for n in listed] == [
        ("dong_bo", None, "notify:dong_bo"), ("tien_do", "a", "notify:tien_do:a:done"),
        ("tien_do", "b", "notify:tien_do:b:rejected"), ("ket_qua", None, "notify:ket_qua")]
    assert listed[-1]["service"] == "motcua/NhanKetQua"


END_PROGRESS = {"id": "ket_thuc", "at": "end", "service": PORTAL,
                "input": {"MaHoSo": "dossier.MaHoSo", "TrangThai": {"from": "flow.state", "map": {
                    "completed": "9", "rejected": "8"}}}}


def with_end_progress() -> Flow:
    return notifying([*NOTIFY[:2], END_PROGRESS, NOTIFY[2]])


async def test_a_completed_flows_last_progress_and_its_end_go_as_one_request(
        tmp_path: Path, config: Config) -> None:
    """The portal's progress service takes a list of records: the last step's progress and the end's
    go together (one delivery less a flow), under one key the flow's view gives both."""
    told = World(tmp_path, config, with_end_progress())
    flow_id = told.file()
    await _done_a(told, flow_id)
    told.deliveries.answer(f"d:flow:{flow_id}:b:1", 200, {"The": "TE1"})
    flow = await told.look(flow_id)
    assert flow.state == "completed"
    sent = {k.removeprefix(f"flow:{flow_id}:"): body for k, _, body in told.pipeline.sent}
    assert list(sent) == ["a:1", "notify:dong_bo", "b:1", "notify:tien_do:a:done",
                          "notify:tien_do:b:done+ket_thuc", "notify:ket_qua"]
    assert [(r.get("Buoc"), r["TrangThai"])
            for r in sent["notify:tien_do:b:done+ket_thuc"]] == [("b", "4"), (None, "9")]
    listed = told.engine.notifications(flow)
    assert [(n["notify"], n["step"]) for n in listed] == [
        ("dong_bo", None), ("tien_do", "a"), ("tien_do", "b"), ("ket_thuc", None), ("ket_qua", None)]
    keys = [n["key"] for n in notify.sent_so_far(with_end_progress(), flow, told.engine._merges)]
    assert keys[2] == keys[3] == "notify:tien_do:b:done+ket_thuc"


async def test_a_refusals_end_goes_alone(tmp_path: Path, config: Config) -> None:
    """A refused flow's end may come a look after its step's refusal (after an undo): a look
    repeated after a crash could group what was sent alone, so a refusal's end is never merged."""
    told = World(tmp_path, config, with_end_progress())
    flow_id = told.file()
    await _done_a(told, flow_id)
    told.deliveries.answer(f"d:flow:{flow_id}:b:1", 422, {"MaLoi": "TU_CHOI", "LyDo": "Sai tên"})
    await told.look(flow_id)
    await told.look(flow_id)
    told.deliveries.answer(f"d:flow:{flow_id}:a:undo", 200, {})
    flow = await told.look(flow_id)
    assert flow.state == "rejected"
    keys = [k.removeprefix(f"flow:{flow_id}:") for k, _, _ in told.pipeline.sent]
    assert "notify:tien_do:b:rejected" in keys and "notify:ket_thuc" in keys
    # nor when the refusal and the end are events of one look (a stop: no undo in between)
    stopped = FlowRow(id="f", name="thu", dossier_code="H41-1", client="motcua", exchange_id="x",
                      state="rejected", dossier={}, subjects=(), started_us=1, updated_us=1, deadline_us=2,
                      steps=[StepRow("a", 0, A, state="done", sends=1), StepRow("b", 1, B, state="rejected")])
    happened = notify.events(stopped, {"a": "done", "b": "sent"}, "running", True)
    assert [e.at for e in happened] == ["step", "end"]
    sends = notify.due(with_end_progress(), stopped, happened, told.engine._scope(stopped), 1,
                       lambda _service: True)
    assert [s.key for s in sends] == ["notify:tien_do:b:rejected", "notify:ket_thuc", "notify:ket_qua"]


@given(st.integers(min_value=200_000_000_000_000, max_value=4_102_444_800_000_000))  # 1976 … 2100
def test_portal_time_is_vietnamese_time(us: int) -> None:
    """By the fixed offset (UTC+7 all year since 1975), the same as the zone's conversion."""
    zoned = datetime.fromtimestamp(us / 1e6, tz=UTC).astimezone(ZoneInfo("Asia/Ho_Chi_Minh"))
    assert notify.portal_time(us) == zoned.strftime("%Y%m%d%H%M%S")
