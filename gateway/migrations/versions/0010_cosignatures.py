"""Audit log: witnesses' cosignatures of the signed checkpoints (gateway/witness/client.py),
append-only like the checkpoints themselves.

Revision ID: 0010
Revises: 0009
"""

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

TABLE = "audit_cosignatures"


def upgrade() -> None:
    op.create_table(
        TABLE,
        sa.Column("size", sa.BigInteger, nullable=False),
        sa.Column("witness", sa.String(255), nullable=False),
        sa.Column("line", sa.Text, nullable=False),
        sa.Column("ts", sa.BigInteger, nullable=False),
        sa.Column("received_us", sa.BigInteger, nullable=False),
        sa.PrimaryKeyConstraint("size", "witness"),
    )
    if op.get_bind().dialect.name == "postgresql":  # audit_append_only() is 0002's
        op.execute(f"CREATE TRIGGER {TABLE}_append_only BEFORE UPDATE OR DELETE ON {TABLE} "
                   "FOR EACH ROW EXECUTE FUNCTION audit_append_only()")
        op.execute(f"CREATE TRIGGER {TABLE}_no_truncate BEFORE TRUNCATE ON {TABLE} "
                   "FOR EACH STATEMENT EXECUTE FUNCTION audit_append_only()")
        return
    for action in ("UPDATE", "DELETE"):
        op.execute(f"CREATE TRIGGER {TABLE}_no_{action.lower()} BEFORE {action} ON {TABLE} "
                   f"BEGIN SELECT RAISE(ABORT, '{TABLE} is append-only: {action} refused'); END")


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(f"DROP TRIGGER {TABLE}_no_truncate ON {TABLE}")
        op.execute(f"DROP TRIGGER {TABLE}_append_only ON {TABLE}")
    else:
        for action in ("update", "delete"):
            op.execute(f"DROP TRIGGER {TABLE}_no_{action}")
    op.drop_table(TABLE)
