"""The console's tables (created by migration 0005): its local accounts.

Sessions are not stored: they live in signed cookies (``sessions.py``). ``epoch`` is the account's
session generation: a cookie names the epoch it was issued under, and raising the epoch (a new
password, a disabled account, "sign out everywhere") ends every session issued before.
"""

from __future__ import annotations

import sqlalchemy as sa

from gateway.storage.tables import metadata

__all__ = ["console_users"]

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
