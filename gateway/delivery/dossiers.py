"""Each dossier's latest state in ``delivery_dossiers``: what its delivered messages say (for the
KPIs, gateway/delivery/stats.py) and the status last accepted at intake (for the transition check).

The queue calls these inside its writer's transaction: ``track`` with the facts of the messages a
batch marked delivered, ``note_intake`` with the intake statuses the batch's admission decided.
``fold`` is the rule by which one fact changes a dossier, pure.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any

from sqlalchemy.engine import Connection

from gateway.delivery.admission import IntakeStatus
from gateway.delivery.messages import RESOLVED, VIETNAM, DossierFacts
from gateway.delivery.sql import driver_sql, for_update, select_in
from gateway.delivery.tables import delivery_dossiers

__all__ = ["blank", "fetch", "fold", "note_intake", "track"]

COLUMNS: tuple[str, ...] = tuple(c.name for c in delivery_dossiers.c)


def fetch(conn: Connection, codes: Iterable[str]) -> dict[str, dict[str, Any]]:
    """The rows held for ``codes``, by code; locked on PostgreSQL until the transaction ends."""
    out: dict[str, dict[str, Any]] = {}
    for row in select_in(conn, f"SELECT {', '.join(COLUMNS)} FROM delivery_dossiers WHERE code",  # noqa: S608
                         codes, for_update(conn)):
            found = dict(zip(COLUMNS, row, strict=True))
            if found["online"] is not None:
                found["online"] = bool(found["online"])
            out[found["code"]] = found
    return out


def note_intake(conn: Connection, decided: Mapping[str, IntakeStatus], held: Mapping[str, dict[str, Any]],
                now: int) -> None:
    """Record each dossier's intake status as the admission left it (``held``: rows already fetched)."""
    rows = []
    for code, intake in decided.items():
        row = dict(held.get(code) or blank(code, intake.agency))
        row["intake_status"] = intake.status
        row["updated_us"] = now
        rows.append(row)
    _upsert(conn, rows)


def track(conn: Connection, facts: list[tuple[str, DossierFacts]], now: int) -> None:
    """Fold what delivered messages say (``(agency, facts)``, in order) into each dossier's row."""
    held = fetch(conn, {f.code for _, f in facts})
    for agency, fact in facts:
        fold(held.setdefault(fact.code, blank(fact.code, agency)), fact)
        held[fact.code]["updated_us"] = now
    _upsert(conn, list(held.values()))


def fold(row: dict[str, Any], fact: DossierFacts) -> None:
    """Change a dossier's ``row`` by what one delivered message says about it."""
    for name in ("procedure", "received_at", "due_at", "online"):
        value = getattr(fact, name)
        if value is not None:
            row[name] = value
    if fact.status is not None:
        row["status"] = fact.status
        if fact.status not in RESOLVED:
            row["resolved_at"] = None
    if fact.resolved_at is not None and (fact.kind == "dossier" or row["resolved_at"] is None):
        row["resolved_at"] = fact.resolved_at  # a dossier's own date wins; else the first step's
    elif fact.status in RESOLVED and row["resolved_at"] is None:
        row["resolved_at"] = datetime.now(VIETNAM).strftime("%Y%m%d%H%M%S")


def blank(code: str, agency: str) -> dict[str, Any]:
    """A dossier nothing is known of yet, counted for ``agency``."""
    return {"code": code, "agency": agency[:64], "procedure": None, "received_at": None, "due_at": None,
            "online": None, "status": None, "resolved_at": None, "intake_status": None, "updated_us": 0}


def _upsert(conn: Connection, rows: list[dict[str, Any]]) -> None:
    if not rows:
        return
    updates = ", ".join(f"{c} = excluded.{c}" for c in COLUMNS if c != "code")
    conn.exec_driver_sql(driver_sql(
        conn, f"INSERT INTO delivery_dossiers ({', '.join(COLUMNS)}) "  # noqa: S608
              f"VALUES ({', '.join('?' for _ in COLUMNS)}) ON CONFLICT (code) DO UPDATE SET {updates}"),
        [tuple(row[c] for c in COLUMNS) for row in rows])
