"""The joint procedures' tables (created by migration 0008).

``flows``: one row per joint dossier a one-stop system filed, unique by flow name and dossier code
(the same dossier filed again finds its flow). ``state`` is ``running``, ``waiting`` (a step's agency
is out: its delivery is retrying), ``completed``, ``rejected`` (an agency refused a step, and the
flow's declared outcome ran) or ``failed`` (a step could not be delivered at all). The joint dossier
is kept as it was filed (JSON): later steps' requests are built from it.

``flow_steps``: one row per step of a flow, in the definition's order (``position``). ``state`` is
``pending`` (not sent yet), ``sent`` (stored as a delivery: the store-and-forward queue carries it,
retries it and audits each attempt), ``done``, ``skipped`` (its condition did not hold),
``rejected``, ``failed``, ``compensating`` (its undo is on its way) or ``compensated``. A step's
request goes out as the delivery ``delivery_id``; its answer (JSON) is kept in ``result`` for the
steps after it and for the one-stop system.
"""

from __future__ import annotations

import sqlalchemy as sa

from gateway.storage.tables import metadata

__all__ = ["flow_steps", "flows"]

flows = sa.Table(
    "flows", metadata,
    sa.Column("id", sa.String(32), primary_key=True),
    sa.Column("name", sa.String(128), nullable=False),
    sa.Column("dossier_code", sa.String(128), nullable=False),
    sa.Column("client", sa.String(255), nullable=False),  # the one-stop system that filed it
    sa.Column("exchange_id", sa.String(128), nullable=False),  # the filing's audit record
    sa.Column("state", sa.String(16), nullable=False),
    sa.Column("dossier", sa.LargeBinary, nullable=False),  # the joint dossier, JSON
    sa.Column("subjects", sa.Text, nullable=False),  # JSON list of the dossier's subjects' keyed hashes
    sa.Column("started_us", sa.BigInteger, nullable=False),
    sa.Column("updated_us", sa.BigInteger, nullable=False),
    sa.Column("finished_us", sa.BigInteger),
    sa.Column("deadline_us", sa.BigInteger, nullable=False),
    sa.Column("overdue", sa.Boolean, nullable=False),
    sa.Column("reason", sa.Text),  # why it was rejected or failed
    # Who advances it: a process claims a flow that is due (``next_us`` passed, no live lease), as
    # delivery workers claim deliveries, so several gateway processes share the flows.
    sa.Column("next_us", sa.BigInteger, nullable=False),
    sa.Column("lease", sa.String(32)),
    sa.UniqueConstraint("name", "dossier_code", name="uq_flows_name_dossier"),
    sa.Index("ix_flows_dossier", "dossier_code"),
    sa.Index("ix_flows_state", "state"),
    sa.Index("ix_flows_due", "state", "next_us"),
)

flow_steps = sa.Table(
    "flow_steps", metadata,
    sa.Column("flow_id", sa.String(32), nullable=False),
    sa.Column("step", sa.String(64), nullable=False),
    sa.Column("position", sa.Integer, nullable=False),
    sa.Column("service", sa.String(255), nullable=False),
    sa.Column("state", sa.String(16), nullable=False),
    sa.Column("delivery_id", sa.String(32)),
    sa.Column("undo_delivery_id", sa.String(32)),
    # Deliveries made for it: a new one when an outage outlasted the last one's attempts.
    sa.Column("sends", sa.Integer, nullable=False),
    sa.Column("due_us", sa.BigInteger, nullable=False),  # the next send not before (its backoff)
    sa.Column("started_us", sa.BigInteger),
    sa.Column("finished_us", sa.BigInteger),
    sa.Column("deadline_us", sa.BigInteger),
    sa.Column("overdue", sa.Boolean, nullable=False),
    sa.Column("result", sa.LargeBinary),  # the agency's answer, JSON
    sa.Column("reason", sa.Text),  # JSON: the refusal or failure, as the agency or the gateway said it
    sa.PrimaryKeyConstraint("flow_id", "step"),
    sa.Index("ix_flow_steps_state", "state"),
)
