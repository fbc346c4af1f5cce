"""The portal's dates: ``yyyyMMddHHmmss``, wall-clock time in Asia/Ho_Chi_Minh.

Clients of the gateway may send ISO 8601 instead (``2026-06-09T08:30:00+07:00``, ``...Z``, a date
alone, or a local time without offset, which is taken as Vietnamese time); ``to_portal`` turns any
of these into the portal's form, and keeps a valid portal date as it is. Fractions of a second are
dropped: the portal counts in seconds.

Vietnam has kept UTC+07:00 without daylight saving since 13 June 1975; before that, zone changes
make some wall times ambiguous, so a portal date round-trips to the same instant only from 1976 on.
"""

from __future__ import annotations

import re
from datetime import datetime
from zoneinfo import ZoneInfo

__all__ = ["PORTAL_FORMAT", "VIETNAM", "DateError", "format_portal", "is_portal_date", "parse_any",
           "parse_portal", "to_iso", "to_portal"]

VIETNAM = ZoneInfo("Asia/Ho_Chi_Minh")
PORTAL_FORMAT = "%Y%m%d%H%M%S"
_PORTAL = re.compile(r"\d{14}")


class DateError(ValueError):
    """A value that is neither a portal date nor an ISO 8601 date or date-time."""


def parse_portal(text: str) -> datetime:
    """A ``yyyyMMddHHmmss`` string as an aware datetime in Vietnamese time; DateError if invalid."""
    if not isinstance(text, str) or not _PORTAL.fullmatch(text):
        raise DateError(f"{text!r} is not a date in the form yyyyMMddHHmmss")
    try:
        # the fields by place: strptime took five times as long, for every date of every portal
        # message the gateway sends (and datetime checks the ranges as strptime did)
        return datetime(int(text[:4]), int(text[4:6]), int(text[6:8]), int(text[8:10]),
                        int(text[10:12]), int(text[12:]), tzinfo=VIETNAM)
    except ValueError as exc:
        raise DateError(f"{text!r} is not a real date and time ({exc})") from None


def is_portal_date(text: object) -> bool:
    try:
        parse_portal(text)  # type: ignore[arg-type]
    except DateError:
        return False
    return True


def format_portal(moment: datetime) -> str:
    """``moment`` as the portal writes it; a naive datetime is taken as Vietnamese time already."""
    if moment.tzinfo is not None:
        try:
            moment = moment.astimezone(VIETNAM)
        except (OverflowError, ValueError):
            raise DateError(f"{moment.isoformat()} is outside the years the portal can write") from None
    return f"{moment.year:04d}{moment.month:02d}{moment.day:02d}" \
           f"{moment.hour:02d}{moment.minute:02d}{moment.second:02d}"


def parse_any(value: str | datetime) -> datetime:
    """A portal date or an ISO 8601 date/date-time as an aware datetime (naive means Vietnamese)."""
    if isinstance(value, datetime):
        moment = value
    elif isinstance(value, str) and _PORTAL.fullmatch(value):
        return parse_portal(value)
    elif isinstance(value, str):
        try:
            moment = datetime.fromisoformat(value.strip())
        except ValueError:
            raise DateError(f"{value!r} is neither yyyyMMddHHmmss nor an ISO 8601 date") from None
    else:
        raise DateError(f"{value!r} is not a date: expected a string")
    return moment.replace(tzinfo=VIETNAM) if moment.tzinfo is None else moment


def to_portal(value: str | datetime) -> str:
    """Any accepted date as ``yyyyMMddHHmmss`` in Vietnamese time."""
    if isinstance(value, str) and _PORTAL.fullmatch(value):
        parse_portal(value)  # a real date and time: then already in the portal's form
        return value
    return format_portal(parse_any(value))


def to_iso(text: str) -> str:
    """A portal date as ISO 8601 with its offset, e.g. ``2026-06-09T08:30:00+07:00``."""
    return parse_portal(text).isoformat()
