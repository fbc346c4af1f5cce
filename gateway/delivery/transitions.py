"""Which changes of a dossier's status (``TrangThaiHoSo``) are possible.

Statuses: 1 new, 2 received, 3 not received, 4 processing, 5 more documents requested, 6 payment
required, 7 withdrawn by the citizen, 8 stopped, 9 processed, 10 result returned.

A dossier moves forward, may skip steps (one-stop systems often sync only at milestones) and may go
back and forth between 4, 5 and 6 while it is being processed. Impossible:

==========================  =========================================================
from                        to
==========================  =========================================================
3, 7, 8, 10 (final)         anything else
9 processed                 anything but 10
any status but 1            1 new
4 to 10 (past reception)    2 received, 3 not received
==========================  =========================================================

Repeating the current status is always possible (a revision of the same step).
"""

from __future__ import annotations

__all__ = ["FINAL", "NAMES", "impossible"]

NAMES = {1: "new", 2: "received", 3: "not received", 4: "processing", 5: "more documents requested",
         6: "payment required", 7: "withdrawn", 8: "stopped", 9: "processed", 10: "result returned"}
FINAL = frozenset({3, 7, 8, 10})


def impossible(before: int | None, after: int | None) -> str | None:
    """Why ``before -> after`` cannot happen, or None when it can (or either is unknown)."""
    if before is None or after is None or before == after:
        return None
    why = None
    if before in FINAL:
        why = f"{before} ({NAMES[before]}) is final"
    elif before == 9 and after != 10:
        why = "a processed dossier (9) can only have its result returned (10)"
    elif after == 1:
        why = "a dossier cannot become new (1) again"
    elif before >= 4 and after in (2, 3):
        why = "a dossier being processed cannot go back to reception"
    if why is None:
        return None
    return f"status {before} ({NAMES[before]}) cannot become {after} ({NAMES[after]}): {why}"
