"""The delivery queue's tables (created by migration 0004).

``deliveries``: one row per accepted async request. ``seq`` orders everything (the order of
acceptance); ``order_key`` names the chain a delivery waits in (the target subsystem and the dossier
code), and only the lowest ``seq`` of a chain that is still pending or dead may go out. ``state`` is
``pending`` (waiting, or in flight while ``lease`` is set and ``next_us`` has not passed),
``delivered``, ``dead`` (dead letter: permanent refusal or attempts spent) or ``cancelled``.

``delivery_dossiers``: the latest state of each dossier that went through, for the KPIs, and the
latest status accepted at intake, for the check of impossible status changes. Dates are the
portal's ``yyyyMMddHHmmss`` in Vietnamese time, which sort as time does and group by month with a
prefix.
"""

from __future__ import annotations

import sqlalchemy as sa

from gateway.storage.tables import metadata

__all__ = ["deliveries", "delivery_dossiers"]

BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")  # SQLite's rowid alias autoincrements

deliveries = sa.Table(
    "deliveries", metadata,
    sa.Column("seq", BigId, primary_key=True, autoincrement=True),
    sa.Column("id", sa.String(32), nullable=False, unique=True),
    sa.Column("idem_key", sa.String(64), nullable=False, unique=True),
    sa.Column("order_key", sa.String(400), nullable=False),
    sa.Column("dossier", sa.String(128)),
    sa.Column("service", sa.String(255), nullable=False),
    sa.Column("operation", sa.String(128), nullable=False),
    sa.Column("client", sa.String(255), nullable=False),
    sa.Column("rule", sa.String(255)),
    sa.Column("exchange_id", sa.String(128), nullable=False),
    sa.Column("user_id", sa.String(255)),
    sa.Column("purpose", sa.String(512)),
    sa.Column("represented_party", sa.String(255)),
    sa.Column("method", sa.String(16), nullable=False),
    sa.Column("path", sa.Text, nullable=False),
    sa.Column("query", sa.Text, nullable=False),
    sa.Column("content_type", sa.String(255), nullable=False),
    sa.Column("body", sa.LargeBinary, nullable=False),
    sa.Column("body_sha256", sa.String(64), nullable=False),
    sa.Column("subjects", sa.Text, nullable=False),  # JSON list of keyed hashes
    sa.Column("state", sa.String(16), nullable=False),
    sa.Column("attempts", sa.Integer, nullable=False),  # all-time: attempt n is audited as {id}.n
    sa.Column("attempt_base", sa.Integer, nullable=False),  # attempts before the last retry
    sa.Column("next_us", sa.BigInteger, nullable=False),  # due (pending) or lease expiry (in flight)
    sa.Column("lease", sa.String(32)),  # the claim's token while a worker holds it
    sa.Column("worker", sa.String(64)),  # who attempted it last (host:pid)
    sa.Column("created_us", sa.BigInteger, nullable=False),
    sa.Column("updated_us", sa.BigInteger, nullable=False),
    sa.Column("delivered_us", sa.BigInteger),
    sa.Column("last_error", sa.Text),  # JSON: code, detail, status, retryable, extra
    sa.Column("response_status", sa.Integer),
    sa.Column("response", sa.LargeBinary),  # the upstream's answer as the client would have got it
    sa.Column("flag", sa.String(512)),  # an accepted oddity, e.g. an impossible status change
    sa.Column("replay_of", sa.String(32)),
    # The decision it was accepted under: JSON {"fields": [...] or null} (migration 0007); the agency
    # a routed message named when its successor got it.
    sa.Column("response_fields", sa.Text),
    sa.Column("addressed", sa.String(255)),
    # A large edXML package pushed to a recipient: its bytes are that document's stored parts
    # (gateway/documents/store.py), read from there at each attempt, not copied here (migration 0012).
    sa.Column("body_document", sa.String(32)),
    sa.Index("ix_deliveries_service_state_seq", "service", "state", "seq"),
    sa.Index("ix_deliveries_order", "order_key", "seq"),
    sa.Index("ix_deliveries_dossier", "dossier"),
    sa.Index("ix_deliveries_state_seq", "state", "seq"),
)

delivery_dossiers = sa.Table(
    "delivery_dossiers", metadata,
    sa.Column("code", sa.String(128), primary_key=True),
    sa.Column("agency", sa.String(64), nullable=False),
    sa.Column("procedure", sa.String(64)),
    sa.Column("received_at", sa.String(14)),
    sa.Column("due_at", sa.String(14)),
    sa.Column("online", sa.Boolean),
    sa.Column("status", sa.Integer),  # the latest delivered status
    sa.Column("resolved_at", sa.String(14)),
    sa.Column("intake_status", sa.Integer),  # the latest status accepted at intake
    sa.Column("updated_us", sa.BigInteger, nullable=False),
    sa.Index("ix_delivery_dossiers_agency_received", "agency", "received_at"),
    sa.Index("ix_delivery_dossiers_agency_resolved", "agency", "resolved_at"),
)
