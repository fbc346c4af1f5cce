"""Authorization server: clients, revoked tokens, replay cache of client assertions.

Revision ID: 0003
Revises: 0002
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "oauth_clients",
        sa.Column("id", sa.String(255), primary_key=True),
        sa.Column("name", sa.String(255), nullable=False, server_default=""),
        sa.Column("secret_hash", sa.String(255)),
        sa.Column("jwks", sa.Text),
        sa.Column("scopes", sa.String(1024), nullable=False, server_default=""),
        sa.Column("enabled", sa.Boolean, nullable=False, server_default=sa.true()),
        sa.Column("source", sa.String(16), nullable=False, server_default="config"),
        sa.Column("created_us", sa.BigInteger, nullable=False),
        sa.Column("updated_us", sa.BigInteger, nullable=False),
    )
    op.create_table(
        "oauth_revoked",
        sa.Column("jti", sa.String(255), primary_key=True),
        sa.Column("client", sa.String(255), nullable=False),
        sa.Column("expires_at", sa.BigInteger, nullable=False),
        sa.Column("revoked_at", sa.BigInteger, nullable=False),
    )
    op.create_index("ix_oauth_revoked_expires", "oauth_revoked", ["expires_at"])
    op.create_table(
        "oauth_assertions",
        sa.Column("key", sa.String(64), primary_key=True),
        sa.Column("expires_at", sa.BigInteger, nullable=False),
    )
    op.create_index("ix_oauth_assertions_expires", "oauth_assertions", ["expires_at"])


def downgrade() -> None:
    op.drop_index("ix_oauth_assertions_expires", "oauth_assertions")
    op.drop_table("oauth_assertions")
    op.drop_index("ix_oauth_revoked_expires", "oauth_revoked")
    op.drop_table("oauth_revoked")
    op.drop_table("oauth_clients")
