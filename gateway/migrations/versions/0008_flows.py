"""Joint procedures: flows and their steps (gateway/flows/tables.py).

Revision ID: 0008
Revises: 0007
"""

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "flows",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("name", sa.String(128), nullable=False),
        sa.Column("dossier_code", sa.String(128), nullable=False),
        sa.Column("client", sa.String(255), nullable=False),
        sa.Column("exchange_id", sa.String(128), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("dossier", sa.LargeBinary, nullable=False),
        sa.Column("subjects", sa.Text, nullable=False),
        sa.Column("started_us", sa.BigInteger, nullable=False),
        sa.Column("updated_us", sa.BigInteger, nullable=False),
        sa.Column("finished_us", sa.BigInteger),
        sa.Column("deadline_us", sa.BigInteger, nullable=False),
        sa.Column("overdue", sa.Boolean, nullable=False),
        sa.Column("reason", sa.Text),
        sa.Column("next_us", sa.BigInteger, nullable=False),
        sa.Column("lease", sa.String(32)),
        sa.UniqueConstraint("name", "dossier_code", name="uq_flows_name_dossier"),
    )
    op.create_index("ix_flows_dossier", "flows", ["dossier_code"])
    op.create_index("ix_flows_state", "flows", ["state"])
    op.create_index("ix_flows_due", "flows", ["state", "next_us"])
    op.create_table(
        "flow_steps",
        sa.Column("flow_id", sa.String(32), nullable=False),
        sa.Column("step", sa.String(64), nullable=False),
        sa.Column("position", sa.Integer, nullable=False),
        sa.Column("service", sa.String(255), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("delivery_id", sa.String(32)),
        sa.Column("undo_delivery_id", sa.String(32)),
        sa.Column("sends", sa.Integer, nullable=False),
        sa.Column("due_us", sa.BigInteger, nullable=False),
        sa.Column("started_us", sa.BigInteger),
        sa.Column("finished_us", sa.BigInteger),
        sa.Column("deadline_us", sa.BigInteger),
        sa.Column("overdue", sa.Boolean, nullable=False),
        sa.Column("result", sa.LargeBinary),
        sa.Column("reason", sa.Text),
        sa.PrimaryKeyConstraint("flow_id", "step"),
    )
    op.create_index("ix_flow_steps_state", "flow_steps", ["state"])


def downgrade() -> None:
    op.drop_index("ix_flow_steps_state", "flow_steps")
    op.drop_table("flow_steps")
    op.drop_index("ix_flows_due", "flows")
    op.drop_index("ix_flows_state", "flows")
    op.drop_index("ix_flows_dossier", "flows")
    op.drop_table("flows")
