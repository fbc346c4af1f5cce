"""The gateway's log lines (gateway/logs.py): info lines wait in the output's buffer for the periodic
flush, a warning goes out at once with what waited before it, every line whole JSON; and a serving
gateway's lines reach its log within the flush period, and all of them at a graceful stop."""

from __future__ import annotations

import io
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, BinaryIO

import orjson
import pytest
import structlog

from gateway import logs


@pytest.fixture(params=["raw", "buffered"])
def stream(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[BinaryIO, Path]]:
    """A file as standard output is one: raw with ``PYTHONUNBUFFERED`` set (no buffer of its own),
    buffered without."""
    path = tmp_path / "out.log"
    raw = io.FileIO(path, "w")
    if request.param == "raw":
        with raw:
            yield raw, path
    else:
        with io.BufferedWriter(raw, buffer_size=65536) as buffered:
            yield buffered, path


def lines(path: Path) -> list[dict[str, object]]:
    return [orjson.loads(line) for line in path.read_bytes().splitlines()]


def test_info_waits_in_the_buffer_and_a_warning_takes_it_out(stream: tuple[BinaryIO, Path]) -> None:
    out, path = stream
    logger = logs.Lines(out)
    logger.info(orjson.dumps({"event": "exchange", "n": 1}))
    logger.debug(orjson.dumps({"event": "exchange", "n": 2}))
    assert path.read_bytes() == b""  # no system call for them
    logger.warning(orjson.dumps({"event": "trouble"}))
    assert [line["event"] for line in lines(path)] == ["exchange", "exchange", "trouble"]
    for method in ("error", "critical", "exception", "fatal", "err", "warn", "failure"):
        getattr(logger, method)(orjson.dumps({"event": method}))
        assert lines(path)[-1]["event"] == method


def test_waiting_lines_are_bounded_and_a_closed_stream_fails_nothing(stream: tuple[BinaryIO, Path]) -> None:
    out, path = stream
    logger = logs.Lines(out)
    line = orjson.dumps({"event": "exchange", "pad": "x" * 1000})
    for _ in range(logs.WAITING_MAX_BYTES // len(line) + 1):
        logger.info(line)
    assert 0 < len(lines(path)) <= logs.WAITING_MAX_BYTES // len(line) + 1  # written without a flush
    out.close()
    logger.info(line)
    logger.warning(line)  # nothing raised into the caller: its exchange goes on
    logs.flush_logs()


def test_a_stream_that_takes_part_of_a_write_gets_the_rest() -> None:
    """A raw stream may write fewer bytes than asked (a signal in the middle): the rest follows."""

    class Sparing(io.RawIOBase):
        def __init__(self) -> None:
            self.got = bytearray()

        def writable(self) -> bool:
            return True

        def write(self, data: Any) -> int:
            piece = bytes(data[:7])
            self.got += piece
            return len(piece)

    out = Sparing()
    logger = logs.Lines(out)  # type: ignore[arg-type]
    logger.info(orjson.dumps({"event": "exchange", "n": 1}))
    logger.warning(orjson.dumps({"event": "trouble"}))
    assert [orjson.loads(x)["event"] for x in bytes(out.got).splitlines()] == ["exchange", "trouble"]


def test_lines_from_several_threads_stay_whole(stream: tuple[BinaryIO, Path]) -> None:
    out, path = stream
    logger = logs.Lines(out)

    def write(k: int) -> None:
        for i in range(2_000):
            logger.info(orjson.dumps({"event": "exchange", "thread": k, "i": i, "pad": "x" * (i % 300)}))

    threads = [threading.Thread(target=write, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    logs.flush_logs()
    found = lines(path)
    assert len(found) == 8_000
    assert all(sorted(line["i"] for line in found if line["thread"] == k) == list(range(2_000))  # type: ignore[type-var]
               for k in range(4))


def test_configured_the_info_lines_go_out_within_the_flush_period(
        capfdbinary: pytest.CaptureFixture[bytes]) -> None:
    """Through structlog as the gateway configures it, onto the process's standard output."""
    logs.configure_logging()
    structlog.get_logger("test").info("exchange", exchange_id="e-1")
    deadline = time.monotonic() + 10 * logs.FLUSH_EVERY_S
    seen = b""
    while b"e-1" not in seen and time.monotonic() < deadline:
        time.sleep(logs.FLUSH_EVERY_S / 5)
        seen += capfdbinary.readouterr().out
    (line,) = [orjson.loads(x) for x in seen.splitlines() if b'"exchange_id":"e-1"' in x]
    assert line["event"] == "exchange" and line["level"] == "info"
