"""The document exchange's store and outbox on SQLite and PostgreSQL: a package stored whole or not at
all, found again when sent again, refused with other bytes; pushed messages handed to the delivery
queue once each, in the order accepted, whoever hands them over (the sweep after a crash included)."""

from __future__ import annotations

import asyncio
import hashlib

import pytest
import sqlalchemy as sa

from gateway.delivery.store import DeliveryStore
from gateway.delivery.tables import deliveries
from gateway.documents.outbox import Outbox, order_key
from gateway.documents.store import DocumentRow, DocumentStore, MessageRow
from gateway.errors import InvalidBody
from gateway.ids import new_id
from gateway.storage.db import create_engine

PUSH = "VN/GOV/000.00.00.H60/QLVB/NhanVanBan"


def document(number: int, body: bytes = b"<edXML/>") -> DocumentRow:
    return DocumentRow(id=new_id(), document_id=f"000.00.00.H60,2026/11/21,{number}/UBND-VP",
                       sender_organ="000.00.00.H60", client="VN/GOV/000.00.00.H60/QLVB",
                       exchange_id=new_id(), sha256=hashlib.sha256(body).hexdigest(), size=len(body),
                       body=body, attachments=({"contentId": "att1", "sha256": "0" * 64, "size": 3},),
                       created_us=1)


def message(doc: DocumentRow, organ: str, kind: str = "package", service: str | None = PUSH,
            body: bytes | None = None) -> MessageRow:
    sha = hashlib.sha256(body).hexdigest() if body else doc.sha256
    key = hashlib.sha256(f"{kind}{doc.id}{organ}{sha}".encode()).hexdigest()
    return MessageRow(id=new_id(), idem_key=key, document=doc.id, document_id=doc.document_id, kind=kind,
                      from_organ=doc.sender_organ, to_organ=organ, member="VN/GOV/000.00.00.H60",
                      client="VN/GOV/000.00.00.H60/QLVB", service=service,
                      status_code="13" if kind == "status" else None, sha256=sha, size=len(body or doc.body),
                      sender_client=doc.client, rule="r", exchange_id=doc.exchange_id, created_us=2,
                      body=body)


@pytest.fixture
def stores(database_url: str) -> tuple[DocumentStore, DeliveryStore]:
    engine = create_engine(database_url)
    return DocumentStore(engine), DeliveryStore(engine)


def test_stored_once_and_refused_with_other_bytes(stores: tuple[DocumentStore, DeliveryStore]) -> None:
    docs, _ = stores
    doc = document(1)
    first = docs.send(doc, [message(doc, "000.01.00.H60"), message(doc, "000.00.00.H41", service=None)])
    assert not first.duplicate and len(first.messages) == 2
    again = document(1)
    second = docs.send(again, [message(again, "000.01.00.H60")])
    assert second.duplicate and second.document == doc.id
    assert [m.to_organ for m in second.messages] == ["000.01.00.H60", "000.00.00.H41"]
    other = document(1, b"<edXML>other</edXML>")
    with pytest.raises(InvalidBody) as refused:
        docs.send(other, [message(other, "000.01.00.H60")])
    assert refused.value.status == 409
    assert docs.recipients(doc.id) == ["000.01.00.H60", "000.00.00.H41"]
    found = docs.document("000.00.00.H60", doc.document_id)
    assert found is not None and found.body == doc.body and found.attachments == doc.attachments
    assert docs.document("000.00.00.H99", doc.document_id) is not None  # by the DocumentId alone
    # pulled: listed until confirmed; fetched once; confirm twice is one confirm
    (pulled,) = docs.pending("VN/GOV/000.00.00.H60/QLVB")
    assert pulled.to_organ == "000.00.00.H41" and pulled.state == "pending"
    docs.fetched(pulled.id, 5)
    got = docs.message(pulled.id)
    assert got is not None and got.state == "fetched" and got.body == doc.body
    assert docs.confirm(pulled.id, 6) and not docs.confirm(pulled.id, 7)
    assert docs.pending("VN/GOV/000.00.00.H60/QLVB") == []


def test_a_status_with_an_existing_copy_is_one_status(stores: tuple[DocumentStore, DeliveryStore]) -> None:
    docs, _ = stores
    doc = document(2)
    docs.send(doc, [message(doc, "000.01.00.H60")])
    status = message(doc, "000.01.00.H60", kind="status", body=b"<edXML>13</edXML>")
    assert not docs.add_status([status]).duplicate
    repeat = message(doc, "000.01.00.H60", kind="status", body=b"<edXML>13</edXML>")
    again = docs.add_status([repeat])
    assert again.duplicate and again.messages[0].id == status.id


def test_outbox_hands_over_once_in_order(stores: tuple[DocumentStore, DeliveryStore]) -> None:
    """Stored but not handed over (as after a crash between the two commits): two outboxes flushing
    at once make one delivery per message, each chain in the order accepted."""
    docs, queue = stores
    queue.start()
    try:
        organs = ["000.01.00.H60", "000.12.00.H60"]
        expected: list[tuple[str, str]] = []
        for n in range(3):
            doc = document(10 + n)
            docs.send(doc, [message(doc, o) for o in organs])
            docs.add_status([message(doc, o, kind="status", body=f"<s>{n}</s>".encode()) for o in organs])
            expected += [(order_key(o, doc.document_id), k) for o in organs for k in ("package", "status")]

        async def both() -> None:
            await asyncio.gather(Outbox(docs, queue).flush(), Outbox(docs, queue).flush())
            await Outbox(docs, queue).flush()  # nothing left: nothing new

        asyncio.run(both())
        with queue.engine.connect() as conn:
            rows = conn.execute(sa.select(deliveries.c.order_key, deliveries.c.operation, deliveries.c.query)
                                .order_by(deliveries.c.seq)).all()
        assert len(rows) == len(expected)
        chains: dict[str, list[str]] = {}
        for row in rows:
            chains.setdefault(row.order_key, []).append(row.operation)
            assert row.query.startswith("to=000.")
        assert all(ops == ["edxml.package", "edxml.status"] for ops in chains.values())
        assert sorted(chains) == sorted({key for key, _ in expected})
        assert docs.unqueued() == []
    finally:
        queue.close()
