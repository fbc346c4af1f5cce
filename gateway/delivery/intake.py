"""The pipeline's ``call`` step for an async service: store the request durably, answer 202.

By the time a request gets here it has been authenticated, authorised, parsed and checked against
the service's schema. For a service that carries dossier messages, the request must concern one
dossier (``MaHoSo``): that code puts it in its chain (deliveries of one dossier to one subsystem go
out in the order they were accepted) and, with the content, makes its idempotency key. The 202
carries the delivery's id, its state and ``Location: /deliveries/{id}``; a repeated push gets the
first delivery's (``duplicate: true``).

A routing service (``route: true``) owns no upstream: the agency its dossier code names picks the
member and that member's receiving service (gateway/routing.py), and the delivery is stored for that
service, as if the client had called it: its lane, breaker, connector and per-dossier order, shared
with direct pushes to it. The 202 says where it went (``routedTo``; ``addressedMember`` when the code
names a former agency whose successor got it, gateway/agencies.py), and so does the audit record;
an agency no member receives is refused here, 422, naming it, before anything is stored.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable
from typing import Any

from gateway.agencies import Ended, today
from gateway.config import Config, Service
from gateway.connector import Reply
from gateway.context import evolve
from gateway.delivery.messages import dossier_code, idempotency_key, records, status_of
from gateway.delivery.store import DeliveryStore, NewDelivery
from gateway.errors import InvalidBody, InvalidRequest
from gateway.exchange import Addressed, Result
from gateway.identifiers import ServiceId, split_id
from gateway.ids import new_id
from gateway.policy import Kept
from gateway.recent import Recent
from gateway.routing import Routes, Target

__all__ = ["Intake", "agency_of"]

MAX_KEY = 255
# Dossiers whose owner this process looked up, kept for their next progress updates: a few hashes
# each, and enough for the progress of every flow of a large batch in flight.
OWNERS_KEPT = 65_536


def agency_of(service: Service, client: str) -> str:
    """The agency code a tracked dossier counts for (``000.00.00.H22``)."""
    assert service.dossier is not None
    return _member_code(service.id if service.dossier.agency == "provider" else client)


@functools.lru_cache(maxsize=4096)
def _member_code(identifier: str) -> str:
    return split_id(identifier)[2]


@functools.lru_cache(maxsize=1024)
def _owner(service_id: str) -> str:
    return str(ServiceId.parse(service_id).subsystem_id)


class Intake:
    def __init__(self, store: DeliveryStore, config: Config,
                 notify: Callable[[str], None] | None = None) -> None:
        self.store = store
        self.config = config
        self._notify = notify
        self.routes = Routes.of(config)
        # A dossier's earliest message that named people stays its earliest: once found, kept.
        self._owners: Recent[str, tuple[str, ...]] = Recent(OWNERS_KEPT)

    async def __call__(self, ctx: Result) -> Result:
        target = self.route(ctx)
        ctx = await self._owner_of_progress(ctx)
        delivery = self.new_delivery(ctx, target)
        accepted = await self.store.accept(delivery)
        if self._notify is not None and not accepted.duplicate:
            self._notify(delivery.service)
        body: dict[str, Any] = {"deliveryId": accepted.id, "state": accepted.state,
                                "duplicate": accepted.duplicate}
        if accepted.flag:
            body["flag"] = accepted.flag
        if target is not None:
            body["routedTo"] = {"agency": target.agency, "member": target.member,
                                "service": target.service}
            if target.addressed != target.member:  # a former agency's: its successor got it
                body["routedTo"]["addressedMember"] = target.addressed
            ctx = evolve(ctx, agency=Addressed(target.addressed, target.member))
        location = f"/deliveries/{accepted.id}"
        return evolve(ctx, reply=Reply(payload={**body, "location": location}, status=202,
                                       headers={"Location": location}))

    async def _owner_of_progress(self, ctx: Result) -> Result:
        """A progress update names no citizen, but it is about the dossier's owner: the subjects
        the dossier's earlier messages named are this one's too (the audit record indexes them,
        so the owner's access report shows every step of their dossier)."""
        tracking = ctx.service.dossier if ctx.service is not None else None
        if tracking is None or tracking.message != "progress" or ctx.subjects:
            return ctx
        code = dossier_code(ctx.payload)
        known = self._owners.get(code)
        if known is None:
            known = await asyncio.to_thread(self.store.subjects_of, code)
            if known:  # none yet: an earlier message may still be on its way, ask again next time
                self._owners.put(code, known)
        return evolve(ctx, subjects=known) if known else ctx

    def route(self, ctx: Result) -> Target | None:
        """Where a routing service's request goes; None for any other service."""
        service = ctx.service
        assert service is not None
        if not service.route:
            return None
        assert service.dossier is not None
        code = dossier_code(ctx.payload)
        try:
            target = self.routes.target(code, service.dossier.message, today())
        except Ended as err:  # a former agency's work went nowhere this code names
            raise InvalidBody(str(err), status=422, errors=[{"path": "$.MaHoSo", "message": str(err)}]) \
                from None
        if target is None:
            refusal = Routes.refusal(code, service.dossier.message)
            raise InvalidBody(refusal, status=422, errors=[{"path": "$.MaHoSo", "message": refusal}])
        return target

    def new_delivery(self, ctx: Result, target: Target | None = None) -> NewDelivery:
        ex, service, operation = ctx.exchange, ctx.service, ctx.operation
        if target is not None:  # stored for the receiving service, as if the client had called it
            service = self.config.service(target.service)
            operation = service.operation_name if service is not None else None
        assert service is not None and ctx.client is not None and operation is not None
        explicit = ex.idempotency_key.strip() if ex.idempotency_key else None
        if explicit is not None and (len(explicit) > MAX_KEY or not explicit.isprintable()):
            raise InvalidRequest(f"Idempotency-Key must be at most {MAX_KEY} printable characters")
        tracking = service.dossier
        code = dossier_code(ctx.payload) if tracking is not None else None
        delivery_id = new_id()
        owner = _owner(service.id)
        status = None
        if tracking is not None:
            statuses = [status_of(r, tracking.message) for r in records(ctx.payload)]
            known = [s for s in statuses if s is not None]
            status = known[-1] if known else None
        return NewDelivery(
            id=delivery_id,
            idem_key=idempotency_key(ctx.client, service.id, explicit, code, ctx.payload, ex.body),
            order_key=f"{owner}|{code}" if code is not None else delivery_id, dossier=code,
            service=service.id, operation=operation, client=ctx.client, rule=ctx.rule,
            exchange_id=ex.id, user_id=ex.user_id, purpose=ex.issue,
            represented_party=ex.represented_party, method=ex.method, path=ex.path, query=ex.query,
            content_type=ex.content_type, body=ex.body, body_sha256=ctx.request_sha256,
            subjects=ctx.subjects, agency=agency_of(service, ctx.client) if tracking else None,
            status=status, transitions=self.config.delivery.transitions,
            decided=Kept(None if ctx.decision is None or ctx.decision.rule.response_fields is None
                         else tuple(ctx.decision.rule.response_fields)),
            addressed=target.addressed if target is not None and target.addressed != target.member
            else None)
