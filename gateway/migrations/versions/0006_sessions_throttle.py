"""Console sessions kept server-side, and the sign-in / client-authentication throttle.

Revision ID: 0006
Revises: 0005
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "console_sessions",
        sa.Column("id_hash", sa.String(64), primary_key=True),
        sa.Column("username", sa.String(64), nullable=False),
        sa.Column("created_us", sa.BigInteger, nullable=False),
        sa.Column("expires_us", sa.BigInteger, nullable=False),
        sa.Index("ix_console_sessions_username", "username"),
        sa.Index("ix_console_sessions_expires", "expires_us"),
    )
    op.create_table(
        "auth_throttle",
        sa.Column("key", sa.String(64), primary_key=True),
        sa.Column("failures", sa.Integer, nullable=False),
        sa.Column("last_us", sa.BigInteger, nullable=False),
        sa.Column("next_us", sa.BigInteger, nullable=False),
        sa.Index("ix_auth_throttle_last", "last_us"),
    )


def downgrade() -> None:
    op.drop_table("auth_throttle")
    op.drop_table("console_sessions")
