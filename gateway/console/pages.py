"""The console's pages, one module per area; this module mounts them in order.

    page_auth.py         signing in and out, the language, ``/`` (redirect targets kept inside)
    page_overview.py     traffic, refusals, latency, upstream health, dossier KPIs
    page_log.py          the exchange log: search, exports, one entry with its proof, checkpoints
    page_subjects.py     the data-subject report
    page_deliveries.py   deliveries by state; retry and replay
    page_flows.py        joint procedures: the list with their KPIs, one flow's timeline
    page_documents.py    official documents (edXML): the list with their KPIs, one document's trace
    page_catalog.py      members, subsystems, services and their policy rules

A page is a plain function of a ``Ctx`` (``web.py``) run in a worker thread, or, before signing in,
an async function of the console and the request. Each module lists its pages in ``ROUTES``: path,
methods, the permission needed (``permissions.PAGES``) and the action its audit record names.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from starlette.routing import Route

from gateway.console import (
    page_auth,
    page_catalog,
    page_deliveries,
    page_documents,
    page_flows,
    page_log,
    page_overview,
    page_subjects,
)
from gateway.console.web import OpenRoute, PageRoute

if TYPE_CHECKING:
    from gateway.console.web import Console

__all__ = ["AREAS", "routes"]

AREAS: tuple[tuple[OpenRoute | PageRoute, ...], ...] = (
    page_auth.ROUTES, page_overview.ROUTES, page_log.ROUTES, page_subjects.ROUTES, page_deliveries.ROUTES,
    page_flows.ROUTES, page_documents.ROUTES, page_catalog.ROUTES)


def routes(console: Console) -> list[Route]:
    """Every page's Starlette route, bound to ``console`` (its sign-in, role check and audit)."""
    return [page.route(console) for area in AREAS for page in area]
