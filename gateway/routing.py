"""Routing by agency: which member's service receives a dossier, by the agency its code names.

A dossier code joins the receiving agency's short code, the date and a sequence number
(``H22.31-20261121-0000001``: agency ``H22.31``, a unit of Hà Giang, ``H22``). A member that receives
dossiers routed down says which agency codes are its own and which of its services receive each kind
of message (``members[].routing``)::

    routing:
      agencies: [H22]                      # H22 and every unit below it (H22.31, H22.31.20, ...)
      dossier: MOTCUA/NhanHoSo             # the member's service receiving dossiers
      progress: MOTCUA/CapNhatTienDoHoSo   # ... and progress updates

The most specific code wins: ``H22.31`` given to another member takes that unit's dossiers. A former
agency (gateway/agencies.py) keeps its codes here, with or without receiving services of its own:
until its last day its dossiers go to it, afterwards to its successor's receiving service, and the
target names both (``addressed`` and ``member``). A routing service (``route: true``) hands each
request to the service found here (gateway/delivery/intake.py stores it for that service). Pure: the
table is read from the configuration once, and the day is passed in.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date
from typing import TYPE_CHECKING

from gateway.identifiers import IdentifierError, ServiceId

if TYPE_CHECKING:
    from gateway.agencies import Agencies
    from gateway.config import Config

__all__ = ["Routes", "Target", "agency_part", "catalog_problem", "check_agency"]

_AGENCY = re.compile(r"[A-Z][0-9]{2}(\.[0-9A-Z]{1,3})*")
MESSAGES = ("dossier", "progress")
WHAT = {"dossier": "dossiers", "progress": "progress updates"}


def check_agency(code: str) -> str:
    """An agency code as dossier codes write it (``H22``, ``G09.20``); ValueError otherwise."""
    text = code.strip().upper()
    if not _AGENCY.fullmatch(text):
        raise ValueError(f"{code!r} is not the agency part of a dossier code (H22, G09.20, H22.31.20)")
    return text


def agency_part(dossier_code: str) -> str:
    """``H22.31`` of ``H22.31-20261121-0000001``: what precedes the first '-'."""
    return dossier_code.strip().split("-", 1)[0].strip().upper()


@dataclass(frozen=True, slots=True)
class Target:
    """Where a routed message goes: the dossier's agency, the configured code it matched, the
    member that code names (``addressed``), the member that receives it that day (``member``: the
    addressed one, or its successor once it is former, gateway/agencies.py) and its receiving
    service."""

    agency: str
    matched: str
    addressed: str
    member: str
    service: str


class Routes:
    def __init__(self, table: dict[str, str], receivers: dict[str, dict[str, str]],
                 agencies: Agencies) -> None:
        self._table = table  # agency code -> member id
        self._receivers = receivers  # member id -> {message: receiving service id}
        self._agencies = agencies

    @classmethod
    def of(cls, config: Config) -> Routes:
        table: dict[str, str] = {}
        receivers: dict[str, dict[str, str]] = {}
        for member in config.members:
            routing = member.routing
            if routing is None:
                continue
            receivers[member.id] = {
                message: str(ServiceId.parse(f"{member.id}/{relative}"))
                for message in MESSAGES if (relative := getattr(routing, message)) is not None}
            for code in routing.agencies:
                table[code] = member.id
        return cls(table, receivers, config.agencies)

    def target(self, dossier_code: str, message: str, day: date) -> Target | None:
        """The member of the most specific configured code that the dossier's agency is, or is a
        unit of, followed to its successor when it is former on ``day``, and that member's
        service for ``message``; None when there is none (the member found may receive only the
        other kind of message: then too). Raises ``Ended`` when a former agency's work went nowhere
        the code names."""
        agency = agency_part(dossier_code)
        groups = agency.split(".")
        for n in range(len(groups), 0, -1):
            code = ".".join(groups[:n])
            addressed = self._table.get(code)
            if addressed is not None:
                member = self._agencies.current(addressed, day, agency)
                service = self._receivers.get(member, {}).get(message)
                if service is None:
                    return None
                return Target(agency=agency, matched=code, addressed=addressed, member=member,
                              service=service)
        return None

    @staticmethod
    def refusal(dossier_code: str, message: str) -> str:
        return f"no agency {agency_part(dossier_code) or '(none)'} is configured to receive {WHAT[message]}"


Problem = tuple[tuple[str | int, ...], str]


def catalog_problem(config: Config) -> Problem | None:
    """The first inconsistency of the members' routing (where it is, what is wrong), or None."""
    claimed: dict[str, str] = {}
    for i, member in enumerate(config.members):
        routing = member.routing
        if routing is None:
            continue
        for message in MESSAGES:
            relative = getattr(routing, message)
            if relative is not None:
                problem = _receiver_problem(config, member.id, message, relative)
                if problem is not None:
                    return ("members", i, "routing", message), problem
        receives = routing.dossier is not None or routing.progress is not None
        if not receives and not (member.successor or member.split):
            return ("members", i, "routing"), f"member {member.id}: routing names no receiving service " \
                                              "(dossier, progress), and the member no successor"
        for j, code in enumerate(routing.agencies):
            other = claimed.setdefault(code, member.id)
            if j != routing.agencies.index(code) or other != member.id:
                return (("members", i, "routing", "agencies", j),
                        f"agency {code} is listed twice (by {other} and {member.id}): one agency's "
                        "dossiers go to one member")
    return None


def _receiver_problem(config: Config, member: str, message: str, relative: str) -> str | None:
    where = f"member {member}: routing.{message}"
    try:
        service_id = str(ServiceId.parse(f"{member}/{relative}"))
    except IdentifierError as err:
        return f"{where}: {relative!r} is not SUBSYSTEM/SERVICECODE[/VERSION] of this member: {err}"
    service = config.service(service_id)
    if service is None:
        return f"{where}: no service {service_id} is listed in 'services'"
    if service.route:
        return f"{where}: {service_id} is itself a routing service"
    if service.delivery != "async" or service.dossier is None or service.dossier.message != message:
        return (f"{where}: {service_id} must be an async service carrying {message} messages "
                f"(delivery: async, dossier: {{message: {message}}})")
    return None
