"""Audit log: Merkle tree nodes, the head's root, signed checkpoints, kept bodies, guard rails.

Existing leaves are integrated into the tree here, so a log started under 0001 carries on.

The guard rails refuse UPDATE and DELETE on the append-only audit tables (leaves, subjects, tree
nodes, checkpoints): SQLite triggers (the gateway's connections turn ``recursive_triggers`` on, so
``INSERT OR REPLACE`` fires the delete trigger too) and PostgreSQL triggers, TRUNCATE included.
They catch mistakes and casual edits; the proof against tampering is the tree and the checkpoints.

Revision ID: 0002
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

APPEND_ONLY = ("audit_leaves", "audit_subjects", "audit_nodes", "audit_checkpoints")
_BACKFILL_CHUNK = 50_000


def upgrade() -> None:
    op.add_column("audit_head", sa.Column("root", sa.LargeBinary))
    for name, columns, column in (("ix_audit_leaves_user_ts", ["user_id", "ts_us"], "user_id"),
                                  ("ix_audit_leaves_purpose", ["purpose"], "purpose")):
        present = sa.text(f"{column} IS NOT NULL")  # partial: leaves without one cost nothing
        op.create_index(name, "audit_leaves", columns, sqlite_where=present, postgresql_where=present)
    op.create_index("ix_audit_subjects_idx", "audit_subjects", ["idx"])
    op.create_table(
        "audit_nodes",
        sa.Column("level", sa.SmallInteger, nullable=False),
        sa.Column("idx", sa.BigInteger, nullable=False),
        sa.Column("hash", sa.LargeBinary, nullable=False),
        sa.PrimaryKeyConstraint("level", "idx"),
        sqlite_with_rowid=False,
    )
    op.create_table(
        "audit_checkpoints",
        sa.Column("size", sa.BigInteger, primary_key=True, autoincrement=False),
        sa.Column("root", sa.LargeBinary, nullable=False),
        sa.Column("note", sa.Text, nullable=False),
        sa.Column("ts_us", sa.BigInteger, nullable=False),
    )
    op.create_table(
        "audit_bodies",
        sa.Column("idx", sa.BigInteger, primary_key=True, autoincrement=False),
        sa.Column("key_id", sa.String(16), nullable=False),
        sa.Column("expires_us", sa.BigInteger),
        sa.Column("request", sa.LargeBinary, nullable=False),
        sa.Column("response", sa.LargeBinary, nullable=False),
        sa.Column("upstream_request", sa.LargeBinary),
        sa.Column("upstream_response", sa.LargeBinary),
    )
    op.create_index("ix_audit_bodies_expires", "audit_bodies", ["expires_us"])
    _integrate_existing_leaves()
    _create_guards()


def _integrate_existing_leaves() -> None:
    from gateway.audit.merkle import Frontier, leaf_hashes

    conn = op.get_bind()
    leaves, nodes = sa.table("audit_leaves", sa.column("idx"), sa.column("leaf")), \
        sa.table("audit_nodes", sa.column("level"), sa.column("idx"), sa.column("hash"))
    size = conn.execute(sa.text("SELECT size FROM audit_head WHERE id = 1")).scalar_one()
    frontier = Frontier()
    while frontier.size < size:
        rows = conn.execute(sa.select(leaves.c.idx, leaves.c.leaf)
                            .where(leaves.c.idx >= frontier.size).order_by(leaves.c.idx)
                            .limit(_BACKFILL_CHUNK)).all()
        if not rows or rows[0].idx != frontier.size or rows[-1].idx != frontier.size + len(rows) - 1:
            raise RuntimeError(f"audit leaf {frontier.size} is missing: cannot build the Merkle tree "
                               "(run 'lienthong audit verify' on the old log)")
        rows = [r for r in rows if r.idx < size]
        completed = frontier.extend(leaf_hashes(bytes(r.leaf) for r in rows))
        conn.execute(sa.insert(nodes), [{"level": n.level, "idx": n.index, "hash": n.hash}
                                        for n in completed])
    conn.execute(sa.text("UPDATE audit_head SET root = :root WHERE id = 1"), {"root": frontier.root()})


def _create_guards() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("""
            CREATE FUNCTION audit_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN
                RAISE EXCEPTION 'audit table % is append-only: % refused', TG_TABLE_NAME, TG_OP
                    USING ERRCODE = 'insufficient_privilege';
            END $$""")
        for table in APPEND_ONLY:
            op.execute(f"CREATE TRIGGER {table}_append_only BEFORE UPDATE OR DELETE ON {table} "
                       "FOR EACH ROW EXECUTE FUNCTION audit_append_only()")
            op.execute(f"CREATE TRIGGER {table}_no_truncate BEFORE TRUNCATE ON {table} "
                       "FOR EACH STATEMENT EXECUTE FUNCTION audit_append_only()")
        return
    for table in APPEND_ONLY:
        for action in ("UPDATE", "DELETE"):
            op.execute(f"CREATE TRIGGER {table}_no_{action.lower()} BEFORE {action} ON {table} "
                       f"BEGIN SELECT RAISE(ABORT, '{table} is append-only: {action} refused'); END")


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        for table in APPEND_ONLY:
            op.execute(f"DROP TRIGGER {table}_no_truncate ON {table}")
            op.execute(f"DROP TRIGGER {table}_append_only ON {table}")
        op.execute("DROP FUNCTION audit_append_only()")
    else:
        for table in APPEND_ONLY:
            for action in ("update", "delete"):
                op.execute(f"DROP TRIGGER {table}_no_{action}")
    op.drop_index("ix_audit_bodies_expires", "audit_bodies")
    op.drop_table("audit_bodies")
    op.drop_table("audit_checkpoints")
    op.drop_table("audit_nodes")
    op.drop_index("ix_audit_subjects_idx", "audit_subjects")
    op.drop_index("ix_audit_leaves_purpose", "audit_leaves")
    op.drop_index("ix_audit_leaves_user_ts", "audit_leaves")
    with op.batch_alter_table("audit_head") as batch:
        batch.drop_column("root")
