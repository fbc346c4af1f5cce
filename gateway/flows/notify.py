"""What a flow tells others as it goes: the events of one look at a flow, and the notifications
(``notify:`` in its definition) each event sends.

Pure functions: the engine (gateway/flows/engine.py) snapshots the steps' states before it moves a
flow, and after it asks ``due`` which notifications the changes call for. Each is a request built
from the definition's mapping (the dossier, the steps' answers, and ``flow.*`` / ``event.*``) and
stored as a delivery under a key made of the flow, the notification and the event, so a look
repeated after a crash sends nothing twice.

A completed flow's last progress update and its end's, when both go to one service that takes a
list of progress records (the portal's ``CapNhatTienDoHoSoMC``), go as one request: the look that
sees the last step done is always the one that completes the flow, so a look repeated after a crash
makes the same request under the same key.

Times are the national portal's ``yyyyMMddHHmmss`` in Vietnamese time, the format the portal and
the one-stop systems read.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from gateway.flows.definition import Flow, Notify
from gateway.flows.mapping import Scope
from gateway.flows.store import FlowRow, StepRow
from gateway.identifiers import ServiceId
from gateway.ratelimit import VN_OFFSET

__all__ = ["Event", "Merges", "Send", "due", "events", "flow_facts", "portal_time", "sent_so_far"]

FINISHED = ("completed", "rejected", "failed")
# Whether a service takes several progress records in one request (the catalog's ``dossier:
# {message: progress}``).
Merges = Callable[[str], bool]


@dataclass(frozen=True)
class Event:
    at: str  # start | step | end
    step: StepRow | None = None


@dataclass(frozen=True)
class Send:
    """One request to store: where it goes, the notifications whose records it carries with what
    each reads (one, or a completed flow's last progress and its end's), and its idempotency key's
    tail."""

    parts: tuple[tuple[Notify, Scope], ...]
    service: str
    key: str

    @property
    def ids(self) -> str:
        return "+".join(notify.id for notify, _ in self.parts)


def portal_time(us: int | None) -> str | None:
    if us is None:
        return None
    # by the fixed offset: a zone conversion per time was a sixtieth of a flow's event-loop time
    return time.strftime("%Y%m%d%H%M%S", time.gmtime(us // 1_000_000 + VN_OFFSET))


def events(flow: FlowRow, before: Mapping[str, str], flow_before: str, moved: bool) -> list[Event]:
    """What happened in one look: the start (the first look that moved it), each step that reached
    an end state, the flow's end, in that order. ``before`` are the steps' states and ``flow_before``
    the flow's state as the look found them; ``moved`` whether any step had left ``pending``."""
    out: list[Event] = []
    if not moved:
        out.append(Event("start"))
    for row in flow.steps:
        if row.state != before.get(row.step) and row.state in ("done", "rejected", "failed"):
            out.append(Event("step", row))
    if flow.state in FINISHED and flow_before not in FINISHED:
        out.append(Event("end"))
    return out


def flow_facts(flow: FlowRow, definition: Flow) -> dict[str, Any]:
    """``flow.<field>`` as notifications read it."""
    facts: dict[str, Any] = {
        "id": flow.id, "name": flow.name, "title": definition.title.vi, "state": flow.state,
        "client": flow.client, "location": f"/flows/{flow.id}", "started": portal_time(flow.started_us),
        "deadline": portal_time(flow.deadline_us), "overdue": flow.overdue}
    if flow.finished_us is not None:
        facts["finished"] = portal_time(flow.finished_us)
    return facts


def _event_facts(event: Event, flow: FlowRow, definition: Flow, now: int) -> dict[str, Any]:
    facts: dict[str, Any] = {"at": event.at, "time": portal_time(now)}
    row = event.step
    if row is None:
        facts.update(state=flow.state, description=definition.title.vi,
                     started=portal_time(flow.started_us), deadline=portal_time(flow.deadline_us))
        reason = _reason_text(flow.reason) if event.at == "end" else None
    else:
        spec = definition.step(row.step)
        facts.update(step=row.step, state=row.state, service=row.service,
                     agency=str(ServiceId.parse(row.service).subsystem_id.member),
                     description=(spec.description if spec is not None else "") or row.step,
                     started=portal_time(row.started_us), deadline=portal_time(row.deadline_us))
        reason = _reason_text(row.reason) if row.state != "done" else None
    if reason:
        facts["reason"] = reason
    return {k: v for k, v in facts.items() if v is not None}


def _reason_text(reason: Any) -> str | None:
    """A refusal as one line for a person: the agency's own words where it gave them."""
    if not isinstance(reason, dict):
        return None
    answer = reason.get("answer")
    if isinstance(answer, dict):
        for key in ("LyDo", "message", "detail"):
            if isinstance(answer.get(key), str) and answer[key]:
                return str(answer[key])[:500]
    for key in ("detail", "code"):
        if isinstance(reason.get(key), str) and reason[key]:
            return str(reason[key])[:500]
    return None


def due(definition: Flow, flow: FlowRow, happened: list[Event], base: Scope, now: int,
        merges: Merges = lambda _service: False) -> list[Send]:
    """The requests the events call for, in the events' order and the definition's."""
    if not definition.notify or not happened:
        return []
    flow_map = flow_facts(flow, definition)
    sends = []
    for group in _requests(definition, flow, happened, merges):
        parts = tuple((notify, Scope(dossier=base.dossier, steps=base.steps, today=base.today, flow=flow_map,
                                     event=_event_facts(event, flow, definition, now)))
                      for event, notify in group)
        sends.append(Send(parts, group[0][1].target(flow.client), _group_key(group)))
    return sends


def sent_so_far(definition: Flow, flow: FlowRow,
                merges: Merges = lambda _service: False) -> list[dict[str, Any]]:
    """The notifications the flow's events have called for up to now (for its view): id, event,
    step, service and the idempotency key tail of the request that carries it, in the order they
    were sent."""
    happened: list[Event] = []
    if any(s.state != "pending" or s.sends for s in flow.steps):
        happened.append(Event("start"))
    for row in flow.steps:
        # an undone step had answered first: its "done" was told
        state = "done" if row.state in ("compensating", "compensated") else row.state
        if state in ("done", "rejected", "failed"):
            happened.append(Event("step", StepRow(row.step, row.position, row.service, state)))
    if flow.state in FINISHED:
        happened.append(Event("end"))
    out = []
    for group in _requests(definition, flow, happened, merges):
        key = _group_key(group)
        for event, notify in group:
            out.append({"notify": notify.id, "at": event.at,
                        "step": event.step.step if event.step is not None else None,
                        "service": notify.target(flow.client), "key": key})
    return out


def _requests(definition: Flow, flow: FlowRow, happened: list[Event],
              merges: Merges) -> list[list[tuple[Event, Notify]]]:
    """The notifications the events call for, grouped by the request that carries them: each alone,
    but a completed flow's end notification joins its last step's notification to the same service
    when that service takes a list of records. Only a completion: its look is always the one that
    saw the last step done, whereas a refusal's end may come a look later (after an undo), and a
    look repeated after a crash could then group what the first look had sent alone."""
    groups = [[(event, notify)] for event in happened for notify in _called_for(definition, event)]
    last_step = next((e for e in reversed(happened) if e.at == "step"), None)
    if flow.state != "completed" or last_step is None or happened[-1].at != "end":
        return groups
    out: list[list[tuple[Event, Notify]]] = []
    for group in groups:
        event, notify = group[0]
        service = notify.target(flow.client)
        if event.at == "end" and merges(service):
            host = next((g for g in out if g[0][0] is last_step and len(g) == 1
                         and g[0][1].target(flow.client) == service), None)
            if host is not None:
                host.append((event, notify))
                continue
        out.append(group)
    return out


def _group_key(group: list[tuple[Event, Notify]]) -> str:
    (event, notify), more = group[0], group[1:]
    return _key(notify, event) + "".join(f"+{n.id}" for _, n in more)


def _called_for(definition: Flow, event: Event) -> list[Notify]:
    out = []
    for notify in definition.notify:
        if notify.at != event.at:
            continue
        if event.step is not None and ((notify.steps is not None and event.step.step not in notify.steps)
                                       or event.step.state not in notify.states):
            continue
        out.append(notify)
    return out


def _key(notify: Notify, event: Event) -> str:
    return f"notify:{notify.id}" if event.step is None else \
        f"notify:{notify.id}:{event.step.step}:{event.step.state}"
