"""The spooled request body (gateway/spool.py): small bodies in memory as before, large ones in an
unnamed file with their digests computed on the way, the limit enforced while reading."""

from __future__ import annotations

import asyncio
import hashlib
import os
from collections.abc import Awaitable, Callable, Iterator, MutableMapping
from pathlib import Path
from typing import Any

import pytest

from gateway.arrival import Arrival
from gateway.context import Exchange
from gateway.errors import PayloadTooLarge
from gateway.rest import request_hash
from gateway.spool import Spool, Spooled, spool_pieces, streamed

Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]


def receiver(body: bytes, chunk: int = 65_536) -> tuple[Receive, list[int]]:
    """An ASGI ``receive`` handing ``body`` over in chunks, and the count of chunks taken."""
    pieces = [body[i:i + chunk] for i in range(0, len(body), chunk)] or [b""]
    taken = [0]

    async def receive() -> MutableMapping[str, Any]:
        i = taken[0]
        taken[0] += 1
        return {"type": "http.request", "body": pieces[i], "more_body": i + 1 < len(pieces)}

    return receive, taken


def open_files(directory: Path) -> list[str]:
    """This process's descriptors on files in ``directory`` (an unnamed file shows as ``#n (deleted)``)."""
    out = []
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue
        if target.startswith(str(directory)):
            out.append(target)
    return out


def spooled(tmp_path: Path, body: bytes, threshold: int = 1024) -> Spooled:
    data, result = asyncio.run(Spool(10 ** 9, tmp_path, threshold).read(receiver(body, 1000)[0], 10 ** 9))
    assert data == b"" and result is not None
    return result


def test_a_small_body_stays_in_memory(tmp_path: Path) -> None:
    """Up to the threshold the body comes back as bytes, and no file is made."""
    body = b"x" * 3000
    data, result = asyncio.run(Spool(10_000, tmp_path, threshold=4096).read(receiver(body, 1000)[0], 10_000))
    assert data == body and result is None
    assert open_files(tmp_path) == [] and list(tmp_path.iterdir()) == []


def test_a_large_body_is_spooled_with_its_digests(tmp_path: Path) -> None:
    """Past the threshold the body goes to an unnamed file: size, SHA-256 and SHA-512 as of the bytes,
    readers and pieces give the bytes back, and nothing is ever named in the folder."""
    body = os.urandom(50_000)
    result = spooled(tmp_path, body)
    try:
        assert result.size == len(body)
        assert result.sha256 == hashlib.sha256(body).hexdigest()
        assert result.sha512 == hashlib.sha512(body).digest()
        assert list(tmp_path.iterdir()) == []  # O_TMPFILE: no directory entry at any time
        assert len(open_files(tmp_path)) == 1
        first, second = result.reader(), result.reader()
        assert first.read(100) == body[:100]
        assert second.read(-1) == body  # readers do not move each other
        assert first.read(10 ** 6) == body[100:] and first.read(10) == b""
        assert b"".join(result.pieces(7_000)) == body
        assert result.read_all() == body
    finally:
        result.close()
    assert result.closed and open_files(tmp_path) == []


def test_pieces_kept_elsewhere_are_spooled_with_their_digests_and_streamed_back(tmp_path: Path) -> None:
    """A large document's stored parts into an unnamed file (a delivery's attempt): the same size and
    digests as the body read from a socket, nothing named in the folder, and ``streamed`` (what an
    HTTP client sends) gives the bytes back in pieces."""
    body = os.urandom(2_200_000)
    result = spool_pieces((body[i:i + 700_000] for i in range(0, len(body), 700_000)), tmp_path / "spool")
    try:
        assert (result.size, result.sha256, result.sha512) == (
            len(body), hashlib.sha256(body).hexdigest(), hashlib.sha512(body).digest())
        assert list((tmp_path / "spool").iterdir()) == []

        async def gather() -> list[bytes]:
            return [piece async for piece in streamed(result)]

        pieces = asyncio.run(gather())
        assert b"".join(pieces) == body and len(pieces) == 3  # 1 MiB at a time
    finally:
        result.close()
    assert open_files(tmp_path) == []


def test_pieces_that_fail_leave_no_file(tmp_path: Path) -> None:
    def failing() -> Iterator[bytes]:
        yield b"x" * 1000
        raise OSError("the database went away")

    with pytest.raises(OSError):
        spool_pieces(failing(), tmp_path)
    assert open_files(tmp_path) == []


def test_over_the_limit_is_413_and_reading_stops(tmp_path: Path) -> None:
    """A body over the limit is refused as soon as it passes it: the rest is not read and the file
    is released."""
    receive, taken = receiver(b"y" * 100_000, 1000)
    with pytest.raises(PayloadTooLarge):
        asyncio.run(Spool(50_000, tmp_path, threshold=4096).read(receive, 10 ** 9))
    assert taken[0] == 51  # 50 chunks fit, the 51st passes the limit, the 49 after it are left unread
    assert open_files(tmp_path) == [] and list(tmp_path.iterdir()) == []


def test_the_smaller_of_the_two_limits_holds(tmp_path: Path) -> None:
    """``limits.max_body_bytes`` bounds a document service's body too."""
    with pytest.raises(PayloadTooLarge):
        asyncio.run(Spool(10 ** 9, tmp_path, threshold=4096).read(receiver(b"z" * 20_000)[0], 10_000))
    assert open_files(tmp_path) == []


def test_a_disconnect_ends_the_body(tmp_path: Path) -> None:
    """A client gone mid-body leaves what it sent, as ``read_body`` does."""
    messages: list[MutableMapping[str, Any]] = [
        {"type": "http.request", "body": b"a" * 5000, "more_body": True}, {"type": "http.disconnect"}]

    async def receive() -> MutableMapping[str, Any]:
        return messages.pop(0)

    data, result = asyncio.run(Spool(10 ** 6, tmp_path, threshold=1024).read(receive, 10 ** 6))
    assert data == b"" and result is not None and result.read_all() == b"a" * 5000
    result.close()


def test_request_hash_is_the_same_for_a_spooled_body(tmp_path: Path) -> None:
    """``X-Road-Request-Hash`` over a spooled body equals the hash over the same bytes in memory."""
    body = os.urandom(20_000)
    result = spooled(tmp_path, body)
    common: dict[str, Any] = {"id": "xid-1", "protocol": "rest", "method": "POST", "received_us": 0,
                              "service_id": "VN/GOV/000.00.00.G22/LIENTHONG/VanBan", "query": "a=1"}
    in_memory = Exchange.arrived(Arrival.read({"headers": []}), body=body, **common)
    on_disk = Exchange.arrived(Arrival.read({"headers": []}), spooled=result, **common)
    assert on_disk.body == b""
    assert request_hash(on_disk) == request_hash(in_memory)
    result.close()


def test_a_disk_that_fails_is_a_server_error(tmp_path: Path) -> None:
    """A spool folder that cannot be written is a ServerError (refused and audited), not a crash."""
    from gateway.errors import ServerError

    blocked = tmp_path / "file"
    blocked.write_bytes(b"")  # a file where the folder should be
    with pytest.raises(ServerError):
        asyncio.run(Spool(10 ** 6, blocked / "spool", threshold=10).read(receiver(b"x" * 100)[0], 10 ** 6))


def test_the_signature_step_reads_a_spooled_body_within_the_verifiers_bound(tmp_path: Path) -> None:
    """A spooled body up to 16 MiB is read back for the verifier; a larger one is ``unsupported``
    without being read (the verifiers would refuse it whole anyway)."""
    from gateway.bounds import SIGNED_MOST
    from gateway.config import Service
    from gateway.context import Result, Stop
    from gateway.steps import verify_signature

    service = Service(id="VN/GOV/000.00.00.G22/LIENTHONG/VanBan", documents=True, signatures="required")
    seen: list[bytes] = []

    async def check(body: bytes, content_type: str, detached: bytes | None) -> Any:
        from gateway.signatures.verdict import Verdict

        seen.append(body)
        return Verdict("xmldsig", True, "ok", "checked")

    def ctx(result: Spooled) -> Result:
        exchange = Exchange.arrived(Arrival.read({"headers": []}), id="x", protocol="rest", method="POST",
                                    service_id=service.id, received_us=0, spooled=result)
        return Result(exchange=exchange, request_sha256=result.sha256, client="c", service=service,
                      operation="VanBan")

    body = os.urandom(5000)
    small = spooled(tmp_path, body)
    verified = asyncio.run(verify_signature(ctx(small), check))
    assert seen == [body] and verified.signature is not None and verified.signature.valid
    small.close()

    large = spooled(tmp_path, b"x" * 3000)
    large.size = SIGNED_MOST + 1  # as if it were that long: the step must not read it
    with pytest.raises(Stop) as stopped:
        asyncio.run(verify_signature(ctx(large), check))
    assert seen == [body] and stopped.value.result.signature is not None
    assert stopped.value.result.signature.reason == "unsupported"
    large.close()
