"""Store-and-forward delivery for async services (docs/delivery.md).

An async service's request is checked, stored durably and answered ``202 Accepted`` with a delivery
id (``intake``); workers in every gateway process claim due deliveries with a lease and send them
through the same pipeline and connector as a synchronous exchange, with timeouts, exponential
backoff with jitter, a circuit breaker per upstream and a dead-letter state (``worker``, ``retry``).
Deliveries of one dossier leave in the order they were accepted, and an idempotency key makes a
repeated push return the first delivery (``admission``, ``queue``). What the delivered messages say
about each dossier feeds the KPIs (``dossiers``, ``stats``).

    messages.py     the dossier code, records and facts a message carries (pure)
    transitions.py  which status changes are impossible (pure)
    retry.py        backoff and the circuit breaker (pure)
    schema.py       JSON Schema checks at intake, 422 with every error's path
    model.py        the queue's plain data: states, a new delivery, a claim, an outcome
    admission.py    the intake decision: new, duplicate of, or refused (pure)
    queue.py        the one writer: accept (group commit), claim (lease), complete, retry, cancel, replay
    dossiers.py     each dossier's latest state, folded from delivered messages (the KPIs' facts)
    views.py        the operators' views: one delivery, listings, counts
    store.py        DeliveryStore: the parts above behind one surface
    intake.py       the pipeline's call step for async services
    worker.py       the lanes that deliver
    stats.py        KPIs per agency and period
    routes.py       /deliveries, /stats/dossiers, /metrics
    cli.py          lienthong deliveries …, lienthong stats
"""

from gateway.delivery.runtime import Deliveries

__all__ = ["Deliveries"]
