"""The range of the numbers a caller may send: what the databases' 64-bit signed integers hold.

Leaf indexes, checkpoint sizes and delivery sequence numbers are ``BIGINT`` columns. Python's
integers have no bound, so a number past ``2**63 - 1`` reaches the database driver and fails there
(a server error) unless it is refused at the edge: FastAPI routes say ``le=MAX_INDEX`` on the
parameter, and pages that read the query string themselves use ``index``. Text has a bound too:
PostgreSQL's text cannot hold the NUL character, and its driver fails on one, so routes that pass a
string to a query say ``pattern=TEXT``.
"""

from __future__ import annotations

import re

__all__ = ["MAX_INDEX", "SIGNED_MOST", "TEXT", "OutOfRange", "check", "index"]

MAX_INDEX = 2**63 - 1
TEXT = r"^[^\x00]*$"  # any string without NUL
# The largest body whose signature is verified (XML-DSig, JWS: gateway/signatures/); a larger signed
# body is "unsupported", and a spooled one is not even read back (gateway/steps.py).
SIGNED_MOST = 16 * 1_048_576
# ASCII digits only: str.isdigit() also says yes to "²" and "١", which int() then refuses or reads.
_DIGITS = re.compile(r"[0-9]+")


class OutOfRange(ValueError):
    """A number the caller sent lies outside what the gateway can look up."""

    def __init__(self, value: str) -> None:
        super().__init__(f"{value[:40]} is not a number from 0 to {MAX_INDEX}")


def index(text: str | None) -> int | None:
    """A non-negative decimal number, None when the text is absent or not digits at all, or
    ``OutOfRange`` when it is digits beyond ``MAX_INDEX``."""
    if not text or not _DIGITS.fullmatch(text):
        return None
    digits = text.lstrip("0") or "0"  # int() refuses more than 4300 digits, leading zeros included
    if len(digits) > len(str(MAX_INDEX)):
        raise OutOfRange(text)
    return check(int(digits))


def check(value: int) -> int:
    """``value`` itself when it is an index the databases can hold, else ``OutOfRange``."""
    if not 0 <= value <= MAX_INDEX:
        raise OutOfRange(str(value))
    return value
