"""Which role may open which part of the console: the one table every page is checked against."""

from __future__ import annotations

__all__ = ["PAGES", "allowed"]

AUDITOR, OPERATOR, ADMIN = "auditor", "operator", "admin"

PAGES: dict[str, tuple[str, ...]] = {
    "overview": (AUDITOR, OPERATOR, ADMIN),
    "log": (AUDITOR, ADMIN),            # the exchange log, one entry with its proof, exports
    "checkpoints": (AUDITOR, OPERATOR, ADMIN),
    "subjects": (AUDITOR, ADMIN),       # "who accessed this person's data"
    "deliveries": (OPERATOR, ADMIN),
    "deliveries.act": (OPERATOR, ADMIN),  # retry, replay
    "catalog": (AUDITOR, OPERATOR, ADMIN),
    "flows": (AUDITOR, OPERATOR, ADMIN),  # joint procedures, their timelines and KPIs (read-only)
    "documents": (AUDITOR, OPERATOR, ADMIN),  # official documents, their traces and KPIs (read-only)
    "account": (AUDITOR, OPERATOR, ADMIN),  # sign out
}


def allowed(role: str | None, page: str) -> bool:
    return role is not None and role in PAGES.get(page, ())
