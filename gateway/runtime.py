"""Everything a running gateway process holds, built once at start-up from the configuration."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import httpx
import structlog
from sqlalchemy.engine import Engine

from gateway import keys, plugins
from gateway.audit.log import AuditLog
from gateway.audit.record import SubjectHasher
from gateway.config import Config
from gateway.connector import Connector, ConnectorContext
from gateway.exchange import Pipeline
from gateway.oauth.server import TokenServer
from gateway.oauth.verifier import TokenVerifier
from gateway.policy import Policy
from gateway.resources import schemas_dir
from gateway.storage.db import create_engine
from gateway.upstream import create_client

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
    jwks: list[dict[str, Any]]

    @classmethod
    def build(cls, config: Config) -> Runtime:
        keys_dir = config.path(config.keys_dir)
        try:
            key_set = keys.load_signing_keys(keys_dir)
            subject_key = keys.load_subject_key(keys_dir)
        except FileNotFoundError as exc:
            raise StartupError(str(exc)) from None
        policy = Policy.load(config.path(config.policies_dir))
        engine = create_engine(config.database_url)
        audit = AuditLog(engine, batch_max=config.audit.batch_max,
                         batch_wait_ms=config.audit.batch_wait_ms)
        http = create_client(transport=config.upstream.transport,
                             max_connections=config.upstream.max_connections)
        context = ConnectorContext(
            http=http,
            schemas_dir=config.path(config.schemas_dir) if config.schemas_dir else schemas_dir())
        connectors: dict[str, Connector] = {}
        for service in config.services:
            try:
                factory = plugins.load(plugins.CONNECTORS, service.connector)
                connectors[service.id] = factory(service, context)
            except plugins.PluginNotFound as exc:
                raise StartupError(f"service {service.id}: {exc}") from None
            except Exception as exc:
                raise StartupError(f"service {service.id}: connector {service.connector!r} could not "
                                   f"start: {exc}") from exc
        verifier = TokenVerifier(key_set, config.token)
        pipeline = Pipeline(config=config, verifier=verifier, policy=policy, connectors=connectors,
                            audit=audit, subjects=SubjectHasher(subject_key))
        token_server = TokenServer({c.id: c for c in config.clients}, key_set, config.token)
        return cls(config=config, engine=engine, audit=audit, http=http, connectors=connectors,
                   pipeline=pipeline, token_server=token_server, verifier=verifier,
                   jwks=[k.as_dict(private=False) for k in key_set.keys])

    def start(self) -> None:
        self.audit.start()

    async def stop(self) -> None:
        for connector in self.connectors.values():
            await connector.aclose()
        await self.http.aclose()
        self.audit.close()
        self.engine.dispose()
