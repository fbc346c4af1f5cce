"""A client allowed one service cannot reach another endpoint of its upstream through the path.

Unit tests of gateway/paths.py (raw, percent-encoded, double-encoded and backslash forms), then the
same forms sent as raw bytes over a socket to a running gateway, on every entry point (/r1 and the
SOAP face) and through the connectors that build URLs (rest, onestop): each is refused or, where
the path is harmless, forwarded unresolved; the upstream's other endpoints never answer, and the
audit record names the path the client sent.
"""

from __future__ import annotations

import socket
import string

import httpx
import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.errors import GatewayError, UnknownService
from gateway.init import NGHE_AN, PORTAL, TUYEN_QUANG
from gateway.paths import PathRefused, check_prefix, encode, path_value, segment, segments, split_raw
from gateway.rest import split_path
from tests.conftest import Stack

ESCAPES = [
    "/..", "/.", "/../_sim/received", "/%2e%2e/_sim/received", "/%2E%2e", "/.%2e", "/%2e",
    "/..%2F_sim%2Freceived", "/..%2f_sim", "/x%2F..%2F_sim", "/%252e%252e/_sim/received",
    "/%252E%252E%252F_sim", "/..%5c_sim", "/x%5C..%5C_sim", "/..\\_sim", "/a\\b", "/%00", "/a%00b",
    "/%0d%0aX-Injected:%201", "/%0a", "/%7f", "/a//b", "/%ff%fe", "/%c0%ae%c0%ae",
]


@pytest.mark.parametrize("raw", ESCAPES)
def test_escaping_forms_are_refused(raw: str) -> None:
    with pytest.raises(PathRefused):
        segments(raw)


@pytest.mark.parametrize("raw,parts", [
    ("", ()), ("/7", ("7",)), ("/items/7", ("items", "7")), ("/a%20b", ("a b",)),
    ("/H22.23-20261121-0000001", ("H22.23-20261121-0000001",)), ("/Nguy%E1%BB%85n", ("Nguyễn",)),
    ("/a/", ("a", "")), ("/...", ("...",)), ("/a..b", ("a..b",)),
])
def test_plain_paths_are_kept(raw: str, parts: tuple[str, ...]) -> None:
    assert segments(raw) == parts


_TEXT = st.text(alphabet=st.characters(blacklist_categories=("Cs", "Cc")), min_size=1, max_size=12)


@given(st.lists(_TEXT, min_size=1, max_size=5))
def test_encoded_segments_round_trip_or_are_refused(parts: list[str]) -> None:
    """Whatever segments a client means, what goes upstream is those segments again, or nothing."""
    try:
        path = encode(parts)
        again = segments(path)
    except PathRefused:
        assert any(p in (".", "..") or "/" in p or "\\" in p or "%" in p for p in parts)
        return
    assert list(again) == parts
    assert encode(list(again)) == path


@given(st.text(alphabet=string.printable + "é%\\", max_size=40))
def test_no_raw_path_yields_a_dot_or_separator_segment(raw: str) -> None:
    try:
        parts = segments("/" + raw)
    except GatewayError:
        return
    for part in parts:
        assert part not in (".", "..") and "/" not in part and "\\" not in part
        assert not any(ord(c) < 0x20 for c in part)
    # httpx would resolve a dot segment; none can be in what is forwarded.
    assert "/../" not in encode(list(parts)) + "/" and "/./" not in encode(list(parts)) + "/"


def test_service_part_cannot_be_smuggled_by_encoded_slashes() -> None:
    assert split_path("/r1/VN/GOV/m/S/svc/items/7") == ("VN/GOV/m/S/svc", "/items/7")
    assert split_path("/r1/VN/GOV/m/S/svc/") == ("VN/GOV/m/S/svc", "")
    with pytest.raises(PathRefused):
        split_path("/r1/VN/GOV/m%2FS/svc/x")
    with pytest.raises(PathRefused):
        split_path("/r1/VN/GOV/m/S/..%2Fother")


def test_extra_path_is_refused_unless_declared() -> None:
    check_prefix("", None, "svc")
    with pytest.raises(UnknownService):
        check_prefix("/x", None, "svc")
    check_prefix("/items/7", "/items", "svc")
    check_prefix("/items", "/items", "svc")
    with pytest.raises(UnknownService):
        check_prefix("/itemsX/7", "/items", "svc")
    check_prefix("/anything/at/all", "/", "svc")


def test_values_put_into_urls_follow_the_same_rules() -> None:
    assert segment("H22.23-1") == "H22.23-1"
    assert segment("Nguyễn A") == "Nguy%E1%BB%85n%20A"


@pytest.mark.parametrize("value", ["..", ".", "%2e%2e", "a%2Fb", "a/b", "a\\b", "\r\nX: 1", "x\x00", ""])
def test_values_that_would_escape_are_refused(value: str) -> None:
    with pytest.raises(PathRefused):
        segment(value)


def test_path_value_reads_the_code_back() -> None:
    assert path_value(encode(["H22.1+ é"])) == "H22.1+ é"
    assert path_value("") == ""


def test_split_raw_caps_segments() -> None:
    with pytest.raises(PathRefused):
        split_raw("/".join("a" * 1 for _ in range(100)))


# -- through a running gateway --------------------------------------------------------------------

ECHO = f"/r1/{NGHE_AN}/DANHMUC/echo"
ITEMS = f"/r1/{NGHE_AN}/DANHMUC/items"


def _raw_request(base: str, method: str, target: str, headers: dict[str, str], body: bytes = b"") -> \
        tuple[int, bytes]:
    """Send ``target`` byte for byte (no client library normalises it) and read the answer."""
    host, port = base.removeprefix("http://").split(":")
    lines = [f"{method} {target} HTTP/1.1", f"Host: {host}:{port}", "Connection: close",
             f"Content-Length: {len(body)}", *(f"{k}: {v}" for k, v in headers.items())]
    with socket.create_connection((host, int(port)), timeout=30) as sock:
        sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body)
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    answer = b"".join(chunks)
    status = int(answer.split(b" ", 2)[1]) if answer.startswith(b"HTTP/") else 0
    return status, answer.partition(b"\r\n\r\n")[2]


@pytest.fixture(scope="module")
def echo_token(stack: Stack) -> str:
    return stack.token(f"{TUYEN_QUANG}/MOTCUA")


def _received(stack: Stack) -> int:
    return int(httpx.get(f"{stack.sims['rest']}/_sim/received").json()["total"])


ATTACKS = [f"{ECHO}{tail}" for tail in (
    "/../_sim/received", "/..%2F_sim%2Freceived", "/%2e%2e/_sim/received", "/%252e%252e/_sim/received",
    "/..%5c_sim%5creceived", "/..\\_sim\\received", "/%00", "/%0d%0aX-Injected:%201")] + [
    f"{ITEMS}/..%2Fecho", f"{ITEMS}/../echo", f"{ITEMS}/%2e%2e%2f_sim%2freceived",
    f"{ITEMS}/%252e%252e%252f_sim", f"{ITEMS}/x/..%5C..%5C_sim"]


def _is_own_refusal(status: int, body: bytes) -> bool:
    """The gateway's own problem+json refusal, not anything an upstream said."""
    problem = orjson.loads(body)
    return bool(problem["status"] == status and problem["type"].startswith("urn:lienthong:problem:"))


@pytest.mark.parametrize("target", ATTACKS)
def test_no_path_escapes_through_r1(stack: Stack, echo_token: str, target: str) -> None:
    before = _received(stack)
    status, body = _raw_request(stack.base, "POST", target, {
        "Authorization": f"Bearer {echo_token}", "Content-Type": "application/json"}, b"{}")
    assert status in (400, 404) and _is_own_refusal(status, body), body
    assert _received(stack) == before, "nothing may reach the upstream"


def test_a_service_without_extra_path_takes_none(stack: Stack, echo_token: str) -> None:
    before = _received(stack)
    status, body = _raw_request(stack.base, "POST", f"{ECHO}/anything", {
        "Authorization": f"Bearer {echo_token}", "Content-Type": "application/json"}, b"{}")
    assert status == 404 and _is_own_refusal(status, body) and b"takes no path" in body
    assert _received(stack) == before


def test_a_declared_path_is_forwarded_as_segments_and_audited(stack: Stack, echo_token: str) -> None:
    from gateway.audit.log import AuditLog
    from gateway.storage.db import create_engine

    status, body = _raw_request(stack.base, "GET", f"{ITEMS}/Nguy%E1%BB%85n%20A?full=1&x=%2e%2e", {
        "Authorization": f"Bearer {echo_token}"})
    # The items simulator has no such item and says so, naming the one segment it was asked for.
    assert status == 404 and orjson.loads(body)["message"].endswith("Nguyễn A"), body
    engine = create_engine(stack.database)
    try:
        leaves = AuditLog(engine).read(0, 1_000_000)
    finally:
        engine.dispose()
    mine = [doc for doc in (orjson.loads(leaf.leaf) for leaf in leaves)
            if doc.get("path") == "/Nguy%E1%BB%85n%20A"]
    assert mine and mine[-1]["query"] == "full=1&x=%2e%2e" and mine[-1]["status"] == 404


def test_no_path_escapes_through_the_soap_face(stack: Stack) -> None:
    token = stack.token(f"{PORTAL}/DVCQG")
    for tail in ("/..%2F..%2Fr1", "/%2e%2e", "/x%5c..", "/%00"):
        status, body = _raw_request(stack.base, "POST", f"/soap/VN/GOV/000.00.00.G01/CSDLDC{tail}", {
            "Authorization": f"Bearer {token}", "Content-Type": "text/xml"}, b"<x/>")
        # SOAP 1.1 answers every fault with HTTP 500; the fault code says whose fault it is.
        assert status == 500 and b"Client.BadPath" in body, (tail, body[:300])
        status, body = _raw_request(stack.base, "GET", f"/soap/VN/GOV/000.00.00.G01/CSDLDC{tail}?wsdl", {})
        assert status == 400 and b"Client.BadPath" in body, (tail, body[:300])


def test_a_dossier_code_cannot_escape_the_one_stop_url(stack: Stack) -> None:
    token = stack.token(f"{PORTAL}/DVCQG")
    for code in ("..", "../../_sim/received", "%2e%2e"):
        r = httpx.post(f"{stack.base}/r1/{TUYEN_QUANG}/MOTCUA/TraCuuHoSo", json={"MaHoSo": code},
                       headers={"Authorization": f"Bearer {token}"})
        assert r.status_code == 400, r.text


def test_the_wsdl_names_the_configured_address_not_the_host_header(stack: Stack) -> None:
    service = "VN/GOV/000.00.00.G01/CSDLDC/XacThucThongTinCongDan"
    port = stack.base.rsplit(":", 1)[1]
    sock_status, body = _raw_request(stack.base, "GET", f"/soap/{service}?wsdl", {})
    assert sock_status == 200
    # _raw_request sends the true Host; a forged one must change nothing.
    forged = httpx.get(f"{stack.base}/soap/{service}?wsdl", headers={"Host": "evil.example"})
    assert forged.status_code == 200 and b"evil.example" not in forged.content
    assert f'location="http://127.0.0.1:{port}/soap/{service}"'.encode() in forged.content
    assert forged.content == body


def test_public_address_and_tls_come_from_configuration() -> None:
    from gateway.config import Config
    from gateway.public import is_https, public_base

    plain = Config.model_validate({"listen": {"host": "127.0.0.1", "port": 8080}})
    assert public_base(plain) == "http://127.0.0.1:8080"
    proxied = Config.model_validate({"public": {"url": "https://lgsp.example.gov.vn/",
                                                "trusted_proxies": ["10.0.0.0/8"]}})
    assert public_base(proxied) == "https://lgsp.example.gov.vn"
    forwarded = [(b"x-forwarded-proto", b"https")]
    behind = Config.model_validate({"public": {"trusted_proxies": ["10.0.0.5"]}})
    assert is_https({"client": ("10.0.0.5", 1234), "headers": forwarded, "scheme": "http"}, behind)
    assert not is_https({"client": ("192.0.2.7", 1234), "headers": forwarded, "scheme": "http"}, behind)
    assert not is_https({"client": ("10.0.0.5", 1234), "headers": [], "scheme": "http"}, behind)
    assert is_https({"client": ("192.0.2.7", 1), "headers": [], "scheme": "http"}, proxied)
    with pytest.raises(ValueError):
        Config.model_validate({"public": {"trusted_proxies": ["not-an-address"]}})
