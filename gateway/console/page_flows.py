"""Joint procedures: the flows with filters and their KPIs, and one flow's timeline step by step.

Read-only, for auditors and operators. The joint dossier is never read here: the list reads the
flows' summary columns, and the timeline shows each step's agency, times and the agency's answer or
refusal, with personal ids masked (``mask``).
"""

from __future__ import annotations

from typing import Any

from starlette.responses import Response

from gateway.console.logquery import local_text
from gateway.console.web import Ctx, PageRoute
from gateway.delivery.model import now_us
from gateway.flows.routes import STATES
from gateway.flows.stats import agency_of

__all__ = ["KPI_PERIODS", "ROUTES", "elapsed", "fields", "mask", "seconds_text"]

KPI_PERIODS = ("day", "month", "all")
PAGE = 100
PERSONAL_ID = "SoDinhDanh"


def mask(value: Any) -> Any:
    """``value`` with every personal id (``SoDinhDanh``, at any depth) masked but for its last 3
    digits. Minimisation (Decree 13/2023): an auditor or operator following a flow needs to see that
    the child got an id, and which one to tell apart, not the number itself."""
    if isinstance(value, dict):
        return {k: (_masked(v) if k == PERSONAL_ID else mask(v)) for k, v in value.items()}
    if isinstance(value, list):
        return [mask(v) for v in value]
    return value


def _masked(value: Any) -> str:
    text = "" if value is None else str(value)
    return "•" * max(0, len(text) - 3) + text[-3:]


def fields(value: Any, prefix: str = "") -> list[tuple[str, str]]:
    """An answer as (dotted path, text) pairs, for a definition list."""
    if isinstance(value, dict):
        return [pair for k, v in value.items() for pair in fields(v, f"{prefix}{k}.")]
    if isinstance(value, list):
        return [pair for i, v in enumerate(value) for pair in fields(v, f"{prefix}{i}.")]
    return [(prefix.rstrip("."), "–" if value is None else str(value))]


def elapsed(start_us: int | None, end_us: int | None) -> str:
    """How long from start to end (or until now): ``2d 03h``, ``3h 05m``, ``4m 10s``."""
    if start_us is None:
        return "–"
    seconds = max(0, ((end_us if end_us is not None else now_us()) - start_us) // 1_000_000)
    days, rest = divmod(seconds, 86_400)
    hours, rest = divmod(rest, 3_600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days}d {hours:02d}h"
    return f"{hours}h {minutes:02d}m" if hours else f"{minutes}m {secs:02d}s"


def seconds_text(seconds: float | None) -> str:
    """A KPI's time in seconds, as ``elapsed`` writes a span."""
    return "–" if seconds is None else elapsed(0, int(seconds * 1_000_000))


def _names(ctx: Ctx) -> dict[str, str]:
    """Member id (``VN/GOV/000.00.00.G15``) -> the agency's name, as the catalog gives it."""
    return {m.id: m.name or m.id for m in ctx.config.members}


def _when(us: int | None) -> str:
    return "–" if us is None else local_text(us)


def _late(deadline_us: int | None, finished_us: int | None, marked: bool, now: int) -> bool:
    """Overdue: marked so, or still going past the deadline."""
    return marked or (finished_us is None and deadline_us is not None and deadline_us < now)


def _listed(row: dict[str, Any], now: int) -> dict[str, Any]:
    return {**row, "started": _when(row["started_us"]),
            "elapsed": elapsed(row["started_us"], row["finished_us"]),
            "late": _late(row["deadline_us"], row["finished_us"], bool(row["overdue"]), now)}


def flows(ctx: Ctx) -> Response:
    definitions = ctx.data.flow_definitions
    name = ctx.query.get("flow", "")
    name = name if name in definitions else ""
    state = ctx.query.get("state", "")
    state = state if state in STATES else ""
    period = ctx.query.get("period", "month")
    period = period if period in KPI_PERIODS else "month"
    now = now_us()
    items = [_listed(row, now) for row in ctx.data.flow_list(name=name or None, state=state or None,
                                                               limit=PAGE)]
    ctx.note.purpose = " ".join(f"{k}={v}" for k, v in (("flow", name), ("state", state), ("period", period))
                                if v)
    kpis = ctx.data.flow_kpis(period, now)
    return ctx.render("flows.html", items=items, name=name, state=state, states=STATES, period=period,
                      periods=KPI_PERIODS, titles={n: f.title for n, f in definitions.items()},
                      kpis=kpis["flows"], agencies=kpis["agencies"], agency_names=_names(ctx),
                      secs=seconds_text)


def flow(ctx: Ctx) -> Response:
    flow_id = ctx.request.path_params["flow_id"]
    ctx.note.purpose = f"flow {flow_id}"
    found = ctx.data.flow(flow_id)
    if found is None:
        ctx.note.error = "Client.NotFound"
        return ctx.error(404, "flows.not_found")
    now = now_us()
    steps = [{"step": s.step, "service": s.service, "agency": agency_of(s.service), "state": s.state,
              "started": _when(s.started_us), "finished": _when(s.finished_us),
              "elapsed": elapsed(s.started_us, s.finished_us) if s.started_us is not None else "–",
              "deadline": _when(s.deadline_us), "late": _late(s.deadline_us, s.finished_us, s.overdue, now),
              "result": fields(mask(s.result)) if s.result is not None else [],
              "reason": fields(mask(s.reason)) if s.reason is not None else []}
             for s in found.steps]
    definition = ctx.data.flow_definitions.get(found.name)
    ended = found.state not in ("running", "waiting")
    # The flow's own row, without the joint dossier: nothing of it is shown.
    summary = {"id": found.id, "name": found.name, "dossier_code": found.dossier_code, "client": found.client,
               "state": found.state, "started": _when(found.started_us), "finished": _when(found.finished_us),
               "deadline": _when(found.deadline_us),
               "elapsed": elapsed(found.started_us, found.finished_us if ended else None),
               "late": _late(found.deadline_us, found.finished_us if ended else None, found.overdue, now),
               "reason": fields(mask(found.reason)) if found.reason is not None else []}
    told = [{"notify": n["notify"], "at": n["at"], "step": n["step"] or "", "service": n["service"],
             "state": n["delivery"]["state"] if n["delivery"] else None,
             "delivered": n["delivery"]["delivered"] if n["delivery"] else None}
            for n in ctx.data.flow_notifications(found)]
    return ctx.render("flow.html", flow=summary, steps=steps, notifications=told,
                      title=definition.title if definition is not None else None, agency_names=_names(ctx))


ROUTES = (
    PageRoute("/flows", flows, "flows", "flows"),
    PageRoute("/flows/{flow_id}", flow, "flows", "flows.show"),
)
