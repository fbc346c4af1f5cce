"""What the delivery queue takes in and hands out, as plain data: the states, a new delivery, what
its intake answered, a claimed delivery, an attempt's outcome. No storage here; the queue
(``queue.py``), the intake decision (``admission.py``), the workers and the views share these.
"""

from __future__ import annotations

import os
import socket
import time
from dataclasses import dataclass
from typing import Any

from gateway.delivery.messages import DossierFacts
from gateway.errors import ServerError
from gateway.policy import Kept

__all__ = ["BLOCKING", "CANCELLED", "DEAD", "DELIVERED", "PENDING", "STATES", "Accepted", "Claimed",
           "NewDelivery", "Outcome", "QueueUnavailable", "now_us", "worker_name"]

PENDING, DELIVERED, DEAD, CANCELLED = "pending", "delivered", "dead", "cancelled"
STATES = (PENDING, DELIVERED, DEAD, CANCELLED)
BLOCKING = (PENDING, DEAD)  # states that hold back the later deliveries of their chain


class QueueUnavailable(ServerError):
    status = 503
    title = "Delivery queue unavailable"
    code = "Server.QueueFailed"
    type_slug = "queue-unavailable"


def now_us() -> int:
    return time.time_ns() // 1000


def worker_name(node: str | None = None) -> str:
    """Who holds a delivery's lease: the node (``node`` in the configuration, else the host's name)
    and the process."""
    return f"{(node or socket.gethostname())[:40]}:{os.getpid()}"


@dataclass(frozen=True, slots=True)
class NewDelivery:
    """An async request, checked and ready to store."""

    id: str
    idem_key: str
    order_key: str
    dossier: str | None
    service: str
    operation: str
    client: str
    rule: str | None
    exchange_id: str
    user_id: str | None
    purpose: str | None
    represented_party: str | None
    method: str
    path: str
    query: str
    content_type: str
    body: bytes
    body_sha256: str
    subjects: tuple[str, ...]
    agency: str | None = None  # for a tracked dossier: the agency it counts for
    status: int | None = None  # the dossier status it carries, for the transition check
    transitions: str = "off"  # refuse | flag | off
    decided: Kept | None = None  # the allowing rule's response fields at intake
    addressed: str | None = None  # the member a routed message named, when its successor got it
    body_document: str | None = None  # the body is this document's stored parts (``body`` is b"")

    @property
    def tracked(self) -> str | None:
        """The dossier code whose intake status this delivery moves, if it is a tracked dossier's."""
        return self.dossier if self.dossier and self.agency is not None else None


@dataclass(frozen=True, slots=True)
class Accepted:
    id: str
    state: str
    duplicate: bool
    flag: str | None = None


@dataclass(frozen=True, slots=True)
class Claimed:
    """A delivery a worker holds, with everything needed to send it."""

    seq: int
    id: str
    lease: str
    attempts: int  # this one included, all time
    attempt_base: int  # attempts before the last operator's retry: the budget counts from here
    dossier: str | None
    service: str
    operation: str
    client: str
    rule: str | None
    exchange_id: str
    user_id: str | None
    purpose: str | None
    represented_party: str | None
    method: str
    path: str
    query: str
    content_type: str
    body: bytes
    body_sha256: str
    subjects: tuple[str, ...]
    decided: Kept | None = None  # None: stored before decisions were kept (the rule's fields apply)
    addressed: str | None = None
    body_document: str | None = None  # the body is this document's stored parts (``body`` is b"")


@dataclass(frozen=True, slots=True)
class Outcome:
    """What became of one attempt."""

    id: str
    lease: str
    state: str  # delivered | pending (retry later, or released unattempted) | dead
    next_us: int = 0
    error: dict[str, Any] | None = None
    response_status: int | None = None
    response: bytes | None = None
    released: bool = False  # not attempted after all: the attempt is not counted
    facts: tuple[DossierFacts, ...] = ()
    agency: str | None = None
