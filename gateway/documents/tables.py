"""The document exchange's tables (created by migrations 0009 and 0011).

``documents``: one row per edXML package accepted, its bytes as they came (the recipients get these
bytes), unique per sender organ and DocumentId. A package spooled to disk on its way in (over
``gateway.spool.SPOOL_THRESHOLD``) has an empty ``body``: its bytes are in ``document_parts``, in
pieces of at most 1 MiB numbered from 0, written in the row's own transaction.
``document_messages``: one row per message to one
recipient organ, a package's copy for each of its recipients and each status message for the organ it
goes back to, in the order accepted (``seq``). A pushed message (``service`` set) is ``pending`` until
it is stored on the delivery queue, then ``queued`` with its ``delivery_id``; a pulled one is
``pending``, ``fetched`` once its recipient got it and ``confirmed`` once it said so.
"""

from __future__ import annotations

import sqlalchemy as sa

from gateway.storage.tables import metadata

__all__ = ["document_messages", "document_parts", "documents"]

BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")

documents = sa.Table(
    "documents", metadata,
    sa.Column("id", sa.String(32), primary_key=True),
    sa.Column("document_id", sa.String(255), nullable=False),
    sa.Column("sender_organ", sa.String(64), nullable=False),
    sa.Column("client", sa.String(255), nullable=False),
    sa.Column("exchange_id", sa.String(128), nullable=False),
    sa.Column("sha256", sa.String(64), nullable=False),
    sa.Column("size", sa.BigInteger, nullable=False),
    sa.Column("body", sa.LargeBinary, nullable=False),
    sa.Column("attachments", sa.Text, nullable=False),  # JSON: contentId, name, type, size, sha256
    sa.Column("created_us", sa.BigInteger, nullable=False),
    sa.UniqueConstraint("sender_organ", "document_id", name="uq_documents_sender_document"),
)

document_messages = sa.Table(
    "document_messages", metadata,
    sa.Column("seq", BigId, primary_key=True, autoincrement=True),
    sa.Column("id", sa.String(32), nullable=False, unique=True),
    sa.Column("idem_key", sa.String(64), nullable=False, unique=True),
    sa.Column("document", sa.String(32), nullable=False),
    sa.Column("document_id", sa.String(255), nullable=False),
    sa.Column("kind", sa.String(8), nullable=False),  # package | status
    sa.Column("from_organ", sa.String(64), nullable=False),
    sa.Column("to_organ", sa.String(64), nullable=False),
    sa.Column("member", sa.String(255), nullable=False),
    sa.Column("client", sa.String(255), nullable=False),  # the recipient's system: it pulls
    sa.Column("service", sa.String(255)),  # the push service; None: pulled
    sa.Column("status_code", sa.String(4)),
    sa.Column("body", sa.LargeBinary),  # a status message's bytes; a package's are the document's
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
    sa.Index("ix_document_messages_inbox", "client", "state", "seq"),
    sa.Index("ix_document_messages_document", "document"),
    sa.Index("ix_document_messages_outbox", "state", "service", "seq"),
)

document_parts = sa.Table(
    "document_parts", metadata,
    sa.Column("document", sa.String(32), nullable=False),
    sa.Column("n", sa.Integer, nullable=False),
    sa.Column("data", sa.LargeBinary, nullable=False),
    sa.PrimaryKeyConstraint("document", "n"),
)
