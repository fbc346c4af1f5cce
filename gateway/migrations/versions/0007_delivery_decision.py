"""A delivery keeps the decision it was accepted under, and the agency it was addressed to.

``response_fields``: JSON ``{"fields": [...]}`` (``null`` for "the whole answer may leave") of the
allowing rule at intake; a row from before this revision has none, and the rule's current fields
apply. ``addressed``: the member a routed message named, when its successor received it.

Revision ID: 0007
Revises: 0006
"""

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("deliveries") as batch:
        batch.add_column(sa.Column("response_fields", sa.Text))
        batch.add_column(sa.Column("addressed", sa.String(255)))


def downgrade() -> None:
    with op.batch_alter_table("deliveries") as batch:
        batch.drop_column("addressed")
        batch.drop_column("response_fields")
