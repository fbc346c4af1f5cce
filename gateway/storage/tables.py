"""The database schema, as SQLAlchemy Core tables. Alembic migrations create and evolve it."""

from __future__ import annotations

import sqlalchemy as sa

metadata = sa.MetaData()

# One row per audit leaf. ``idx`` is the leaf's position in the log: contiguous from 0, given by
# the sequencer inside the transaction that stores the leaf. ``leaf`` holds the exact canonical
# JSON (RFC 8785) bytes that are hashed; the other columns are indexes into it for searching.
audit_leaves = sa.Table(
    "audit_leaves", metadata,
    sa.Column("idx", sa.BigInteger, primary_key=True, autoincrement=False),
    sa.Column("exchange_id", sa.String(64), nullable=False),
    sa.Column("ts_us", sa.BigInteger, nullable=False),  # microseconds since the epoch, UTC
    sa.Column("client", sa.String(255)),
    sa.Column("service", sa.String(255)),
    sa.Column("operation", sa.String(128)),
    sa.Column("outcome", sa.String(16), nullable=False),
    sa.Column("status", sa.Integer, nullable=False),
    sa.Column("user_id", sa.String(255)),
    sa.Column("purpose", sa.String(512)),
    sa.Column("rule", sa.String(255)),
    sa.Column("leaf", sa.LargeBinary, nullable=False),
    sa.Index("ix_audit_leaves_ts", "ts_us"),
    sa.Index("ix_audit_leaves_exchange", "exchange_id"),
    sa.Index("ix_audit_leaves_client_ts", "client", "ts_us"),
    sa.Index("ix_audit_leaves_service_ts", "service", "ts_us"),
)

# Data subjects of each leaf, as keyed hashes (HMAC-SHA-256), so that "who accessed my data" is an
# index look-up while no personal id is stored in clear.
audit_subjects = sa.Table(
    "audit_subjects", metadata,
    sa.Column("subject", sa.String(64), nullable=False),
    sa.Column("idx", sa.BigInteger, nullable=False),
    sa.PrimaryKeyConstraint("subject", "idx"),
)

# The sequencer's state: one row holding the log's size.
audit_head = sa.Table(
    "audit_head", metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("size", sa.BigInteger, nullable=False),
)
