"""A request body read from the socket into a file rather than memory, for the services that take
large documents (a document service's edXML packages, docs/documents.md#large-packages).

``Spool.read`` reads an ASGI body as ``read_body`` (gateway/rest.py) does, through the same
``body_chunks`` (413 as soon as it passes the limit, without reading further). A body up to
``threshold`` bytes stays in memory and comes back as bytes, exactly as for every other service; a
larger one goes on to an unnamed temporary file (``O_TMPFILE``: no directory entry, so nothing is
left behind by a refusal, a crash or a ``kill -9``) and comes back as a ``Spooled``: its size,
SHA-256 and SHA-512 computed on the way (the audit record's digest and ``X-Road-Request-Hash``
without reading it again), and readers over the file.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import tempfile
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Iterator, MutableMapping
from pathlib import Path
from typing import Any, BinaryIO

from gateway.errors import PayloadTooLarge, ServerError

__all__ = ["SPOOL_THRESHOLD", "Spool", "Spooled", "body_chunks", "spool_pieces", "streamed"]

SPOOL_THRESHOLD = 4 * 1_048_576  # a 1 MiB package stays in memory: the fast path of issue 16's bench
_PIECE = 1_048_576

Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]


class Spooled:
    """A body in an unnamed file: its size and digests, and readers from its start. ``close``
    releases the file (and its disk space); a reader already open keeps working until then."""

    def __init__(self, file: BinaryIO, size: int, sha256: str, sha512: bytes) -> None:
        self._file = file
        self.size = size
        self.sha256 = sha256  # hex: the audit record's request digest
        self.sha512 = sha512  # raw: X-Road-Request-Hash's body digest (gateway/rest.py)

    def reader(self) -> Reader:
        """A file-like reader from the first byte; readers are independent of each other."""
        return Reader(self._file, self.size)

    def pieces(self, size: int = _PIECE) -> Iterator[bytes]:
        """The body in pieces of ``size`` bytes (the last shorter)."""
        reader = self.reader()
        while piece := reader.read(size):
            yield piece

    def read_all(self) -> bytes:
        """The whole body in memory: only for callers that bound it themselves."""
        return self.reader().read(self.size)

    @property
    def closed(self) -> bool:
        return self._file.closed

    def close(self) -> None:
        self._file.close()


class Reader:
    """``read(n)`` at its own offset (``pread``), so two readers of one spooled body do not move each
    other's position. It holds the file itself, not only its descriptor: a reader in a thread keeps
    the file open even if the exchange that spooled it is dropped (its number is never reused under
    it)."""

    def __init__(self, file: BinaryIO, size: int) -> None:
        self._file = file
        self._size = size
        self._at = 0

    def read(self, n: int = -1) -> bytes:
        left = self._size - self._at
        n = left if n < 0 or n > left else n
        if n <= 0:
            return b""
        data = os.pread(self._file.fileno(), n, self._at)
        self._at += len(data)
        return data


class Spool:
    """Reads bodies for one kind of service: at most ``limit`` bytes (413 beyond), in memory up to
    ``threshold``, then in an unnamed file in ``directory`` (the gateway's state folder: a
    ``tmpfs`` /tmp would put the body back in memory)."""

    def __init__(self, limit: int, directory: Path | None = None,
                 threshold: int = SPOOL_THRESHOLD) -> None:
        self.limit = limit
        self.directory = directory
        self.threshold = threshold

    async def read(self, receive: Receive, max_body: int) -> tuple[bytes, Spooled | None]:
        """(the body, None) when it fits in ``threshold``; else (b"", the spooled body)."""
        limit = min(self.limit, max_body)
        chunks: list[bytes] = []
        size = 0
        file: BinaryIO | None = None
        sha256 = sha512 = None
        try:
            async for chunk in body_chunks(receive, limit, "this service takes (limits.max_body_bytes, "
                                           "limits.max_document_bytes)"):
                size += len(chunk)
                if file is None:
                    chunks.append(chunk)
                    if size > self.threshold:  # from here on, the body goes to disk
                        file, sha256, sha512 = _unnamed(self.directory), hashlib.sha256(), hashlib.sha512()
                        for held in chunks:
                            _write(file, held, sha256, sha512)
                        chunks = []
                else:
                    _write(file, chunk, sha256, sha512)
        except OSError as exc:  # the disk is full or gone: refused and audited like any failure
            if file is not None:
                file.close()
            raise ServerError(f"the body could not be spooled to disk ({exc.strerror or exc})") from exc
        except BaseException:
            if file is not None:
                file.close()
            raise
        if file is None:
            return b"".join(chunks), None
        assert sha256 is not None and sha512 is not None
        file.flush()
        return b"", Spooled(file, size, sha256.hexdigest(), sha512.digest())


async def body_chunks(receive: Receive, limit: int, accepted_by: str) -> AsyncIterator[bytes]:
    """An ASGI request's body, chunk by chunk as the server hands them over, until its end or the
    client's disconnect; ``PayloadTooLarge`` as soon as the chunks pass ``limit`` bytes, without
    reading further ("the body is larger than the {limit} bytes {accepted_by}")."""
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise PayloadTooLarge(f"the body is larger than the {limit} bytes {accepted_by}")
        yield chunk
        if not message.get("more_body", False):
            return


def spool_pieces(pieces: Iterable[bytes], directory: Path | None = None) -> Spooled:
    """A body kept elsewhere in pieces (a large document's parts, gateway/documents/store.py) into an
    unnamed file, with its size and digests, one piece in memory at a time: what ``Spool.read``
    gives for a body read from a socket."""
    file, sha256, sha512 = _unnamed(directory), hashlib.sha256(), hashlib.sha512()
    size = 0
    try:
        for piece in pieces:
            _write(file, piece, sha256, sha512)
            size += len(piece)
        file.flush()
    except BaseException:
        file.close()
        raise
    return Spooled(file, size, sha256.hexdigest(), sha512.digest())


async def streamed(spooled: Spooled) -> AsyncIterator[bytes]:
    """The body in pieces, each read in a thread: what an HTTP client sends as it goes."""
    reader = spooled.reader()
    while piece := await asyncio.to_thread(reader.read, _PIECE):
        yield piece


def _unnamed(directory: Path | None) -> BinaryIO:
    if directory is not None:
        directory.mkdir(parents=True, exist_ok=True)
    # On Linux an O_TMPFILE file: never named, gone with its last descriptor.
    return tempfile.TemporaryFile(dir=directory, prefix="body-")


def _write(file: BinaryIO, chunk: bytes, sha256: Any, sha512: Any) -> None:
    # Written in the event loop: a socket's chunks are small (64 KiB) and land in the page cache.
    file.write(chunk)
    sha256.update(chunk)
    sha512.update(chunk)
