"""Who receives edXML documents for which organ: the catalog's ``members[].documents``.

An edXML package names its sender and recipients by ``OrganId`` (an agency code of Decision
20/2020/QĐ-TTg, ``000.00.00.H60``). Each member whose document-management system takes part lists
the organs it answers for, the subsystem of that system (the client that sends, pulls, confirms and
answers for them) and, when the gateway is to push to it, its async receiving service. An organ
belongs to one member; a member without a ``receive`` service pulls (docs/documents.md).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING

from gateway.identifiers import IdentifierError, ServiceId

if TYPE_CHECKING:
    from gateway.config import Config

__all__ = ["Directory", "Receiver", "documents_problem"]

Problem = tuple[tuple[str | int, ...], str]

# An agency code as Decision 20/2020 writes it (XXX.YY.ZZ.Lnn), or any code of the same characters:
# organs outside the catalog's own scheme (a ministry's unit) keep theirs.
ORGAN_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9.\-_]{0,63}$")


@dataclass(frozen=True, slots=True)
class Receiver:
    """Where an organ's documents go: its member, the client that acts for it, and the service the
    gateway pushes to (None: the client pulls)."""

    organ: str
    member: str
    client: str
    service: str | None

    @property
    def mode(self) -> str:
        return "pull" if self.service is None else "push"


class Directory:
    """The organs the catalog knows, each with its receiver."""

    def __init__(self, receivers: dict[str, Receiver]) -> None:
        self._receivers = receivers

    @classmethod
    def of(cls, config: Config) -> Directory:
        receivers: dict[str, Receiver] = {}
        for member in config.members:
            docs = member.documents
            if docs is None:
                continue
            service = str(ServiceId.parse(f"{member.id}/{docs.receive}")) if docs.receive else None
            for organ in organs_of(member.id, docs.organs):
                receivers[organ] = Receiver(organ, member.id, f"{member.id}/{docs.subsystem}", service)
        return cls(receivers)

    def receiver(self, organ: str) -> Receiver | None:
        return self._receivers.get(organ)

    def organs_of(self, client: str) -> list[str]:
        """The organs ``client`` acts for (sends as, pulls for), in the catalog's order."""
        return [r.organ for r in self._receivers.values() if r.client == client]

    @property
    def services(self) -> frozenset[str]:
        """The services packages and statuses are pushed to."""
        return frozenset(r.service for r in self._receivers.values() if r.service is not None)


def organs_of(member: str, organs: list[str]) -> list[str]:
    return organs or [member.rsplit("/", 1)[-1]]


def documents_problem(config: Config) -> Problem | None:
    """The first inconsistency of the members' documents (where it is, what is wrong), or None."""
    claimed: dict[str, str] = {}
    subsystems = {f"{m.id}/{s.code}" for m in config.members for s in m.subsystems}
    for i, member in enumerate(config.members):
        docs = member.documents
        if docs is None:
            continue
        where = ("members", i, "documents")
        if f"{member.id}/{docs.subsystem}" not in subsystems:
            return (*where, "subsystem"), (f"member {member.id}: documents.subsystem {docs.subsystem} "
                                           "is not one of the member's subsystems")
        if docs.receive is not None:
            problem = _receiver_problem(config, member.id, docs.receive)
            if problem is not None:
                return (*where, "receive"), problem
        for j, organ in enumerate(organs_of(member.id, docs.organs)):
            if not ORGAN_ID.match(organ):
                return (*where, "organs", j), f"member {member.id}: {organ!r} is not an OrganId"
            other = claimed.setdefault(organ, member.id)
            if other != member.id or docs.organs[:j].count(organ):
                return (*where, "organs", j), (f"organ {organ} is listed twice (by {other} and "
                                               f"{member.id}): one organ's documents go to one member")
    return None


def _receiver_problem(config: Config, member: str, relative: str) -> str | None:
    where = f"member {member}: documents.receive"
    try:
        service_id = str(ServiceId.parse(f"{member}/{relative}"))
    except IdentifierError as err:
        return f"{where}: {relative!r} is not SUBSYSTEM/SERVICECODE[/VERSION] of this member: {err}"
    service = config.service(service_id)
    if service is None:
        return f"{where}: no service {service_id} is listed in 'services'"
    if service.delivery != "async" or service.route or service.documents or service.dossier is not None:
        return (f"{where}: {service_id} must be an async service of its own (delivery: async, a "
                "connector and an upstream, no dossier tracking)")
    return None
