"""Hostile XML is refused fast, with bounded memory, without expanding or fetching anything: by the
parser, by the SOAP face (a Client fault), and when an upstream answers it (a 502)."""

from __future__ import annotations

import http.server
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from gateway.xml import safe
from tests.test_soap_face import face  # noqa: F401  (the in-process gateway, shared)

SECRET_FILE = "/etc/hostname"


@pytest.fixture(scope="module")
def bait() -> Iterator[dict[str, Any]]:
    """A local HTTP server that counts every request: external entities and DTDs must never reach it."""
    hits: list[str] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            hits.append(self.path)
            body = b'<!ENTITY leak "LEAKED">'
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield {"url": f"http://127.0.0.1:{server.server_address[1]}", "hits": hits}
    server.shutdown()


def hostile(url: str) -> dict[str, bytes]:
    lol = "".join(f'<!ENTITY lol{i} "{f"&lol{i - 1};" * 10}">' for i in range(1, 10))
    big = "x" * 50_000
    return {
        "billion-laughs": (f'<?xml version="1.0"?><!DOCTYPE r [<!ENTITY lol0 "lol">{lol}]>'
                           "<r>&lol9;</r>").encode(),
        "quadratic-blowup": (f'<?xml version="1.0"?><!DOCTYPE r [<!ENTITY a "{big}">]><r>'
                             + "&a;" * 20_000 + "</r>").encode(),
        "external-entity-file": (f'<?xml version="1.0"?><!DOCTYPE r [<!ENTITY x SYSTEM "file://{SECRET_FILE}">]>'
                                 "<r>&x;</r>").encode(),
        "external-entity-http": (f'<?xml version="1.0"?><!DOCTYPE r [<!ENTITY x SYSTEM "{url}/entity">]>'
                                 "<r>&x;</r>").encode(),
        "external-dtd": f'<?xml version="1.0"?><!DOCTYPE r SYSTEM "{url}/schema.dtd"><r>&leak;</r>'.encode(),
        "parameter-entity": (f'<?xml version="1.0"?><!DOCTYPE r [<!ENTITY % p SYSTEM "{url}/p.dtd"> %p;]>'
                             "<r>&leak;</r>").encode(),
        "utf16-billion-laughs": (f'<?xml version="1.0" encoding="UTF-16"?><!DOCTYPE r [<!ENTITY lol0 "lol">'
                                 f"{lol}]><r>&lol9;</r>").encode("utf-16"),
        "huge": b"<r>" + b"<a>text</a>" * 200_000 + b"</r>",
        "deep": b"<a>" * 50_000 + b"</a>" * 50_000,
        "wide": b"<r>" + b"<a/>" * 200_000 + b"</r>",
        "many-small-within-size": b"<r>" + b"<a/>" * 40_000 + b"</r>",
    }


EXPECTED = {"billion-laughs": "dtd", "quadratic-blowup": "dtd", "external-entity-file": "dtd",
            "external-entity-http": "dtd", "external-dtd": "dtd", "parameter-entity": "dtd",
            "utf16-billion-laughs": "dtd", "huge": "too-large", "deep": "too-deep",
            "wide": "too-many-elements", "many-small-within-size": "too-many-elements"}


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_parser_refuses_hostile_documents_fast(name: str, bait: dict[str, Any]) -> None:
    """Each hostile document is refused for its reason, with bounded work, nothing fetched."""
    data = hostile(bait["url"])[name]
    before = len(bait["hits"])
    started = time.thread_time()  # this thread's CPU time: what the refusal costs, whatever else runs
    with pytest.raises(safe.XmlRefused) as refused:
        safe.parse(data, safe.Limits(max_bytes=1_048_576, max_depth=64, max_elements=20_000))
    elapsed = time.thread_time() - started
    assert refused.value.kind == EXPECTED[name], str(refused.value)
    # A guard against runaway work (entity expansion, quadratic blow-up), not a speed claim: the
    # bound is far above the ~0.1 s these take, so a busy machine cannot make it fail.
    assert elapsed < 5.0, f"{name} took {elapsed:.3f} s of CPU"
    assert len(bait["hits"]) == before, "the parser reached the network"


def test_utf16_dtd_is_read_without_expanding_or_fetching(bait: dict[str, Any]) -> None:
    """A DTD the byte scan cannot see (UTF-16) is still neither expanded nor fetched, then refused."""
    data = (f'<?xml version="1.0" encoding="UTF-16"?><!DOCTYPE r [<!ENTITY % p SYSTEM "{bait["url"]}/u16">'
            f' %p; <!ENTITY x SYSTEM "file://{SECRET_FILE}">]><r>&x;</r>').encode("utf-16")
    before = len(bait["hits"])
    with pytest.raises(safe.XmlRefused) as refused:
        safe.parse(data)
    assert refused.value.kind in ("dtd", "malformed")
    assert len(bait["hits"]) == before


def test_streaming_parse_stops_at_the_limit_with_bounded_memory() -> None:
    """A document over the element limit is abandoned after the limit, not parsed whole: the peak
    memory of parsing it stays a small fraction of parsing it all."""
    import resource
    import subprocess
    import sys

    code = ("import resource,sys; from gateway.xml import safe\n"
            "data = b'<r>' + b'<a/>' * 1_000_000 + b'</r>'\n"
            "base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\n"
            "try:\n    safe.parse(data, safe.Limits(max_bytes=10_000_000))\nexcept safe.XmlRefused as e:\n"
            "    print(e.kind, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - base)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    kind, grown_kb = out.stdout.split()
    assert kind == "too-many-elements"
    assert int(grown_kb) < 30_000, f"parsing grew the process by {grown_kb} KiB"
    del resource


def test_ordinary_documents_parse() -> None:
    """Entities XML predefines and character references are fine; CDATA becomes text."""
    root = safe.parse(b'<r a="&amp;&#35;">&lt;x&gt; &#233;<![CDATA[<b>]]></r>')
    assert root.get("a") == "&#" and root.text == "<x> \u00e9<b>"


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_soap_face_answers_hostile_requests_with_a_client_fault(name: str, bait: dict[str, Any],
                                                               face: Any) -> None:  # noqa: F811
    """The SOAP face answers each hostile request with a Client fault, audited, nothing fetched."""
    from tests.test_soap_face import fault_of

    data = hostile(bait["url"])[name]
    before = len(bait["hits"])
    started = time.perf_counter()
    r = face.soap("/soap", data, None)
    assert time.perf_counter() - started < 5
    assert r.status_code == 500
    code = fault_of(r)["code"]
    assert code in ("Client.InvalidSoap", "Client.PayloadTooLarge"), code
    assert b"LEAKED" not in r.content
    assert len(bait["hits"]) == before
    leaf = face.leaf(r.headers["x-road-id"])
    assert leaf["outcome"] == "refused" and leaf["error"] == code
