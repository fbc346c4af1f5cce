"""The web console for auditors and operators, served by the gateway under ``/console``
(docs/console.md).

    web.py          the ASGI app: sessions, CSRF, roles, the audit record of every action
    pages.py        the route table, mounting one module per area: page_auth.py (sign-in, sign-out,
                    language), page_overview.py, page_log.py (log, one entry, exports,
                    checkpoints), page_subjects.py, page_deliveries.py, page_catalog.py;
                    labels.py holds the pure helpers they share (names, durations, percentages)
    oidc.py         signing in through an outside OpenID Connect provider (authlib)
    sources.py      the one interface to the audit log, checkpoints, delivery queue, KPIs, policy
    logquery.py     searching the audit log's index columns (pure SQL, no I/O beyond it)
    overview.py     traffic, latency, refusals, upstream health
    charts.py       SVG charts drawn on the server
    users.py        local accounts (argon2id), roles; cli.py: ``lienthong users``
                    (sign-ins are throttled by gateway/throttle.py, shared with the token endpoint)
    demo.py         the demo's accounts and the lines ``lienthong demo --keep-running`` prints
    sessions.py     signed session cookies carrying the CSRF token and the session's id
    sessionstore.py which sessions are open (server-side): sign-out ends one everywhere at once
    permissions.py  which role opens which page
    i18n.py, catalogue.py   Vietnamese and English
    static/verify.js        the in-browser check of an entry's inclusion proof and checkpoint
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from gateway.audit.service import AuditService
    from gateway.console.web import Console
    from gateway.runtime import Runtime

__all__ = ["build_console"]


def build_console(get_runtime: Callable[[], Runtime],
                  get_audit: Callable[[], AuditService | None] | None = None) -> Console:
    """The console's ASGI app; ``get_runtime`` returns the running gateway's ``Runtime``,
    ``get_audit`` its ``AuditService`` (checkpoints), when the gateway runs one."""
    from gateway.console.web import Console

    return Console(get_runtime, get_audit)
