"""The joint procedures' KPIs, per flow kind and per agency, over periods in Vietnamese time.

Per flow kind (its name) and period (a day ``2026-06-09``, a month ``2026-06``, a quarter, a year or
``all``):

- ``started``: flows whose start falls in the period; of those, ``running`` and ``waiting`` (their
  state now) and ``overdue`` (marked overdue, or still going past their deadline);
- ``completed``, ``rejected``, ``failed``: flows that ended so in the period (by their end);
- ``medianSeconds``, ``p90Seconds``: time end to end (started -> finished) of the completed ones;
- ``withinLegalLimit`` (share ``withinLegalLimitShare``): completed ones that took no longer than
  the definition's ``legal_limit`` (the seeds' 7 days); ``withinDeadline``: finished by their
  deadline (the definition's ``deadline`` from the start). Shares are of ``completed``; null when
  there is nothing to divide, or, for the legal limit, when no definition of that name is loaded.

Each flow item lists its ``steps`` (per step id and service) and the report lists ``agencies`` (a
step's service's member, ``VN/GOV/000.00.00.G15``) with the same keys at the step level: an agency's
``started`` are the steps it was sent, ``completed`` those it answered (``done``), ``rejected`` those
it refused, ``withinDeadline`` those finished by the step's own deadline (a step without one always
is), and the times are a step's started -> finished.

Counts are SQL aggregates over day buckets (Asia/Ho_Chi_Minh is UTC+7 all year round, so a
Vietnamese day is a whole number of microseconds from the epoch), folded into longer periods here;
the percentiles come from the newest ``SAMPLE`` finished flows and steps of the window.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from gateway.console.overview import percentile  # the nearest-rank percentile the latency panel uses
from gateway.delivery.messages import VIETNAM
from gateway.delivery.stats import PERIODS as DOSSIER_PERIODS
from gateway.delivery.stats import bucket as dossier_bucket
from gateway.flows.tables import flow_steps, flows
from gateway.ratelimit import VN_OFFSET

__all__ = ["PERIODS", "SAMPLE", "FlowKpi", "StepKpi", "agency_of", "bucket", "moment_us", "report"]

PERIODS = ("day", *DOSSIER_PERIODS)
SAMPLE = 50_000
DAY_US = 86_400_000_000
ACTIVE = ("running", "waiting")
ENDED = ("completed", "rejected", "failed")
STEP_ENDED = {"done": "completed", "rejected": "rejected", "failed": "failed"}
_EPOCH = date(1970, 1, 1)
# Inline constants, not bound parameters: PostgreSQL matches a GROUP BY expression to the selected
# one only when both are written alike, and two bound parameters are two different placeholders.
_OFFSET = sa.literal_column(str(VN_OFFSET * 1_000_000), sa.BigInteger)
_DAY = sa.literal_column(str(DAY_US), sa.BigInteger)


def _day(column: Any) -> Any:
    return (column + _OFFSET) // _DAY


def bucket(day: int, period: str) -> str:
    """The period that a Vietnamese day (days since 1970-01-01) falls in."""
    moment = (_EPOCH + timedelta(days=day)).strftime("%Y%m%d000000")
    return f"{moment[:4]}-{moment[4:6]}-{moment[6:8]}" if period == "day" else dossier_bucket(moment, period)


def moment_us(moment: str | None) -> int | None:
    """A portal moment (``yyyyMMddHHmmss``, Vietnamese time) as microseconds since the epoch."""
    if moment is None:
        return None
    return int(datetime.strptime(moment, "%Y%m%d%H%M%S").replace(tzinfo=VIETNAM).timestamp()) * 1_000_000


def agency_of(service_id: str) -> str:
    """The member that runs a service: ``VN/GOV/000.00.00.G15/HOTICH/DangKyKhaiSinh`` ->
    ``VN/GOV/000.00.00.G15``."""
    return "/".join(service_id.split("/")[:3])


def _share(part: int, whole: int) -> float | None:
    return round(part / whole, 4) if whole else None


def _seconds(us: int | None) -> float | None:
    return None if us is None else round(us / 1e6, 3)


@dataclass
class _Counts:
    started: int = 0
    running: int = 0
    waiting: int = 0
    overdue: int = 0
    completed: int = 0
    rejected: int = 0
    failed: int = 0
    within_deadline: int = 0
    times: list[int] = field(default_factory=list)  # µs, of the completed ones in the sample

    def figures(self) -> dict[str, Any]:
        return {"started": self.started, "running": self.running, "waiting": self.waiting,
                "overdue": self.overdue, "completed": self.completed, "rejected": self.rejected,
                "failed": self.failed, "medianSeconds": _seconds(percentile(self.times, 50)),
                "p90Seconds": _seconds(percentile(self.times, 90)), "withinDeadline": self.within_deadline,
                "withinDeadlineShare": _share(self.within_deadline, self.completed)}


@dataclass
class StepKpi(_Counts):
    step: str = ""
    service: str = ""

    def as_dict(self) -> dict[str, Any]:
        return {"step": self.step, "agency": agency_of(self.service), "service": self.service,
                **self.figures()}


@dataclass
class FlowKpi(_Counts):
    flow: str = ""
    period: str = ""
    legal_limit_us: int | None = None
    within_legal_limit: int = 0
    steps: dict[tuple[str, str], StepKpi] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        known = self.legal_limit_us is not None
        return {"flow": self.flow, "period": self.period, **self.figures(),
                "legalLimitSeconds": _seconds(self.legal_limit_us),
                "withinLegalLimit": self.within_legal_limit if known else None,
                "withinLegalLimitShare": _share(self.within_legal_limit, self.completed) if known else None,
                "steps": [self.steps[k].as_dict() for k in sorted(self.steps, key=lambda k: k[0])]}


@dataclass
class _Query:
    """What one report asks: the window (µs, start inclusive, end exclusive) and the filters."""

    start_us: int | None
    end_us: int | None
    flow: str | None
    agency: str | None
    now_us: int

    def inside(self, column: Any) -> list[Any]:
        conds = [column.is_not(None)]
        if self.start_us is not None:
            conds.append(column >= self.start_us)
        if self.end_us is not None:
            conds.append(column < self.end_us)
        return conds

    def flow_filters(self) -> list[Any]:
        conds = [] if self.flow is None else [flows.c.name == self.flow]
        if self.agency is not None:  # flows that sent that agency a step
            conds.append(sa.exists().where(flow_steps.c.flow_id == flows.c.id,
                                           flow_steps.c.started_us.is_not(None), self._at_agency()))
        return conds

    def step_filters(self) -> list[Any]:
        conds = [] if self.flow is None else [flows.c.name == self.flow]
        if self.agency is not None:
            conds.append(self._at_agency())
        return conds

    def _at_agency(self) -> Any:
        return flow_steps.c.service.startswith(f"{self.agency}/", autoescape=True)


def _count(cond: Any) -> Any:
    return sa.func.sum(sa.case((cond, 1), else_=0))


def report(engine: Engine, *, period: str = "month", start: str | None = None, end: str | None = None,
           flow: str | None = None, agency: str | None = None, limits: Mapping[str, float] | None = None,
           now_us: int) -> dict[str, Any]:
    """The KPIs as ``{"flows": [...], "agencies": [...]}``; ``start`` (inclusive) and ``end``
    (exclusive) are portal moments, ``limits`` each flow's legal limit in seconds (its definition's
    ``legal_limit``), ``now_us`` the moment a flow still going is overdue after its deadline."""
    if period not in PERIODS:
        raise ValueError(f"period must be one of {', '.join(PERIODS)}")
    ask = _Query(moment_us(start), moment_us(end), flow, agency, now_us)
    limits_us = {name: int(seconds * 1_000_000) for name, seconds in (limits or {}).items()}
    table: dict[tuple[str, str], FlowKpi] = {}
    agencies: dict[tuple[str, str], StepKpi] = {}

    def kpi(name: str, day: int) -> FlowKpi:
        key = (name, bucket(int(day), period))
        found = table.get(key)
        if found is None:
            found = table[key] = FlowKpi(flow=name, period=key[1], legal_limit_us=limits_us.get(name))
        return found

    def step_kpis(name: str, step: str, service: str, day: int) -> tuple[StepKpi, StepKpi]:
        owner = kpi(name, day)
        one = owner.steps.setdefault((step, service), StepKpi(step=step, service=service))
        whole = agencies.setdefault((agency_of(service), owner.period), StepKpi(service=service))
        return one, whole

    with engine.connect() as conn:
        _fold_flows(conn, ask, limits_us, kpi)
        _fold_steps(conn, ask, step_kpis)
    return {"flows": [table[k].as_dict() for k in sorted(table)],
            "agencies": [{"agency": k[0], "period": k[1], **{n: v for n, v in agencies[k].as_dict().items()
                                                              if n not in ("step", "agency", "service")}}
                         for k in sorted(agencies)]}


def _fold_flows(conn: sa.Connection, ask: _Query, limits_us: Mapping[str, int],
                kpi: Callable[[str, int], FlowKpi]) -> None:
    f = flows.c
    late = sa.or_(f.overdue, sa.and_(f.state.in_(ACTIVE), f.deadline_us < ask.now_us))
    day = _day(f.started_us)
    for name, state, d, n, overdue in conn.execute(
            sa.select(f.name, f.state, day, sa.func.count(), _count(late))
            .where(*ask.inside(f.started_us), *ask.flow_filters()).group_by(f.name, f.state, day)):
        k = kpi(name, d)
        k.started += n
        k.overdue += int(overdue or 0)
        if state in ACTIVE:
            setattr(k, state, getattr(k, state) + n)
    legal = (sa.case({name: limit for name, limit in limits_us.items()}, value=f.name, else_=None)
             if limits_us else sa.null())
    day = _day(f.finished_us)
    for name, state, d, n, in_deadline, in_legal in conn.execute(
            sa.select(f.name, f.state, day, sa.func.count(), _count(f.finished_us <= f.deadline_us),
                      _count(f.finished_us - f.started_us <= legal))
            .where(*ask.inside(f.finished_us), f.state.in_(ENDED), *ask.flow_filters())
            .group_by(f.name, f.state, day)):
        k = kpi(name, d)
        setattr(k, state, getattr(k, state) + n)
        if state == "completed":
            k.within_deadline += int(in_deadline or 0)
            k.within_legal_limit += int(in_legal or 0)
    for name, d, took in conn.execute(
            sa.select(f.name, day, f.finished_us - f.started_us)
            .where(*ask.inside(f.finished_us), f.state == "completed", *ask.flow_filters())
            .order_by(f.finished_us.desc()).limit(SAMPLE)):
        kpi(name, d).times.append(int(took))


def _fold_steps(conn: sa.Connection, ask: _Query,
                step_kpis: Callable[[str, str, str, int], tuple[StepKpi, StepKpi]]) -> None:
    s, f = flow_steps.c, flows.c
    joined = flow_steps.join(flows, flows.c.id == flow_steps.c.flow_id)
    late = sa.or_(s.overdue, sa.and_(s.finished_us.is_(None), s.deadline_us < ask.now_us))
    day = _day(s.started_us)
    for name, step, service, d, n, running, overdue in conn.execute(
            sa.select(f.name, s.step, s.service, day, sa.func.count(), _count(s.finished_us.is_(None)),
                      _count(late)).select_from(joined)
            .where(*ask.inside(s.started_us), *ask.step_filters()).group_by(f.name, s.step, s.service, day)):
        for k in step_kpis(name, step, service, d):
            k.started += n
            k.running += int(running or 0)
            k.overdue += int(overdue or 0)
    day = _day(s.finished_us)
    in_deadline = _count(sa.or_(s.deadline_us.is_(None), s.finished_us <= s.deadline_us))
    for name, step, service, state, d, n, on_time in conn.execute(
            sa.select(f.name, s.step, s.service, s.state, day, sa.func.count(), in_deadline)
            .select_from(joined)
            .where(*ask.inside(s.finished_us), s.state.in_(STEP_ENDED), *ask.step_filters())
            .group_by(f.name, s.step, s.service, s.state, day)):
        for k in step_kpis(name, step, service, d):
            figure = STEP_ENDED[state]
            setattr(k, figure, getattr(k, figure) + n)
            if figure == "completed":
                k.within_deadline += int(on_time or 0)
    for name, step, service, d, took in conn.execute(
            sa.select(f.name, s.step, s.service, day, s.finished_us - s.started_us).select_from(joined)
            .where(*ask.inside(s.finished_us), s.started_us.is_not(None), s.state == "done",
                   *ask.step_filters())
            .order_by(s.finished_us.desc()).limit(SAMPLE)):
        for k in step_kpis(name, step, service, d):
            k.times.append(int(took))


def flatten(items: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """Flow items and their steps as rows of one table (a step row names its step), for printing."""
    rows: list[dict[str, Any]] = []
    for item in items:
        rows.append({k: v for k, v in item.items() if k != "steps"})
        rows += [{"flow": item["flow"], "period": item["period"], **step} for step in item["steps"]]
    return rows

