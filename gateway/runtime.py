"""Everything a running gateway process holds, built once at start-up from the configuration."""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import httpx
import structlog
from sqlalchemy.engine import Engine

from gateway import keys, plugins, tracing
from gateway.audit.log import AuditLog
from gateway.audit.record import SubjectHasher
from gateway.config import Config
from gateway.connector import Connector, ConnectorContext
from gateway.delivery import Deliveries
from gateway.delivery.retention import RetentionTimer
from gateway.documents.desk import DocumentDesk
from gateway.documents.outbox import Outbox
from gateway.documents.store import DocumentStore
from gateway.exchange import Pipeline, Ports, standard_checks
from gateway.flows import load_flows
from gateway.flows.engine import FlowEngine
from gateway.flows.store import FlowStore
from gateway.frontdoor import FrontDoor
from gateway.oauth.clients import ClientStore
from gateway.oauth.security import Security
from gateway.oauth.server import TokenServer
from gateway.oauth.verifier import TokenVerifier
from gateway.policy import Policy
from gateway.resources import schemas_dir
from gateway.seal import Sealer, SealKeyError, load_sealer
from gateway.signed import trust_check
from gateway.spine import authenticated
from gateway.storage.db import create_engine
from gateway.storage.shared import SharedWriter
from gateway.upstream import create_client

if TYPE_CHECKING:  # OpenTelemetry is loaded only where tracing is on
    from gateway.tracing.spans import Tracer

log = structlog.get_logger("lienthong.runtime")


class StartupError(RuntimeError):
    """The gateway cannot start; the message says what to fix."""


@dataclass
class Runtime:
    config: Config
    engine: Engine
    audit: AuditLog
    http: httpx.AsyncClient
    connectors: dict[str, Connector]
    pipeline: Pipeline
    token_server: TokenServer
    verifier: TokenVerifier
    security: Security
    deliveries: Deliveries
    flows: FlowEngine | None = None
    documents: DocumentDesk | None = None
    seal: Sealer | None = None  # the gateway seal (gateway/seal), None when seal.enabled is false
    retention: RetentionTimer | None = None  # delivery.retention_days' hourly purge, once started
    quiet: bool = field(default=False, init=False)  # quiesce() ran: nothing of its own sends more
    tracer: Tracer | None = None  # exports traces while started, when tracing.enabled

    @property
    def jwks(self) -> list[dict[str, Any]]:
        return self.security.jwks()

    @property
    def clients(self) -> ClientStore:
        return self.security.clients

    @classmethod
    def build(cls, config: Config, *, front_door: FrontDoor | None = None) -> Runtime:
        """``front_door``: the serving application's count of exchanges in flight, which the flow
        engine gives way to (none: a process that serves none)."""
        keys_dir = config.path(config.keys_dir)
        try:
            keys.load_signing_keys(keys_dir)
            subject_key = keys.load_subject_key(keys_dir)
        except (FileNotFoundError, keys.KeyFileError) as exc:
            raise StartupError(str(exc)) from None
        policies_dir = config.path(config.policies_dir)
        policy = Policy.load(policies_dir)
        try:  # once, before anything starts: a broken trust store stops the gateway here
            signatures = trust_check(config, policy)
        except ValueError as exc:
            raise StartupError(f"signatures: {exc} (a service or policy rule asks for signatures; "
                               "see docs/signatures.md)") from None
        try:
            tracing.require(config.tracing)
        except tracing.TracingUnavailable as exc:
            raise StartupError(str(exc)) from None
        try:
            seal = load_sealer(config)
        except SealKeyError as exc:
            raise StartupError(f"seal: {exc} (see docs/signatures.md#gateway-seal)") from None
        engine = create_engine(config.database_url)
        security = Security.build(config, engine, keys_dir, policies_dir)
        # SQLite: one writer thread and transaction for the audit log, the queue, the flows and the
        # sent packages (gateway/storage/shared.py); PostgreSQL: a writer each.
        shared = (SharedWriter(engine, batch_max=2 * config.audit.batch_max,
                               wait_ms=config.audit.batch_wait_ms,
                               wait_max_ms=config.audit.batch_wait_max_ms)
                  if engine.dialect.name == "sqlite" else None)
        audit = AuditLog(engine, batch_max=config.audit.batch_max,
                         batch_wait_ms=config.audit.batch_wait_ms,
                         batch_wait_max_ms=config.audit.batch_wait_max_ms, shared=shared)
        http = create_client(transport=config.upstream.transport,
                             max_connections=config.upstream.max_connections)
        context = ConnectorContext(
            http=http,
            schemas_dir=config.path(config.schemas_dir) if config.schemas_dir else schemas_dir())
        connectors: dict[str, Connector] = {}
        found = load_flows(config.path(config.flows_dir), config)
        if found.problems:
            raise StartupError("the joint procedures do not check:\n" +
                               "\n".join(f"  {problem}" for problem in found.problems))
        for service in config.services:
            if service.route or service.flow is not None or service.documents:
                continue  # stored for the receiving member's service, or the flow's steps' services
            try:
                factory = plugins.load(plugins.CONNECTORS, service.connector)
                connectors[service.id] = factory(service, context)
            except plugins.PluginNotFound as exc:
                raise StartupError(f"service {service.id}: {exc}") from None
            except Exception as exc:
                raise StartupError(f"service {service.id}: connector {service.connector!r} could not "
                                   f"start: {exc}") from exc
        try:
            deliveries = Deliveries.build(config, engine, context.schemas_dir, shared=shared)
        except ValueError as exc:
            raise StartupError(str(exc)) from None
        flows = (FlowEngine(config, found, FlowStore(engine, shared=shared), deliveries.store,
                            config.flows_client, max_attempts=config.delivery.max_attempts,
                            busy=front_door.busy if front_door is not None else None)
                 if found.flows else None)
        documents = None
        if any(service.documents for service in config.services):
            store = DocumentStore(engine)
            documents = DocumentDesk(config, store, Outbox(store, deliveries.store, deliveries.poke),
                                     shared=shared)
        ports = Ports(
            config=config, tokens=functools.partial(authenticated, security.verifier, config),
            policy=policy, connectors=connectors, audit=audit, subjects=SubjectHasher(subject_key),
            limiter=security.limiter, intake=deliveries.intake, validators=deliveries.validators,
            flows=flows.file if flows is not None else None, signatures=signatures, seal=seal,
            documents=documents)
        pipeline = Pipeline(ports)
        # a large package's deliveries read its stored parts into a file beside the incoming bodies'
        deliveries.attach(pipeline, queued=found.called, bodies=functools.partial(
            documents.store.spool_body, directory=config.state_path("spool")) if documents else None)
        if flows is not None:
            flows.attach(ports, standard_checks(ports, authenticated=False), deliveries.intake)
        return cls(config=config, engine=engine, audit=audit, http=http, connectors=connectors,
                   pipeline=pipeline, token_server=security.token_server, verifier=security.verifier,
                   security=security, deliveries=deliveries, flows=flows, documents=documents, seal=seal)

    def start(self) -> None:
        self.tracer = tracing.start(self.config.tracing)
        self.audit.start()
        self.security.start(http=self.http, on_policy=self._use_policy)
        self.deliveries.start()
        if self.flows is not None and self.config.delivery.workers:  # where the workers run
            self.flows.start()
        if self.documents is not None and self.config.delivery.workers:
            self.documents.outbox.start()  # hands over what a crash left stored but not queued
        days = self.config.delivery.retention_days
        if days is not None and self.config.delivery.workers:  # inside the event loop
            self.retention = RetentionTimer(self.engine, self.audit, days)
            self.retention.start()

    def _use_policy(self, policy: Policy) -> None:
        self.pipeline.policy = policy

    async def quiesce(self) -> None:
        """Stop what makes exchanges of the process's own (the retention purge, the flow engine,
        the documents' outbox, the delivery workers), letting those in flight finish: called while
        the audit log still runs. Closed before the workers, it made every attempt in flight at a
        graceful stop fail for want of it, and be sent to its upstream again after the restart."""
        if self.quiet:
            return
        self.quiet = True
        if self.retention is not None:
            await self.retention.stop()
        if self.flows is not None:
            await self.flows.stop()  # before the queue: a step being stored still needs it
        if self.documents is not None:
            await self.documents.outbox.stop()  # before the queue, which it writes to
            self.documents.batcher.close()  # what it holds is stored before the writer stops
        await self.deliveries.stop()  # deliveries in flight still need connectors and audit

    async def stop(self) -> None:
        await self.quiesce()  # first
        await self.security.stop()
        for connector in self.connectors.values():
            await connector.aclose()
        await self.http.aclose()
        self.audit.close()
        self.engine.dispose()
        await tracing.stop(self.tracer)  # last: what stopping did is exported too
        self.tracer = None
