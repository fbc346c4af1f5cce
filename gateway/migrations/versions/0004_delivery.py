"""Delivery queue: store-and-forward deliveries and the dossiers' latest state (KPIs).

Revision ID: 0004
Revises: 0003
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "deliveries",
        sa.Column("seq", BigId, primary_key=True, autoincrement=True),
        sa.Column("id", sa.String(32), nullable=False, unique=True),
        sa.Column("idem_key", sa.String(64), nullable=False, unique=True),
        sa.Column("order_key", sa.String(400), nullable=False),
        sa.Column("dossier", sa.String(128)),
        sa.Column("service", sa.String(255), nullable=False),
        sa.Column("operation", sa.String(128), nullable=False),
        sa.Column("client", sa.String(255), nullable=False),
        sa.Column("rule", sa.String(255)),
        sa.Column("exchange_id", sa.String(128), nullable=False),
        sa.Column("user_id", sa.String(255)),
        sa.Column("purpose", sa.String(512)),
        sa.Column("represented_party", sa.String(255)),
        sa.Column("method", sa.String(16), nullable=False),
        sa.Column("path", sa.Text, nullable=False),
        sa.Column("query", sa.Text, nullable=False),
        sa.Column("content_type", sa.String(255), nullable=False),
        sa.Column("body", sa.LargeBinary, nullable=False),
        sa.Column("body_sha256", sa.String(64), nullable=False),
        sa.Column("subjects", sa.Text, nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("attempt_base", sa.Integer, nullable=False),
        sa.Column("next_us", sa.BigInteger, nullable=False),
        sa.Column("lease", sa.String(32)),
        sa.Column("worker", sa.String(64)),
        sa.Column("created_us", sa.BigInteger, nullable=False),
        sa.Column("updated_us", sa.BigInteger, nullable=False),
        sa.Column("delivered_us", sa.BigInteger),
        sa.Column("last_error", sa.Text),
        sa.Column("response_status", sa.Integer),
        sa.Column("response", sa.LargeBinary),
        sa.Column("flag", sa.String(512)),
        sa.Column("replay_of", sa.String(32)),
    )
    op.create_index("ix_deliveries_service_state_seq", "deliveries", ["service", "state", "seq"])
    op.create_index("ix_deliveries_order", "deliveries", ["order_key", "seq"])
    op.create_index("ix_deliveries_dossier", "deliveries", ["dossier"])
    op.create_index("ix_deliveries_state_seq", "deliveries", ["state", "seq"])
    op.create_table(
        "delivery_dossiers",
        sa.Column("code", sa.String(128), primary_key=True),
        sa.Column("agency", sa.String(64), nullable=False),
        sa.Column("procedure", sa.String(64)),
        sa.Column("received_at", sa.String(14)),
        sa.Column("due_at", sa.String(14)),
        sa.Column("online", sa.Boolean),
        sa.Column("status", sa.Integer),
        sa.Column("resolved_at", sa.String(14)),
        sa.Column("intake_status", sa.Integer),
        sa.Column("updated_us", sa.BigInteger, nullable=False),
    )
    op.create_index("ix_delivery_dossiers_agency_received", "delivery_dossiers", ["agency", "received_at"])
    op.create_index("ix_delivery_dossiers_agency_resolved", "delivery_dossiers", ["agency", "resolved_at"])


def downgrade() -> None:
    op.drop_table("delivery_dossiers")
    op.drop_table("deliveries")
