"""Where clients live: the ``oauth_clients`` table, seeded from the configuration.

At start, every client of the configuration's ``clients:`` that the table does not hold yet is
added; from then on the database is the truth, and ``lienthong clients add|rotate-secret|disable``
change it while the gateway runs. Every worker and node reads the same rows: a token request looks
its client up afresh, and a disabled client's tokens stop working within ``token.refresh`` seconds.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
import structlog
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError

from gateway.config import Client
from gateway.identifiers import normalise_client
from gateway.oauth.jwks import public_jwks
from gateway.oauth.tables import oauth_clients

log = structlog.get_logger("lienthong.clients")
SECRET_BASIC = "client_secret_basic"  # noqa: S105 - the method's name, not a secret
PRIVATE_KEY_JWT = "private_key_jwt"


class ClientExists(ValueError):
    """A client with this id is registered already."""


class UnknownClient(LookupError):
    """No client with this id is registered."""


@dataclass(frozen=True, slots=True)
class ClientRecord:
    id: str
    name: str
    secret_hash: str | None
    jwks: dict[str, Any] | None
    scopes: tuple[str, ...]
    enabled: bool
    source: str
    created_us: int
    updated_us: int

    @property
    def auth_methods(self) -> tuple[str, ...]:
        """The token endpoint authentication methods this client can use."""
        return ((SECRET_BASIC,) if self.secret_hash else ()) + ((PRIVATE_KEY_JWT,) if self.jwks else ())

    def describe(self) -> dict[str, Any]:
        """What an operator may see: never the secret's hash."""
        return {"id": self.id, "name": self.name, "enabled": self.enabled, "scopes": list(self.scopes),
                "auth_methods": list(self.auth_methods),
                "key_ids": [k.get("kid") for k in (self.jwks or {}).get("keys", [])],
                "source": self.source, "created": _iso(self.created_us), "updated": _iso(self.updated_us)}


def _iso(us: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(us / 1_000_000))


def _row(row: Any) -> ClientRecord:
    return ClientRecord(id=row.id, name=row.name, secret_hash=row.secret_hash,
                        jwks=json.loads(row.jwks) if row.jwks else None,
                        scopes=tuple(row.scopes.split()), enabled=bool(row.enabled), source=row.source,
                        created_us=row.created_us, updated_us=row.updated_us)


class ClientStore:
    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    def seed(self, clients: Iterable[Client]) -> list[str]:
        """Add the configuration's clients the table lacks; return the ids added. A client the table
        holds already keeps its row (the database is the truth), with a warning if they differ."""
        added = []
        known = {r.id: r for r in self.all()}
        for client in clients:
            record = known.get(client.id)
            if record is not None:
                if (record.secret_hash, record.jwks, record.scopes) != (
                        client.secret_hash, client.jwks, tuple(client.scopes)) and record.source == "config":
                    log.warning("client_config_ignored", client=client.id,
                                reason="the database holds this client already and stays the truth; "
                                       "change it with 'lienthong clients'")
                continue
            try:
                self.add(client.id, name=client.name, scopes=client.scopes, secret_hash=client.secret_hash,
                         jwks=client.jwks, enabled=client.enabled, source="config")
            except ClientExists:  # another worker seeded it first
                continue
            added.append(client.id)
        return added

    def get(self, client_id: str) -> ClientRecord | None:
        with self._engine.connect() as conn:
            row = conn.execute(sa.select(oauth_clients).where(oauth_clients.c.id == client_id)).first()
        return _row(row) if row is not None else None

    def all(self) -> list[ClientRecord]:
        with self._engine.connect() as conn:
            rows = conn.execute(sa.select(oauth_clients).order_by(oauth_clients.c.id)).all()
        return [_row(r) for r in rows]

    def disabled(self) -> frozenset[str]:
        with self._engine.connect() as conn:
            rows = conn.execute(sa.select(oauth_clients.c.id).where(oauth_clients.c.enabled == sa.false()))
            return frozenset(r.id for r in rows)

    def add(self, client_id: str, *, name: str = "", scopes: Iterable[str] = ("exchange",),
            secret_hash: str | None = None, jwks: dict[str, Any] | None = None, enabled: bool = True,
            source: str = "cli") -> ClientRecord:
        client_id = normalise_client(client_id)
        if not secret_hash and not jwks:
            raise ValueError("a client needs a secret or public keys (or both)")
        if jwks is not None:
            public_jwks(jwks)
        now = time.time_ns() // 1000
        values = dict(id=client_id, name=name, secret_hash=secret_hash,
                      jwks=json.dumps(jwks, sort_keys=True) if jwks else None, scopes=" ".join(scopes),
                      enabled=enabled, source=source, created_us=now, updated_us=now)
        try:
            with self._engine.begin() as conn:
                conn.execute(oauth_clients.insert().values(**values))
        except IntegrityError:
            raise ClientExists(f"client {client_id} is registered already") from None
        record = self.get(client_id)
        assert record is not None
        return record

    def update(self, client_id: str, **changes: Any) -> ClientRecord:
        """Change some of secret_hash, jwks, scopes, name, enabled."""
        client_id = normalise_client(client_id)
        current = self.get(client_id)
        if current is None:
            raise UnknownClient(f"no client {client_id} is registered")
        if not changes.get("secret_hash", current.secret_hash) and not changes.get("jwks", current.jwks):
            raise ValueError(f"client {client_id} would be left without any credential")
        if changes.get("jwks") is not None:
            public_jwks(changes["jwks"])
            changes["jwks"] = json.dumps(changes["jwks"], sort_keys=True)
        if "scopes" in changes:
            changes["scopes"] = " ".join(changes["scopes"])
        with self._engine.begin() as conn:
            conn.execute(oauth_clients.update().where(oauth_clients.c.id == client_id)
                         .values(**changes, updated_us=time.time_ns() // 1000))
        record = self.get(client_id)
        assert record is not None
        return record
