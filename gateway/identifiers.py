"""X-Road style identifiers: member, subsystem and service ids.

``VN/GOV/000.00.00.H22`` is a member, ``VN/GOV/000.00.00.H22/MOTCUA`` a subsystem and
``VN/GOV/000.00.00.G22/DVCQG/DongBoHoSoMC[/v1]`` a service. The colon form
(``VN:GOV:000.00.00.G22:DVCQG``) is accepted everywhere an id is read.

A client is a member or a subsystem, as in X-Road (its message protocols let ``client`` and
``X-Road-Client`` name either); a service always belongs to a subsystem here.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_PART = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._\-]{0,127}$")


class IdentifierError(ValueError):
    pass


def split_id(text: str) -> list[str]:
    """Split an id in slash or colon form into its parts, refusing empty or odd parts."""
    sep = "/" if "/" in text else ":"
    parts = text.strip().split(sep)
    for part in parts:
        if not _PART.match(part):
            raise IdentifierError(f"{text!r}: part {part!r} is empty or has characters ids may not use")
    return parts


@dataclass(frozen=True, slots=True)
class MemberId:
    instance: str
    member_class: str
    code: str

    @classmethod
    def parse(cls, text: str) -> MemberId:
        parts = split_id(text)
        if len(parts) != 3:
            raise IdentifierError(f"{text!r} is not a member id (INSTANCE/CLASS/CODE)")
        return cls(*parts)

    def __str__(self) -> str:
        return f"{self.instance}/{self.member_class}/{self.code}"


@dataclass(frozen=True, slots=True)
class SubsystemId:
    instance: str
    member_class: str
    code: str
    subsystem: str

    @classmethod
    def parse(cls, text: str) -> SubsystemId:
        parts = split_id(text)
        if len(parts) != 4:
            raise IdentifierError(f"{text!r} is not a subsystem id (INSTANCE/CLASS/CODE/SUBSYSTEM)")
        return cls(*parts)

    @property
    def member(self) -> MemberId:
        return MemberId(self.instance, self.member_class, self.code)

    def __str__(self) -> str:
        return f"{self.instance}/{self.member_class}/{self.code}/{self.subsystem}"


@dataclass(frozen=True, slots=True)
class ServiceId:
    instance: str
    member_class: str
    code: str
    subsystem: str
    service_code: str
    version: str | None = None

    @classmethod
    def parse(cls, text: str) -> ServiceId:
        parts = split_id(text)
        if len(parts) not in (5, 6):
            raise IdentifierError(
                f"{text!r} is not a service id (INSTANCE/CLASS/CODE/SUBSYSTEM/SERVICE[/VERSION])")
        return cls(*parts)

    @property
    def subsystem_id(self) -> SubsystemId:
        return SubsystemId(self.instance, self.member_class, self.code, self.subsystem)

    def __str__(self) -> str:
        base = f"{self.instance}/{self.member_class}/{self.code}/{self.subsystem}/{self.service_code}"
        return f"{base}/{self.version}" if self.version else base


def parse_client(text: str) -> MemberId | SubsystemId:
    """A client id: a member (three parts) or a subsystem (four)."""
    parts = split_id(text)
    if len(parts) == 3:
        return MemberId(*parts)
    if len(parts) == 4:
        return SubsystemId(*parts)
    raise IdentifierError(f"{text!r} is not a client id (INSTANCE/CLASS/CODE for a member, "
                          "INSTANCE/CLASS/CODE/SUBSYSTEM for a subsystem)")


def normalise_client(text: str) -> str:
    """A client id (member or subsystem) in canonical slash form, whichever form it came in."""
    return str(parse_client(text))
