"""Agencies change: validity periods and successors (the 2025 reorganisation).

A member of the catalog may have a first day (``valid_from``) and a last day (``valid_until``), in
Vietnamese time, and name who took its work over afterwards: one ``successor`` (several former
agencies may name the same one, as Hà Giang and Tuyên Quang merged into Tuyên Quang), or a ``split``
that says which agency codes of its dossiers went to which successor (a district's units divided
among communes). After its last day an agency is *former*:

- what is addressed to it goes to its successor, followed to the agency current that day
  (gateway/routing.py for dossier codes, the pipeline's resolve step for its services); the audit
  record keeps both the addressed and the actual agency;
- its clients are refused, naming the successor (token endpoint and every authenticated call);
- its history stays its own: KPIs are kept per agency as recorded and can be rolled up into the
  successor (gateway/delivery/stats.py), and the console shows former names beside current ones;
- policy rules written for it do not apply to its successor unless the operator sets
  ``carry_policies`` on it (no silent widening).

``succession_problem`` is what ``lienthong check`` (and every start) refuses: a successor that is not
in the catalog, a cycle, a gap between an agency's last day and its successor's first. Pure: built
from the configuration once; "today" is passed in.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo

from gateway.identifiers import split_id

if TYPE_CHECKING:
    from gateway.config import Config, Member

__all__ = ["VIETNAM", "Agencies", "Ended", "member_of", "succession_problem", "today"]

VIETNAM = ZoneInfo("Asia/Ho_Chi_Minh")


def today() -> date:
    """The day it is in Vietnam: validity periods are dates of Vietnamese law."""
    return datetime.now(VIETNAM).date()


@functools.lru_cache(maxsize=4096)
def member_of(identifier: str) -> str:
    """The member part (``INSTANCE/CLASS/CODE``) of a member, subsystem or service id."""
    return "/".join(split_id(identifier)[:3])


class Ended(Exception):
    """Something addressed to (or sent by) a former agency, with nowhere current to go."""


@dataclass(frozen=True, slots=True)
class Successor:
    """Where a former agency's work went: the agency codes it covers (all when empty)."""

    member: str
    agencies: tuple[str, ...] = ()


class Agencies:
    def __init__(self, members: Iterable[Member]) -> None:
        self._members = {m.id: m for m in members}
        self._by_code = {m.id.split("/")[2]: m.id for m in self._members.values()}
        # Whether any agency has a validity period: when none has, the hot path skips every lookup.
        self.changes = any(m.valid_from or m.valid_until for m in self._members.values())
        self._formers: dict[str, list[str]] = {}
        for member in self._members.values():
            for successor in _successors(member):
                self._formers.setdefault(successor.member, []).append(member.id)

    # -- one agency --------------------------------------------------------------------------------

    def member(self, member_id: str) -> Member | None:
        return self._members.get(member_id)

    def by_code(self, code: str) -> str | None:
        """The member id whose code is ``code`` (``000.00.00.H22``): how KPIs name agencies."""
        return self._by_code.get(code)

    def name(self, member_id: str) -> str:
        member = self._members.get(member_id)
        return (member.name if member is not None else "") or member_id

    def ended(self, member_id: str, day: date) -> bool:
        """Whether the agency was former on ``day`` (unknown members are not)."""
        member = self._members.get(member_id)
        return member is not None and member.valid_until is not None and day > member.valid_until

    def not_yet(self, member_id: str, day: date) -> bool:
        member = self._members.get(member_id)
        return member is not None and member.valid_from is not None and day < member.valid_from


    # -- succession --------------------------------------------------------------------------------

    def current(self, member_id: str, day: date, agency: str = "") -> str:
        """The agency that holds ``member_id``'s work on ``day``: itself while it exists, else its
        successor's current agency (a split picks by the dossier's ``agency`` code). Raises
        ``Ended`` when the chain ends nowhere (no successor, a split naming none of the codes)."""
        seen = {member_id}
        while self.ended(member_id, day):
            member = self._members[member_id]
            nxt = self._next(member, agency)
            if nxt in seen:  # pragma: no cover - succession_problem refuses cycles at load
                raise Ended(f"the successors of {member_id} run in a cycle")
            seen.add(nxt)
            member_id = nxt
        return member_id

    def _next(self, member: Member, agency: str) -> str:
        until = member.valid_until
        if member.successor:
            return member.successor
        if member.split:
            found = _most_specific(agency, [(code, s.successor) for s in member.split
                                            for code in s.agencies])
            if found is not None:
                return found
            parts = "; ".join(f"{', '.join(s.agencies)} to {s.successor}" for s in member.split)
            raise Ended(f"agency {self._named(member.id, True)} ended on {until} and its work "
                        f"was split ({parts}); agency code {agency or '(none)'} names none of these "
                        "parts: address it to the agency that took it over")
        raise Ended(f"agency {self._named(member.id, True)} ended on {until} and names no "
                    "successor")

    def successor_text(self, member_id: str, *, names: bool = True) -> str:
        """Who took a former agency's work over, for messages: ``VN/GOV/… (name)`` or the split."""
        member = self._members[member_id]
        if member.successor:
            return self._named(member.successor, names)
        if member.split:
            return ", ".join(f"{self._named(s.successor, names)} for {', '.join(s.agencies)}"
                             for s in member.split)
        return "no successor"

    def refusal(self, member_id: str, day: date, *, names: bool = True) -> str | None:
        """Why a client of ``member_id`` may not act on ``day``, naming the successor; or None.
        ``names=False`` leaves the agencies' names out: an OAuth error_description is ASCII only
        (RFC 6749 5.2), and the ids say it precisely."""
        if self.ended(member_id, day):
            member = self._members[member_id]
            return (f"agency {self._named(member_id, names)} ended on {member.valid_until}; its "
                    f"work passed to {self.successor_text(member_id, names=names)}")
        if self.not_yet(member_id, day):
            member = self._members[member_id]
            return f"agency {self._named(member_id, names)} exists from {member.valid_from}"
        return None

    def _named(self, member_id: str, names: bool) -> str:
        return f"{member_id} ({self.name(member_id)})" if names and self.name(member_id) != member_id \
            else member_id

    def formers(self, member_id: str) -> list[str]:
        """Every agency whose work ended up with ``member_id``, directly or through others."""
        found: list[str] = []
        queue = list(self._formers.get(member_id, []))
        while queue:
            former = queue.pop(0)
            if former not in found:
                found.append(former)
                queue.extend(self._formers.get(former, []))
        return found

    def rolled_up(self, member_id: str, day: date) -> str:
        """The agency a former agency's figures roll up into on ``day``: its current successor (a
        split agency, whose work went several ways, stays itself)."""
        try:
            return self.current(member_id, day) if not self._members[member_id].split else member_id
        except (Ended, KeyError):
            return member_id


def _successors(member: Member) -> list[Successor]:
    if member.successor:
        return [Successor(member.successor)]
    return [Successor(s.successor, tuple(s.agencies)) for s in member.split]


def _most_specific(agency: str, table: list[tuple[str, str]]) -> str | None:
    groups = agency.split(".") if agency else []
    codes = dict(table)
    for n in range(len(groups), 0, -1):
        found = codes.get(".".join(groups[:n]))
        if found is not None:
            return found
    return None


Problem = tuple[tuple[str | int, ...], str]


def succession_problem(config: Config) -> Problem | None:
    """The first inconsistency of the members' succession (where, what), or None: a successor not
    in the catalog or the agency itself, a gap between an agency's last day and its successor's
    first, a successor already gone by then, a cycle."""
    members = {m.id: (i, m) for i, m in enumerate(config.members)}
    dated: list[tuple[tuple[str | int, ...], Member, str]] = []
    for i, member in enumerate(config.members):
        for j, successor in enumerate(_successors(member)):
            where: tuple[str | int, ...] = (("members", i, "successor") if member.successor
                                            else ("members", i, "split", j, "successor"))
            if successor.member == member.id:
                return where, f"member {member.id} names itself as its successor"
            if successor.member not in members:
                return where, (f"member {member.id}: successor {successor.member} is not a member "
                               "listed in 'members'")
            dated.append((where, member, successor.member))
    cycle = _cycle(config, members)
    if cycle is not None:
        return cycle
    for where, member, successor_id in dated:
        problem = _dates_problem(member, members[successor_id][1])
        if problem is not None:
            return where, problem
    return None


def _cycle(config: Config, members: dict[str, tuple[int, Member]]) -> Problem | None:
    for i, member in enumerate(config.members):
        chain = [member.id]
        queue = [s.member for s in _successors(member)]
        while queue:
            nxt = queue.pop()
            if nxt == member.id:
                return (("members", i, "successor" if member.successor else "split"),
                        f"member {member.id}: its successors lead back to it "
                        f"({' -> '.join([*chain, nxt])}): a cycle has no current agency")
            if nxt in chain:
                continue
            chain.append(nxt)
            queue.extend(s.member for s in _successors(members[nxt][1]))
    return None


def _dates_problem(member: Member, successor: Member) -> str | None:
    successor_id = successor.id
    assert member.valid_until is not None  # Member refuses a successor without a last day
    next_day = member.valid_until + timedelta(days=1)
    if successor.valid_from is not None and successor.valid_from > next_day:
        return (f"member {member.id} ends on {member.valid_until} but its successor {successor_id} "
                f"starts on {successor.valid_from}: a gap, in which what is addressed to "
                f"{member.id} would have nowhere to go (the successor should start by {next_day})")
    if successor.valid_until is not None and successor.valid_until < next_day:
        return (f"member {member.id} ends on {member.valid_until} but its successor {successor_id} "
                f"ended before that, on {successor.valid_until}: name the agency current after "
                f"{member.valid_until}")
    return None
