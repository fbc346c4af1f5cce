"""Delivery workers: every gateway process runs one lane per upstream, and lanes of all processes
compete for the same queue.

A lane claims the due deliveries of its services (see ``DeliveryStore.claim``) up to its free
slots, and sends each through the same pipeline as every exchange (``Pipeline.deliver``: the
service's connector, with its timeout, then render and audit), so each attempt is one audit record
(protocol "delivery", exchange id ``{delivery id}.{attempt}``). Then it records the outcome:

- an answer: ``delivered``, with the answer kept for ``GET /deliveries/{id}``;
- a retryable failure (unreachable, timeout, 5xx, the portal's "99" or "10"): ``pending`` again,
  due after the backoff; once ``max_attempts`` are spent, ``dead``;
- a permanent refusal (the portal's "02", "03", "05", a 422): ``dead`` at once.

Each lane has a circuit breaker (``retry.Breaker``): while it is open the lane claims nothing, and
deliveries it had claimed but not yet sent are released without counting the attempt.

A delivery whose worker dies mid-flight keeps its lease until ``timeout + lease_margin`` and is then
claimed again: at least once, never lost. The upstream's own idempotency (the portal accepts an
identical dossier again, and this project's simulators do not apply a repeated one twice) makes the
repeat harmless; docs/delivery.md states the guarantee exactly.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import orjson
import structlog

from gateway.agencies import member_of
from gateway.config import Config, Service
from gateway.delivery.intake import agency_of
from gateway.delivery.messages import facts
from gateway.delivery.retry import Breaker, backoff, is_retryable
from gateway.delivery.store import DEAD, DELIVERED, PENDING, Claimed, DeliveryStore, Outcome, now_us
from gateway.errors import GatewayError, ServerError
from gateway.exchange import Addressed, Exchange, Pipeline, Rendered, Result
from gateway.problems import problem_bytes

if TYPE_CHECKING:
    from gateway.spool import Spooled

# A large document's stored parts as a file for one attempt (gateway/documents/store.py, spool_body);
# None when they are not there.
StoredBody = Callable[[str], "Spooled | None"]

__all__ = ["Dispatcher", "Lane", "render"]

log = structlog.get_logger("lienthong.delivery")

PROTOCOL = "delivery"


def render(result: Result) -> Rendered:
    """An attempt's outcome as the client would have got it: the upstream's JSON, or a problem."""
    if result.error is not None:
        body = problem_bytes(result.error, exchange_id=result.exchange.id)
        return Rendered(result.error.status, [("content-type", "application/problem+json")], body)
    reply = result.reply
    assert reply is not None
    body = bytes(reply.payload) if isinstance(reply.payload, bytes | bytearray) \
        else orjson.dumps(reply.payload)
    return Rendered(reply.status, [("content-type", reply.content_type)], body)


def upstream_key(service: Service) -> str:
    """Services whose upstream is the same host share a lane (and its breaker)."""
    from urllib.parse import urlsplit

    parts = urlsplit(service.upstream)
    return f"{parts.scheme}://{parts.netloc}" if parts.netloc else service.upstream


@dataclass
class Lane:
    name: str
    services: list[Service]
    breaker: Breaker
    concurrency: int
    in_flight: int = 0
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    delivered: int = 0
    failed: int = 0


class Dispatcher:
    def __init__(self, store: DeliveryStore, pipeline: Pipeline, config: Config, *, worker: str,
                 queued: Iterable[str] = (), bodies: StoredBody | None = None) -> None:
        self.store = store
        self.bodies = bodies
        self.pipeline = pipeline
        self.config = config
        self.settings = config.delivery
        self.worker = worker
        self.lanes: dict[str, Lane] = {}
        self._lane_of: dict[str, Lane] = {}  # by service id
        also = set(queued)  # sync services that others store deliveries for: the flows' steps
        for service in config.services:
            if (service.delivery != "async" and service.id not in also) or service.route:
                continue  # a routing service's deliveries are stored for the receiving service
            key = upstream_key(service)
            lane = self.lanes.get(key)
            if lane is None:
                s = self.settings
                lane = self.lanes[key] = Lane(key, [], Breaker(s.breaker_failures, s.breaker_cooldown,
                                                               s.breaker_cooldown_max), s.concurrency)
            lane.services.append(service)
            self._lane_of[service.id] = lane
        self._tasks: set[asyncio.Task[Any]] = set()
        self._loops: list[asyncio.Task[None]] = []
        self._running = False

    def start(self) -> None:
        if self._running:
            return
        self._running = True
        self._loops = [asyncio.create_task(self._loop(lane), name=f"delivery-lane {lane.name}")
                       for lane in self.lanes.values()]

    def poke(self, service: str | None = None) -> None:
        """Something was queued (for ``service``: only its lane looks): look now rather than at
        the next poll. Waking every lane for one delivery cost each of them a read of the queue."""
        lane = self._lane_of.get(service) if service is not None else None
        for woken in (lane,) if lane is not None else self.lanes.values():
            woken.wake.set()

    async def stop(self, grace: float = 10.0) -> None:
        """Stop claiming; let deliveries in flight finish for up to ``grace`` seconds. Those still
        running are abandoned: their leases lapse and another worker takes them."""
        self._running = False
        self.poke()
        for task in self._loops:
            task.cancel()
        await asyncio.gather(*self._loops, return_exceptions=True)
        if self._tasks:
            _, pending = await asyncio.wait(self._tasks, timeout=grace)
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)

    async def _loop(self, lane: Lane) -> None:
        names = [s.id for s in lane.services]
        poll = self.settings.poll_interval
        while self._running:
            lane.wake.clear()
            now = time.monotonic()
            free = lane.concurrency - lane.in_flight
            if lane.in_flight and free < max(1, lane.concurrency // 8):
                # Busy: claim when a few slots are free, in one statement rather than one each.
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(lane.wake.wait(), timeout=poll)
                continue
            room = lane.breaker.capacity(now, free)
            claimed: list[Claimed] = []
            if room > 0:
                try:
                    claimed = await self._claim(names, room, lane)
                except Exception as exc:  # the database is away: try again at the next poll
                    log.warning("delivery_claim_failed", lane=lane.name, error=type(exc).__name__)
                if not claimed:
                    lane.breaker.released()  # a probe reserved for nothing
            for item in claimed:
                lane.in_flight += 1
                task = asyncio.create_task(self._attempt(lane, item))
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)
            if len(claimed) >= room > 0:
                continue  # there may be more at once
            wait = poll
            if lane.breaker.state(now) == "open" and lane.breaker.opened_until is not None:
                wait = max(0.01, min(poll, lane.breaker.opened_until - now))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(lane.wake.wait(), timeout=wait)

    async def _claim(self, names: list[str], room: int, lane: Lane) -> list[Claimed]:
        if not await asyncio.to_thread(self.store.due, names):
            return []
        lease = max(s.timeout for s in lane.services) + self.settings.lease_margin
        return await self.store.claim(names, room, lease, self.worker)

    async def _attempt(self, lane: Lane, item: Claimed) -> None:
        try:
            await self._send(lane, item)
        except Exception as exc:  # never let one delivery take the lane down; its lease will lapse
            log.error("delivery_attempt_crashed", delivery=item.id, error=type(exc).__name__)
        finally:
            lane.in_flight -= 1
            lane.wake.set()

    async def _send(self, lane: Lane, item: Claimed) -> None:
        service = self.config.service(item.service)
        now = time.monotonic()
        if service is None or lane.breaker.state(now) == "open":
            delay = 0.0
            if lane.breaker.opened_until is not None:
                delay = max(0.0, lane.breaker.opened_until - now)
            await self.store.complete(Outcome(item.id, item.lease, PENDING,
                                              next_us=now_us() + int(delay * 1e6), released=True))
            return
        spooled = None
        if item.body_document is not None:
            spooled = await self._stored_body(item)
            if spooled is None:
                return
        try:
            ctx, rendered = await self.pipeline.deliver(self.context(item, service, spooled), render,
                                                        item.decided)
        finally:
            if spooled is not None:  # the attempt is recorded by now; the next reads the parts again
                spooled.close()
        outcome = self.outcome(item, service, ctx, rendered, lane)
        if not await self.store.complete(outcome):
            log.warning("delivery_lease_lost", delivery=item.id, attempt=item.attempts)
            return
        for listener in self.store.listeners:
            try:
                listener(item, outcome)
            except Exception as exc:  # a listener's bug must not undo a recorded attempt
                log.error("delivery_listener_failed", delivery=item.id, error=type(exc).__name__)

    async def _stored_body(self, item: Claimed) -> Spooled | None:
        """The document's stored parts in a file for this attempt, checked against the digest the
        delivery was accepted with; when they are gone or differ, the delivery is dead (None)."""
        assert item.body_document is not None
        spooled = await asyncio.to_thread(self.bodies, item.body_document) if self.bodies else None
        if spooled is not None and spooled.sha256 == item.body_sha256:
            return spooled
        if spooled is not None:
            spooled.close()
        err = ServerError(f"the stored bytes of document {item.body_document} are "
                          f"{'missing' if spooled is None else 'not those it was accepted with'}")
        log.error("delivery_body_missing", delivery=item.id, document=item.body_document)
        await self.store.complete(Outcome(item.id, item.lease, DEAD,
                                          error=describe_error(err, item.attempts)))
        return None

    def context(self, item: Claimed, service: Service, spooled: Spooled | None = None) -> Result:
        """The stored request as the pipeline's context, as it stood when it was accepted; a large
        document's body from ``spooled``, its stored parts read into a file."""
        payload = None
        if item.body and "json" in item.content_type.lower():
            try:
                payload = orjson.loads(item.body)
            except orjson.JSONDecodeError:
                payload = None
        exchange = Exchange(id=f"{item.id}.{item.attempts}", protocol=PROTOCOL,
                            received_us=now_us(), method=item.method, service_id=item.service,
                            path=item.path, query=item.query, body=item.body,
                            content_type=item.content_type, user_id=item.user_id, issue=item.purpose,
                            represented_party=item.represented_party, operation=item.operation,
                            spooled=spooled)
        return Result(exchange=exchange, request_sha256=item.body_sha256 or hashlib.sha256(item.body)
                      .hexdigest(), client=item.client, service=service, operation=item.operation,
                      rule=item.rule, payload=payload, subjects=item.subjects,
                      agency=Addressed(item.addressed, member_of(service.id)) if item.addressed
                      else None, document=delivered_document(item, exchange.body_size))

    def outcome(self, item: Claimed, service: Service, ctx: Result, rendered: Rendered,
                lane: Lane) -> Outcome:
        now = time.monotonic()
        err = ctx.error
        if err is None:
            lane.breaker.succeeded()
            lane.delivered += 1
            tracked = service.dossier
            return Outcome(item.id, item.lease, DELIVERED, response_status=rendered.status,
                           response=rendered.body,
                           facts=tuple(facts(tracked.message, ctx.payload)) if tracked else (),
                           agency=agency_of(service, item.client) if tracked else None)
        lane.failed += 1
        retry = is_retryable(err)
        if retry:
            lane.breaker.failed(now)
        else:
            lane.breaker.succeeded()  # a permanent refusal: the upstream is there and answering
        error = describe_error(err, item.attempts)
        if retry and item.attempts - item.attempt_base < self.settings.max_attempts:
            delay = backoff(item.attempts, base=self.settings.backoff_base, cap=self.settings.backoff_max)
            log.info("delivery_retry", delivery=item.id, attempt=item.attempts, error=err.code,
                     in_s=round(delay, 2))
            return Outcome(item.id, item.lease, PENDING, next_us=now_us() + int(delay * 1e6),
                           error=error, response_status=rendered.status, response=rendered.body)
        log.warning("delivery_dead", delivery=item.id, attempt=item.attempts, error=err.code,
                    retryable=retry)
        return Outcome(item.id, item.lease, DEAD, error=error, response_status=rendered.status,
                       response=rendered.body)


def delivered_document(item: Claimed, size: int) -> dict[str, Any] | None:
    """An edXML message pushed to a recipient (gateway/documents/outbox.py, operation
    ``edxml.package`` or ``edxml.status``): its document's id and digest, for the attempt's record."""
    if not item.operation.startswith("edxml."):
        return None
    return {"id": item.dossier, "kind": item.operation[len("edxml."):], "sha256": item.body_sha256,
            "size": size}


def describe_error(err: GatewayError, attempt: int) -> dict[str, Any]:
    extra = {k: v for k, v in err.extra.items() if k in ("error_code", "message", "status", "operation")}
    return {"code": err.code, "status": err.status, "detail": err.detail, "retryable": err.retryable,
            "attempt": attempt, "at": now_us(), **extra}

