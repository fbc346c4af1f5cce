"""The document exchange's durable state (gateway/documents/tables.py), each change in one short
transaction: a package with its copy for every recipient, a status message with its copies, the
pushed messages handed to the delivery queue, and the pulled ones fetched and confirmed.

A package or status is stored whole or not at all: the document's row and all its messages commit
together, before the sender is answered. A package spooled to disk on its way in (gateway/spool.py)
is copied from its file into ``document_parts`` piece by piece within that same transaction, so it is
never whole in memory, and nothing of it remains when the transaction does not commit. Storing the
same package again (same sender organ, DocumentId and bytes) finds the first; the same DocumentId
with other bytes is refused.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson
import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine, Row
from sqlalchemy.exc import IntegrityError

from gateway.documents.bodies import SIDE_MIN, BodyFile
from gateway.documents.tables import document_messages, document_parts, documents
from gateway.errors import GatewayError, InvalidBody
from gateway.storage.db import WriteLock

if TYPE_CHECKING:
    from gateway.spool import Spooled

__all__ = ["PULL_STATES", "DocumentRow", "DocumentStore", "MessageRow", "Sending", "Stored"]

PULL_STATES = ("pending", "fetched")  # a pulled message not yet confirmed


@dataclass(frozen=True, slots=True)
class DocumentRow:
    id: str
    document_id: str
    sender_organ: str
    client: str
    exchange_id: str
    sha256: str
    size: int
    body: bytes  # b"" when read back and its bytes are elsewhere: in parts (it came ``spooled``) or
    # in the bodies file (bodies.py)
    attachments: tuple[dict[str, Any], ...]
    created_us: int
    spooled: Spooled | None = None


@dataclass(frozen=True, slots=True)
class MessageRow:
    id: str
    idem_key: str
    document: str
    document_id: str
    kind: str
    from_organ: str
    to_organ: str
    member: str
    client: str
    service: str | None
    status_code: str | None
    sha256: str
    size: int
    sender_client: str
    rule: str | None
    exchange_id: str
    created_us: int
    body: bytes | None = None
    state: str = "pending"
    delivery_id: str | None = None
    seq: int = 0
    parted: bool = False  # its bytes are the document's parts (a large package): ``spool_body`` reads them

    def view(self) -> dict[str, Any]:
        """A message as its recipient or sender sees it listed."""
        out: dict[str, Any] = {"id": self.id, "kind": self.kind, "documentId": self.document_id,
                               "from": self.from_organ, "to": self.to_organ, "state": self.state,
                               "sha256": self.sha256, "size": self.size, "created": self.created_us}
        if self.status_code is not None:
            out["statusCode"] = self.status_code
        if self.service is not None:
            out["deliveryId"] = self.delivery_id
        return out


@dataclass(frozen=True, slots=True)
class Stored:
    document: str
    messages: tuple[MessageRow, ...]
    duplicate: bool


Sending = tuple[DocumentRow, Sequence[MessageRow]]


class DocumentStore:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        # SQLite: writers queue on a lock the audit and delivery writers share, woken as soon as it
        # is free, rather than retrying BEGIN IMMEDIATE under the busy timeout's growing sleeps.
        self._lock: AbstractContextManager[Any] = (
            WriteLock(engine, "documents") if engine.dialect.name == "sqlite" else contextlib.nullcontext())
        # On SQLite in a file, packages from 64 KiB keep their bytes in a file of their own (bodies.py)
        self.bodies = BodyFile.beside(engine)
        self._put: set[str] = set()  # the documents whose bytes ``put_bodies`` stored: not again

    # -- storing -------------------------------------------------------------------------------------

    def send(self, doc: DocumentRow, messages: Sequence[MessageRow]) -> Stored:
        """The package and its copies, in one transaction; the first storing of the same package
        when it was sent before. InvalidBody (409) for a DocumentId already sent with other bytes."""
        (result,) = self.send_many([(doc, messages)])
        if isinstance(result, GatewayError):
            raise result
        return result

    def send_many(self, batch: Sequence[Sending]) -> list[Stored | GatewayError]:
        """Several packages with their copies in one transaction (one commit for many senders:
        gateway/documents/batching.py), each answered as ``send`` would: stored, the first storing,
        or the InvalidBody (409) in its place."""
        try:
            with self._lock, self.engine.begin() as conn:
                return self.insert(conn, batch)
        except IntegrityError:  # another process (or this batch) stored one between look and insert
            if len(batch) > 1:  # the transaction is undone: each on its own, as if sent alone
                return [result for item in batch for result in self.send_many([item])]
            with self.engine.connect() as conn:
                try:
                    found = self._same_document(conn, batch[0][0])
                except InvalidBody as err:
                    return [err]
            if found is None:  # pragma: no cover - an id collision of 80 random bits
                raise
            return [found]

    def put_bodies(self, batch: Sequence[Sending]) -> None:
        """The bytes that go to the bodies file (bodies.py), stored there before the transaction that
        inserts their rows (the shared writer calls this before it takes the database's lock)."""
        side = [doc for doc, _ in batch if self._aside(doc)]
        if self.bodies is not None and side:
            self.bodies.put((doc.sha256, doc.body) for doc in side)
            self._put.update(doc.id for doc in side)

    def _aside(self, doc: DocumentRow) -> bool:
        return self.bodies is not None and doc.spooled is None and len(doc.body) >= SIDE_MIN

    def insert(self, conn: Connection, batch: Sequence[Sending]) -> list[Stored | GatewayError]:
        """``send_many``'s work in the transaction ``conn`` has open (the shared writer's:
        gateway/documents/batching.py); an IntegrityError undoes it. The bytes that go to the
        bodies file and are not there yet are put there first, committed before this transaction."""
        try:
            self.put_bodies([item for item in batch if item[0].id not in self._put])
            return self._insert(conn, batch)
        finally:
            self._put.difference_update(doc.id for doc, _ in batch)

    def _insert(self, conn: Connection, batch: Sequence[Sending]) -> list[Stored | GatewayError]:
        out: list[Stored | GatewayError] = []
        rows: list[dict[str, Any]] = []
        copies: list[dict[str, Any]] = []
        for doc, messages in batch:
            try:
                found = self._same_document(conn, doc)
            except InvalidBody as err:
                out.append(err)
                continue
            if found is not None:
                out.append(found)
                continue
            rows.append({"id": doc.id, "document_id": doc.document_id, "sender_organ": doc.sender_organ,
                         "client": doc.client, "exchange_id": doc.exchange_id, "sha256": doc.sha256,
                         "size": doc.size, "body": b"" if self._aside(doc) else doc.body,
                         "attachments": orjson.dumps(list(doc.attachments)).decode(),
                         "created_us": doc.created_us})
            copies.extend(_values(m) for m in messages)
            out.append(Stored(doc.id, tuple(messages), False))
        if rows:
            conn.execute(documents.insert(), rows)
            for doc, _ in batch:
                if doc.spooled is not None:
                    _write_parts(conn, doc.id, doc.spooled)
            conn.execute(document_messages.insert(), copies)
        return out

    def _same_document(self, conn: Connection, doc: DocumentRow) -> Stored | None:
        row = conn.execute(sa.select(documents.c.id, documents.c.sha256).where(
            documents.c.sender_organ == doc.sender_organ,
            documents.c.document_id == doc.document_id)).first()
        if row is None:
            return None
        if row.sha256 != doc.sha256:
            raise InvalidBody(f"document {doc.document_id} of organ {doc.sender_organ} was already sent "
                              "with other content; a changed document needs a DocumentId of its own",
                              status=409)
        rows = conn.execute(sa.select(document_messages).where(
            document_messages.c.document == row.id, document_messages.c.kind == "package")
            .order_by(document_messages.c.seq)).all()
        return Stored(row.id, tuple(_message(r) for r in rows), True)

    def add_status(self, messages: Sequence[MessageRow]) -> Stored:
        """A status message's copies, in one transaction; the first copies when it came before."""
        keys = [m.idem_key for m in messages]
        try:
            with self.engine.begin() as conn:
                found = self._messages_by_key(conn, keys)
                if found:
                    return Stored(messages[0].document, found, True)
                conn.execute(document_messages.insert(), [_values(m) for m in messages])
            return Stored(messages[0].document, tuple(messages), False)
        except IntegrityError:
            with self.engine.connect() as conn:
                found = self._messages_by_key(conn, keys)
            if not found:  # pragma: no cover
                raise
            return Stored(messages[0].document, found, True)

    @staticmethod
    def _messages_by_key(conn: Connection, keys: Sequence[str]) -> tuple[MessageRow, ...]:
        rows = conn.execute(sa.select(document_messages).where(document_messages.c.idem_key.in_(keys))
                            .order_by(document_messages.c.seq)).all()
        return tuple(_message(r) for r in rows)

    # -- reading -------------------------------------------------------------------------------------

    def document(self, organ: str, document_id: str) -> DocumentRow | None:
        """The document a status answers: by its sender organ and DocumentId, else by the DocumentId
        alone when one document has it."""
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(documents).where(documents.c.sender_organ == organ,
                                                          documents.c.document_id == document_id)).first()
            if row is None:
                rows = conn.execute(sa.select(documents).where(documents.c.document_id == document_id)
                                    .limit(2)).all()
                row = rows[0] if len(rows) == 1 else None
        return _document(row) if row is not None else None

    def recipients(self, document: str) -> list[str]:
        """The organs a document was sent to, in the package's order."""
        with self.engine.connect() as conn:
            rows = conn.execute(sa.select(document_messages.c.to_organ).where(
                document_messages.c.document == document, document_messages.c.kind == "package")
                .order_by(document_messages.c.seq)).all()
        return [r.to_organ for r in rows]

    def unqueued(self, limit: int = 64) -> list[MessageRow]:
        """Pushed messages not yet on the delivery queue, oldest first, with their bytes; a large
        package's are not read (``parted``): its deliveries name its parts."""
        with self.engine.connect() as conn:
            rows = conn.execute(sa.select(document_messages).where(
                document_messages.c.state == "pending", document_messages.c.service.is_not(None))
                .order_by(document_messages.c.seq).limit(limit)).all()
            bodies: dict[str, bytes | None] = {}  # a package's copies share its bytes: read once
            for r in rows:
                if r.document not in bodies:
                    bodies[r.document] = self._inline(conn, r)
            return [_with_body(r, bytes(r.body) if r.body is not None else bodies[r.document]) for r in rows]

    def spool_body(self, document: str, directory: Path | None = None) -> Spooled | None:
        """A large package's stored parts copied into an unnamed file in ``directory``, one part in
        memory at a time (a delivery's attempt and a fetch send it from there); None when the
        document has no parts (it is not stored, or not in parts). A part per query: a driver that
        fetches a whole result (psycopg) holds one part at a time."""
        from gateway.spool import spool_pieces

        with self.engine.connect() as conn:
            if conn.execute(sa.select(document_parts.c.n).where(
                    document_parts.c.document == document, document_parts.c.n == 0)).first() is None:
                return None
            return spool_pieces(_parts(conn, document), directory)

    def pending(self, client: str, *, after: int = 0, limit: int = 100) -> list[MessageRow]:
        """The pulled messages ``client`` has not confirmed, in the order they were accepted."""
        with self.engine.connect() as conn:
            rows = conn.execute(sa.select(document_messages).where(
                document_messages.c.client == client, document_messages.c.service.is_(None),
                document_messages.c.state.in_(PULL_STATES), document_messages.c.seq > after)
                .order_by(document_messages.c.seq).limit(limit)).all()
        return [_message(r) for r in rows]

    def message(self, message_id: str) -> MessageRow | None:
        """One message with its bytes; a large package's are not read (``parted``: ``spool_body``)."""
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(document_messages).where(document_messages.c.id == message_id)
                               ).first()
            return _with_body(row, self._inline(conn, row)) if row is not None else None

    def by_document(self, document: str) -> list[MessageRow]:
        with self.engine.connect() as conn:
            rows = conn.execute(sa.select(document_messages).where(document_messages.c.document == document)
                                .order_by(document_messages.c.seq)).all()
        return [_message(r) for r in rows]

    def _inline(self, conn: Connection, row: Row[Any]) -> bytes | None:
        """A message's bytes when they are held whole (a status's own, a package's ``body`` or its
        bytes in the bodies file); None for a package stored in parts, which are read one at a time
        (``spool_body``), never gathered."""
        if row.body is not None:
            return bytes(row.body)
        body, sha256 = conn.execute(sa.select(documents.c.body, documents.c.sha256)
                                    .where(documents.c.id == row.document)).one()
        if body:
            return bytes(body)
        return self.bodies.get(sha256) if self.bodies is not None else None

    # -- changing ------------------------------------------------------------------------------------

    def queued(self, done: Sequence[tuple[str, str]]) -> None:
        """Pushed messages now stored on the delivery queue: (message id, delivery id)."""
        if not done:
            return
        with self.engine.begin() as conn:
            for message_id, delivery_id in done:
                conn.execute(document_messages.update().where(
                    document_messages.c.id == message_id, document_messages.c.state == "pending")
                    .values(state="queued", delivery_id=delivery_id))

    def fetched(self, message_id: str, now: int) -> None:
        with self.engine.begin() as conn:
            conn.execute(document_messages.update().where(
                document_messages.c.id == message_id, document_messages.c.state == "pending")
                .values(state="fetched", fetched_us=now))

    def confirm(self, message_id: str, now: int) -> bool:
        """Mark a pulled message confirmed; False when it already was."""
        with self.engine.begin() as conn:
            changed = conn.execute(document_messages.update().where(
                document_messages.c.id == message_id, document_messages.c.state.in_(PULL_STATES))
                .values(state="confirmed", confirmed_us=now,
                        fetched_us=sa.func.coalesce(document_messages.c.fetched_us, now))).rowcount
        return bool(changed)


def _with_body(row: Row[Any], body: bytes | None) -> MessageRow:
    return _message(row, body) if body is not None else replace(_message(row), parted=True)


def _part(conn: Connection, document: str, n: int) -> bytes | None:
    piece = conn.execute(sa.select(document_parts.c.data).where(
        document_parts.c.document == document, document_parts.c.n == n)).scalar()
    return bytes(piece) if piece is not None else None


def _parts(conn: Connection, document: str) -> Iterator[bytes]:
    n = 0
    while (piece := _part(conn, document, n)) is not None:
        yield piece
        n += 1


def _write_parts(conn: Connection, document: str, spooled: Spooled) -> None:
    """The spooled package into ``document_parts``, a piece at a time (one in memory)."""
    for n, piece in enumerate(spooled.pieces()):
        conn.execute(document_parts.insert().values(document=document, n=n, data=piece))


def _values(m: MessageRow) -> dict[str, Any]:
    return {"id": m.id, "idem_key": m.idem_key, "document": m.document, "document_id": m.document_id,
            "kind": m.kind, "from_organ": m.from_organ, "to_organ": m.to_organ, "member": m.member,
            "client": m.client, "service": m.service, "status_code": m.status_code, "body": m.body,
            "sha256": m.sha256, "size": m.size, "sender_client": m.sender_client, "rule": m.rule,
            "exchange_id": m.exchange_id, "state": "pending", "delivery_id": None,
            "created_us": m.created_us}


def _message(row: Row[Any], body: bytes | None = None) -> MessageRow:
    return MessageRow(id=row.id, idem_key=row.idem_key, document=row.document, document_id=row.document_id,
                      kind=row.kind, from_organ=row.from_organ, to_organ=row.to_organ, member=row.member,
                      client=row.client, service=row.service, status_code=row.status_code,
                      sha256=row.sha256, size=row.size, sender_client=row.sender_client, rule=row.rule,
                      exchange_id=row.exchange_id, created_us=row.created_us, body=body, state=row.state,
                      delivery_id=row.delivery_id, seq=row.seq)


def _document(row: Row[Any]) -> DocumentRow:
    return DocumentRow(id=row.id, document_id=row.document_id, sender_organ=row.sender_organ,
                       client=row.client, exchange_id=row.exchange_id, sha256=row.sha256, size=row.size,
                       body=bytes(row.body), attachments=tuple(orjson.loads(row.attachments)),
                       created_us=row.created_us)
