"""The seeds' measures of success, per agency and period, from the dossiers that went through.

For each agency (the code of the province whose one-stop system holds the dossier) and each period
(a month ``2026-06``, a quarter ``2026-Q2``, a year ``2026``, or ``all``), in Vietnamese time:

- ``received``: dossiers whose reception date (``NgayTiepNhan``) falls in the period;
- ``receivedOnline``, ``onlineShare``: of those, how many were filed online (``HinhThuc`` 1);
- ``resolved``: dossiers whose resolution (status 9 processed or 10 result returned; dated by the
  dossier's ``NgayKetThucXuLy`` or ``NgayTra``, else by the step that took it there) falls in the
  period;
- ``resolvedOnTime``, ``onTimeShare``: of those, how many were resolved on or before their due date
  (``NgayHenTra``).

A share is null when there is nothing to divide. The facts come from ``delivery_dossiers``, which
holds the latest state of each dossier as delivered (see ``dossiers.track``).

Agencies change (gateway/agencies.py): a dossier counts for the agency recorded when it went through,
and stays there. Per recorded agency (the default), an item of an agency that has since ended says so
(``"former": true`` and, when its work went to one agency, ``"successor"``: that agency's current
code). Rolled up (``rollup``), each recorded agency is counted under the agency current today that
took its work over (``Agencies.rolled_up``: a split agency stays itself), the figures are summed per
successor and period, and each item names the recorded agencies whose dossiers it counts
(``"includes"``). Filtering by an agency with the roll-up selects its group: the current agency it
rolls up into and every former agency that rolls up there.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import date
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from gateway.delivery.tables import delivery_dossiers

if TYPE_CHECKING:
    from gateway.agencies import Agencies

__all__ = ["PERIODS", "Kpi", "Succession", "bucket", "compute", "report"]

PERIODS = ("month", "quarter", "year", "all")


@dataclass
class Kpi:
    agency: str
    period: str
    received: int = 0
    received_online: int = 0
    resolved: int = 0
    resolved_on_time: int = 0
    includes: set[str] | None = None  # rolled up: the recorded agencies counted here

    def as_dict(self) -> dict[str, Any]:
        out = {"agency": self.agency, "period": self.period, "received": self.received,
               "receivedOnline": self.received_online,
               "onlineShare": _share(self.received_online, self.received),
               "resolved": self.resolved, "resolvedOnTime": self.resolved_on_time,
               "onTimeShare": _share(self.resolved_on_time, self.resolved)}
        if self.includes is not None:
            out["includes"] = sorted(self.includes)
        return out


def _share(part: int, whole: int) -> float | None:
    return round(part / whole, 4) if whole else None


def bucket(moment: str, period: str) -> str:
    """The period a ``yyyyMMddHHmmss`` moment falls in."""
    if period == "month":
        return f"{moment[:4]}-{moment[4:6]}"
    if period == "quarter":
        return f"{moment[:4]}-Q{(int(moment[4:6]) - 1) // 3 + 1}"
    if period == "year":
        return moment[:4]
    return "all"


def compute(rows: Iterable[dict[str, Any]], *, period: str = "month", start: str | None = None,
            end: str | None = None, rollup: Callable[[str], str] | None = None) -> list[Kpi]:
    """KPIs from dossier facts; ``start`` (inclusive) and ``end`` (exclusive) are portal moments.

    With ``rollup`` (recorded agency code -> the code its figures count under), rows are summed per
    rolled-up agency and period, and each item's ``includes`` names the recorded agencies counted in
    it; without, items are per recorded agency."""
    if period not in PERIODS:
        raise ValueError(f"period must be one of {', '.join(PERIODS)}")

    def inside(moment: str | None) -> bool:
        return moment is not None and (start is None or moment >= start) and (end is None or moment < end)

    table: dict[tuple[str, str], Kpi] = {}

    def kpi(recorded: str, moment: str) -> Kpi:
        agency = recorded if rollup is None else rollup(recorded)
        key = (agency, bucket(moment, period))
        found = table.get(key)
        if found is None:
            found = table[key] = Kpi(*key, includes=None if rollup is None else set())
        if found.includes is not None:
            found.includes.add(recorded)
        return found

    for row in rows:
        received, resolved = row.get("received_at"), row.get("resolved_at")
        if inside(received):
            k = kpi(row["agency"], received)  # type: ignore[arg-type]
            k.received += 1
            k.received_online += bool(row.get("online"))
        if inside(resolved) and row.get("status") in (9, 10):
            k = kpi(row["agency"], resolved)  # type: ignore[arg-type]
            k.resolved += 1
            due = row.get("due_at")
            k.resolved_on_time += bool(due and resolved <= due)
    return [table[key] for key in sorted(table)]


class Succession:
    """What the KPIs need of the agencies' changes on one day, by agency code (``000.00.00.H22``):
    where a recorded agency's figures roll up, which agencies are former and where their work went.
    Built from ``config.agencies``; codes no member has are current and roll up into themselves."""

    def __init__(self, agencies: Agencies | None, day: date) -> None:
        self._agencies = agencies
        self._day = day
        self._into: dict[str, str] = {}

    def _member(self, code: str) -> str | None:
        return self._agencies.by_code(code) if self._agencies is not None else None

    def rolled_up(self, code: str) -> str:
        """The code of the agency current on the day that ``code``'s figures count under."""
        found = self._into.get(code)
        if found is None:
            member = self._member(code)
            found = (code if member is None or self._agencies is None
                     else _code(self._agencies.rolled_up(member, self._day)))
            self._into[code] = found
        return found

    def group(self, code: str) -> list[str]:
        """The codes whose figures a roll-up for ``code`` counts: the agency it rolls up into and
        every former agency that rolls up there (first the current one, then the formers)."""
        into = self.rolled_up(code)
        member = self._member(into)
        formers = (self._agencies.formers(member)
                   if member is not None and self._agencies is not None else [])
        found = [into, *(c for c in map(_code, formers) if self.rolled_up(c) == into)]
        return found if code in found else [*found, code]

    def former(self, code: str) -> dict[str, Any]:
        """``{"former": true, "successor": code}`` for an agency ended on the day (``successors``
        for a split one), else ``{}``."""
        member = self._member(code)
        if member is None or self._agencies is None or not self._agencies.ended(member, self._day):
            return {}
        into = self.rolled_up(code)
        if into != code:
            return {"former": True, "successor": into}
        record = self._agencies.member(member)
        parts = sorted({self.rolled_up(_code(s.successor)) for s in record.split}) if record else []
        return {"former": True, **({"successors": parts} if parts else {})}


def _code(member_id: str) -> str:
    return member_id.split("/")[2]


def report(engine: Engine, *, agency: str | None = None, period: str = "month", start: str | None = None,
           end: str | None = None, rollup: bool = False, agencies: Agencies | None = None,
           day: date | None = None) -> list[dict[str, Any]]:
    """The KPIs as dicts, per recorded agency or (``rollup``) per current agency; ``agencies``
    (``config.agencies``) says which agencies are former and where their work went on ``day``
    (today in Vietnam when left out); without it no agency is former."""
    if day is None:
        from gateway.agencies import today

        day = today()
    succession = Succession(agencies, day)
    t = delivery_dossiers
    query = sa.select(t.c.agency, t.c.received_at, t.c.resolved_at, t.c.due_at, t.c.online, t.c.status)
    if agency:
        query = query.where(t.c.agency.in_(succession.group(agency)) if rollup else t.c.agency == agency)
    if start or end:
        def window(col: Any) -> Any:
            conds = [col.is_not(None)]
            if start:
                conds.append(col >= start)
            if end:
                conds.append(col < end)
            return sa.and_(*conds)
        query = query.where(sa.or_(window(t.c.received_at), window(t.c.resolved_at)))
    with engine.connect() as conn:
        rows = [dict(r._mapping) for r in conn.execute(query)]
    kpis = compute(rows, period=period, start=start, end=end,
                   rollup=succession.rolled_up if rollup else None)
    return [{**k.as_dict(), **succession.former(k.agency)} for k in kpis]
