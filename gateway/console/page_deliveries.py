"""Deliveries by state (dead letters first), and an operator's retry or replay of one of them.

The delivery store does the work (``gateway.delivery.store``); this page pages through it, and after
an action pokes the workers so the delivery leaves now rather than at their next look.
"""

from __future__ import annotations

from collections import Counter
from urllib.parse import urlencode

from starlette.responses import RedirectResponse, Response

from gateway.bounds import index
from gateway.console.web import Ctx, PageRoute

__all__ = ["DELIVERY_STATES", "ROUTES", "back_to"]

DELIVERY_STATES = ("dead", "pending", "delivered", "cancelled")
PAGE = 50


def deliveries(ctx: Ctx) -> Response:
    store = ctx.data.deliveries
    state = ctx.query.get("state", "dead")
    state = state if state in DELIVERY_STATES else "dead"
    service = ctx.query.get("service", "").replace("\x00", "").strip() or None  # NUL: see logquery
    after = index(ctx.query.get("after")) or 0
    items = store.find(state=state, service=service, after=after, limit=PAGE + 1)
    by_state: Counter[str] = Counter()
    for row in store.counts():
        by_state[row["state"]] += int(row["n"])
    more = len(items) > PAGE
    items = items[:PAGE]
    ctx.note.purpose = f"state={state}" + (f" service={service}" if service else "")
    params = {"state": state, **({"service": service} if service else {})}
    next_url = f"{ctx.base}/deliveries?{urlencode({**params, 'after': items[-1]['seq']})}" if more else None
    # every gateway runs a delivery queue (Runtime.deliveries): the page is always available
    return ctx.render("deliveries.html", items=items, state=state, states=DELIVERY_STATES, by_state=by_state,
                      service=service or "",
                      services=[s.id for s in ctx.config.services if s.delivery == "async"],
                      available=True, next_url=next_url, done=ctx.query.get("done"), can_act=True)


def _act(ctx: Ctx, what: str) -> Response:
    store = ctx.data.deliveries
    delivery_id = ctx.request.path_params["delivery_id"]
    ctx.note.purpose = f"{what} delivery {delivery_id}"
    if what == "retry":
        count = store.retry(ids=[delivery_id], state=None)
        done = f"retried:{count}"
    else:
        created = store.replay(ids=[delivery_id])
        count = len(created)
        done = f"replayed:{count}"
    ctx.data.poke_deliveries()
    if count == 0:
        ctx.note.error = "Client.NothingToDo"
    target = back_to(ctx.base, ctx.form.get("back", ""))
    glue = "&" if "?" in target else "?"
    return RedirectResponse(f"{target}{glue}{urlencode({'done': done})}", 303)


def back_to(base: str, back: str) -> str:
    """Where an action returns: the deliveries list it was taken from (its filters kept), never a
    page outside it."""
    return back if back.startswith(f"{base}/deliveries") else f"{base}/deliveries"


def retry(ctx: Ctx) -> Response:
    return _act(ctx, "retry")


def replay(ctx: Ctx) -> Response:
    return _act(ctx, "replay")


ROUTES = (
    PageRoute("/deliveries", deliveries, "deliveries", "deliveries"),
    PageRoute("/deliveries/{delivery_id}/retry", retry, "deliveries.act", "deliveries.retry", ("POST",)),
    PageRoute("/deliveries/{delivery_id}/replay", replay, "deliveries.act", "deliveries.replay", ("POST",)),
)
