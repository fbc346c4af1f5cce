"""Large edXML packages through real sockets (issue 16, "large attachments streamed and spooled to
disk"): the body read to an unnamed file at the REST entry, parsed from there and copied into
``document_parts`` in the row's transaction; fetched and pushed byte for byte; refused over the limit
while it streams; and every refusal leaving no spooled file behind. SQLite and PostgreSQL.

Bodies over ``gateway.spool.SPOOL_THRESHOLD`` (4 MiB) are spooled; these packages are about 6.7 MB.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import select
import socket
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa

from connectors.dms import data
from gateway.arrival import Arrival
from gateway.context import Exchange as Arrived
from gateway.documents import stats
from gateway.documents.store import DocumentRow, DocumentStore, MessageRow
from gateway.documents.tables import document_parts
from gateway.ids import new_id
from gateway.rest import request_hash
from gateway.seal import HEADER
from gateway.spool import SPOOL_THRESHOLD, Spool, Spooled
from tests.conftest import stop
from tests.test_documents_e2e import (
    H41,
    H60,
    H60_OFFICE,
    MINISTRY,
    NA_DMS,
    SERVICE,
    TQ_DMS,
    Exchange,
    all_leaves,
    start,
)
from tests.test_seal import JWKS, joserfc_verify

MIB = 1_048_576
BIG = 8_000_000  # asked of connectors/dms/data.py: a package of about 6.7 MB, over the spool threshold


@pytest.fixture
def exchange(database_url: str, tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Exchange]:
    limits = getattr(request, "param", {"max_body_bytes": 64 * MIB, "max_document_bytes": 64 * MIB})
    ex = start(tmp_path / "gw", database_url, **limits)
    yield ex
    stop(list(ex.procs.values()))


def big_package(number: int, recipients: list[str], sender: str = H60) -> bytes:
    package = data.package_bytes(sender, recipients, number, attachments=1, attachment_size=BIG)
    assert len(package) > SPOOL_THRESHOLD
    return package


def count(ex: Exchange, table: str) -> int:
    engine = sa.create_engine(ex.database)
    try:
        with engine.connect() as conn:
            return int(conn.execute(sa.select(sa.func.count()).select_from(sa.table(table))).scalar_one())
    finally:
        engine.dispose()


def released(ex: Exchange, timeout: float = 20) -> None:
    """Wait until the gateway holds no spooled file (an attempt's closes once it is recorded)."""
    deadline = time.monotonic() + timeout
    while spool_files(ex) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert spool_files(ex) == []


def spool_files(ex: Exchange) -> list[str]:
    """Files the gateway's processes hold open in its spool folder, and any named there."""
    folder = str(ex.config_path.parent / "spool")
    held = []
    for pid in _tree(ex.procs["gateway"].pid):
        try:
            fds = os.listdir(f"/proc/{pid}/fd")
        except OSError:
            continue
        for fd in fds:
            try:
                target = os.readlink(f"/proc/{pid}/fd/{fd}")
            except OSError:
                continue
            if target.startswith(folder):
                held.append(target)
    named = [str(p) for p in Path(folder).iterdir()] if Path(folder).is_dir() else []
    return held + named


def _tree(pid: int) -> list[int]:
    out = [pid]
    for task in os.listdir(f"/proc/{pid}/task"):
        try:
            children = Path(f"/proc/{pid}/task/{task}/children").read_text().split()
        except OSError:
            continue
        for child in children:
            out.extend(_tree(int(child)))
    return out


def test_a_large_package_is_spooled_stored_in_parts_and_fetched_byte_identical(exchange: Exchange) -> None:
    """A 6.7 MB package: 202 once stored (its row with an empty body, its bytes in 1 MiB parts), pulled
    and pushed byte for byte (the delivery names the document's parts and holds no copy), the audit's
    request digest and X-Road-Request-Hash those of the bytes, a status answering it, the same
    package again a duplicate; no spooled file is left open once the push is recorded."""
    ex = exchange
    package = big_package(201, [H41, H60_OFFICE])
    r = ex.post(package)
    assert r.status_code == 202, r.text
    sent = r.json()

    parts = ex.rows(lambda m: sa.select(sa.func.length(m.tables["documents"].c.body),
                                        m.tables["documents"].c.size).where(
        m.tables["documents"].c.id == sent["id"]))
    assert [tuple(p) for p in parts] == [(0, len(package))]
    assert count(ex, "document_parts") == -(-len(package) // MIB)

    # pulled by Nghệ An, the very bytes
    (item,) = ex.get("/pending").json()["items"]
    assert item["size"] == len(package) and item["sha256"] == hashlib.sha256(package).hexdigest()
    got = ex.get(f"/messages/{item['id']}")
    assert got.status_code == 200 and got.content == package
    # sent from a file of its parts: its length said, the seal over the very bytes, the audit's
    # response digest that of the package
    assert got.headers["content-length"] == str(len(package))
    joserfc_verify(got.headers[HEADER], package, httpx.get(f"{ex.base}{JWKS}", timeout=10).json())
    (fetched,) = ex.leaves(got.headers["x-road-id"])
    assert fetched["operation"] == "get"
    assert fetched["response"] == {"sha256": hashlib.sha256(package).hexdigest(), "size": len(package)}
    # pushed to Tuyên Quang's office, the very bytes, read from the document's parts
    (held,) = ex.wait_held(ex.dms, 1)
    assert held["to"] == H60_OFFICE and held["sha256"] == hashlib.sha256(package).hexdigest()
    delivered = ex.rows(lambda m: sa.select(
        sa.func.length(m.tables["deliveries"].c.body), m.tables["deliveries"].c.body_document,
        m.tables["deliveries"].c.body_sha256))
    assert [tuple(x) for x in delivered] == [(0, sent["id"], hashlib.sha256(package).hexdigest())]
    released(ex)

    # the audit record carries the body's digest and size; the request hash is the in-memory one
    (leaf,) = [x for x in all_leaves(ex) if x.get("operation") == "send"]
    assert leaf["request"] == {"sha256": hashlib.sha256(package).hexdigest(), "size": len(package)}
    assert leaf["document"]["sha256"] == hashlib.sha256(package).hexdigest()
    assert leaf["document"]["attachments"][0]["size"] > SPOOL_THRESHOLD // 2
    same = Arrived.arrived(Arrival.read({"headers": []}), id=r.headers["x-road-id"], protocol="rest",
                           method="POST", service_id=SERVICE, received_us=0, body=package)
    assert r.headers["x-road-request-hash"] == request_hash(same)

    # a status answers it; the same package again stores nothing new
    answered = ex.post(data.status_bytes(sent["documentId"], H60, "03", H41), client=NA_DMS)
    assert answered.status_code == 202, answered.text
    again = ex.post(package)
    assert again.status_code == 202 and again.json()["duplicate"] is True
    assert count(ex, "documents") == 1 and count(ex, "document_parts") == -(-len(package) // MIB)
    assert spool_files(ex) == []


@pytest.mark.parametrize("exchange", [{"max_body_bytes": 64 * MIB, "max_document_bytes": 6 * MIB}],
                         indirect=True)
def test_over_the_limit_is_413_while_streaming_and_nothing_is_left(exchange: Exchange) -> None:
    """A body over ``limits.max_document_bytes`` is answered 413 before the client has sent it all
    (the gateway stops reading at the limit); nothing is stored and no spooled file remains."""
    ex = exchange
    status = stream(ex, 40 * MIB, ex.token(TQ_DMS))
    assert status == 413
    assert count(ex, "documents") == 0 and count(ex, "document_parts") == 0
    assert spool_files(ex) == []
    refused = [x for x in all_leaves(ex) if x.get("service") == SERVICE]
    assert [x["status"] for x in refused] == [413]


def stream(ex: Exchange, total: int, token: str) -> int:
    """POST ``total`` bytes in pieces over a raw socket, stopping once the gateway answers; its status."""
    host, port = ex.base.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=30) as sock:
        sock.sendall((f"POST /r1/{SERVICE} HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {token}\r\n"
                      f"Content-Type: application/xml\r\nContent-Length: {total}\r\n\r\n").encode())
        piece = b"<" + b"A" * 65_535
        sent = 0
        while sent < total:
            readable, _, _ = select.select([sock], [], [], 0)
            if readable:
                break  # answered before the body ended
            try:
                sock.sendall(piece)
            except (BrokenPipeError, ConnectionResetError):
                break
            sent += len(piece)
        assert sent < total, "the gateway read the whole body"
        answer = b""
        while b"\r\n" not in answer:
            more = sock.recv(4096)
            if not more:
                break
            answer += more
    return int(answer.split(b" ", 2)[1])


def test_refusals_of_a_spooled_package_leave_nothing(exchange: Exchange) -> None:
    """Every refusal of a spooled package, before the steps, in them or in the desk, stores nothing
    and leaves no spooled file: no token, a wrong media type, an unknown recipient, a sender organ
    the caller does not act for, malformed XML, a manifest naming a missing attachment."""
    ex = exchange
    good = big_package(202, [MINISTRY])
    url = f"{ex.base}/r1/{SERVICE}"
    refusals: list[tuple[int, Any]] = [
        (401, lambda: httpx.post(url, content=good, timeout=60, headers={"Content-Type": "application/xml"})),
        (415, lambda: ex.post(good, content_type="text/plain")),
        (422, lambda: ex.post(big_package(203, [MINISTRY, "000.00.00.H99"]))),
        (403, lambda: ex.post(big_package(204, [MINISTRY], sender=H41))),
        (400, lambda: ex.post(good.replace(b"</edXML:Subject>", b"</edXML:Subjec>", 1))),
        (400, lambda: ex.post(good.replace(b"cid:att1", b"cid:att9"))),
    ]
    for status, send in refusals:
        r = send()
        assert r.status_code == status, r.text
        assert spool_files(ex) == [], status
    assert count(ex, "documents") == 0 and count(ex, "document_parts") == 0
    assert count(ex, "document_messages") == 0


def spool_of(body: bytes, folder: Path) -> Spooled:
    """``body`` as the REST entry would spool it (threshold 1 KiB)."""
    pieces = [body[i:i + 65_536] for i in range(0, len(body), 65_536)]

    async def receive() -> dict[str, Any]:
        piece = pieces.pop(0)
        return {"type": "http.request", "body": piece, "more_body": bool(pieces)}

    _, spooled = asyncio.run(Spool(10 ** 9, folder, threshold=1024).read(receive, 10 ** 9))
    assert spooled is not None
    return spooled


def rows_for(package: bytes, spooled: Spooled, *, copies: int = 1) -> tuple[DocumentRow, list[MessageRow]]:
    sha = hashlib.sha256(package).hexdigest()
    doc = DocumentRow(id=new_id(), document_id=f"{H60},2026/11/21,301/UBND-VP", sender_organ=H60,
                      client=TQ_DMS, exchange_id=new_id(), sha256=sha, size=len(package), body=b"",
                      attachments=(), created_us=1, spooled=spooled)
    message = MessageRow(id=new_id(), idem_key=new_id(), document=doc.id, document_id=doc.document_id,
                         kind="package", from_organ=H60, to_organ=H41, member="VN/GOV/000.00.00.H41",
                         client=NA_DMS, service=None, status_code=None, sha256=sha, size=len(package),
                         sender_client=TQ_DMS, rule="r", exchange_id=doc.exchange_id, created_us=1)
    return doc, [message] * copies


def test_a_spooled_package_is_stored_in_parts_in_one_transaction(database_url: str, tmp_path: Path) -> None:
    """The store copies a spooled package into 1 MiB parts with its row: read back whole, piece by
    piece and by the KPIs' header reader; a transaction that fails leaves no part behind."""
    package = data.package_bytes(H60, [H41], 301, attachments=2, attachment_size=2_000_000)
    engine = sa.create_engine(database_url)
    try:
        store = DocumentStore(engine)
        doc, messages = rows_for(package, spool_of(package, tmp_path))
        assert store.send(doc, messages).duplicate is False
        stored = store.message(messages[0].id)  # its bytes not gathered: read from the parts in a file
        assert stored is not None and stored.parted and stored.body is None
        spooled = store.spool_body(doc.id, tmp_path / "out")
        assert spooled is not None
        try:
            assert spooled.read_all() == package and spooled.sha256 == hashlib.sha256(package).hexdigest()
        finally:
            spooled.close()
        assert store.spool_body("no-such-document") is None
        with engine.connect() as conn:
            pieces = [bytes(p) for p in conn.execute(sa.select(document_parts.c.data).where(
                document_parts.c.document == doc.id).order_by(document_parts.c.n)).scalars()]
        assert b"".join(pieces) == package and len(pieces) == -(-len(package) // MIB)
        with engine.connect() as conn:
            header = stats._headers_of(conn, [doc.id])[doc.id]
        assert header.subject and header.sender_name

        other = data.package_bytes(H60, [H41], 302, attachments=1, attachment_size=2_000_000)
        failing, twice = rows_for(other, spool_of(other, tmp_path), copies=2)  # one message id twice
        failing = replace(failing, document_id=f"{H60},2026/11/21,302/UBND-VP")
        with pytest.raises(sa.exc.IntegrityError):
            store.send(failing, twice)
        with engine.connect() as conn:
            left = conn.execute(sa.select(sa.func.count()).select_from(document_parts).where(
                document_parts.c.document == failing.id)).scalar_one()
        assert left == 0 and store.document(H60, failing.document_id) is None
    finally:
        engine.dispose()


@pytest.mark.parametrize("lost", ["missing", "changed"])
def test_a_pushed_package_is_sent_from_its_parts_and_dead_when_they_are_gone(exchange: Exchange,
                                                                             lost: str) -> None:
    """Each attempt of a large package's push reads the document's stored parts again (its delivery
    holds no copy): the attempt's record names the package's digest and size; once the parts are gone,
    or are not the bytes the delivery was accepted with, the delivery is dead and says why, rather
    than sending other bytes; no spooled file is left."""
    ex = exchange
    ex.mode(ex.dms, fail="http500")
    package = big_package(205, [H60_OFFICE])
    r = ex.post(package)
    assert r.status_code == 202, r.text
    (push,) = r.json()["recipients"]
    deadline = time.monotonic() + 30
    while not [f for f in httpx.get(f"{ex.dms}/_sim/received").json()["items"] if f["kind"] == "fault"]:
        assert time.monotonic() < deadline, "the system was never tried"
        time.sleep(0.05)
    (attempt,) = ex.leaves(f"{push['deliveryId']}.1")
    assert attempt["operation"] == "edxml.package" and attempt["document"]["size"] == len(package)
    assert attempt["document"]["sha256"] == hashlib.sha256(package).hexdigest()

    engine = sa.create_engine(ex.database)
    try:
        with engine.begin() as conn:
            if lost == "missing":
                conn.execute(document_parts.delete())
            else:  # one byte of the first part
                first = document_parts.c.n == 0
                data = conn.execute(sa.select(document_parts.c.data).where(first)).scalar_one()
                conn.execute(document_parts.update().where(first).values(
                    data=bytes(data[:-1]) + bytes([data[-1] ^ 1])))
    finally:
        engine.dispose()
    ex.mode(ex.dms, fail=None)
    d = None
    while time.monotonic() < deadline + 30:
        (d,) = ex.rows(lambda m: sa.select(m.tables["deliveries"].c.state,
                                           m.tables["deliveries"].c.last_error))
        if d.state == "dead":
            break
        time.sleep(0.1)
    assert d is not None and d.state == "dead", d
    # an attempt that read them while they went finds them changed
    reasons = ("missing", "not those it was accepted with") if lost == "missing" else ("not those it was",)
    assert any(f"the stored bytes of document {r.json()['id']} are {why}" in d.last_error for why in reasons)
    assert ex.held(ex.dms) == []
    released(ex)
