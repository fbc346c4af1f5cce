"""Official documents: a large package's bytes in pieces beside its row (gateway/documents/tables.py),
written from the spooled body in the row's transaction and read back piece by piece.

Revision ID: 0011
Revises: 0010
"""

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "document_parts",
        sa.Column("document", sa.String(32), nullable=False),
        sa.Column("n", sa.Integer, nullable=False),
        sa.Column("data", sa.LargeBinary, nullable=False),
        sa.PrimaryKeyConstraint("document", "n"),
    )
    if op.get_bind().dialect.name == "postgresql":
        # base64 does not compress; TOAST would try on every piece (pglz) for nothing
        op.execute("ALTER TABLE document_parts ALTER COLUMN data SET STORAGE EXTERNAL")


def downgrade() -> None:
    op.drop_table("document_parts")
