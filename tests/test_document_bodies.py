"""The sent packages' bytes kept beside a SQLite database (gateway/documents/bodies.py): packages from
64 KiB keep their bytes in a file of 64 KiB pages, stored before the row that names them and read back
wherever the row's own bytes were; smaller packages, and every package on PostgreSQL, in their row.
Through real sockets: tests/test_documents_e2e.py (its packages of 60 KB attachments)."""

from __future__ import annotations

import asyncio
import io
import sqlite3
from pathlib import Path

import pytest
import sqlalchemy as sa

from gateway.documents import stats
from gateway.documents.batching import Batcher
from gateway.documents.bodies import PAGE_SIZE, SIDE_MIN, SWEEP_AGE_US, BodyFile, bodies_path
from gateway.documents.store import DocumentStore
from gateway.documents.tables import documents
from gateway.edxml import build
from gateway.storage.db import create_engine, is_sqlite, upgrade
from gateway.storage.shared import SharedWriter
from tests.test_documents_units import document, message

BIG = b"<edXML>" + b"x" * SIDE_MIN + b"</edXML>"


@pytest.fixture
def store(database_url: str) -> DocumentStore:
    upgrade(database_url)
    return DocumentStore(create_engine(database_url))


def row_body(store: DocumentStore, doc_id: str) -> bytes:
    with store.engine.connect() as conn:
        return bytes(conn.execute(sa.select(documents.c.body).where(documents.c.id == doc_id)).scalar_one())


def test_the_file_beside_the_database() -> None:
    assert bodies_path("/srv/state/lienthong.db") == Path("/srv/state/lienthong-bodies.db")
    assert BodyFile.beside("sqlite:///:memory:") is None
    assert BodyFile.beside("postgresql+psycopg://u@h/db") is None
    found = BodyFile.beside("sqlite:////srv/state/lienthong.db")
    assert found is not None and found.path == Path("/srv/state/lienthong-bodies.db")


def test_put_get_head_once_per_digest(tmp_path: Path) -> None:
    bodies = BodyFile(tmp_path / "x-bodies.db", str(tmp_path / "x.db"))
    assert bodies.get("a" * 64) is None and bodies.head("a" * 64, 7) is None
    assert not bodies.path.exists()  # a read does not make the file
    bodies.put([("a" * 64, b"first"), ("b" * 64, BIG)])
    bodies.put([("a" * 64, b"other bytes, same digest: kept the first")])
    assert bodies.get("a" * 64) == b"first" and bodies.get("b" * 64) == BIG
    assert bodies.head("b" * 64, 7) == b"<edXML>" and bodies.get("c" * 64) is None
    bodies.close()
    with sqlite3.connect(tmp_path / "x-bodies.db") as conn:
        assert conn.execute("PRAGMA page_size").fetchone()[0] == PAGE_SIZE
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] != "wal"  # a new page is written once
    assert not (tmp_path / "x-bodies.db-wal").exists()


def test_large_bytes_aside_small_in_the_row(store: DocumentStore) -> None:
    """From 64 KiB on SQLite in a file: the row holds no bytes, the bodies file does, and every read
    (a pulled copy, a pushed copy handed to the queue, the statistics' header) finds them."""
    big, small = document(1, BIG), document(2)
    store.send(big, [message(big, "000.01.00.H60"), message(big, "000.00.00.H41", service=None)])
    store.send(small, [message(small, "000.01.00.H60")])
    aside = is_sqlite(str(store.engine.url))
    assert row_body(store, big.id) == (b"" if aside else BIG)
    assert row_body(store, small.id) == small.body
    if aside:
        assert store.bodies is not None and store.bodies.get(big.sha256) == BIG
    (pulled,) = store.pending("VN/GOV/000.00.00.H60/QLVB")
    got = store.message(pulled.id)
    assert got is not None and got.body == BIG and not got.parted
    pushed = {m.document: m for m in store.unqueued()}
    assert pushed[big.id].body == BIG and pushed[small.id].body == small.body
    # sent again: the same document, its bytes stored once
    again = document(1, BIG)
    assert store.send(again, [message(again, "000.01.00.H60")]).duplicate
    if aside:
        with sqlite3.connect(bodies_path(str(store.engine.url.database))) as conn:
            assert conn.execute("SELECT count(*) FROM bodies").fetchone()[0] == 1


def test_the_statistics_read_a_header_kept_aside(tmp_path: Path) -> None:
    from connectors.dms import data

    url = f"sqlite:///{tmp_path / 'lienthong.db'}"
    upgrade(url)
    store = DocumentStore(create_engine(url))
    with data.package("000.00.00.H60", ["000.00.00.H41"], 7, attachment_size=2 * SIDE_MIN) as pkg:
        out = io.BytesIO()
        build(pkg, out)
    body = out.getvalue()
    assert len(body) >= SIDE_MIN
    doc = document(7, body)
    store.send(doc, [message(doc, "000.00.00.H41", service=None)])
    assert row_body(store, doc.id) == b""
    with store.engine.connect() as conn:
        (facts,) = stats.load(conn, documents.c.id == doc.id)
    assert facts.header.subject and facts.header.code.endswith("UBND-VP")


def test_bytes_are_stored_before_their_row(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The row's transaction fails after the bytes went aside: no row, the bytes left behind, and
    the sweep drops them once they are older than an hour (not before, nor a row's bytes)."""
    url = f"sqlite:///{tmp_path / 'lienthong.db'}"
    upgrade(url)
    store = DocumentStore(create_engine(url))
    kept = document(1, BIG)
    store.send(kept, [message(kept, "000.01.00.H60")])
    lost = document(2, BIG + b" ")

    def fails(*_: object) -> None:
        raise RuntimeError("disk gone")

    monkeypatch.setattr(store, "_insert", fails)
    with pytest.raises(RuntimeError):
        store.send(lost, [message(lost, "000.01.00.H60")])
    monkeypatch.undo()
    assert store.document(lost.sender_organ, lost.document_id) is None
    assert store.bodies is not None and store.bodies.get(lost.sha256) == lost.body
    with sqlite3.connect(store.bodies.path, isolation_level=None) as conn:
        now = int(conn.execute("SELECT max(created_us) FROM bodies").fetchone()[0])
        assert store.bodies.sweep(conn, now) == 0  # young: its row may be about to commit
        assert store.bodies.sweep(conn, now + SWEEP_AGE_US + 1) == 1
        # each sweep reads only what came since the last: bytes older than that are not looked at
        conn.execute("INSERT INTO bodies (sha256, created_us, body) VALUES ('e', ?, x'00')", (now - 1,))
        assert store.bodies.sweep(conn, now + 2 * SWEEP_AGE_US) == 0
        assert conn.execute("SELECT count(*) FROM bodies WHERE sha256 = 'e'").fetchone()[0] == 1
        plan = " ".join(str(r) for r in conn.execute(
            "EXPLAIN QUERY PLAN SELECT sha256 FROM bodies WHERE created_us > 0 AND created_us <= 1"))
        assert "ix_bodies_created" in plan
    assert store.bodies.get(lost.sha256) is None and store.bodies.get(kept.sha256) == BIG


def test_the_shared_writer_puts_bytes_before_the_lock(tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """Through the process's one writer: the bytes go aside in ``prepare``; when that fails the
    sender is told and nothing of the package is stored, and the writer goes on."""
    url = f"sqlite:///{tmp_path / 'lienthong.db'}"
    upgrade(url)
    engine = create_engine(url)
    store = DocumentStore(engine)
    shared = SharedWriter(engine)
    batcher = Batcher(store, shared=shared)
    puts: list[int] = []
    real_put = store.bodies.put if store.bodies is not None else None
    assert real_put is not None

    def counted(pairs: object) -> None:
        items = list(pairs)  # type: ignore[call-overload]
        puts.append(len(items))
        real_put(items)

    monkeypatch.setattr(store.bodies, "put", counted)

    async def go() -> None:
        doc = document(1, BIG)
        await batcher.send(doc, [message(doc, "000.01.00.H60")])
        assert puts == [1] and row_body(store, doc.id) == b""  # put once, by prepare
        bad = document(2, BIG + b"!")

        def broken(_: object) -> None:
            raise sqlite3.OperationalError("disk I/O error")

        monkeypatch.setattr(store.bodies, "put", broken)
        with pytest.raises(sqlite3.OperationalError):
            await batcher.send(bad, [message(bad, "000.01.00.H60")])
        assert store.document(bad.sender_organ, bad.document_id) is None
        monkeypatch.setattr(store.bodies, "put", counted)
        ok = document(3, b"<edXML>small</edXML>")
        assert not (await batcher.send(ok, [message(ok, "000.01.00.H60")])).duplicate

    try:
        asyncio.run(go())
    finally:
        batcher.close()
