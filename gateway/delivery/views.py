"""The operators' views of the queue: one delivery, a listing, counts by service and state, the age
of the oldest pending delivery. They read through connections that take no write lock, so looking
never holds up the writer.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import orjson
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from gateway.delivery.model import BLOCKING, DEAD, DELIVERED, PENDING, Outcome, now_us
from gateway.delivery.retention import EMPTY_SHA256
from gateway.delivery.sql import selecting
from gateway.delivery.tables import deliveries

__all__ = ["DeliveryViews", "describe", "settled"]


class DeliveryViews:
    def __init__(self, reader: Engine) -> None:
        self.reader = reader

    def get(self, delivery_id: str) -> dict[str, Any] | None:
        with self.reader.connect() as conn:
            row = conn.execute(_ONE, {"v_id": delivery_id}).first()
            if row is None:
                return None
            view = describe(row._mapping)
            if row.state == PENDING:
                view["waitingFor"] = conn.execute(_BLOCKER, {"v_order": row.order_key,
                                                             "v_seq": row.seq}).scalar()
            return view

    def outcome(self, delivery_id: str) -> dict[str, Any] | None:
        """What became of one delivery, as ``settled`` tells it (state, attempts, answer, last
        error), read from its row: what the flow engine reads of a step's delivery another process
        recorded, or that is still on its way. ``get`` also reads the request, what holds a
        pending one back, and makes timestamps: a drain of 10,000 flows read some 13,000 deliveries
        this way, most of them still queued (docs/benchmarks.md)."""
        with self.reader.connect() as conn:
            row = conn.execute(_OUTCOME, {"v_id": delivery_id}).first()
        if row is None:
            return None
        return _outcome(delivery_id, row.state, row.attempts,
                        orjson.loads(row.last_error) if row.last_error else None, row.response,
                        row.response_status)

    def find(self, *, state: str | None = None, service: str | None = None, dossier: str | None = None,
             flagged: bool = False, after: int = 0, limit: int = 100) -> list[dict[str, Any]]:
        query = selecting(sa.select(*[c for c in deliveries.c if c.name not in ("body", "response")]),
                          state=state, service=service, dossier=dossier, flagged=flagged)
        query = query.where(deliveries.c.seq > after).order_by(deliveries.c.seq).limit(limit)
        with self.reader.connect() as conn:
            return [describe(r._mapping) for r in conn.execute(query)]

    def by_keys(self, idem_keys: list[str]) -> dict[str, dict[str, Any]]:
        """The deliveries stored under these idempotency keys (hashes), by key: a sender that
        knows what it stored finds it again (the flow engine its notifications)."""
        if not idem_keys:
            return {}
        query = sa.select(*[c for c in deliveries.c if c.name not in ("body", "response")]).where(
            deliveries.c.idem_key.in_(idem_keys))
        with self.reader.connect() as conn:
            return {r.idem_key: describe(r._mapping) for r in conn.execute(query)}

    def counts(self) -> list[dict[str, Any]]:
        """Deliveries and attempts by service and state."""
        d = deliveries
        query = (sa.select(d.c.service, d.c.state, sa.func.count().label("n"),
                           sa.func.coalesce(sa.func.sum(d.c.attempts), 0).label("attempts"))
                 .group_by(d.c.service, d.c.state))
        with self.reader.connect() as conn:
            return [dict(r._mapping) for r in conn.execute(query)]

    def subjects_of(self, dossier: str) -> tuple[str, ...]:
        """The data subjects an earlier message of this dossier named (its owner, by keyed hash):
        a progress update names no citizen, yet it is about the dossier's owner."""
        with self.reader.connect() as conn:
            found = conn.execute(_OWNER, {"v_dossier": dossier}).scalar()
        return tuple(orjson.loads(found)) if found else ()

    def oldest_pending_us(self) -> int | None:
        query = (sa.select(deliveries.c.created_us).where(deliveries.c.state == PENDING)
                 .order_by(deliveries.c.seq).limit(1))
        with self.reader.connect() as conn:
            value = conn.execute(query).scalar()
        return int(value) if value is not None else None


# Built once: the flow engine and the intake read through these several times a flow (a statement
# built anew costs as much again as running it).
_ONE = sa.select(deliveries).where(deliveries.c.id == sa.bindparam("v_id"))
_OUTCOME = (sa.select(deliveries.c.state, deliveries.c.attempts, deliveries.c.last_error,
                      deliveries.c.response_status, deliveries.c.response)
            .where(deliveries.c.id == sa.bindparam("v_id")))
# The earliest delivery of the same chain that holds a pending one back.
_BLOCKER = (sa.select(deliveries.c.id)
            .where(deliveries.c.order_key == sa.bindparam("v_order"),
                   deliveries.c.seq < sa.bindparam("v_seq"), deliveries.c.state.in_(BLOCKING))
            .order_by(deliveries.c.seq).limit(1))
_OWNER = (sa.select(deliveries.c.subjects)
          .where(deliveries.c.dossier == sa.bindparam("v_dossier"), deliveries.c.subjects != "[]")
          .order_by(deliveries.c.seq).limit(1))


def describe(row: Any) -> dict[str, Any]:
    """A delivery as the API and the CLI show it."""
    in_flight = row["state"] == PENDING and row["lease"] is not None and row["next_us"] > now_us()
    view: dict[str, Any] = {
        "id": row["id"], "state": "in-flight" if in_flight else row["state"],
        "service": row["service"], "operation": row["operation"], "dossier": row["dossier"],
        "client": row["client"], "attempts": row["attempts"], "exchangeId": row["exchange_id"],
        "created": _iso(row["created_us"]), "updated": _iso(row["updated_us"]),
        "delivered": _iso(row["delivered_us"]) if row["delivered_us"] else None,
        "nextAttempt": _iso(row["next_us"]) if row["state"] == PENDING and not in_flight else None,
        "lastError": orjson.loads(row["last_error"]) if row["last_error"] else None,
        "worker": row["worker"], "flag": row["flag"], "replayOf": row["replay_of"], "seq": row["seq"],
    }
    if "response" in row.keys():  # noqa: SIM118 - a RowMapping, not a dict
        view["response"] = _answer(row["response"], row["response_status"])
        if not row["body"] and row["body_sha256"] != EMPTY_SHA256 and not row["body_document"]:
            # blanked by delivery.retention_days (a document's parts are never copied here)
            view["bodyPurged"] = True
    return view


def settled(outcome: Outcome, attempts: int) -> dict[str, Any] | None:
    """What ``DeliveryViews.outcome`` reads of a delivery an attempt has just finished (delivered
    or dead; None for any other outcome), taken from the recorded outcome itself: its state,
    attempts, answer and error, what a reader of the result needs, without reading the row back."""
    if outcome.released or outcome.state not in (DELIVERED, DEAD):
        return None
    return _outcome(outcome.id, outcome.state, attempts, outcome.error, outcome.response,
                    outcome.response_status)


def _outcome(delivery_id: str, state: str, attempts: int, error: Any, response: bytes | None,
             status: int | None) -> dict[str, Any]:
    """A delivery's outcome as the flow engine reads it, from a recorded attempt or from the row:
    ``describe``'s keys for these, the state as stored (``describe`` shows a leased pending one as
    in flight)."""
    return {"id": delivery_id, "state": state, "attempts": attempts, "lastError": error,
            "response": _answer(response, status)}


def _answer(body: bytes | None, status: int | None) -> dict[str, Any] | None:
    if body is None or status is None:
        return None
    try:
        payload: Any = orjson.loads(body)
    except orjson.JSONDecodeError:
        payload = bytes(body).decode("utf-8", "replace")
    return {"status": status, "body": payload}


def _iso(us: int | None) -> str | None:
    if us is None:
        return None
    return datetime.fromtimestamp(us / 1_000_000, UTC).isoformat(timespec="milliseconds")
