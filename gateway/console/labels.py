"""How figures and ids read on the console's pages: durations, shares, short service ids, and the
names of agencies and client systems. Pure functions of their arguments and the configuration; the
templates use the first three as filters (``us``, ``pct``, ``short``).
"""

from __future__ import annotations

from datetime import date
from typing import TYPE_CHECKING

from gateway.agencies import today

if TYPE_CHECKING:
    from gateway.config import Config
    from gateway.console.i18n import Translate

__all__ = ["agency_names", "client_names", "duration", "percent", "short_service"]


def duration(us: int | None) -> str:
    if us is None:
        return "–"
    if us < 1000:
        return f"{us} µs"
    if us < 1_000_000:
        return f"{us / 1000:.1f} ms"
    return f"{us / 1_000_000:.2f} s"


def percent(share: float | None) -> str:
    return "–" if share is None else f"{share * 100:.1f} %"


def short_service(service_id: str) -> str:
    """``VN/GOV/000.00.00.G22/DVCQG/DongBoHoSoMC`` as ``G22 DVCQG/DongBoHoSoMC``: what a chart label
    has room for (the full id is in the table beside it)."""
    parts = service_id.split("/")
    if len(parts) < 5:
        return service_id
    agency = parts[2].rsplit(".", 1)[-1]
    return f"{agency} {'/'.join(parts[3:])}"


def agency_names(config: Config, _: Translate | None = None, *, rollup: bool = False,
                 day: date | None = None, short: bool = False) -> dict[str, str]:
    """Agency code (``000.00.00.H22``) -> the member's name; with a translator, a former agency's
    name says so beside the agency it is now part of ("UBND tỉnh Hà Giang (cũ, nay thuộc UBND tỉnh
    Tuyên Quang)"), and, rolled up, a current agency's names the former ones it includes. ``short``:
    what a chart label has room for ("(cũ)", "(+1 cũ)")."""
    plain = {_code(m.id): m.name or m.id for m in config.members}
    if _ is None:
        return plain
    agencies = config.agencies
    day = today() if day is None else day
    out = dict(plain)
    for member in config.members:
        code, name = _code(member.id), plain[_code(member.id)]
        if agencies.ended(member.id, day):
            into = agencies.rolled_up(member.id, day)
            successors = ([into] if into != member.id else
                          list(dict.fromkeys(agencies.rolled_up(s.successor, day) for s in member.split)))
            now = ", ".join(agencies.name(s) for s in successors)
            out[code] = (_("agency.former", name=name, successor=now) if now and not short
                         else _("agency.former_short", name=name))
        elif rollup:
            formers = [f for f in agencies.formers(member.id) if agencies.rolled_up(f, day) == member.id]
            if formers:
                out[code] = (_("agency.including_short", name=name, n=len(formers)) if short else
                             _("agency.including", name=name,
                               formers=", ".join(agencies.name(f) for f in formers)))
    return out


def _code(member_id: str) -> str:
    return member_id.split("/")[2]


def client_names(config: Config) -> dict[str, str]:
    """Client subsystem id -> "member name · subsystem name"."""
    out = {}
    for m in config.members:
        for s in m.subsystems:
            out[f"{m.id}/{s.code}"] = f"{m.name or m.id} · {s.name or s.code}"
    out["console"] = "Liên Thông console"
    return out
