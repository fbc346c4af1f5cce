"""Audit log: leaves, data-subject index and the sequencer's head.

Revision ID: 0001
Revises:
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "audit_leaves",
        sa.Column("idx", sa.BigInteger, primary_key=True, autoincrement=False),
        sa.Column("exchange_id", sa.String(64), nullable=False),
        sa.Column("ts_us", sa.BigInteger, nullable=False),
        sa.Column("client", sa.String(255)),
        sa.Column("service", sa.String(255)),
        sa.Column("operation", sa.String(128)),
        sa.Column("outcome", sa.String(16), nullable=False),
        sa.Column("status", sa.Integer, nullable=False),
        sa.Column("user_id", sa.String(255)),
        sa.Column("purpose", sa.String(512)),
        sa.Column("rule", sa.String(255)),
        sa.Column("leaf", sa.LargeBinary, nullable=False),
    )
    op.create_index("ix_audit_leaves_ts", "audit_leaves", ["ts_us"])
    op.create_index("ix_audit_leaves_exchange", "audit_leaves", ["exchange_id"])
    op.create_index("ix_audit_leaves_client_ts", "audit_leaves", ["client", "ts_us"])
    op.create_index("ix_audit_leaves_service_ts", "audit_leaves", ["service", "ts_us"])
    op.create_table(
        "audit_subjects",
        sa.Column("subject", sa.String(64), nullable=False),
        sa.Column("idx", sa.BigInteger, nullable=False),
        sa.PrimaryKeyConstraint("subject", "idx"),
    )
    op.create_table(
        "audit_head",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("size", sa.BigInteger, nullable=False),
    )
    op.bulk_insert(sa.table("audit_head", sa.column("id", sa.Integer), sa.column("size", sa.BigInteger)),
                   [{"id": 1, "size": 0}])


def downgrade() -> None:
    op.drop_table("audit_head")
    op.drop_table("audit_subjects")
    op.drop_index("ix_audit_leaves_service_ts", "audit_leaves")
    op.drop_index("ix_audit_leaves_client_ts", "audit_leaves")
    op.drop_index("ix_audit_leaves_exchange", "audit_leaves")
    op.drop_index("ix_audit_leaves_ts", "audit_leaves")
    op.drop_table("audit_leaves")
