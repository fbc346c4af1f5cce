"""Deliveries: a large edXML package pushed to a recipient names its document's stored parts
(``body_document``) instead of holding a copy of its bytes (gateway/documents/outbox.py); each
attempt reads them from there into a file and sends them from it (gateway/delivery/worker.py).

Revision ID: 0012
Revises: 0011
"""

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("deliveries") as batch:
        batch.add_column(sa.Column("body_document", sa.String(32)))


def downgrade() -> None:
    with op.batch_alter_table("deliveries") as batch:
        batch.drop_column("body_document")
