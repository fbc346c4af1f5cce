"""Running joint procedures: filing a flow, and advancing it step by step through the one pipeline.

Filing: a one-stop system calls a catalog service marked ``flow: <name>`` with the joint dossier.
The pipeline authenticates, authorises, reads the people it names and checks it against the flow's
JSON Schema like any exchange; its ``send`` step is ``FlowEngine.file``, which stores the flow with
its steps (once per flow and dossier code) and answers 202 with ``Location: /flows/{id}``.

Advancing: each process runs a loop that claims due flows (gateway/flows/store.py) and moves each
as far as it can go now. A step is sent as an exchange of the gateway's own client (``flows.client``
in the catalog, the platform's subsystem), through the pipeline's resolve, authorise, admit, parse
and validate steps, and stored as a delivery: the store-and-forward queue carries it, retries it
through an outage, and audits every attempt, its data subjects indexed like any exchange's. The
step's request carries the flow in its purpose (``X-Road-Issue``), so the audit log ties every
attempt to its flow. The agency's answer decides the step:

    2xx           done: the answer is kept, later steps read it (steps.<id>.<field>); an answer
                  that is not a JSON object, or lacks a field the step ``produces``, is malformed:
                  the step fails with the answer as the reason (nothing half-recorded)
    4xx           rejected: the step's ``on_reject`` runs (stop; or compensate earlier steps, then stop)
    dead delivery an outage that outlasted the queue's attempts: sent again after the step's backoff
                  while its ``retry.attempts`` last, then failed

A step that has not finished by its deadline, and a flow past its own, are marked overdue (and go
on; a flow that finishes late is overdue too). A refusal at the step's intake that may pass later
(5xx, 429: the database or the audit log busy) leaves the step pending, sent again shortly; any
other refusal (policy, schema) fails it.

Nothing is lost on ``kill -9``: the flow and its steps are rows, each send is a delivery under the
key ``flow:{id}:{step}:{n}``, so a send repeated after a crash finds the first one (the agency may
still see the one delivery's request again: the queue is at least once, docs/delivery.md).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Mapping, Sequence
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any, Protocol
from zoneinfo import ZoneInfo

import orjson
import structlog

from gateway.config import Config
from gateway.connector import Reply
from gateway.context import Exchange, Intake, Render, Rendered, Result, Step, evolve
from gateway.delivery.messages import idempotency_key
from gateway.delivery.model import Outcome
from gateway.delivery.store import now_us
from gateway.delivery.views import settled
from gateway.errors import InvalidBody
from gateway.exchange import Pipeline, Ports
from gateway.flows import notify
from gateway.flows.definition import Compensate, Flow
from gateway.flows.definition import Step as FlowStep
from gateway.flows.loading import Flows
from gateway.flows.mapping import MISSING, EvaluationError, MissingSource, Scope, build_request, resolve
from gateway.flows.store import FlowRow, FlowStore, StepRow, new_flow_id
from gateway.ids import new_id
from gateway.logs import stack
from gateway.problems import problem_bytes
from gateway.recent import Recent

__all__ = ["FlowEngine"]

log = structlog.get_logger("lienthong.flows")

VIETNAM = ZoneInfo("Asia/Ho_Chi_Minh")
POLL_US = 200_000  # the loop's look for due flows when nothing wakes it sooner
# A flow waiting for its step's delivery is made due when the delivery's attempt is recorded (the
# dispatcher tells the engine; a save that finds the delivery already finished makes it due too);
# this look is the backstop, e.g. for an attempt recorded by a process that died before telling.
WAIT_US = 5_000_000
# A step still on its way at that look is looked at again as long after as it has waited so far, up
# to a minute: in a backlog (10,000 flows filed at once) the agencies' queues held steps for longer
# than 5 s, and every flow had a look or two that found its step still queued (about 10,000 of a
# drain's 60,000 looks, each reading the delivery from the database).
WAIT_MAX_US = 60_000_000
IDLE_US = 60_000_000  # at the latest, so deadlines are marked while nothing else happens
LEASE_US = 30_000_000
# Flows claimed at once and advanced concurrently. Larger rounds make fuller group commits: a
# 10,000-flow drain took 55 s at 512 against 67-70 s at 128, in 1,800 commits against 4,000 and with
# a sixth less CPU a flow. But while one-stop systems were filing, a round of 512 took the cores from
# them (363-372 filings a second against 591-718): while exchanges from outside are in flight in this
# process (gateway/frontdoor.py), the engine takes the smaller rounds (docs/benchmarks.md).
BATCH = 512
BATCH_BUSY = 128
SCOPES = frozenset({"exchange"})
INTAKE_RETRY_US = 2_000_000  # a step refused at intake by a passing trouble (5xx, 429) tries again
ANSWERED = ("done", "compensating", "compensated")  # steps whose answer later steps and undos read
# Steps' finished deliveries this process recorded, kept for their flows' next look: that look can
# come after every other due flow's (10,000 flows filed at once: some 20,000 records later).
SETTLED_KEPT = 32_768
SETTLED_ANSWER_MAX = 4_096  # bytes: a larger answer is not kept, but read from the database
# The data subjects (keyed hashes) of the flow whose request is passing through the pipeline.
_FLOW_SUBJECTS: ContextVar[tuple[str, ...]] = ContextVar("flow_subjects", default=())


class Deliveries(Protocol):
    """Where the engine reads what became of a step's delivery (state, attempts, answer, last error:
    ``DeliveryViews.outcome``)."""

    def outcome(self, delivery_id: str) -> dict[str, Any] | None: ...

    def by_keys(self, idem_keys: list[str]) -> dict[str, dict[str, Any]]: ...


class StepPipeline(Protocol):
    """What stores a step's request: the exchange pipeline ending in the delivery queue's intake."""

    async def run(self, exchange: Exchange, render: Render) -> Rendered: ...


def _never() -> bool:
    return False


def render(result: Result) -> Rendered:
    """A step's intake as the engine reads it: the 202 (delivery id) or the refusal."""
    if result.error is not None:
        return Rendered(result.error.status, [("content-type", "application/problem+json")],
                        problem_bytes(result.error, exchange_id=result.exchange.id))
    reply = result.reply
    assert reply is not None
    return Rendered(reply.status, [("content-type", "application/json")], orjson.dumps(reply.payload))


class FlowEngine:
    def __init__(self, config: Config, flows: Flows, store: FlowStore, deliveries: Deliveries,
                 client: str, *, max_attempts: int = 12, pipeline: StepPipeline | None = None,
                 busy: Callable[[], bool] | None = None) -> None:
        self.config = config
        self.flows = flows
        self.store = store
        self.deliveries = deliveries
        self.client = client  # the gateway's own client, as which steps call the agencies
        self.max_attempts = max_attempts  # a delivery's attempts before it dies (delivery settings)
        self._pipeline: StepPipeline | None = pipeline  # given here by unit tests, else by attach()
        self._task: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()
        self._poked: set[str] = set()  # flows whose step's delivery has news, to make due
        # What this process's dispatcher recorded of a step's delivery, by delivery id: the flow's
        # next look reads a finished one here rather than from the database (that look is often
        # this process's; an attempt to be retried, or none recorded here, is read there).
        self._settled: Recent[str, tuple[Outcome, int]] = Recent(SETTLED_KEPT)  # (outcome, attempts)
        self._running = False
        self._busy = busy or _never  # exchanges from outside are in flight: smaller rounds
        # The services whose answers a flow waits for. A notification's delivery is the flow's too
        # (the gateway's client, the flow in its purpose) but nothing waits for it: a look it woke
        # found the step still on its way, one wasted look a flow in a drain of 10,000, and its
        # outcome pushed the steps' out of ``_settled``.
        self._stepped = flows.stepped

    def attach(self, ports: Ports, checks: Sequence[Step], intake: Intake) -> None:
        """The pipeline the steps go through: the exchange pipeline's checks after authentication
        (resolve … validate), as the gateway's own client, then the delivery queue's intake."""

        async def as_gateway(ctx: Result) -> Result:
            return evolve(ctx, client=self.client, scopes=SCOPES)

        async def about_the_flows_people(ctx: Result) -> Result:
            """A request that names nobody (a progress update, the outcome to the one-stop system)
            is still about the flow's people: the joint dossier's, indexed so that their access
            report shows it. A progress update would otherwise take its dossier's earliest
            message's, which the intake reads from the database (gateway/delivery/intake.py)."""
            flows_people = _FLOW_SUBJECTS.get()
            return evolve(ctx, subjects=flows_people) if flows_people and not ctx.subjects else ctx

        self._pipeline = Pipeline(ports, checks=(as_gateway, *checks, about_the_flows_people), send=intake,
                                  audited=_refused)

    # -- filing ------------------------------------------------------------------------------------

    async def file(self, ctx: Result) -> Result:
        """The send step of a service marked ``flow:``: the flow stored, answered 202."""
        service, _ = ctx.target()
        flow = self.flows.started_by(service.id)
        if flow is None:  # refused by ``lienthong check`` and at start: a wiring mistake
            raise InvalidBody(f"{service.id} starts no flow this gateway knows", status=404)
        code = resolve(ctx.payload, flow.code)
        if not isinstance(code, str) or not code.strip():
            raise InvalidBody(f"the joint dossier has no dossier code at {flow.code}", status=400,
                              errors=[{"path": f"$.{flow.code}", "message": "a dossier code is required"}])
        now = now_us()
        row = FlowRow(id=new_flow_id(), name=flow.name, dossier_code=code[:128], client=ctx.caller(),
                      exchange_id=ctx.exchange.id, state="running", dossier=ctx.payload,
                      subjects=ctx.subjects, started_us=now, updated_us=now,
                      deadline_us=now + int(flow.deadline * 1e6),
                      steps=[StepRow(step=s.id, position=i, service=s.service)
                             for i, s in enumerate(flow.steps)])
        filed, duplicate = await self.store.file_async(row, now)
        if not duplicate:
            self.poke()
        location = f"/flows/{filed.id}"
        body = {"flowId": filed.id, "flow": filed.name, "state": filed.state, "duplicate": duplicate,
                "location": location}
        return evolve(ctx, reply=Reply(payload=body, status=202, headers={"Location": location}))

    def notifications(self, flow: FlowRow) -> list[dict[str, Any]]:
        """What the flow's notifications became so far: each one its events called for, with the
        delivery it was stored as (None: not stored yet, or refused; the log says which)."""
        definition = self.flows.flows.get(flow.name)
        if definition is None:
            return []
        expected = notify.sent_so_far(definition, flow, self._merges)
        keys = {item["key"]: idempotency_key(self.client, item["service"], f"flow:{flow.id}:{item['key']}",
                                             None, None, b"") for item in expected}
        found = self.deliveries.by_keys(list(keys.values()))
        out = []
        for item in expected:
            delivery = found.get(keys[item["key"]])
            out.append({**{k: v for k, v in item.items() if k != "key"},
                        "delivery": None if delivery is None else {
                            k: delivery.get(k)
                            for k in ("id", "state", "attempts", "delivered", "lastError")}})
        return out

    # -- the loop ----------------------------------------------------------------------------------

    def start(self) -> None:
        if not self._running:
            self._running = True
            self.store.start()
            listen = getattr(self.deliveries, "listen", None)  # the delivery queue's, in a gateway
            if listen is not None:
                listen(self._recorded)
            self._task = asyncio.create_task(self._loop(), name="flows")

    def poke(self) -> None:
        self._wake.set()

    def _recorded(self, item: Any, outcome: Outcome) -> None:
        """A delivery's attempt was recorded by this process: a step's or an undo's (the gateway's
        own client, the flow in its purpose, a service a step calls) makes its flow due now rather
        than at its next look."""
        purpose = getattr(item, "purpose", None) or ""
        if getattr(item, "client", None) == self.client and " flow/" in purpose \
                and getattr(item, "service", None) in self._stepped:
            if len(outcome.response or b"") <= SETTLED_ANSWER_MAX:  # bounded bytes, not only entries
                self._settled.put(item.id, (outcome, item.attempts))  # read (parsed) when looked at
            else:
                self._settled.pop(item.id)  # an earlier attempt's, if any, is not this one
            self._poked.add(purpose.rsplit(" flow/", 1)[1])
            self._wake.set()

    async def stop(self) -> None:
        self._running = False
        self._wake.set()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
            await asyncio.to_thread(self.store.close)

    async def _loop(self) -> None:
        while self._running:
            self._wake.clear()  # what wakes it from here on is seen by the next round
            size = BATCH_BUSY if self._busy() else BATCH
            try:
                poked: list[str] = []
                if self._poked:
                    poked, self._poked = sorted(self._poked), set()
                    await self.store.poke_async(poked, now_us())
                # The poked first: this process holds their steps' answers (``_settled``), and
                # their news should not wait behind a backlog of flows due earlier.
                claimed = await self.store.claim_async(size, LEASE_US, now_us(), first=poked)
            except Exception as exc:  # the database is away: try again shortly
                log.error("flows_claim_failed", error=type(exc).__name__, frames=stack(exc))
                claimed = []
            # Concurrently: each flow's step stored through the pipeline shares the queue's and the
            # audit's group commits with the others', and the saves share the flow writer's.
            await asyncio.gather(*(self._advance_one(flow, lease) for flow, lease in claimed))
            if len(claimed) >= size or self._poked:
                continue
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), POLL_US / 1e6)

    async def _advance_one(self, flow: FlowRow, lease: str) -> None:
        try:
            await self.advance(flow, lease)
        except Exception as exc:  # one flow's bug must not stop the others; its lease lapses
            log.error("flow_advance_crashed", flow=flow.id, error=type(exc).__name__, frames=stack(exc))

    async def run_once(self) -> int:
        """Advance every flow that is due now (tests and tools); the number advanced."""
        claimed = await asyncio.to_thread(self.store.claim, BATCH, LEASE_US, now_us())
        for flow, lease in claimed:
            await self.advance(flow, lease)
        return len(claimed)

    # -- one flow ----------------------------------------------------------------------------------

    async def advance(self, flow: FlowRow, lease: str) -> None:
        """Move a leased flow as far as it can go now, and save it."""
        now = now_us()
        changed: dict[str, StepRow] = {}
        definition = self.flows.flows.get(flow.name)
        next_us = now + IDLE_US
        before, flow_before = {s.step: s.state for s in flow.steps}, flow.state
        moved = any(s.state != "pending" or s.sends for s in flow.steps)
        if definition is None:
            self._finish(flow, "failed", now, {"code": "Server.FlowUnknown",
                                               "detail": f"flow {flow.name} is no longer defined"})
        else:
            next_us = await self._walk(flow, definition, now, changed)
            happened = notify.events(flow, before, flow_before, moved)
            if not await self._notify(flow, definition, happened, now):
                # A notification could not be stored now (the gateway busy): nothing of this look is
                # saved, so the next one finds the same events and stores them all, once each.
                await asyncio.to_thread(self._release, flow.id, lease, now_us() + INTAKE_RETRY_US)
                return
        # Finished on this look or still going, a flow past its deadline is late.
        if now > flow.deadline_us and (flow.finished_us is None or flow.finished_us > flow.deadline_us):
            flow.overdue = True
        elif flow.state in ("running", "waiting"):
            next_us = min(next_us, flow.deadline_us + 1)  # look again when it becomes late
        saved = await self.store.save_async(flow, lease, next_us, now_us(), list(changed.values()))
        if not saved:
            log.warning("flow_lease_lost", flow=flow.id)
        elif flow.state in ("completed", "rejected", "failed"):
            log.info("flow_finished", flow=flow.id, name=flow.name, state=flow.state,
                     s=round((now - flow.started_us) / 1e6, 3))

    async def _walk(self, flow: FlowRow, definition: Flow, now: int, changed: dict[str, StepRow]) -> int:
        """The steps in order: the first that is not finished decides what happens now; the time
        to look again."""
        steps = {s.step: s for s in flow.steps}
        undoing = [s for s in flow.steps if s.state == "compensating"]
        if undoing:
            return await self._undoing(flow, definition, undoing, now, changed)
        flow.state = "running"
        for spec in definition.steps:
            row = steps[spec.id]
            if row.state in ("done", "skipped"):
                continue
            if row.state in ("rejected", "failed", "compensated"):  # finished: the flow is too
                return now + IDLE_US
            if row.state == "pending":
                self._mark_late(row, now, changed)
                if row.due_us > now:
                    flow.state = "waiting"
                    return row.due_us
                proceed = await self._send(flow, spec, row, self._scope(flow), now, changed)
                if proceed:
                    continue
                return row.due_us if row.state == "pending" else now + WAIT_US
            # sent: what became of its delivery
            recorded = self._settled.pop(row.delivery_id or "")
            view = settled(*recorded) if recorded is not None else None
            if view is None:
                view = await asyncio.to_thread(self.deliveries.outcome, row.delivery_id or "")
            verdict = self._verdict(flow, definition, spec, row, view, now, changed)
            if verdict is None:
                continue  # done: on to the next step
            return verdict
        self._finish(flow, "completed", now, None)
        return now + IDLE_US

    @staticmethod
    def _scope(flow: FlowRow) -> Scope:
        # A step being undone, or undone, still had its answer: its undo reads it.
        results = {s.step: s.result for s in flow.steps if s.state in ANSWERED}
        started = datetime.fromtimestamp(flow.started_us / 1e6, tz=UTC).astimezone(VIETNAM).date()
        return Scope(dossier=flow.dossier, steps=results, today=started)

    @staticmethod
    def _mark_late(row: StepRow, now: int, changed: dict[str, StepRow]) -> None:
        if row.deadline_us is not None and now > row.deadline_us and not row.overdue:
            row.overdue = True
            changed[row.step] = row

    async def _send(self, flow: FlowRow, spec: FlowStep, row: StepRow, scope: Scope, now: int,
                    changed: dict[str, StepRow]) -> bool:
        """A pending step: skipped (its condition does not hold; True: go on), or sent (False)."""
        changed[row.step] = row
        try:
            if spec.when is not None and not spec.when.holds(scope):
                row.state, row.finished_us = "skipped", now
                return True
            request = build_request(spec.input, scope)
        except (MissingSource, EvaluationError) as exc:
            self._fail_step(flow, row, now, {"code": "Server.FlowInput", "detail": str(exc)})
            return False
        sent = await self._store_request(flow, spec.service, request, f"{row.step}:{row.sends + 1}")
        if isinstance(sent, dict):
            if _passing(sent):  # the gateway itself was busy: not the step's fault, nor a send
                row.due_us, row.reason = now + INTAKE_RETRY_US, sent
                flow.state = "waiting"
                return False
            self._fail_step(flow, row, now, sent)  # refused for good: policy, schema, unknown service
            return False
        row.state, row.delivery_id, row.sends = "sent", sent, row.sends + 1
        if row.started_us is None:
            row.started_us = now
            if spec.deadline is not None:
                row.deadline_us = now + int(spec.deadline * 1e6)
        return False

    def _verdict(self, flow: FlowRow, definition: Flow, spec: FlowStep, row: StepRow,
                 view: dict[str, Any] | None, now: int, changed: dict[str, StepRow]) -> int | None:
        """A sent step's delivery: None when the step is done, else the time to look again."""
        self._mark_late(row, now, changed)
        if view is None:
            self._fail_step(flow, row, now, {"code": "Server.FlowLost",
                                             "detail": f"delivery {row.delivery_id} is gone"})
            changed[row.step] = row
            return now + IDLE_US
        state, response = view["state"], view.get("response") or {}
        status = response.get("status")
        if state == "delivered" and isinstance(status, int) and 200 <= status < 300:
            changed[row.step] = row
            malformed = _malformed(spec, response.get("body"))
            if malformed is not None:
                self._fail_step(flow, row, now, {"code": "Server.FlowAnswer", "status": status,
                                                 "detail": malformed,
                                                 "answer": _excerpt(response.get("body"))})
                return now + IDLE_US
            row.state, row.result, row.finished_us, row.reason = "done", response.get("body"), now, None
            return None
        if state == "delivered":  # the agency answered, and refused: its words are the reason
            row.state, row.finished_us = "rejected", now
            row.reason = {"status": status, "answer": response.get("body")}
            changed[row.step] = row
            return self._rejected(flow, definition, spec, now, changed)
        if state in ("dead", "cancelled"):
            error = view.get("lastError") or {"code": "Server.Cancelled", "detail": f"delivery {state}"}
            used = (row.sends - 1) * self.max_attempts + int(view.get("attempts") or 0)
            if state == "dead" and error.get("retryable") and used < spec.retry.attempts:
                wait = min(spec.retry.backoff * 2 ** (row.sends - 1), spec.retry.max_backoff)
                row.state, row.due_us, row.reason = "pending", now + int(wait * 1e6), error
                changed[row.step] = row
                flow.state = "waiting"
                return row.due_us
            self._fail_step(flow, row, now, error)
            changed[row.step] = row
            return now + IDLE_US
        # still on its way: waiting when the agency is failing, running otherwise
        flow.state = "waiting" if view.get("lastError") else "running"
        return now + min(WAIT_MAX_US, max(WAIT_US, now - (row.started_us or now)))

    def _rejected(self, flow: FlowRow, definition: Flow, spec: FlowStep, now: int,
                  changed: dict[str, StepRow]) -> int:
        """A step the agency refused: stop, or first undo the earlier steps the definition names."""
        reason = {"step": spec.id, **(changed[spec.id].reason or {})}
        undo = spec.on_reject.compensate if isinstance(spec.on_reject, Compensate) else []
        steps = {s.step: s for s in flow.steps}
        for name in undo:
            target, declared = steps[name], definition.step(name)
            if target.state == "done" and declared is not None and declared.compensation is not None:
                target.state = "compensating"
                changed[name] = target
        if not any(steps[name].state == "compensating" for name in undo):
            # nothing to undo (the steps were skipped): rejected now, not left running forever
            self._finish(flow, "rejected", now, reason)
            return now + IDLE_US
        flow.reason = reason
        flow.state = "running"
        return now  # the undo is sent at once, by the next look

    async def _undoing(self, flow: FlowRow, definition: Flow, undoing: list[StepRow], now: int,
                       changed: dict[str, StepRow]) -> int:
        """Steps being undone after a rejection: send each undo once, wait for their answers, then
        the flow is rejected (its reason set when the rejection came)."""
        scope = self._scope(flow)
        waiting = False
        for row in undoing:
            changed[row.step] = row
            spec = definition.step(row.step)
            compensation = spec.compensation if spec is not None else None
            if compensation is None:  # the definition changed since: say so rather than crash each look
                row.state, row.reason = "done", {"code": "Server.FlowUndoUnknown", "undo": "failed",
                                                 "detail": f"step {row.step} no longer declares its undo"}
                continue
            if row.undo_delivery_id is None:
                try:
                    request = build_request(compensation.input, scope)
                except (MissingSource, EvaluationError) as exc:
                    row.state, row.reason = "done", {"code": "Server.FlowInput", "detail": str(exc),
                                                     "undo": "failed"}
                    continue
                sent = await self._store_request(flow, compensation.service, request, f"{row.step}:undo")
                if isinstance(sent, dict) and not _passing(sent):
                    row.state, row.reason = "done", {**sent, "undo": "failed"}
                elif isinstance(sent, dict):
                    waiting = True  # the gateway was busy: the next look stores it
                else:
                    row.undo_delivery_id = sent
                    waiting = True
                continue
            view = await asyncio.to_thread(self.deliveries.outcome, row.undo_delivery_id)
            state = view["state"] if view is not None else None
            response = (view or {}).get("response") or {}
            status = response.get("status")
            if state == "delivered" and isinstance(status, int) and 200 <= status < 300:
                row.state = "compensated"
            elif state in ("delivered", "dead", "cancelled", None):
                # refused, undeliverable or gone: say so, the step stays done
                row.state = "done"
                row.reason = {"undo": "failed", "status": status,
                              "answer": response.get("body") if view else None,
                              "error": (view or {}).get("lastError")}
            else:  # pending or in flight: its answer is still to come
                waiting = True
        if waiting:
            return now + WAIT_US
        self._finish(flow, "rejected", now, flow.reason)
        return now + IDLE_US

    async def _notify(self, flow: FlowRow, definition: Flow, happened: list[notify.Event],
                      now: int) -> bool:
        """Store the notifications the look's events call for; False when one was refused by a
        passing trouble (store them again later). A refusal for good (no rule allows it, a schema
        it fails) is logged and left: the flow itself goes on."""
        for send in notify.due(definition, flow, happened, self._scope(flow), now, self._merges):
            records = []
            for part, scope in send.parts:
                try:
                    records.append(build_request(part.input, scope))
                except (MissingSource, EvaluationError) as exc:
                    log.error("flow_notification_unbuilt", flow=flow.id, notify=part.id, error=str(exc))
            if not records:
                continue
            request = records[0] if len(records) == 1 else records
            sent = await self._store_request(flow, send.service, request, send.key)
            if isinstance(sent, dict):
                if _passing(sent):
                    return False
                log.error("flow_notification_refused", flow=flow.id, notify=send.ids,
                          service=send.service, code=sent.get("code"), status=sent.get("status"))
        return True

    def _merges(self, service_id: str) -> bool:
        """Whether the service takes several progress records in one request (``notify``)."""
        service = self.config.service(service_id)
        return service is not None and service.dossier is not None and service.dossier.message == "progress"

    def _release(self, flow_id: str, lease: str, next_us: int) -> None:
        """Give a leased flow back unchanged, due at ``next_us``."""
        fresh = self.store.get(flow_id)
        if fresh is not None:
            self.store.save(fresh, lease, next_us, now_us())

    async def _store_request(self, flow: FlowRow, service_id: str, request: Mapping[str, Any] | list[Any],
                             key: str) -> str | dict[str, Any]:
        """A step's request stored as a delivery through the pipeline: its id, or the refusal."""
        if self._pipeline is None:
            raise RuntimeError("the flow engine runs no pipeline: attach it first")
        exchange = Exchange(id=new_id(), protocol="flow", received_us=now_us(), method="POST",
                            service_id=service_id, body=orjson.dumps(request),
                            content_type="application/json",
                            issue=f"{flow.dossier_code} flow/{flow.id}",
                            idempotency_key=f"flow:{flow.id}:{key}")
        people = _FLOW_SUBJECTS.set(tuple(flow.subjects))
        try:
            rendered = await self._pipeline.run(exchange, render)
        finally:
            _FLOW_SUBJECTS.reset(people)
        answer = orjson.loads(rendered.body) if rendered.body else {}
        if rendered.status == 202 and isinstance(answer, dict) and answer.get("deliveryId"):
            return str(answer["deliveryId"])
        return {"code": answer.get("code") if isinstance(answer, dict) else None, "status": rendered.status,
                "detail": answer.get("detail") if isinstance(answer, dict) else None}

    def _fail_step(self, flow: FlowRow, row: StepRow, now: int, reason: dict[str, Any]) -> None:
        row.state, row.finished_us, row.reason = "failed", now, reason
        self._finish(flow, "failed", now, {"step": row.step, **reason})

    @staticmethod
    def _finish(flow: FlowRow, state: str, now: int, reason: Any) -> None:
        flow.state, flow.finished_us, flow.reason = state, now, reason


def _refused(ctx: Result) -> bool:
    """Which of the engine's intakes become an audit leaf: the refused (by a policy, a schema, the
    queue), an exchange denied. An accepted one hands the request to the delivery queue inside
    the gateway, with no caller to answer; the exchange is the delivery's, and each of its attempts
    is a leaf (protocol ``delivery``) with the same purpose, rule and data subjects. A leaf for the
    hand-over too cost a drain 6-11 % of the gateway's CPU a flow and 13-15 % of the CPU under the
    write lock (docs/benchmarks.md, "Joint procedures")."""
    return ctx.error is not None


def _passing(refusal: Mapping[str, Any]) -> bool:
    """A refusal at intake that may pass by itself (the database or the audit log busy, a rate
    limit): the step waits and is stored again, rather than failing the whole joint procedure."""
    status = refusal.get("status")
    return isinstance(status, int) and (status >= 500 or status == 429)


def _malformed(spec: FlowStep, answer: Any) -> str | None:
    """Why a 2xx answer cannot be the step's result, or None: later steps read its fields, so it is
    a JSON object holding every field the step declares it produces."""
    if not isinstance(answer, dict):
        return f"the agency's answer is not a JSON object ({type(answer).__name__})"
    missing = [f for f in spec.produces if resolve(answer, f) is MISSING]
    if missing:
        return f"the agency's answer lacks {', '.join(missing)}, which step {spec.id} produces"
    return None


def _excerpt(answer: Any, limit: int = 500) -> Any:
    """An answer kept as a reason: as it came, cut when it is long text."""
    if isinstance(answer, str) and len(answer) > limit:
        return answer[:limit] + "…"
    return answer
