"""The authorization server's tables (migration 0003): clients, revoked tokens, seen assertions."""

from __future__ import annotations

import sqlalchemy as sa

metadata = sa.MetaData()

# Registered clients. Seeded from the configuration's ``clients:`` (rows missing here are added at
# start), then administered with ``lienthong clients``: the database is the truth for a running
# gateway, so every worker and node sees a change at once.
oauth_clients = sa.Table(
    "oauth_clients", metadata,
    sa.Column("id", sa.String(255), primary_key=True),
    sa.Column("name", sa.String(255), nullable=False, server_default=""),
    sa.Column("secret_hash", sa.String(255)),  # argon2id; NULL when the client has only keys
    sa.Column("jwks", sa.Text),  # public keys for private_key_jwt, JSON
    sa.Column("scopes", sa.String(1024), nullable=False, server_default=""),  # space-separated
    sa.Column("enabled", sa.Boolean, nullable=False, server_default=sa.true()),
    sa.Column("source", sa.String(16), nullable=False, server_default="config"),
    sa.Column("created_us", sa.BigInteger, nullable=False),
    sa.Column("updated_us", sa.BigInteger, nullable=False),
)

# Revoked access tokens (RFC 7009), by jti, kept until the token would have expired anyway.
oauth_revoked = sa.Table(
    "oauth_revoked", metadata,
    sa.Column("jti", sa.String(255), primary_key=True),
    sa.Column("client", sa.String(255), nullable=False),
    sa.Column("expires_at", sa.BigInteger, nullable=False),  # seconds since the epoch
    sa.Column("revoked_at", sa.BigInteger, nullable=False),
    sa.Index("ix_oauth_revoked_expires", "expires_at"),
)

# Client assertions already used (RFC 7523 replay cache), when no Redis is configured. The key is
# SHA-256 of "client jti"; a row lives until the assertion itself expires.
oauth_assertions = sa.Table(
    "oauth_assertions", metadata,
    sa.Column("key", sa.String(64), primary_key=True),
    sa.Column("expires_at", sa.BigInteger, nullable=False),
    sa.Index("ix_oauth_assertions_expires", "expires_at"),
)
