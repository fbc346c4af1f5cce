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
holds the latest state of each dossier as delivered (see ``store.DeliveryStore._track``).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from gateway.delivery.tables import delivery_dossiers

__all__ = ["PERIODS", "Kpi", "bucket", "compute", "report"]

PERIODS = ("month", "quarter", "year", "all")


@dataclass
class Kpi:
    agency: str
    period: str
    received: int = 0
    received_online: int = 0
    resolved: int = 0
    resolved_on_time: int = 0

    def as_dict(self) -> dict[str, Any]:
        return {"agency": self.agency, "period": self.period, "received": self.received,
                "receivedOnline": self.received_online,
                "onlineShare": _share(self.received_online, self.received),
                "resolved": self.resolved, "resolvedOnTime": self.resolved_on_time,
                "onTimeShare": _share(self.resolved_on_time, self.resolved)}


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
            end: str | None = None) -> list[Kpi]:
    """KPIs from dossier facts; ``start`` (inclusive) and ``end`` (exclusive) are portal moments."""
    if period not in PERIODS:
        raise ValueError(f"period must be one of {', '.join(PERIODS)}")

    def inside(moment: str | None) -> bool:
        return moment is not None and (start is None or moment >= start) and (end is None or moment < end)

    table: dict[tuple[str, str], Kpi] = {}

    def kpi(agency: str, moment: str) -> Kpi:
        key = (agency, bucket(moment, period))
        if key not in table:
            table[key] = Kpi(*key)
        return table[key]

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


def report(engine: Engine, *, agency: str | None = None, period: str = "month", start: str | None = None,
           end: str | None = None) -> list[dict[str, Any]]:
    t = delivery_dossiers
    query = sa.select(t.c.agency, t.c.received_at, t.c.resolved_at, t.c.due_at, t.c.online, t.c.status)
    if agency:
        query = query.where(t.c.agency == agency)
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
    return [k.as_dict() for k in compute(rows, period=period, start=start, end=end)]
