"""The console's tables: its local accounts (migration 0005) and its open sessions (0006).

A session's cookie is signed (``sessions.py``) and names a random session id; the session is open
while ``console_sessions`` holds that id's SHA-256, so deleting the row (signing out, a new
password, a disabled account) ends it at once in every worker. ``epoch`` is the account's session
generation besides: a cookie names the epoch it was issued under, and raising the epoch ends every
session issued before.
"""

from __future__ import annotations

import sqlalchemy as sa

from gateway.storage.tables import metadata

__all__ = ["console_sessions", "console_users"]

console_users = sa.Table(
    "console_users", metadata,
    sa.Column("username", sa.String(64), primary_key=True),
    sa.Column("name", sa.String(255), nullable=False),
    sa.Column("role", sa.String(16), nullable=False),  # auditor, operator, admin
    sa.Column("password_hash", sa.String(255)),  # argon2id; none: signs in only through OpenID Connect
    sa.Column("enabled", sa.Boolean, nullable=False),
    sa.Column("epoch", sa.Integer, nullable=False),
    sa.Column("created_us", sa.BigInteger, nullable=False),
    sa.Column("updated_us", sa.BigInteger, nullable=False),
    sa.Column("last_login_us", sa.BigInteger),
)

console_sessions = sa.Table(
    "console_sessions", metadata,
    sa.Column("id_hash", sa.String(64), primary_key=True),  # SHA-256 of the id the cookie holds
    sa.Column("username", sa.String(64), nullable=False),
    sa.Column("created_us", sa.BigInteger, nullable=False),
    sa.Column("expires_us", sa.BigInteger, nullable=False),
    sa.Index("ix_console_sessions_username", "username"),
    sa.Index("ix_console_sessions_expires", "expires_us"),
)
