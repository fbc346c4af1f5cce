"""The intake decision: which of a batch's new deliveries to store, which repeat a delivery already
made, which to refuse. Pure: the queue fetches what the database holds for the batch's idempotency
keys and dossier codes, calls ``admit``, and applies the verdicts.

In the batch's order, each new delivery is

- a **duplicate** when its idempotency key already made a delivery, in the table or earlier in this
  batch: the client is answered with that delivery;
- **refused** when it carries an impossible status change for its dossier and the service refuses
  them (``transitions: refuse``): 422, nothing stored;
- otherwise **admitted**, flagged when the change is impossible and the service only flags it.

The status a dossier had at intake moves with each admitted delivery of it, so the second of two
updates in one batch is checked against the first: a batch decides as its deliveries one at a time
would. A refused delivery makes nothing: a later one with the same key is judged on its own.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from gateway.delivery.model import PENDING, NewDelivery
from gateway.delivery.transitions import impossible
from gateway.errors import InvalidBody

__all__ = ["Admission", "Admit", "Duplicate", "Held", "IntakeStatus", "Refuse", "Verdict", "admit"]


@dataclass(frozen=True, slots=True)
class Held:
    """The delivery the table holds under an idempotency key."""

    id: str
    state: str
    flag: str | None = None


@dataclass(frozen=True, slots=True)
class Admit:
    """Store it as a new delivery."""

    flag: str | None = None  # why it is odd (an impossible status change, flagged)


@dataclass(frozen=True, slots=True)
class Duplicate:
    """Answer with the delivery the same idempotency key made."""

    of: str
    state: str
    flag: str | None = None
    in_batch: bool = False  # made by an earlier delivery of this batch, not yet stored


@dataclass(frozen=True, slots=True)
class Refuse:
    """Store nothing; answer with ``error``."""

    error: InvalidBody


Verdict = Admit | Duplicate | Refuse


@dataclass(frozen=True, slots=True)
class IntakeStatus:
    """What the batch leaves as a tracked dossier's intake status, and the agency it counts for."""

    agency: str
    status: int | None


@dataclass(frozen=True, slots=True)
class Admission:
    verdicts: tuple[Verdict, ...]  # one per new delivery, in the batch's order
    dossiers: dict[str, IntakeStatus]  # by code: every tracked dossier an admitted delivery concerns


def admit(news: Sequence[NewDelivery], held: Mapping[str, Held],
          statuses: Mapping[str, int | None]) -> Admission:
    """Decide each of ``news``, given the deliveries ``held`` under their idempotency keys and the
    intake ``statuses`` of their dossiers (codes absent: no status yet)."""
    status_now = dict(statuses)
    made: dict[str, Duplicate] = {}  # by idempotency key: what this batch admitted
    touched: dict[str, str] = {}  # code -> agency of the last admitted delivery of it
    verdicts: list[Verdict] = []
    for new in news:
        verdict = _decide(new, held, made, status_now)
        verdicts.append(verdict)
        if not isinstance(verdict, Admit):
            continue
        made[new.idem_key] = Duplicate(new.id, PENDING, verdict.flag, in_batch=True)
        code = new.tracked
        if code is not None:
            assert new.agency is not None  # tracked says so
            if new.status is not None:
                status_now[code] = new.status
            touched[code] = new.agency
    dossiers = {code: IntakeStatus(agency, status_now.get(code)) for code, agency in touched.items()}
    return Admission(tuple(verdicts), dossiers)


def _decide(new: NewDelivery, held: Mapping[str, Held], made: Mapping[str, Duplicate],
            statuses: Mapping[str, int | None]) -> Verdict:
    found = held.get(new.idem_key)
    if found is not None:
        return Duplicate(found.id, found.state, found.flag)
    if new.idem_key in made:
        return made[new.idem_key]
    code = new.tracked
    if code is None or new.transitions == "off":
        return Admit()
    reason = impossible(statuses.get(code), new.status)
    if reason is not None and new.transitions == "refuse":
        return Refuse(InvalidBody(f"dossier {code}: {reason}", status=422,
                                  errors=[{"path": "$", "message": reason}]))
    return Admit(reason)
