"""Group commit of sent packages (gateway/documents/batching.py, ``DocumentStore.send_many``): many
senders' packages in one transaction, each answered as if it had been stored alone. SQLite and
PostgreSQL."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Iterator
from typing import Any

import pytest
import sqlalchemy as sa

from gateway.documents.batching import Batcher
from gateway.documents.store import DocumentRow, DocumentStore, MessageRow, Stored
from gateway.documents.tables import document_messages, documents
from gateway.errors import InvalidBody
from gateway.ids import new_id
from gateway.storage.shared import SharedWriter
from tests.test_shared_writer import Gate

H60, H41 = "000.00.00.H60", "000.00.00.H41"


@pytest.fixture
def store(database_url: str) -> Iterator[DocumentStore]:
    engine = sa.create_engine(database_url)
    yield DocumentStore(engine)
    engine.dispose()


def sending(number: int, body: bytes | None = None) -> tuple[DocumentRow, list[MessageRow]]:
    body = body if body is not None else f"<edXML>{number}</edXML>".encode()
    sha = hashlib.sha256(body).hexdigest()
    doc = DocumentRow(id=new_id(), document_id=f"{H60},2026/11/21,{number}/UBND-VP", sender_organ=H60,
                      client="VN/GOV/000.00.00.H60/QLVB", exchange_id=new_id(), sha256=sha, size=len(body),
                      body=body, attachments=(), created_us=number)
    message = MessageRow(id=new_id(), idem_key=new_id(), document=doc.id, document_id=doc.document_id,
                         kind="package", from_organ=H60, to_organ=H41, member="VN/GOV/000.00.00.H41",
                         client="VN/GOV/000.00.00.H41/QLVB", service=None, status_code=None, sha256=sha,
                         size=len(body), sender_client=doc.client, rule="r", exchange_id=doc.exchange_id,
                         created_us=number)
    return doc, [message]


def counts(store: DocumentStore) -> tuple[int, int]:
    with store.engine.connect() as conn:
        return (conn.execute(sa.select(sa.func.count()).select_from(documents)).scalar_one(),
                conn.execute(sa.select(sa.func.count()).select_from(document_messages)).scalar_one())


def test_a_batch_answers_each_package_as_alone(store: DocumentStore) -> None:
    """One transaction for new packages, a package sent before (its first storing) and a DocumentId
    sent before with other bytes (409), each with its own answer."""
    first = sending(1)
    assert store.send(*first).duplicate is False
    again = (replace_id(first[0]), first[1])
    changed = sending(1, b"<edXML>other</edXML>")
    fresh = [sending(n) for n in (2, 3, 4)]
    results = store.send_many([fresh[0], again, changed, fresh[1], fresh[2]])
    assert [type(r).__name__ for r in results] == ["Stored", "Stored", "InvalidBody", "Stored", "Stored"]
    assert isinstance(results[1], Stored) and results[1].duplicate and results[1].document == first[0].id
    assert isinstance(results[2], InvalidBody) and results[2].status == 409
    assert counts(store) == (4, 4)


def test_the_same_package_twice_in_one_batch_is_stored_once(store: DocumentStore) -> None:
    """Two sendings of one package in one batch: the insert conflict undoes the transaction and each
    is stored on its own, the second finding the first; the others in the batch are stored too."""
    one = sending(7)
    twin = (replace_id(one[0]), [replace_message(one[1][0], replace_id(one[0]).id)])
    other = sending(8)
    results = store.send_many([one, twin, other])
    assert all(isinstance(r, Stored) for r in results)
    assert [r.duplicate for r in results if isinstance(r, Stored)] == [False, True, False]
    assert counts(store) == (2, 2)


@pytest.mark.parametrize("shared", [False, True], ids=["own-writer", "shared-writer"])
def test_concurrent_senders_share_commits_and_get_their_own_answers(store: DocumentStore,
                                                                    shared: bool) -> None:
    """Forty senders at once through the batcher, with a writer of its own or in the process's
    shared writer (gateway/storage/shared.py): forty packages stored, each answered with its own; a
    repeat is a duplicate; a changed one is refused 409 while the others are stored."""
    items = [sending(n) for n in range(100, 140)]

    async def run() -> list[Stored | BaseException]:
        batcher = Batcher(store, shared=SharedWriter(store.engine) if shared else None)
        try:
            answers = await asyncio.gather(*(batcher.send(*item) for item in items))
            later = await asyncio.gather(batcher.send(replace_id(items[0][0]), items[0][1]),
                                         batcher.send(*sending(101, b"<edXML>changed</edXML>")),
                                         batcher.send(*sending(140)), return_exceptions=True)
            return [*answers, *later]
        finally:
            batcher.close()

    results = asyncio.run(run())
    assert [r.document for r in results[:40] if isinstance(r, Stored)] == [doc.id for doc, _ in items]
    assert isinstance(results[40], Stored) and results[40].duplicate
    assert isinstance(results[41], InvalidBody) and results[41].status == 409
    assert isinstance(results[42], Stored) and not results[42].duplicate
    assert counts(store) == (41, 41)


def test_twins_in_the_shared_writer_are_stored_once(store: DocumentStore) -> None:
    """The same package sent twice in one batch of the shared writer: the insert conflict fails the
    batch, the packages are then stored as send_many stores them alone (the second finding the
    first), and the other package of the batch is stored too."""
    one = sending(9)
    twin = (replace_id(one[0]), [replace_message(one[1][0], replace_id(one[0]).id)])
    other = sending(10)
    shared = SharedWriter(store.engine)
    gate = Gate(store.engine)
    gated = shared.slot(gate)
    alone: list[int] = []
    send_many = store.send_many

    def counted(batch: Any) -> Any:
        alone.append(len(batch))
        return send_many(batch)

    store.send_many = counted  # type: ignore[method-assign]

    async def run() -> list[Stored]:
        batcher = Batcher(store, shared=shared)
        gated.start()
        gated.put("hold")  # the thread waits in the gate while the three sendings queue up
        assert await asyncio.to_thread(gate.entered.wait, 10)
        try:
            sent = [asyncio.ensure_future(batcher.send(*item)) for item in (one, twin, other)]
            for _ in range(500):
                if shared._writer.queued() >= 3:
                    break
                await asyncio.sleep(0.01)
            gate.open.set()
            return list(await asyncio.gather(*sent))
        finally:
            batcher.close()
            gated.close()

    results = asyncio.run(run())
    assert alone and alone[0] == 3  # the shared insert failed, send_many sorted the batch out
    assert sorted(r.duplicate for r in results[:2]) == [False, True]
    assert results[0].document == results[1].document
    assert not results[2].duplicate
    assert counts(store) == (2, 2)


def replace_id(doc: DocumentRow) -> DocumentRow:
    from dataclasses import replace

    return replace(doc, id=new_id(), exchange_id=new_id())


def replace_message(message: MessageRow, document: str) -> MessageRow:
    from dataclasses import replace

    return replace(message, id=new_id(), idem_key=new_id(), document=document)
