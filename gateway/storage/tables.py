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
    # Partial: a leaf without an official or a purpose costs these indexes nothing.
    sa.Index("ix_audit_leaves_user_ts", "user_id", "ts_us",
             sqlite_where=sa.text("user_id IS NOT NULL"), postgresql_where=sa.text("user_id IS NOT NULL")),
    sa.Index("ix_audit_leaves_purpose", "purpose",
             sqlite_where=sa.text("purpose IS NOT NULL"), postgresql_where=sa.text("purpose IS NOT NULL")),
)

# Data subjects of each leaf, as keyed hashes (HMAC-SHA-256), so that "who accessed my data" is an
# index look-up while no personal id is stored in clear.
audit_subjects = sa.Table(
    "audit_subjects", metadata,
    sa.Column("subject", sa.String(64), nullable=False),
    sa.Column("idx", sa.BigInteger, nullable=False),
    sa.PrimaryKeyConstraint("subject", "idx"),
    sa.Index("ix_audit_subjects_idx", "idx"),
)

# The sequencer's state: one row holding the log's size and the RFC 9162 root of its Merkle tree,
# both changed in the transaction that appends leaves.
audit_head = sa.Table(
    "audit_head", metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("size", sa.BigInteger, nullable=False),
    sa.Column("root", sa.LargeBinary),  # 32 bytes
)

# The Merkle tree's perfect subtrees: node (level, idx) is the RFC 9162 hash of leaves
# [idx * 2**level, (idx + 1) * 2**level); level 0 holds the leaf hashes. A node is written once, in
# the transaction that completes it, so any proof or the tree's right edge is O(log n) reads.
audit_nodes = sa.Table(
    "audit_nodes", metadata,
    sa.Column("level", sa.SmallInteger, nullable=False),
    sa.Column("idx", sa.BigInteger, nullable=False),
    sa.Column("hash", sa.LargeBinary, nullable=False),
    sa.PrimaryKeyConstraint("level", "idx"),
    sqlite_with_rowid=False,  # the key is the row: one B-tree to write, not two
)

# Signed checkpoints (C2SP signed notes), at most one per tree size.
audit_checkpoints = sa.Table(
    "audit_checkpoints", metadata,
    sa.Column("size", sa.BigInteger, primary_key=True, autoincrement=False),
    sa.Column("root", sa.LargeBinary, nullable=False),
    sa.Column("note", sa.Text, nullable=False),
    sa.Column("ts_us", sa.BigInteger, nullable=False),
)

# Witnesses' cosignatures (C2SP cosignature/v1) of the signed checkpoints: the signature line each
# witness answered, at most one per checkpoint size and witness name (gateway/witness/client.py).
audit_cosignatures = sa.Table(
    "audit_cosignatures", metadata,
    sa.Column("size", sa.BigInteger, nullable=False),
    sa.Column("witness", sa.String(255), nullable=False),
    sa.Column("line", sa.Text, nullable=False),
    sa.Column("ts", sa.BigInteger, nullable=False),  # the cosignature's own time, seconds since the epoch
    sa.Column("received_us", sa.BigInteger, nullable=False),
    sa.PrimaryKeyConstraint("size", "witness"),
)

# Exchange bodies kept by policy, apart from the leaves: each part AES-256-GCM encrypted
# (12-byte nonce || ciphertext and tag), bound to its exchange. Rows past ``expires_us`` are purged;
# the leaves keep the bodies' SHA-256, so the tree stays verifiable.
audit_bodies = sa.Table(
    "audit_bodies", metadata,
    sa.Column("idx", sa.BigInteger, primary_key=True, autoincrement=False),
    sa.Column("key_id", sa.String(16), nullable=False),
    sa.Column("expires_us", sa.BigInteger),  # none: kept until a rule with a retention applies
    sa.Column("request", sa.LargeBinary, nullable=False),
    sa.Column("response", sa.LargeBinary, nullable=False),
    sa.Column("upstream_request", sa.LargeBinary),
    sa.Column("upstream_response", sa.LargeBinary),
    sa.Index("ix_audit_bodies_expires", "expires_us"),
)

# Failed authentications (console sign-ins, OAuth client authentications), one row per account or
# client address (gateway/throttle.py). The key is SHA-256 of the door, the kind and the value, so no
# username, client id or address is stored in clear. ``next_us`` is the earliest time the key may try
# again; every worker and node reads and changes a row under its lock.
auth_throttle = sa.Table(
    "auth_throttle", metadata,
    sa.Column("key", sa.String(64), primary_key=True),
    sa.Column("failures", sa.Integer, nullable=False),
    sa.Column("last_us", sa.BigInteger, nullable=False),  # the latest counted attempt
    sa.Column("next_us", sa.BigInteger, nullable=False),
    sa.Index("ix_auth_throttle_last", "last_us"),
)
