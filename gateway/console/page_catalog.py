"""The catalog, read-only: members (former agencies marked, with their successors), their subsystems,
the services each provides and the policy rules that open each service, to whom.
"""

from __future__ import annotations

from dataclasses import dataclass

from starlette.responses import Response

from gateway.agencies import today
from gateway.config import Service
from gateway.console.web import Ctx, PageRoute
from gateway.policy import Rule

__all__ = ["ROUTES", "ServiceRules"]


@dataclass(frozen=True)
class ServiceRules:
    """A service and the rules that may open it, each with the client patterns it admits."""

    service: Service
    rules: list[tuple[Rule, tuple[str, ...]]]


def catalog(ctx: Ctx) -> Response:
    data, config = ctx.data, ctx.config
    services_of: dict[str, list[ServiceRules]] = {}
    for service in config.services:
        owner = str(service.service_id.subsystem_id)
        services_of.setdefault(owner, []).append(
            ServiceRules(service, [(r, data.clients_of(r)) for r in data.rules_for(service.id)]))
    agencies, day = config.agencies, today()
    return ctx.render("catalog.html", members=config.members, services_of=services_of, clients=config.clients,
                      names={m.id: m.name or m.id for m in config.members},
                      former={m.id for m in config.members if agencies.ended(m.id, day)},
                      formers_of={m.id: agencies.formers(m.id) for m in config.members})


ROUTES = (PageRoute("/catalog", catalog, "catalog", "catalog"),)
