"""Official documents between agencies: edXML packages and their messages (gateway/documents/tables.py).

Revision ID: 0009
Revises: 0008
"""

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "documents",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("document_id", sa.String(255), nullable=False),
        sa.Column("sender_organ", sa.String(64), nullable=False),
        sa.Column("client", sa.String(255), nullable=False),
        sa.Column("exchange_id", sa.String(128), nullable=False),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("size", sa.BigInteger, nullable=False),
        sa.Column("body", sa.LargeBinary, nullable=False),
        sa.Column("attachments", sa.Text, nullable=False),
        sa.Column("created_us", sa.BigInteger, nullable=False),
        sa.UniqueConstraint("sender_organ", "document_id", name="uq_documents_sender_document"),
    )
    op.create_table(
        "document_messages",
        sa.Column("seq", BigId, primary_key=True, autoincrement=True),
        sa.Column("id", sa.String(32), nullable=False, unique=True),
        sa.Column("idem_key", sa.String(64), nullable=False, unique=True),
        sa.Column("document", sa.String(32), nullable=False),
        sa.Column("document_id", sa.String(255), nullable=False),
        sa.Column("kind", sa.String(8), nullable=False),
        sa.Column("from_organ", sa.String(64), nullable=False),
        sa.Column("to_organ", sa.String(64), nullable=False),
        sa.Column("member", sa.String(255), nullable=False),
        sa.Column("client", sa.String(255), nullable=False),
        sa.Column("service", sa.String(255)),
        sa.Column("status_code", sa.String(4)),
        sa.Column("body", sa.LargeBinary),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("size", sa.BigInteger, nullable=False),
        sa.Column("sender_client", sa.String(255), nullable=False),
        sa.Column("rule", sa.String(255)),
        sa.Column("exchange_id", sa.String(128), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("delivery_id", sa.String(32)),
        sa.Column("created_us", sa.BigInteger, nullable=False),
        sa.Column("fetched_us", sa.BigInteger),
        sa.Column("confirmed_us", sa.BigInteger),
    )
    op.create_index("ix_document_messages_inbox", "document_messages", ["client", "state", "seq"])
    op.create_index("ix_document_messages_document", "document_messages", ["document"])
    op.create_index("ix_document_messages_outbox", "document_messages", ["state", "service", "seq"])


def downgrade() -> None:
    op.drop_index("ix_document_messages_outbox", "document_messages")
    op.drop_index("ix_document_messages_document", "document_messages")
    op.drop_index("ix_document_messages_inbox", "document_messages")
    op.drop_table("document_messages")
    op.drop_table("documents")
