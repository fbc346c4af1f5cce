"""X-Road's metadata services, answered from the catalog and the policies.

X-Road clients discover providers and services through metaservices (X-Road PR-META for SOAP,
PR-MREST for REST); the gateway answers the same calls itself:

- ``GET /listClients[?xRoadInstance=VN]``: the members and subsystems of the catalog, as the
  ``clientList`` XML, or JSON when ``Accept: application/json`` (gateway/listclients.py);
- ``GET /r1/{provider subsystem}/listMethods`` and ``/allowedMethods``: the provider's services, all
  of them or those the calling client may call, in PR-MREST's JSON (``rest_answer``);
- ``GET /r1/{provider subsystem}/getOpenAPI?serviceCode=…``: an OpenAPI description of one service;
- the SOAP forms (``listMethods``, ``allowedMethods``, ``getWsdl``) live in gateway/soap/metadata.py.

"May call" is the policy engine's own decision (``Policy.decide``) for each service, never a second
matcher. Every metadata call goes through ``Pipeline.answer``: the token is checked as for any
exchange (an X-Road client header must be the token's client), and the call is audited like any
exchange, refusals included. X-Road reserves the metaservices' codes; here a service that the
catalog registers under such an id is served as registered (the operator's word wins), and every
other id ending in one of the codes is answered by the gateway.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any
from urllib.parse import parse_qs

from lxml import etree

from gateway.agencies import today
from gateway.config import Config, Service
from gateway.connector import Reply
from gateway.errors import Forbidden, GatewayError, InvalidRequest, MethodNotAllowed, UnknownService
from gateway.exchange import Answer, Exchange, Pipeline, Result
from gateway.policy import Policy, Request
from gateway.problems import PROBLEM_TYPE
from gateway.public import public_base

__all__ = ["REST_CODES", "SOAP_CODES", "MetaCall", "client_list", "may_call",
           "meta_call", "provided", "rest_answer"]

XROAD = "http://x-road.eu/xsd/xroad.xsd"
IDEN = "http://x-road.eu/xsd/identifiers"
REST_CODES = frozenset({"listMethods", "allowedMethods", "getOpenAPI"})
SOAP_CODES = frozenset({"listMethods", "allowedMethods", "getWsdl"})
_PER_CALL = "(asked of each call)"  # see may_call


@dataclass(frozen=True, slots=True)
class MetaCall:
    """A metaservice addressed to a provider: ``INSTANCE/CLASS/MEMBER[/SUBSYSTEM]`` and the code."""

    provider: str
    code: str


def meta_call(service_id: str, codes: frozenset[str]) -> MetaCall | None:
    """The metaservice a service id names, or None: ``…/SUBSYSTEM/listMethods``, a member-level
    ``…/MEMBER/listMethods`` (SOAP), with or without a version (PR-META's getWsdl example has ``v1``)."""
    parts = service_id.split("/")
    if len(parts) == 6 and _is_version(parts[5]):
        parts = parts[:5]
    if len(parts) not in (4, 5) or parts[-1] not in codes:
        return None
    return MetaCall("/".join(parts[:-1]), parts[-1])


def _is_version(segment: str) -> bool:
    return len(segment) > 1 and segment[0] == "v" and segment[1:].replace(".", "").isdigit()


def provided(config: Config, provider: str) -> list[Service]:
    """The catalog's services of a subsystem (or of every subsystem of a member); UnknownService
    when the catalog declares no such member or subsystem."""
    members = {m.id for m in config.members}
    subsystems = {f"{m.id}/{s.code}" for m in config.members for s in m.subsystems}
    if provider not in members and provider not in subsystems:
        raise UnknownService(f"no member or subsystem {provider} is registered here")
    depth = provider.count("/") + 1
    return [s for s in config.services if "/".join(s.id.split("/")[:depth]) == provider]


def may_call(policy: Policy, client: str, scopes: frozenset[str], service: Service) -> bool:
    """Whether a rule lets the client call the service with this token's scopes: the engine's own
    decision. The acting official and the purpose are asked of each call, not of a client, so a
    rule that requires them still counts as allowing the service here."""
    try:
        policy.decide(Request(client=client, service=service.id, operation=service.operation_name,
                              scopes=scopes, user_id=_PER_CALL, issue=_PER_CALL))
    except Forbidden:
        return False
    return True


def methods(policy: Policy, ctx: Result, services: Sequence[Service], code: str) -> list[Service]:
    """listMethods: every service; allowedMethods: those the authenticated client may call."""
    if code != "allowedMethods":
        return list(services)
    assert ctx.client is not None
    return [s for s in services if may_call(policy, ctx.client, ctx.scopes, s)]


def answered(ctx: Result, code: str, make: Callable[[], Reply]) -> Result:
    """The context with the metaservice's reply, or with the gateway error that refused it."""
    ctx = replace(ctx, operation=code)
    try:
        return replace(ctx, reply=make())
    except GatewayError as err:
        return replace(ctx, error=err)


# -- REST (PR-MREST) ----------------------------------------------------------------------------------

def rest_answer(pipeline: Pipeline, exchange: Exchange) -> Answer | None:
    """The answer of a REST metaservice call, or None when the exchange names none (cheap: the
    hot path asks this of every exchange)."""
    if exchange.service_id.rsplit("/", 1)[-1] not in REST_CODES or exchange.path:
        return None
    call = meta_call(exchange.service_id, REST_CODES)
    if call is None or pipeline.config.service(exchange.service_id) is not None:
        return None

    def answer(ctx: Result) -> Result:
        return answered(ctx, call.code, lambda: _rest_reply(pipeline, ctx, call))

    return answer


def _rest_reply(pipeline: Pipeline, ctx: Result, call: MetaCall) -> Reply:
    if ctx.exchange.method not in ("GET", "HEAD"):
        raise MethodNotAllowed(f"{call.code} is read with GET", headers={"Allow": "GET"})
    config = pipeline.config
    services = provided(config, call.provider)
    if call.code == "getOpenAPI":
        code = (parse_qs(ctx.exchange.query).get("serviceCode") or [""])[0]
        if not code:
            raise InvalidRequest("getOpenAPI needs the query parameter serviceCode")
        found = [s for s in services if s.service_id.service_code == code]
        if not found:
            raise UnknownService(f"{call.provider} provides no service {code}")
        return Reply(openapi_of(config, found[0]))
    listed = methods(pipeline.policy, ctx, services, call.code)
    return Reply({"service": [rest_service(s) for s in listed]})


def rest_service(service: Service) -> dict[str, Any]:
    """One service in PR-MREST's JSON: its identifier, type and endpoints."""
    sid = service.service_id
    out: dict[str, Any] = {"member_class": sid.member_class, "member_code": sid.code,
                           "object_type": "SERVICE", "service_code": sid.service_code,
                           "service_type": "REST", "subsystem_code": sid.subsystem,
                           "xroad_instance": sid.instance}
    if sid.version:
        out["service_version"] = sid.version
    out["endpoint_list"] = [{"method": "*", "path": p} for p in endpoint_paths(service)]
    return out


def endpoint_paths(service: Service) -> list[str]:
    """The paths a client may call below the service's code, in X-Road's wildcard notation: ``/``
    alone when it takes no extra path, ``/items`` and ``/items/**`` for extra_path ``/items``."""
    extra = service.extra_path
    if extra is None:
        return ["/"]
    prefix = extra.rstrip("/")
    return [*([prefix] if prefix else ["/"]), f"{prefix}/**"]


def openapi_of(config: Config, service: Service) -> dict[str, Any]:
    """A small OpenAPI 3 description of one service as the gateway serves it at /r1."""
    operation: dict[str, Any] = {
        "summary": service.description or service.id,
        "security": [{"bearerToken": []}],
        "responses": {"200": {"description": "the upstream's answer"},
                      "default": {"description": "an RFC 9457 problem",
                                  "content": {PROBLEM_TYPE: {"schema": {"type": "object"}}}}}}
    methods_ = ("post",) if service.delivery == "async" else ("get", "post")
    item = {m: {**operation, "operationId": f"{m}_{service.service_id.service_code}"} for m in methods_}
    paths: dict[str, Any] = {f"/{service.id}": item}
    if service.extra_path is not None:
        paths[f"/{service.id}{service.extra_path.rstrip('/')}/{{path}}"] = {
            m: {**op, "operationId": f"{op['operationId']}_path",
                "parameters": [{"name": "path", "in": "path", "required": True,
                                "schema": {"type": "string"}}]} for m, op in item.items()}
    return {"openapi": "3.0.3",
            "info": {"title": service.id, "version": service.service_id.version or "1",
                     "description": service.description},
            "servers": [{"url": f"{public_base(config)}/r1"}],
            "components": {"securitySchemes": {"bearerToken": {"type": "http", "scheme": "bearer",
                                                               "bearerFormat": "JWT"}}},
            "paths": paths}


# -- listClients (PR-META section 2) --------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class ClientItem:
    """A member or one of its subsystems, with the member's name (and the subsystem's)."""

    id: str
    name: str
    subsystem_name: str | None = None

    @property
    def object_type(self) -> str:
        return "SUBSYSTEM" if self.id.count("/") == 3 else "MEMBER"


def client_list(config: Config, instance: str | None = None) -> list[ClientItem]:
    """The catalog's members and their subsystems in one X-Road instance (this one by default):
    those current today, as X-Road lists the registered ones (a former agency's ids are refused as
    clients after its last day, gateway/agencies.py)."""
    wanted = instance or config.instance
    day = today()
    out: list[ClientItem] = []
    for member in config.members:
        if member.id.split("/")[0] != wanted or config.agencies.refusal(member.id, day) is not None:
            continue
        out.append(ClientItem(member.id, member.name))
        out.extend(ClientItem(f"{member.id}/{s.code}", member.name, s.name) for s in member.subsystems)
    return out


_CODES = ("xRoadInstance", "memberClass", "memberCode", "subsystemCode", "serviceCode", "serviceVersion")
_JSON_CODES = ("xroad_instance", "member_class", "member_code", "subsystem_code")


def identifier(parent: Any, tag: str, object_type: str, parts: Sequence[str]) -> Any:
    """An X-Road identifier element (``id:objectType`` and the codes in order) under ``parent``."""
    node = etree.SubElement(parent, tag)
    node.set(f"{{{IDEN}}}objectType", object_type)
    for name, value in zip(_CODES, parts, strict=False):
        etree.SubElement(node, f"{{{IDEN}}}{name}").text = value
    return node


def client_list_xml(items: Sequence[ClientItem]) -> bytes:
    root = etree.Element(f"{{{XROAD}}}clientList", nsmap={"xroad": XROAD, "id": IDEN})
    for item in items:
        member = etree.SubElement(root, f"{{{XROAD}}}member")
        identifier(member, f"{{{XROAD}}}id", item.object_type, item.id.split("/"))
        if item.name:
            etree.SubElement(member, f"{{{XROAD}}}name").text = item.name
        if item.subsystem_name:
            etree.SubElement(member, f"{{{XROAD}}}subsystemName").text = item.subsystem_name
    wire: bytes = etree.tostring(root, xml_declaration=True, encoding="UTF-8")
    return wire


def client_list_json(items: Sequence[ClientItem]) -> dict[str, Any]:
    def one(item: ClientItem) -> dict[str, Any]:
        out: dict[str, Any] = {"id": {"object_type": item.object_type,
                                      **dict(zip(_JSON_CODES, item.id.split("/"), strict=False))}}
        if item.name:
            out["name"] = item.name
        if item.subsystem_name:
            out["subsystem_name"] = item.subsystem_name
        return out

    return {"member": [one(i) for i in items]}
